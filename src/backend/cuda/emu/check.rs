//! Checked emulation: the host emulator as a compute-sanitizer (`WGAN_EMU_CHECK`), adversarial
//! thread schedules (`WGAN_EMU_SCHEDULE`), and what the checks need from the Rust side:
//!
//! - the **device arena**: under checks every emulated device buffer lives in one reserved range of
//!   address space with a shadow record per 4-byte word beside it, so that the instrumented kernel
//!   code tells device memory from anything else with one comparison, and uploads, copies and
//!   frees keep the shadow's "allocated" and "initialised" bits;
//! - the **shared arrays** of a compiled module, read from its ELF symbol table (thread-local
//!   symbols: `__shared__` is a function static `thread_local` in the emulator);
//! - **source lines** for the code addresses a report names (`addr2line` on the module, which a
//!   checked build compiles with line tables).
//!
//! The checks themselves run in the compiled module (runtime.hpp); their design is described
//! there and in docs/CUDA.md.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{Error, Result};

/// The checks, as bits (runtime.hpp's `CheckRace` …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks(pub u32);

impl Checks {
    pub const RACE: u32 = 1;
    pub const INIT: u32 = 2;
    pub const SYNC: u32 = 4;
    pub const ALIGN: u32 = 8;
    pub const ASYNC: u32 = 16;
    pub const NAMES: [(&'static str, u32); 5] = [
        ("race", Self::RACE),
        ("init", Self::INIT),
        ("sync", Self::SYNC),
        ("align", Self::ALIGN),
        ("async", Self::ASYNC),
    ];
    pub const ALL: Checks = Checks(31);

    /// Parses `race,init,sync,align,async`, `all` or `none` (empty: none).
    pub fn parse(s: &str) -> Result<Checks> {
        let mut bits = 0;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            bits |= match part {
                "all" => Self::ALL.0,
                "none" | "off" | "0" => 0,
                _ => match Self::NAMES.iter().find(|(n, _)| *n == part) {
                    Some((_, b)) => *b,
                    None => {
                        return Err(Error(format!(
                            "WGAN_EMU_CHECK: unknown check `{part}`; expected a comma-separated list of race, init, sync, align, async, or all"
                        )))
                    }
                },
            };
        }
        Ok(Checks(bits))
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// "race,init,…" or "none".
    pub fn describe(self) -> String {
        let v: Vec<&str> = Self::NAMES.iter().filter(|(_, b)| self.0 & b != 0).map(|(n, _)| *n).collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(",")
        }
    }
}

/// The order in which the emulator resumes the runnable threads of a block between
/// synchronisation points (runtime.hpp's `Schedule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// Thread order (the default).
    #[default]
    Forward,
    /// Reverse thread order.
    Reverse,
    /// A random order drawn from the seed, the kernel, the block and the round: replayable.
    Seeded(u64),
}

impl Schedule {
    /// Parses `forward`, `reverse`, `seed:N` or `random` (a seed drawn now and printed).
    pub fn parse(s: &str) -> Result<Schedule> {
        let s = s.trim();
        Ok(match s {
            "" | "forward" => Schedule::Forward,
            "reverse" => Schedule::Reverse,
            "random" => {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let seed = (t.as_nanos() as u64 ^ std::process::id() as u64) % 1_000_000_007;
                eprintln!("host emulator: schedule seed:{seed} (replay with WGAN_EMU_SCHEDULE=seed:{seed})");
                Schedule::Seeded(seed)
            }
            _ => match s.strip_prefix("seed:").map(|n| n.trim().parse::<u64>()) {
                Some(Ok(n)) => Schedule::Seeded(n),
                _ => {
                    return Err(Error(format!(
                        "WGAN_EMU_SCHEDULE: `{s}` is not a schedule; expected forward, reverse, seed:N (N a non-negative integer) or random"
                    )))
                }
            },
        })
    }

    pub fn describe(self) -> String {
        match self {
            Schedule::Forward => "forward".into(),
            Schedule::Reverse => "reverse".into(),
            Schedule::Seeded(n) => format!("seed:{n}"),
        }
    }

    fn code(self) -> (u32, u64) {
        match self {
            Schedule::Forward => (0, 0),
            Schedule::Reverse => (1, 0),
            Schedule::Seeded(n) => (2, n),
        }
    }
}

/// What the emulator checks, how it schedules and whether it profiles, from `WGAN_EMU_CHECK`,
/// `WGAN_EMU_SCHEDULE` and `WGAN_EMU_PROFILE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmuOptions {
    pub checks: Checks,
    pub schedule: Schedule,
    /// The memory profiler (emu/profile.rs): runs the instrumented modules, with or without checks.
    pub profile: bool,
}

impl EmuOptions {
    pub fn from_env() -> Result<EmuOptions> {
        let get = |k: &str| std::env::var(k).unwrap_or_default();
        Ok(EmuOptions {
            checks: Checks::parse(&get("WGAN_EMU_CHECK"))?,
            schedule: Schedule::parse(&get("WGAN_EMU_SCHEDULE"))?,
            profile: super::profile::profile_env()? != super::profile::ProfileEnv::Off,
        })
    }

    /// Whether modules are built with the instrumentation's hooks: for the checks or the profiler.
    pub fn instrumented(&self) -> bool {
        self.checks.any() || self.profile
    }
}

/// One `__shared__` array, as runtime.hpp's `SharedVar`.
#[repr(C)]
pub(crate) struct SharedVarC {
    off: u64,
    size: u64,
    name: *const c_char,
}

/// The shared arrays of a compiled module, with their names kept alive.
pub(crate) struct SharedTable {
    pub vars: Vec<SharedVarC>,
    _names: Vec<CString>,
    pub anchor_off: u64,
}

// SAFETY: the name pointers point into `_names`, owned by the table and never changed.
unsafe impl Send for SharedTable {}
unsafe impl Sync for SharedTable {}

/// A launch's context, as runtime.hpp's `LaunchCtx`.
#[repr(C)]
pub(crate) struct LaunchCtx {
    pub checks: u32,
    pub schedule: u32,
    pub seed: u64,
    pub arena_lo: u64,
    pub arena_size: u64,
    pub shadow_lo: u64,
    pub blk_base: u32,
    pub n_shared: u32,
    pub shared: *const SharedVarC,
    pub anchor_off: u64,
    pub kernel: *const c_char,
    pub found: u32,
    pub npc: u32,
    pub pc: [u64; 2],
    pub profile: u32,
    pub prof_n: u32,
    pub prof_rows: *const super::profile::ProfRowC,
    pub prof_failed: u32,
    pub prof_pad: u32,
}

/// Block serial numbers: never repeated, so a shadow record of an earlier launch never matches.
static BLOCKS: AtomicU32 = AtomicU32::new(1);

impl LaunchCtx {
    pub fn new(opts: EmuOptions, table: Option<&SharedTable>, kernel: &CString, blocks: u64) -> LaunchCtx {
        let (schedule, seed) = opts.schedule.code();
        // The profiler tells device memory by the arena too (without checks its shadow is unused).
        let (arena_lo, arena_size, shadow_lo) = match (opts.instrumented(), arena()) {
            (true, Some(a)) => (a.lo as u64, a.size as u64, a.shadow as u64),
            _ => (0, 0, 0),
        };
        let blk_base = if opts.checks.any() {
            BLOCKS.fetch_add(blocks.min(u32::MAX as u64 / 4) as u32 + 1, Ordering::Relaxed)
        } else {
            0
        };
        LaunchCtx {
            checks: if table.is_some() { opts.checks.0 } else { 0 },
            schedule,
            seed,
            arena_lo,
            arena_size,
            shadow_lo,
            blk_base,
            n_shared: table.map_or(0, |t| t.vars.len() as u32),
            shared: table.map_or(std::ptr::null(), |t| t.vars.as_ptr()),
            anchor_off: table.map_or(0, |t| t.anchor_off),
            kernel: kernel.as_ptr(),
            found: 0,
            npc: 0,
            pc: [0; 2],
            profile: (opts.profile && table.is_some()) as u32,
            prof_n: 0,
            prof_rows: std::ptr::null(),
            prof_failed: 0,
            prof_pad: 0,
        }
    }
}

// ---- the device arena ----

/// Bytes of shadow per 4-byte word (runtime.hpp's `Rec`) and the offset of its `flags` byte.
const REC: usize = 48;
const REC_FLAGS: usize = 46;
const F_VALID: u8 = 1;
const F_INIT: u8 = 2;
/// Address space reserved for emulated device memory under checks (nothing is committed until
/// used; the shadow takes 12 times as much).
const ARENA: usize = 64 << 30;
const PAGE: usize = 4096;

pub(crate) struct Arena {
    lo: usize,
    size: usize,
    shadow: usize,
    state: Mutex<ArenaState>,
}

#[derive(Default)]
struct ArenaState {
    next: usize,
    free: HashMap<usize, Vec<usize>>,
}

extern "C" {
    fn mmap(addr: *mut c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut c_void;
    fn madvise(addr: *mut c_void, len: usize, advice: i32) -> i32;
}
const PROT_RW: i32 = 3;
const MAP_PRIVATE_ANON_NORESERVE: i32 = 0x02 | 0x20 | 0x4000;
const MADV_DONTNEED: i32 = 4;

/// The process's arena, reserved on first use (None if the address space cannot be reserved).
pub(crate) fn arena() -> Option<&'static Arena> {
    static A: OnceLock<Option<Arena>> = OnceLock::new();
    A.get_or_init(|| {
        let map = |len: usize| {
            // SAFETY: an anonymous private mapping; nothing is committed until touched.
            let p = unsafe { mmap(std::ptr::null_mut(), len, PROT_RW, MAP_PRIVATE_ANON_NORESERVE, -1, 0) };
            (p as isize != -1).then_some(p as usize)
        };
        let lo = map(ARENA)?;
        let shadow = map(ARENA / 4 * REC)?;
        Some(Arena { lo, size: ARENA, shadow, state: Mutex::new(ArenaState::default()) })
    })
    .as_ref()
}

impl Arena {
    /// `bytes` of zeroed memory, page-aligned; its shadow says "allocated, not initialised".
    pub fn alloc(&self, bytes: usize) -> Option<*mut u8> {
        let pages = bytes.div_ceil(PAGE).max(1);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let off = match st.free.get_mut(&pages).and_then(Vec::pop) {
            Some(o) => o,
            None => {
                if st.next + pages * PAGE > self.size {
                    return None;
                }
                st.next += pages * PAGE;
                st.next - pages * PAGE
            }
        };
        drop(st);
        Some((self.lo + off) as *mut u8)
    }

    /// Returns memory from `alloc`, zeroing it and its shadow (released to the system).
    pub fn free(&self, p: *mut u8, bytes: usize) {
        let pages = bytes.div_ceil(PAGE).max(1);
        let off = p as usize - self.lo;
        // SAFETY: both ranges lie inside the arena's mappings and belong to this allocation.
        unsafe {
            madvise(p as *mut c_void, pages * PAGE, MADV_DONTNEED);
            madvise((self.shadow + off / 4 * REC) as *mut c_void, pages * PAGE / 4 * REC, MADV_DONTNEED);
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.free.entry(pages).or_default().push(off);
    }

    pub fn contains(&self, addr: u64, bytes: usize) -> bool {
        let a = addr as usize;
        a >= self.lo && a + bytes <= self.lo + self.size
    }

    /// Sets `flag` on the shadow of the words of [addr, addr + bytes).
    fn set(&self, addr: u64, bytes: usize, flag: u8) {
        if bytes == 0 || !self.contains(addr, bytes) {
            return;
        }
        let (w0, w1) = ((addr as usize - self.lo) / 4, (addr as usize - self.lo + bytes - 1) / 4);
        for w in w0..=w1 {
            // SAFETY: word w lies in the arena, so its record lies in the shadow mapping.
            unsafe { *((self.shadow + w * REC + REC_FLAGS) as *mut u8) |= flag };
        }
    }

    /// The words of a fresh buffer's elements are allocated (its guards stay out of bounds).
    pub fn mark_valid(&self, addr: u64, bytes: usize) {
        self.set(addr, bytes, F_VALID);
    }

    /// Written from the host (an upload).
    pub fn mark_init(&self, addr: u64, bytes: usize) {
        self.set(addr, bytes, F_INIT);
    }

    /// A device-to-device copy: each destination word is initialised if its source word was.
    pub fn copy_init(&self, dst: u64, src: u64, bytes: usize) {
        if bytes == 0 || !self.contains(dst, bytes) || !self.contains(src, bytes) {
            return;
        }
        let (d0, s0) = ((dst as usize - self.lo) / 4, (src as usize - self.lo) / 4);
        let words = bytes.div_ceil(4);
        let flag = |w: usize| (self.shadow + w * REC + REC_FLAGS) as *mut u8;
        // SAFETY: both word ranges lie in the arena; a memmove's order (overlap) is respected.
        let get = |w: usize| unsafe { *flag(w) } & F_INIT;
        let put = |w: usize, v: u8| unsafe { *flag(w) = (*flag(w) & !F_INIT) | v };
        if d0 <= s0 {
            for i in 0..words {
                put(d0 + i, get(s0 + i));
            }
        } else {
            for i in (0..words).rev() {
                put(d0 + i, get(s0 + i));
            }
        }
    }
}

// ---- the module's shared arrays, from its symbol table ----

/// Reads the thread-local symbols of an ELF64 little-endian shared object: the `__shared__`
/// arrays (every TLS object outside the runtime's namespaces) and the runtime's anchor.
pub(crate) fn shared_table(so: &Path) -> Result<SharedTable> {
    let bytes = std::fs::read(so).map_err(|e| Error(format!("CUDA host emulator: reading {}: {e}", so.display())))?;
    let bad = || Error(format!("CUDA host emulator: {} is not an ELF64 shared object it can read", so.display()));
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(bad());
    }
    let shoff = u64_at(0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(0x3c).ok_or_else(bad)? as usize;
    let section = |i: usize| -> Option<(u32, usize, usize, u32, usize)> {
        let b = shoff + i * shentsize;
        // (type, offset, size, link, entsize)
        Some((
            u32_at(b + 4)?,
            u64_at(b + 0x18)? as usize,
            u64_at(b + 0x20)? as usize,
            u32_at(b + 0x28)?,
            u64_at(b + 0x38)? as usize,
        ))
    };
    const SHT_SYMTAB: u32 = 2;
    const STT_TLS: u8 = 6;
    let mut found: Vec<(u64, u64, String)> = Vec::new();
    let mut vars = Vec::new();
    let mut names = Vec::new();
    let mut anchor = None;
    for i in 0..shnum {
        let Some((ty, off, size, link, entsize)) = section(i) else { return Err(bad()) };
        if ty != SHT_SYMTAB || entsize == 0 {
            continue;
        }
        let (_, stroff, strsize, _, _) = section(link as usize).ok_or_else(bad)?;
        let strtab = bytes.get(stroff..stroff + strsize).ok_or_else(bad)?;
        for s in 0..size / entsize {
            let e = off + s * entsize;
            let name_off = u32_at(e).ok_or_else(bad)? as usize;
            let info = *bytes.get(e + 4).ok_or_else(bad)?;
            let value = u64_at(e + 8).ok_or_else(bad)?;
            let sz = u64_at(e + 16).ok_or_else(bad)?;
            if info & 0xf != STT_TLS {
                continue;
            }
            let name = strtab.get(name_off..).and_then(|t| t.split(|&c| c == 0).next()).ok_or_else(bad)?;
            let name = String::from_utf8_lossy(name).into_owned();
            if name.contains("8t_anchor") {
                anchor = Some(value);
            }
            // The runtime's own state (namespaces wgemu, wgtc) and the C++ library's.
            if name.starts_with("_ZN5wgemu")
                || name.starts_with("_ZN4wgtc")
                || name.starts_with("_ZSt")
                || name.contains("wgemu_rz_")
                || name.starts_with("_ZGV")
                || name.starts_with("__tls")
                || sz == 0
            {
                continue;
            }
            if found.iter().any(|(o, _, _)| *o == value) {
                continue;
            }
            found.push((value, sz, name));
        }
    }
    let demangled = demangle(&found.iter().map(|(_, _, n)| n.as_str()).collect::<Vec<_>>());
    for ((off, size, _), d) in found.iter().zip(demangled) {
        let c = CString::new(short_name(&d)).unwrap_or_default();
        vars.push(SharedVarC { off: *off, size: *size, name: c.as_ptr() });
        names.push(c);
    }
    let anchor_off =
        anchor.ok_or_else(|| Error(format!("CUDA host emulator: {} has no runtime anchor symbol", so.display())))?;
    Ok(SharedTable { vars, _names: names, anchor_off })
}

/// `kernel<…>(…)::As` → `As` (the array's own name), `_ZZ…E2As` → `As` when not demangled.
fn short_name(s: &str) -> String {
    s.rsplit("::").next().unwrap_or(s).to_string()
}

/// Demangles C++ symbol names with the compiler's `c++filt` (one call), or returns them unchanged.
fn demangle(names: &[&str]) -> Vec<String> {
    let same = || names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if names.is_empty() {
        return Vec::new();
    }
    match Command::new("c++filt").args(names).output() {
        Ok(o) if o.status.success() => {
            let v: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect();
            if v.len() == names.len() {
                v
            } else {
                same()
            }
        }
        _ => same(),
    }
}

// ---- source lines ----

/// "kernels/gemm_tc.cuh:281 (tc_gemm_at) ← …" for each code offset of module `so`, innermost
/// inlined frame first, by `addr2line`; "offset 0x…" where it cannot be found.
pub(crate) fn source_lines(so: &Path, pcs: &[u64]) -> Vec<String> {
    let fallback = || pcs.iter().map(|p| format!("code offset {p:#x}")).collect::<Vec<_>>();
    let mut cmd = Command::new("addr2line");
    cmd.arg("-e").arg(so).args(["-f", "-i", "-C", "-a"]);
    for p in pcs {
        cmd.arg(format!("{p:#x}"));
    }
    let Ok(out) = cmd.output() else { return fallback() };
    if !out.status.success() {
        return fallback();
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut res: Vec<Vec<String>> = Vec::new();
    let mut func = None;
    for line in text.lines() {
        if line.starts_with("0x") && line.len() > 2 && line[2..].chars().all(|c| c.is_ascii_hexdigit()) {
            res.push(Vec::new());
            func = None;
        } else if func.is_none() {
            func = Some(line.split(['(', '<']).next().unwrap_or(line).rsplit("::").next().unwrap_or("").to_string());
        } else {
            let place = line.split(" (discriminator").next().unwrap_or(line);
            let file = Path::new(place.split(':').next().unwrap_or(place))
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let lno = place.rsplit(':').next().unwrap_or("?");
            let dir = if file == "runtime.hpp" || file == "profile.hpp" { "src/backend/cuda/emu/" } else { "kernels/" };
            if let Some(frames) = res.last_mut() {
                frames.push(format!("{dir}{file}:{lno} ({})", func.take().unwrap_or_default()));
            }
        }
    }
    if res.len() != pcs.len() {
        return fallback();
    }
    res.into_iter()
        .zip(pcs)
        .map(|(f, p)| {
            if f.is_empty() {
                format!("code offset {p:#x}")
            } else {
                f.into_iter().take(4).collect::<Vec<_>>().join(" ← ")
            }
        })
        .collect()
}

// ---- coverage: which kernels ran under every check ----

/// Appends `file kernel` to `$WGAN_EMU_COVERAGE` the first time this process launches that kernel
/// with every check on (scripts/sanitize and CI compare the file with [`kernel_inventory`]).
pub(crate) fn note_coverage(file: &str, kernel: &str) {
    static SEEN: OnceLock<Mutex<std::collections::HashSet<String>>> = OnceLock::new();
    let Some(path) = std::env::var_os("WGAN_EMU_COVERAGE").filter(|p| !p.is_empty()) else { return };
    let line = format!("{file} {kernel}\n");
    let mut seen = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if !seen.insert(line.clone()) {
        return;
    }
    use std::io::Write;
    // One write of one short line in append mode: lines of concurrent test processes do not mix.
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Every kernel of every module: (file, kernel), from the sources (`$WGAN_KERNEL_DIR` or embedded)
/// preprocessed by the emulator's C++ compiler.
pub fn kernel_inventory() -> Result<Vec<(String, String)>> {
    use super::super::kernels::{headers, module_source, Module};
    let cxx = ["c++", "g++", "clang++"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| Error::msg("kernel inventory: no C++ compiler (c++, g++ or clang++) runs"))?;
    let dir = std::env::temp_dir().join(format!("wgan-inventory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error(format!("creating {}: {e}", dir.display())))?;
    let result = (|| {
        for (n, t) in headers()? {
            std::fs::write(dir.join(n), t).map_err(|e| Error(format!("writing {n}: {e}")))?;
        }
        let mut all = Vec::new();
        for m in Module::ALL {
            let p = dir.join(m.file());
            std::fs::write(&p, module_source(m)?).map_err(|e| Error(format!("writing {}: {e}", m.file())))?;
            let out = Command::new(cxx)
                .args(["-E", "-P", "-x", "c++"])
                .arg(&p)
                .current_dir(&dir)
                .output()
                .map_err(|e| Error(format!("running {cxx}: {e}")))?;
            if !out.status.success() {
                return Err(Error(format!(
                    "preprocessing kernels/{}: {}",
                    m.file(),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            for k in super::kernel_names(&String::from_utf8_lossy(&out.stdout)) {
                all.push((m.file().to_string(), k));
            }
        }
        Ok(all)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

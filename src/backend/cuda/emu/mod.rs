//! The host emulator: the CUDA backend with its kernels compiled for the CPU by the system's C++
//! compiler and run by a small fiber scheduler (`runtime.hpp`), so that the kernels and every line
//! of the backend's host code (shape checks, launch geometry, parameter structs, split-K and
//! workspace handling) are tested against the CPU reference on machines without a GPU.
//!
//! It is a test instrument, not a fast path: a CUDA thread is a fiber, blocks run one after another.
//! What it checks and what it cannot (atomics, timing, the device's math library, races between
//! blocks) is listed in `runtime.hpp` and docs/CUDA.md.
//!
//! Modules are compiled on first launch, like NVRTC's: `kernels/<module>.cu` with `runtime.hpp`
//! force-included, as a shared library exporting `wgemu_entry_<kernel>` for every `__global__`
//! function (found by preprocessing the source) and `wgemu_names`, the list of them. Libraries are
//! cached beside the CUBINs (`<cache>/host/<module>-<hash>.so`, the hash covering the sources, the
//! runtime, the compiler's version and flags), written under a temporary name and renamed.
//!
//! Device memory is host memory with guard zones of NaN on both sides of every buffer: a read out
//! of bounds yields NaN, and a write out of bounds is found after the launch that made it and
//! reported as that kernel's error.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

pub mod check;
mod graph;
pub mod profile;
mod runner;
pub use check::kernel_inventory;
pub use check::{Checks, EmuOptions, Schedule};
use check::{LaunchCtx, SharedTable};
pub(crate) use graph::{CaptureWatch, Recording};
pub use profile::{Counts, KernelProfile, MemOp, Profile, SiteProfile};
pub use runner::{Arg, DevBuf, SourceRunner};

use super::kernels::{self, Module};
use super::nvrtc::{dlopen, last_dl_error, sym, RTLD_NOW};
use crate::{Error, Result};

/// The runtime that turns CUDA built-ins into host code, and its memory profiler (which it includes).
const RUNTIME: &str = include_str!("runtime.hpp");
const PROFILER: &str = include_str!("profile.hpp");

/// Flags for every module. -O2 because the emulated kernels run the test suite's real shapes;
/// warnings are on so that host-only problems (e.g. a narrowing the device compiler accepts) show.
/// Symbols are hidden and never STB_GNU_UNIQUE: each module keeps its own runtime state and its own
/// copy of a `__shared__` array of a template both modules instantiate (a unique symbol would bind
/// every module to the first one loaded), so the checks find each module's arrays where its symbol
/// table says. The entry points are exported explicitly (runtime.hpp's WGEMU_ENTRY).
const FLAGS: &[&str] = &[
    "-std=c++17",
    "-O2",
    "-fPIC",
    "-shared",
    "-Wall",
    "-Wno-unknown-pragmas",
    "-fno-gnu-unique",
    "-fvisibility=hidden",
];

/// Added for a checked module: ThreadSanitizer's instrumentation (the hooks are runtime.hpp's, its
/// run-time library is never linked), line tables for reports, no auto-vectorisation (so a 16-byte
/// access hook is a 16-byte access of the kernel, not four floats the compiler merged) and no
/// scalar replacement of aggregates (so a float4 load stays one 16-byte access, alignment checked)
/// and no jump threading (which copies a block, barrier and all, into each path that reaches it,
/// so that one `__syncthreads` of the source became two call sites, reported as divergent).
const CHECKED_FLAGS: &[&str] = &[
    "-fsanitize=thread",
    "--param",
    "tsan-instrument-func-entry-exit=0",
    "-g1",
    "-fno-tree-vectorize",
    "-fno-tree-slp-vectorize",
    "-fno-tree-sra",
    "-fno-thread-jumps",
];

/// FLAGS, plus `-mfma` where this CPU has FMA: the kernels' `fmaf` then becomes one instruction
/// instead of a call into libm (the same correctly rounded result; a fused multiply-add as on
/// the GPU). Part of the cache key, so a library built with it is never loaded on a CPU without.
fn flags() -> Vec<&'static str> {
    let mut f = FLAGS.to_vec();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        f.push("-mfma");
    }
    f
}

/// The emulator's per-host-thread registers, shared by every module (runtime.hpp's `wgemu_tls_*`):
/// initial-exec thread-locals, so a module reads them without a `__tls_get_addr` call. They live in
/// their own library because a dlopen'ed module whose own TLS segment held them would have to be
/// placed whole in static TLS, `__shared__` arrays and all.
const TLS_SOURCE: &str = "extern \"C\" {\n\
__attribute__((visibility(\"default\"), tls_model(\"initial-exec\"))) __thread void* wgemu_tls_cur = 0;\n\
__attribute__((visibility(\"default\"), tls_model(\"initial-exec\"))) __thread void* wgemu_tls_chk = 0;\n\
}\n";

/// `dlopen`'s flag that makes a library's symbols resolve later libraries' references.
const RTLD_GLOBAL: std::ffi::c_int = 0x100;

/// Elements of NaN on each side of every buffer.
const GUARD: usize = 16;
/// The guard pattern: a quiet NaN with a payload no kernel produces, so it is told apart from a
/// NaN the poisoning or arithmetic wrote.
const GUARD_BITS: u32 = 0x7FC0_5A5A;

/// Grid and block extents of a launch, as `wgemu::LaunchDims` in runtime.hpp.
#[repr(C)]
struct LaunchDims {
    grid: [u32; 3],
    block: [u32; 3],
}

type Entry = unsafe extern "C" fn(*const LaunchDims, *mut *mut c_void, *mut c_char, usize, *mut LaunchCtx) -> c_int;

/// One compiled module: its entry points by kernel name, and for a checked build its file (for
/// source lines) and shared arrays. The library is never closed.
struct Lib {
    entries: HashMap<String, Entry>,
    so: PathBuf,
    shared: Option<SharedTable>,
}

// SAFETY: entry points are plain C functions of a library that stays loaded; the runtime keeps its
// state per host thread.
unsafe impl Send for Lib {}
unsafe impl Sync for Lib {}

/// Host memory standing in for one device allocation: `len` floats between two guard zones (from
/// the checked emulator's arena, or the heap).
pub(crate) struct HostStore {
    base: *mut f32,
    len: usize,
    arena: bool,
    /// The emulator's capture state, told when this buffer is freed.
    watch: Arc<CaptureWatch>,
}

// SAFETY: the memory is only reached through raw pointers by launches and copies, which the
// backend orders on its one (emulated) stream, as on a GPU.
unsafe impl Send for HostStore {}
unsafe impl Sync for HostStore {}

impl HostStore {
    /// `in_arena`: allocate in the device arena (instrumented modules tell device memory by it);
    /// `shadow`: keep its shadow's "allocated" bits (the checks).
    fn new(len: usize, fill: f32, watch: Arc<CaptureWatch>, in_arena: bool, shadow: bool) -> Arc<HostStore> {
        let total = len + 2 * GUARD;
        if let Some(p) = check::arena().filter(|_| in_arena).and_then(|a| a.alloc(total * 4)) {
            let base = p as *mut f32;
            // SAFETY: the arena gave `total` floats of zeroed, writable memory.
            let all = unsafe { std::slice::from_raw_parts_mut(base, total) };
            all.fill(f32::from_bits(GUARD_BITS));
            all[GUARD..GUARD + len].fill(fill);
            // The elements are allocated but not initialised: the fill is poison (or zeros standing
            // in for the undefined contents of fresh device memory), never data.
            if shadow {
                check::arena().unwrap().mark_valid(base as u64 + (GUARD * 4) as u64, len * 4);
            }
            return Arc::new(HostStore { base, len, arena: true, watch });
        }
        let mut v = vec![f32::from_bits(GUARD_BITS); total];
        v[GUARD..GUARD + len].fill(fill);
        let base = Box::into_raw(v.into_boxed_slice()) as *mut f32;
        Arc::new(HostStore { base, len, arena: false, watch })
    }
    pub fn len(&self) -> usize {
        self.len
    }
    /// The address of element 0, as the kernels see it.
    pub fn addr(&self) -> u64 {
        // SAFETY: GUARD elements into an allocation of len + 2·GUARD.
        unsafe { self.base.add(GUARD) as u64 }
    }
    /// True when both guard zones still hold the pattern.
    fn guards_intact(&self) -> bool {
        // SAFETY: reads the two guard zones, inside the allocation.
        let all = unsafe { std::slice::from_raw_parts(self.base, self.len + 2 * GUARD) };
        let ok = |s: &[f32]| s.iter().all(|v| v.to_bits() == GUARD_BITS);
        ok(&all[..GUARD]) && ok(&all[GUARD + self.len..])
    }
}

impl Drop for HostStore {
    fn drop(&mut self) {
        self.watch.on_free();
        if self.arena {
            if let Some(a) = check::arena() {
                a.free(self.base as *mut u8, (self.len + 2 * GUARD) * 4);
            }
            return;
        }
        // SAFETY: `base` came from Box::into_raw of a boxed slice of this length.
        unsafe { drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.base, self.len + 2 * GUARD))) };
    }
}

/// The emulated device: a C++ compiler, the compiled modules, and the live buffers (for the
/// guard check after each launch).
pub(crate) struct Emulator {
    cxx: String,
    cxx_version: String,
    dir: PathBuf,
    /// What launches check, and the schedule.
    opts: EmuOptions,
    libs: Mutex<HashMap<(&'static str, bool), Arc<Lib>>>,
    buffers: Mutex<Vec<Weak<HostStore>>>,
    /// Whether a graph capture is running (buffers report their frees to it).
    pub(crate) watch: Arc<CaptureWatch>,
    /// The memory profiler's counts (when `opts.profile`).
    profile: Arc<Mutex<profile::ProfData>>,
}

/// The C++ compiler to use: `$WGAN_HOST_CXX`, else the first of c++, g++, clang++ that runs.
fn find_compiler() -> Result<(String, String)> {
    let env = std::env::var("WGAN_HOST_CXX").ok().filter(|s| !s.is_empty());
    let candidates: Vec<String> = match env {
        Some(c) => vec![c],
        None => ["c++", "g++", "clang++"].iter().map(|s| s.to_string()).collect(),
    };
    for c in &candidates {
        if let Ok(out) = Command::new(c).arg("--version").output() {
            if out.status.success() {
                let v = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_string();
                return Ok((c.clone(), v));
            }
        }
    }
    Err(Error(format!(
        "the CUDA host emulator needs a C++ compiler: none of {} runs (install g++, or set WGAN_HOST_CXX)",
        candidates.join(", ")
    )))
}

/// The names of the `__global__` functions in preprocessed source: each `__global__` token is
/// followed by `void`, optionally `__launch_bounds__(...)`, then the name.
fn kernel_names(preprocessed: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = preprocessed;
    while let Some(i) = rest.find("__global__") {
        rest = &rest[i + "__global__".len()..];
        let mut s = rest.trim_start();
        let Some(t) = s.strip_prefix("void") else { continue };
        s = t.trim_start();
        if let Some(t) = s.strip_prefix("__launch_bounds__") {
            let Some(close) = t.find(')') else { continue };
            s = t[close + 1..].trim_start();
        }
        let name: String = s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in *p {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Emulator {
    pub fn with_options(opts: EmuOptions) -> Result<Emulator> {
        let (cxx, cxx_version) = find_compiler()?;
        let dir = match kernels::cache_dir() {
            Some(d) => d.join("host"),
            None => std::env::temp_dir().join(format!("wgan-host-kernels-{}", std::process::id())),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error(format!("creating {}: {e}", dir.display())))?;
        let data = Arc::new(Mutex::new(profile::ProfData::default()));
        if opts.profile {
            // Asked for through the environment: the tables are printed when the process exits.
            match profile::profile_env()? {
                profile::ProfileEnv::Off => {}
                which => profile::print_at_exit_later(data.clone(), which),
            }
        }
        Ok(Emulator {
            cxx,
            cxx_version,
            dir,
            opts,
            libs: Mutex::new(HashMap::new()),
            buffers: Mutex::new(Vec::new()),
            watch: Arc::new(CaptureWatch::default()),
            profile: data,
        })
    }

    /// What the memory profiler has counted since the emulator was made or last reset (empty
    /// unless it profiles: `WGAN_EMU_PROFILE`, [`EmuOptions::profile`]).
    pub fn profile(&self) -> profile::Profile {
        self.profile.lock().unwrap_or_else(|p| p.into_inner()).profile()
    }

    /// Forgets what the profiler has counted.
    pub fn reset_profile(&self) {
        self.profile.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The compiler, e.g. "c++ (g++ (Debian 12.2.0-14) 12.2.0)", and the checks when any.
    pub fn describe(&self) -> String {
        let mut d = format!("{} ({})", self.cxx, self.cxx_version);
        if self.opts.checks.any() {
            d += &format!(", checks {}", self.opts.checks.describe());
        }
        if self.opts.schedule != Schedule::Forward {
            d += &format!(", schedule {}", self.opts.schedule.describe());
        }
        if self.opts.profile {
            d += ", memory profiler";
        }
        d
    }

    /// A buffer of `n` floats, each set to `fill` (not initialised, for the init check).
    pub fn alloc(&self, n: usize, fill: f32) -> Arc<HostStore> {
        let s = HostStore::new(n, fill, self.watch.clone(), self.opts.instrumented(), self.opts.checks.any());
        self.buffers.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(&s));
        s
    }

    /// Host data was written to [addr, addr + 4·n): those words are initialised (init check).
    pub fn note_upload(&self, addr: u64, n: usize) {
        if let Some(a) = check::arena().filter(|a| self.opts.checks.any() && a.contains(addr, n * 4)) {
            a.mark_init(addr, n * 4);
        }
    }

    /// A device-to-device copy of `n` floats (ranges may overlap: a memmove), carrying the
    /// source's "initialised" bits along.
    ///
    /// # Safety
    /// Both ranges must lie inside live buffers of this emulator.
    pub unsafe fn copy(&self, dst: u64, src: u64, n: usize) {
        // SAFETY: the caller's contract.
        unsafe { std::ptr::copy(src as *const f32, dst as *mut f32, n) };
        if let Some(a) = check::arena().filter(|_| self.opts.checks.any()) {
            a.copy_init(dst, src, n * 4);
        }
    }

    /// The compiled kernel file `file` (source text `source`), built on first use; instrumented
    /// for the checks and the profiler when the emulator has either.
    fn lib(&self, file: &'static str, source: &str) -> Result<Arc<Lib>> {
        self.tls_library()?;
        let checked = self.opts.instrumented();
        let mut libs = self.libs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = libs.get(&(file, checked)) {
            return Ok(l.clone());
        }
        let l = Arc::new(self.load_or_build(file, source, checked)?);
        libs.insert((file, checked), l.clone());
        Ok(l)
    }

    fn build_flags(checked: bool) -> Vec<&'static str> {
        let mut f = flags();
        if checked {
            f.extend_from_slice(CHECKED_FLAGS);
        }
        f
    }

    fn key(&self, source: &str, checked: bool) -> Result<String> {
        let headers = kernels::headers()?;
        let mut parts: Vec<&[u8]> =
            vec![source.as_bytes(), RUNTIME.as_bytes(), PROFILER.as_bytes(), self.cxx_version.as_bytes()];
        let flags = Self::build_flags(checked);
        for f in &flags {
            parts.push(f.as_bytes());
        }
        for (n, t) in &headers {
            parts.push(n.as_bytes());
            parts.push(t.as_bytes());
        }
        Ok(format!("{:016x}", fnv1a(&parts)))
    }

    fn load_or_build(&self, file: &str, source: &str, checked: bool) -> Result<Lib> {
        let stem = file.trim_end_matches(".cu");
        let tag = if checked { "-checked" } else { "" };
        let so = self.dir.join(format!("{stem}{tag}-{}.so", self.key(source, checked)?));
        if so.exists() {
            if let Ok(l) = open(&so, checked) {
                return Ok(l);
            }
        }
        self.build(file, source, &so, checked)?;
        open(&so, checked).map_err(|e| Error(format!("CUDA host emulator: loading {}: {e}", so.display())))
    }

    /// Loads the `wgemu-tls` library (building it once per compiler), RTLD_GLOBAL, so that every
    /// module binds its `wgemu_tls_*` references to it. Once per process.
    fn tls_library(&self) -> Result<()> {
        static LOADED: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
        LOADED.get_or_init(|| self.load_tls_library()).clone().map_err(Error)
    }

    fn load_tls_library(&self) -> std::result::Result<(), String> {
        let key = fnv1a(&[TLS_SOURCE.as_bytes(), self.cxx_version.as_bytes()]);
        let so = self.dir.join(format!("wgemu-tls-{key:016x}.so"));
        if !so.exists() {
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let src = self.dir.join(format!("wgemu-tls-{}-{seq}.cpp", std::process::id()));
            let tmp = src.with_extension("so");
            std::fs::write(&src, TLS_SOURCE).map_err(|e| format!("writing {}: {e}", src.display()))?;
            let out = Command::new(&self.cxx)
                .args(os(&["-O2", "-fPIC", "-shared", "-x", "c++"]))
                .arg(&src)
                .arg("-o")
                .arg(&tmp)
                .output()
                .map_err(|e| format!("CUDA host emulator: running {}: {e}", self.cxx))?;
            let _ = std::fs::remove_file(&src);
            if !out.status.success() {
                return Err(format!(
                    "CUDA host emulator: compiling its thread-local library failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::fs::rename(&tmp, &so).map_err(|e| format!("writing {}: {e}", so.display()))?;
        }
        let c = CString::new(so.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: loading the library built above; it only defines two thread-locals.
        let h = unsafe { dlopen(c.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
        if h.is_null() {
            return Err(format!("CUDA host emulator: loading {}: {}", so.display(), last_dl_error()));
        }
        Ok(())
    }

    /// Compiles module `m` into the shared library `so` (through a private work folder and a rename).
    fn build(&self, file: &str, source: &str, so: &Path, checked: bool) -> Result<()> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = self.dir.join(format!("build-{}-{seq}", std::process::id()));
        let r = self.build_in(file, source, so, &work, checked);
        let _ = std::fs::remove_dir_all(&work);
        r
    }

    fn build_in(&self, file: &str, source: &str, so: &Path, work: &Path, checked: bool) -> Result<()> {
        std::fs::create_dir_all(work).map_err(io(work))?;
        let headers = kernels::headers()?;
        for (name, text) in headers.iter().map(|(n, t)| (*n, t.as_ref())).chain([
            (file, source),
            ("runtime.hpp", RUNTIME),
            ("profile.hpp", PROFILER),
        ]) {
            let p = work.join(name);
            std::fs::write(&p, text).map_err(io(&p))?;
        }
        let run = |args: &[OsString]| -> Result<String> {
            let out = Command::new(&self.cxx)
                .args(args)
                .current_dir(work)
                .output()
                .map_err(|e| Error(format!("CUDA host emulator: running {}: {e}", self.cxx)))?;
            let log = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() {
                return Err(Error(format!("CUDA host emulator: compiling kernels/{file} failed:\n{log}")));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &log)
        };
        // Preprocess without the runtime, so `__global__` survives to be found.
        let pre = run(&os(&["-E", "-P", "-x", "c++", file]))?;
        if pre.contains("extern __shared__") {
            return Err(Error(format!(
                "CUDA host emulator: kernels/{file} uses dynamic shared memory (`extern __shared__`), which the emulator does not model; use a fixed-size __shared__ array"
            )));
        }
        let names = kernel_names(&pre);
        let mut wrapper = format!("#include \"{file}\"\n");
        for n in &names {
            wrapper += &format!("WGEMU_ENTRY({n})\n");
        }
        wrapper += &format!(
            "extern \"C\" __attribute__((visibility(\"default\"))) const char wgemu_names[] = \"{}\";\n",
            names.join(" ")
        );
        let wp = work.join("entries.cpp");
        std::fs::write(&wp, wrapper).map_err(io(&wp))?;
        // Compile, then link without the flags: a checked module must not pull in the sanitizer's
        // run-time library (its hooks are runtime.hpp's).
        let tmp = work.join("module.so");
        let obj = work.join("module.o");
        let mut args = os(&Self::build_flags(checked));
        args.extend(os(&["-c", "-include", "runtime.hpp", "entries.cpp", "-o"]));
        args.push(obj.clone().into_os_string());
        let mut log = run(&args)?;
        let mut link = os(&["-shared", "-fPIC"]);
        link.push(obj.into_os_string());
        link.extend(os(&["-ldl", "-o"]));
        link.push(tmp.clone().into_os_string());
        log += &run(&link)?;
        if log.contains("warning") {
            return Err(Error(format!("CUDA host emulator: kernels/{file} compiles with warnings:\n{log}")));
        }
        std::fs::rename(&tmp, so).map_err(io(so))?;
        Ok(())
    }

    /// Runs kernel `name` of module `m` over the grid; `args` point to the argument values as for
    /// cuLaunchKernel. Checks every live buffer's guards afterwards.
    pub fn launch(
        &self,
        m: Module,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let lib = self.lib(m.file(), kernels::module_source(m)?)?;
        self.run(&lib, m.file(), name, grid, block, args)
    }

    fn run(
        &self,
        lib: &Lib,
        file: &str,
        name: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &mut [*mut c_void],
    ) -> Result<()> {
        let entry = lib
            .entries
            .get(name)
            .ok_or_else(|| Error(format!("CUDA host emulator: no kernel {name} in kernels/{file}")))?;
        let dims = LaunchDims { grid: [grid.0, grid.1, grid.2], block: [block.0, block.1, block.2] };
        let mut err = vec![0 as c_char; 1024];
        let cname = CString::new(name).unwrap_or_default();
        let blocks = grid.0 as u64 * grid.1 as u64 * grid.2 as u64;
        let mut ctx = LaunchCtx::new(self.opts, lib.shared.as_ref(), &cname, blocks);
        if self.opts.checks == Checks::ALL {
            check::note_coverage(file, name);
        }
        // SAFETY: `args` match the kernel's parameters (the caller's contract, as for a GPU launch);
        // `ctx` and its tables outlive the call.
        let rc = unsafe { entry(&dims, args.as_mut_ptr(), err.as_mut_ptr(), err.len(), &mut ctx) };
        if ctx.profile != 0 {
            if ctx.prof_failed != 0 {
                return Err(Error(format!(
                    "CUDA host emulator: {name} in kernels/{file}: the memory profiler ran out of memory (its counts of this launch are incomplete)"
                )));
            }
            let rows = if ctx.prof_rows.is_null() || ctx.prof_n == 0 {
                &[][..]
            } else {
                // SAFETY: the runtime's table of `prof_n` rows for this launch, valid until the
                // next launch on this thread (this one has returned).
                unsafe { std::slice::from_raw_parts(ctx.prof_rows, ctx.prof_n as usize) }
            };
            self.profile.lock().unwrap_or_else(|p| p.into_inner()).add(file, name, &lib.so, rows)?;
        }
        if rc != 0 {
            // SAFETY: the runtime wrote a NUL-terminated message into `err`.
            let mut msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            let n = (ctx.npc as usize).min(2);
            if n > 0 {
                let lines = check::source_lines(&lib.so, &ctx.pc[..n]);
                for (i, l) in lines.iter().enumerate() {
                    msg = msg.replace(&format!("@{i}@"), l);
                }
            }
            let schedule = match self.opts.schedule {
                Schedule::Forward => String::new(),
                s => format!(" [schedule {}: replay with WGAN_EMU_SCHEDULE={}]", s.describe(), s.describe()),
            };
            let e = format!("CUDA host emulator: {name} in kernels/{file}: {msg}{schedule}");
            if ctx.found != 0 {
                // Also on stderr, as compute-sanitizer prints its reports: a caller that stops on an
                // earlier symptom (a test's shape assertion) must not hide the finding.
                eprintln!("{e}");
            }
            return Err(Error(e));
        }
        // Check every live buffer's guards, forgetting the buffers that have been freed.
        let mut broken = None;
        self.buffers.lock().unwrap_or_else(|p| p.into_inner()).retain(|w| match w.upgrade() {
            Some(b) => {
                if broken.is_none() && !b.guards_intact() {
                    broken = Some(b.len);
                }
                true
            }
            None => false,
        });
        match broken {
            Some(len) => Err(Error(format!(
                "CUDA host emulator: {name} wrote outside a buffer of {len} elements (guard zone overwritten)"
            ))),
            None => Ok(()),
        }
    }
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error(format!("CUDA host emulator: writing {}: {e}", p.display()))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Opens a compiled module and binds each kernel it lists (and, checked, reads its shared arrays).
fn open(so: &Path, checked: bool) -> std::result::Result<Lib, String> {
    let c = CString::new(so.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: loading a library this emulator compiled; its initialisers only set up statics.
    let h = unsafe { dlopen(c.as_ptr(), RTLD_NOW) };
    if h.is_null() {
        return Err(last_dl_error());
    }
    // SAFETY: looks a symbol up in a library that stays loaded.
    let sym = |n: &str| unsafe { sym::<*mut c_void>(h, n) };
    // SAFETY: `wgemu_names` is a NUL-terminated array of chars defined by the generated wrapper.
    let names = unsafe { CStr::from_ptr(sym("wgemu_names")? as *const c_char) }.to_string_lossy().into_owned();
    let mut entries = HashMap::new();
    for n in names.split_whitespace() {
        let p = sym(&format!("wgemu_entry_{n}"))?;
        // SAFETY: every wgemu_entry_* has the `Entry` signature (WGEMU_ENTRY in runtime.hpp).
        entries.insert(n.to_string(), unsafe { std::mem::transmute::<*mut c_void, Entry>(p) });
    }
    let shared = if checked { Some(check::shared_table(so).map_err(|e| e.0)?) } else { None };
    Ok(Lib { entries, so: so.to_path_buf(), shared })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kernel_names_after_preprocessing() {
        let src = "extern \"C\" __global__ void __launch_bounds__(256) matmul_nn_f32(float* out) {}\n\
                   extern \"C\" __global__ void\nadd_f32(float* o) {}\n__device__ void helper() {}";
        assert_eq!(kernel_names(src), vec!["matmul_nn_f32".to_string(), "add_f32".to_string()]);
    }

    /// Kernels that break the rules on purpose, to show the emulator reports each breach.
    const BAD: &str = r#"
#include "common.cuh"
// Writes element n too: one past the end of a buffer of n.
extern "C" __global__ void write_one_past(float* out, i64 n) {
    for (i64 i = threadIdx.x; i <= n; i += blockDim.x) out[i] = 1.0f;
}
// Half of warp 0 shuffles while every other thread waits at __syncthreads: a deadlock on a GPU.
extern "C" __global__ void divergent_shuffle(float* out, i64 n) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    __syncthreads();
    if ((i64)threadIdx.x < n) out[threadIdx.x] = v;
}
// Each thread reads its neighbour's shared-memory slot with and without a barrier in between.
extern "C" __global__ void neighbour(float* synced, float* unsynced, i64 n) {
    __shared__ float s[64];
    s[threadIdx.x] = -1.0f;
    __syncthreads();
    s[threadIdx.x] = (float)threadIdx.x;
    unsynced[threadIdx.x] = s[(threadIdx.x + 1) % 64];
    __syncthreads();
    synced[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}
"#;

    fn emulator() -> Option<Emulator> {
        match Emulator::with_options(EmuOptions::default()) {
            Ok(e) => Some(e),
            Err(e) if std::env::var("WGAN_REQUIRE_EMULATOR").as_deref() == Ok("1") => panic!("{e}"),
            Err(e) => {
                eprintln!("skipped: {e}");
                None
            }
        }
    }

    /// Runs kernel `name` of BAD on one block of 64 threads over fresh buffers `bufs` of 64 floats
    /// (each passed as a pointer), then n = 64; returns the launch's result and the buffers.
    fn run_bad(emu: &Emulator, name: &str, bufs: usize) -> (Result<()>, Vec<Vec<f32>>) {
        let lib = emu.lib("bad.cu", BAD).unwrap();
        let stores: Vec<Arc<HostStore>> = (0..bufs).map(|_| emu.alloc(64, f32::NAN)).collect();
        let mut ptrs: Vec<u64> = stores.iter().map(|b| b.addr()).collect();
        let mut n = 64i64;
        let mut args: Vec<*mut c_void> = ptrs.iter_mut().map(|p| p as *mut u64 as *mut c_void).collect();
        args.push(&mut n as *mut i64 as *mut c_void);
        let r = emu.run(&lib, "bad.cu", name, (1, 1, 1), (64, 1, 1), &mut args);
        // SAFETY: reads each buffer's own elements.
        let read = |b: &HostStore| unsafe { std::slice::from_raw_parts(b.addr() as *const f32, b.len()) }.to_vec();
        (r, stores.iter().map(|b| read(b)).collect())
    }

    #[test]
    fn reports_out_of_bounds_writes_and_deadlocks() {
        let Some(emu) = emulator() else { return };
        let e = run_bad(&emu, "write_one_past", 1).0.expect_err("an out-of-bounds write must be reported");
        assert!(e.to_string().contains("wrote outside"), "{e}");
        let emu = emulator().unwrap(); // a fresh one: the broken guard stays broken, like a faulted context
        let e = run_bad(&emu, "divergent_shuffle", 1).0.expect_err("a divergent shuffle must be reported");
        assert!(e.to_string().contains("deadlock"), "{e}");
        let e = run_bad(&emu, "missing", 1).0.expect_err("an unknown kernel must be reported");
        assert!(e.to_string().contains("no kernel missing"), "{e}");
    }

    #[test]
    fn a_missing_barrier_gives_wrong_results() {
        let Some(emu) = emulator() else { return };
        let (r, out) = run_bad(&emu, "neighbour", 2);
        r.unwrap();
        let want: Vec<f32> = (0..64).map(|t| ((t + 1) % 64) as f32).collect();
        assert_eq!(out[0], want, "with the barrier every thread sees its neighbour's value");
        // Without it a thread runs ahead of its neighbour: all but the last (whose neighbour, 0,
        // has run already) read the old value.
        assert!(out[1][..63].iter().all(|&v| v == -1.0) && out[1][63] == 0.0, "{:?}", out[1]);
    }
}

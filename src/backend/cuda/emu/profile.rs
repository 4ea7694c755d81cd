//! The emulator's memory profiler (`WGAN_EMU_PROFILE=1`, or [`EmuOptions::profile`]): per kernel and
//! per access site (source line), what Nsight Compute's memory tables report on a GPU — global
//! requests, 32-byte sectors and bytes; shared-memory requests and wavefronts (bank conflicts);
//! `ldmatrix`; `cp.async` bytes by size, its source's sectors and its destination's wavefronts.
//!
//! The counting runs in the compiled module (`profile.hpp`, where the grouping of lanes into warp
//! instructions and the sector and bank rules are described); each launch hands its rows per code
//! address back through `LaunchCtx`, and this file adds them up per kernel and site, maps the code
//! addresses to source lines (`check::source_lines`) and prints the tables.
//!
//! Everything here is counted on the emulator: the requests the kernel's code makes, not caches,
//! not timing, and with the host compiler's code (see docs/CUDA.md, "Memory profile").
//!
//! [`EmuOptions::profile`]: super::EmuOptions::profile

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::{Error, Result};

/// What an access site does (runtime `ProfOp`, profile.hpp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemOp {
    /// A load from global (device) memory: `LDG`.
    GlobalLoad,
    /// A store to global memory: `STG`.
    GlobalStore,
    /// A load from shared memory: `LDS`.
    SharedLoad,
    /// A store to shared memory: `STS`.
    SharedStore,
    /// `ldmatrix` (`LDSM`): a shared load of one 16-byte row per lane.
    Ldmatrix,
    /// `cp.async` (`LDGSTS`): global to shared.
    CpAsync,
}

impl MemOp {
    fn from_code(c: u32) -> Option<MemOp> {
        Some(match c {
            0 => MemOp::GlobalLoad,
            1 => MemOp::GlobalStore,
            2 => MemOp::SharedLoad,
            3 => MemOp::SharedStore,
            4 => MemOp::Ldmatrix,
            5 => MemOp::CpAsync,
            _ => return None,
        })
    }

    /// The SASS mnemonic family, for tables.
    pub fn mnemonic(self) -> &'static str {
        match self {
            MemOp::GlobalLoad => "LDG",
            MemOp::GlobalStore => "STG",
            MemOp::SharedLoad => "LDS",
            MemOp::SharedStore => "STS",
            MemOp::Ldmatrix => "LDSM",
            MemOp::CpAsync => "LDGSTS",
        }
    }
}

/// One site's row of a launch, as runtime `ProfRow` (profile.hpp).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ProfRowC {
    pc: u64,
    op: u32,
    width: u32,
    requests: u64,
    lanes: u64,
    bytes: u64,
    sectors: u64,
    wavefronts: u64,
    ideal: u64,
    zfill: u64,
}

/// Counts of one site, or a sum of sites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Warp-level instructions executed.
    pub requests: u64,
    /// Thread-level executions (active lanes summed over the requests).
    pub lanes: u64,
    /// Bytes the lanes read or wrote (`cp.async`: bytes copied, zero fill included).
    pub bytes: u64,
    /// Global memory (`cp.async`: its source): 32-byte sectors.
    pub sectors: u64,
    /// Shared memory (`cp.async`: its destination): wavefronts.
    pub wavefronts: u64,
    /// The fewest wavefronts the same requests could take at their width (1 per request up to 4
    /// bytes per lane; 2 at 8 and 4 at 16 bytes for a full warp).
    pub ideal_wavefronts: u64,
    /// `cp.async`: lanes that read nothing (source size 0: zero fill).
    pub zero_fill: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.lanes += o.lanes;
        self.bytes += o.bytes;
        self.sectors += o.sectors;
        self.wavefronts += o.wavefronts;
        self.ideal_wavefronts += o.ideal_wavefronts;
        self.zero_fill += o.zero_fill;
    }

    fn per_request(&self, x: u64) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            x as f64 / self.requests as f64
        }
    }

    /// Sectors per request (global memory; 4 for 32 coalesced 4-byte lanes).
    pub fn sectors_per_request(&self) -> f64 {
        self.per_request(self.sectors)
    }

    /// Wavefronts per request (shared memory; 1 without bank conflicts up to 4 bytes per lane).
    pub fn wavefronts_per_request(&self) -> f64 {
        self.per_request(self.wavefronts)
    }

    /// Wavefronts beyond the ideal: what bank conflicts cost.
    pub fn excess_wavefronts(&self) -> u64 {
        self.wavefronts.saturating_sub(self.ideal_wavefronts)
    }

    /// Active lanes per request.
    pub fn lanes_per_request(&self) -> f64 {
        self.per_request(self.lanes)
    }
}

/// One access site: a source line (with its inlined callers) and what it does there.
#[derive(Clone, Debug)]
pub struct SiteProfile {
    /// "kernels/x.cu:12 (f) ← kernels/y.cu:40 (g)", innermost first.
    pub line: String,
    pub op: MemOp,
    /// Bytes per lane.
    pub width: u32,
    pub counts: Counts,
}

/// One kernel's sites, summed over its launches.
#[derive(Clone, Debug)]
pub struct KernelProfile {
    /// The kernel file, e.g. "conv_tc.cu".
    pub file: String,
    pub kernel: String,
    pub launches: u64,
    /// Most requests first.
    pub sites: Vec<SiteProfile>,
}

impl KernelProfile {
    /// The sum of the sites doing `op`.
    pub fn total(&self, op: MemOp) -> Counts {
        let mut c = Counts::default();
        for s in self.sites.iter().filter(|s| s.op == op) {
            c.add(&s.counts);
        }
        c
    }

    /// Shared-memory loads: `LDS` and `ldmatrix` together.
    pub fn shared_loads(&self) -> Counts {
        let mut c = self.total(MemOp::SharedLoad);
        c.add(&self.total(MemOp::Ldmatrix));
        c
    }

    /// Bytes copied by `cp.async` of 4, 8 and 16 bytes.
    pub fn cp_async_bytes(&self) -> [u64; 3] {
        let mut b = [0; 3];
        for s in self.sites.iter().filter(|s| s.op == MemOp::CpAsync) {
            match s.width {
                4 => b[0] += s.counts.bytes,
                8 => b[1] += s.counts.bytes,
                _ => b[2] += s.counts.bytes,
            }
        }
        b
    }
}

/// A profile: every kernel that ran while profiling, by file and name.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub kernels: Vec<KernelProfile>,
}

impl Profile {
    /// The kernel named `name` (the first, if several files have one).
    pub fn kernel(&self, name: &str) -> Option<&KernelProfile> {
        self.kernels.iter().find(|k| k.kernel == name)
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// One row per kernel: requests and sectors per request of global loads and stores, shared
    /// loads (`LDS` + `ldmatrix`) and stores with wavefronts per request and excess wavefronts,
    /// `cp.async` requests, sectors per request of its source, excess wavefronts of its
    /// destination and bytes by size.
    pub fn kernel_table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<32} {:>6} | {:>9} {:>6} | {:>9} {:>6} | {:>9} {:>6} {:>9} | {:>9} {:>6} {:>9} | {:>10} {:>6} {:>9} {:>11} {:>11} {:>12}",
            "kernel",
            "launch",
            "LDG req",
            "sec/rq",
            "STG req",
            "sec/rq",
            "LDS+LDSM",
            "wf/rq",
            "excess wf",
            "STS req",
            "wf/rq",
            "excess wf",
            "LDGSTS req",
            "sec/rq",
            "excess wf",
            "cp 4B bytes",
            "cp 8B bytes",
            "cp 16B bytes"
        );
        let f = |c: &Counts, x: f64| if c.requests == 0 { "-".to_string() } else { format!("{x:.2}") };
        for k in &self.kernels {
            let (ld, st, sl, ss, cp) = (
                k.total(MemOp::GlobalLoad),
                k.total(MemOp::GlobalStore),
                k.shared_loads(),
                k.total(MemOp::SharedStore),
                k.total(MemOp::CpAsync),
            );
            let b = k.cp_async_bytes();
            let _ = writeln!(
                t,
                "{:<32} {:>6} | {:>9} {:>6} | {:>9} {:>6} | {:>9} {:>6} {:>9} | {:>9} {:>6} {:>9} | {:>10} {:>6} {:>9} {:>11} {:>11} {:>12}",
                k.kernel,
                k.launches,
                ld.requests,
                f(&ld, ld.sectors_per_request()),
                st.requests,
                f(&st, st.sectors_per_request()),
                sl.requests,
                f(&sl, sl.wavefronts_per_request()),
                sl.excess_wavefronts(),
                ss.requests,
                f(&ss, ss.wavefronts_per_request()),
                ss.excess_wavefronts(),
                cp.requests,
                f(&cp, cp.sectors_per_request()),
                cp.excess_wavefronts(),
                b[0],
                b[1],
                b[2]
            );
        }
        t
    }

    /// Per kernel, one row per access site (source line and kind), most requests first.
    pub fn site_table(&self) -> String {
        let mut t = String::new();
        for k in &self.kernels {
            let _ = writeln!(t, "{} (kernels/{}), {} launches:", k.kernel, k.file, k.launches);
            let _ = writeln!(
                t,
                "  {:<6} {:>3} {:>10} {:>7} {:>12} {:>7} {:>7} {:>10}  site",
                "op", "B", "requests", "lanes", "bytes", "sec/rq", "wf/rq", "excess wf"
            );
            for s in &k.sites {
                let c = &s.counts;
                let global = matches!(s.op, MemOp::GlobalLoad | MemOp::GlobalStore | MemOp::CpAsync);
                let shared = !matches!(s.op, MemOp::GlobalLoad | MemOp::GlobalStore);
                let _ = writeln!(
                    t,
                    "  {:<6} {:>3} {:>10} {:>7.1} {:>12} {:>7} {:>7} {:>10}  {}{}",
                    s.op.mnemonic(),
                    s.width,
                    c.requests,
                    c.lanes_per_request(),
                    c.bytes,
                    if global { format!("{:.2}", c.sectors_per_request()) } else { "-".into() },
                    if shared { format!("{:.2}", c.wavefronts_per_request()) } else { "-".into() },
                    if shared { c.excess_wavefronts().to_string() } else { "-".into() },
                    s.line,
                    if c.zero_fill > 0 { format!("  [{} lanes zero-fill]", c.zero_fill) } else { String::new() }
                );
            }
        }
        t
    }
}

/// What one kernel has accumulated: its launches, and counts per (code offset, kind, width).
struct KernelAcc {
    launches: u64,
    so: PathBuf,
    sites: HashMap<(u64, MemOp, u32), Counts>,
}

/// The counts an emulator has accumulated, per (file, kernel).
#[derive(Default)]
pub(crate) struct ProfData {
    kernels: BTreeMap<(String, String), KernelAcc>,
}

impl ProfData {
    /// Adds the rows of one launch of `kernel` in `file` (compiled as `so`).
    pub fn add(&mut self, file: &str, kernel: &str, so: &Path, rows: &[ProfRowC]) -> Result<()> {
        let acc = self.kernels.entry((file.to_string(), kernel.to_string())).or_insert_with(|| KernelAcc {
            launches: 0,
            so: so.to_path_buf(),
            sites: HashMap::new(),
        });
        acc.launches += 1;
        for r in rows {
            let op = MemOp::from_code(r.op).ok_or_else(|| {
                Error(format!(
                    "CUDA host emulator: profiler row with unknown kind {} (runtime and crate disagree)",
                    r.op
                ))
            })?;
            acc.sites.entry((r.pc, op, r.width)).or_default().add(&Counts {
                requests: r.requests,
                lanes: r.lanes,
                bytes: r.bytes,
                sectors: r.sectors,
                wavefronts: r.wavefronts,
                ideal_wavefronts: r.ideal,
                zero_fill: r.zfill,
            });
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.kernels.clear();
    }

    /// The profile, with source lines (one `addr2line` per compiled module); sites of one line,
    /// kind and width (unrolled or otherwise duplicated code) are merged.
    pub fn profile(&self) -> Profile {
        let mut lines: HashMap<(PathBuf, u64), String> = HashMap::new();
        let mut by_so: HashMap<&Path, Vec<u64>> = HashMap::new();
        for acc in self.kernels.values() {
            let v = by_so.entry(acc.so.as_path()).or_default();
            v.extend(acc.sites.keys().map(|k| k.0));
        }
        for (so, mut pcs) in by_so {
            pcs.sort_unstable();
            pcs.dedup();
            // In chunks: a command line of a few hundred addresses at a time.
            for chunk in pcs.chunks(256) {
                for (pc, l) in chunk.iter().zip(super::check::source_lines(so, chunk)) {
                    lines.insert((so.to_path_buf(), *pc), l);
                }
            }
        }
        let mut kernels = Vec::new();
        for ((file, kernel), acc) in &self.kernels {
            let mut merged: BTreeMap<(String, MemOp, u32), Counts> = BTreeMap::new();
            for ((pc, op, width), c) in &acc.sites {
                let line = lines.get(&(acc.so.clone(), *pc)).cloned().unwrap_or_else(|| format!("code offset {pc:#x}"));
                merged.entry((line, *op, *width)).or_default().add(c);
            }
            let mut sites: Vec<SiteProfile> =
                merged.into_iter().map(|((line, op, width), counts)| SiteProfile { line, op, width, counts }).collect();
            sites.sort_by(|a, b| b.counts.requests.cmp(&a.counts.requests).then_with(|| a.line.cmp(&b.line)));
            kernels.push(KernelProfile { file: file.clone(), kernel: kernel.clone(), launches: acc.launches, sites });
        }
        Profile { kernels }
    }
}

/// `WGAN_EMU_PROFILE`: off (unset, empty, 0, off), on with both tables at exit (1, on, all), or on
/// with only the per-kernel table at exit (kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProfileEnv {
    Off,
    All,
    Kernels,
}

pub(crate) fn profile_env() -> Result<ProfileEnv> {
    let v = std::env::var("WGAN_EMU_PROFILE").unwrap_or_default();
    Ok(match v.trim() {
        "" | "0" | "off" | "none" => ProfileEnv::Off,
        "1" | "on" | "all" => ProfileEnv::All,
        "kernels" => ProfileEnv::Kernels,
        other => {
            return Err(Error(format!(
                "WGAN_EMU_PROFILE: `{other}` is not a setting; expected 1 (profile, print every table at exit), kernels (only the per-kernel table) or 0"
            )))
        }
    })
}

/// An emulator's counts, and which tables to print of them.
type ExitReport = (Arc<Mutex<ProfData>>, ProfileEnv);
/// The profiles to print when the process exits (emulators made with `WGAN_EMU_PROFILE` set).
static AT_EXIT: OnceLock<Mutex<Vec<ExitReport>>> = OnceLock::new();

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn print_at_exit() {
    // No unwinding out of an exit handler; a lock another thread holds is skipped, not waited for.
    let _ = std::panic::catch_unwind(|| {
        let Some(list) = AT_EXIT.get() else { return };
        let Ok(list) = list.try_lock() else { return };
        for (data, which) in list.iter() {
            let Ok(d) = data.try_lock() else { continue };
            let p = d.profile();
            if p.is_empty() {
                continue;
            }
            let mut out = String::from(
                "host emulator memory profile (WGAN_EMU_PROFILE; counted on the emulator, not a GPU measurement):\n",
            );
            out += &p.kernel_table();
            if *which == ProfileEnv::All {
                out += "\nper access site:\n";
                out += &p.site_table();
            }
            eprint!("{out}");
        }
    });
}

/// Prints `data` to stderr when the process exits.
pub(crate) fn print_at_exit_later(data: Arc<Mutex<ProfData>>, which: ProfileEnv) {
    let mut first = false;
    let list = AT_EXIT.get_or_init(|| {
        first = true;
        Mutex::new(Vec::new())
    });
    list.lock().unwrap_or_else(|p| p.into_inner()).push((data, which));
    if first {
        // SAFETY: registers a plain function with no arguments; it touches only statics.
        if unsafe { atexit(print_at_exit) } != 0 {
            eprintln!("warning: WGAN_EMU_PROFILE: could not register the report at exit; use the profile API");
        }
    }
}

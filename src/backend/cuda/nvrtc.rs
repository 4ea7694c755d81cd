//! NVRTC, opened at run time by this crate rather than through cudarc.
//!
//! cudarc 0.19 built for the pinned `cuda-12080` feature searches `libnvrtc.so`, `libnvrtc.so.12`,
//! `.so.11`, … but never `libnvrtc.so.13`, the only name a CUDA 13 runtime install (or the
//! `nvidia-cuda-nvrtc` wheel) provides. So this module `dlopen`s NVRTC itself: first
//! `$WGAN_NVRTC_LIB` (a file name or full path, an explicit choice used whatever its version), then
//! the names of [`NVRTC_CANDIDATES`] in the order [`plan`] gives for the installed driver. The
//! dynamic loader searches `LD_LIBRARY_PATH`, the ld.so cache and the default directories for each
//! bare name.
//!
//! Why the driver matters: an NVRTC of a newer CUDA major version than the driver supports (NVRTC
//! 13 under a 12.x driver, i.e. a driver before 580) makes CUBIN and PTX that the driver refuses at
//! module load, long after the library was chosen. So where a driver library is installed,
//! `cuDriverGetVersion` is read first and only an NVRTC whose major version the driver supports is
//! taken (the unversioned `libnvrtc.so` is opened and its `nvrtcVersion` checked). Without a driver
//! (a CPU-only machine compiling for CI, the host emulator) the first library found is taken.
//! Only the handful of functions needed to compile a program to CUBIN/PTX are bound; the library
//! is never closed.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::{Error, Result};

extern "C" {
    pub(crate) fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
    fn dlclose(handle: *mut c_void) -> c_int;
}

pub(crate) const RTLD_NOW: c_int = 2;

type Program = *mut c_void;
type NvrtcResult = c_int;

/// The environment variable naming the NVRTC library to open first (a file name or a full path).
pub const NVRTC_LIB_ENV: &str = "WGAN_NVRTC_LIB";

/// Library names tried after `$WGAN_NVRTC_LIB`, newest first (see [`plan`] for the order used
/// under a driver).
pub const NVRTC_CANDIDATES: &[&str] =
    &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0"];

/// The CUDA major version a library name promises (`libnvrtc.so.12` → 12, `libnvrtc.so.11.2` →
/// 11); None for a name without one (`libnvrtc.so`, a path), whose version is known only once it
/// is opened.
pub fn name_major(name: &str) -> Option<i32> {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.strip_prefix("libnvrtc.so.")?.split('.').next()?.parse().ok()
}

/// "12.4" for the driver version 12040 (cuDriverGetVersion's 1000·major + 10·minor).
pub fn cuda_version_text(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// True when code from NVRTC of CUDA major `nvrtc_major` loads under a driver of version `driver`
/// (cuDriverGetVersion): the driver's major must be at least NVRTC's. Within one major a CUBIN
/// from a newer NVRTC loads (minor version compatibility), and this backend compiles CUBINs.
pub fn fits(nvrtc_major: i32, driver: i32) -> bool {
    nvrtc_major <= driver / 1000
}

/// What to install when no NVRTC fits the driver of version `driver`.
pub fn no_fit_message(driver: i32) -> String {
    let major = driver / 1000;
    let pip = match major {
        11 | 12 => format!(" (pip install nvidia-cuda-nvrtc-cu{major})"),
        m if m >= 13 => " (pip install nvidia-cuda-nvrtc)".to_string(),
        _ => String::new(),
    };
    format!(
        "the driver supports CUDA {}; install NVRTC {major}{pip} and add its directory to LD_LIBRARY_PATH (or set {NVRTC_LIB_ENV}=/path/to/libnvrtc.so.{major}), or upgrade the driver to 580+ (CUDA 13)",
        cuda_version_text(driver)
    )
}

/// The order in which to try the library names `candidates` under a driver of CUDA version
/// `driver` (cuDriverGetVersion, e.g. 12040; None where no driver is installed). Pure: the
/// decision of [`library`], tested without a GPU.
///
/// - No driver: the candidates as given (newest first).
/// - A driver: only names whose major version it supports, newest first, and names without a
///   version (checked once opened, with [`fits`]); an error saying what to install when none is
///   left.
pub fn plan(candidates: &[&str], driver: Option<i32>) -> std::result::Result<Vec<String>, String> {
    let Some(d) = driver else { return Ok(candidates.iter().map(|s| s.to_string()).collect()) };
    let names: Vec<String> =
        candidates.iter().filter(|n| name_major(n).map_or(true, |m| fits(m, d))).map(|s| s.to_string()).collect();
    if names.is_empty() {
        return Err(no_fit_message(d));
    }
    Ok(names)
}

struct Api {
    path: String,
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult,
    error_string: unsafe extern "C" fn(NvrtcResult) -> *const c_char,
    create: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> NvrtcResult,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult,
    destroy: unsafe extern "C" fn(*mut Program) -> NvrtcResult,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    log: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    cubin_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    cubin: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    ptx_size: unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult,
    ptx: unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult,
    /// The driver's CUDA version the library was chosen for (None: no driver installed).
    driver: Option<i32>,
}

// The function pointers are plain C entry points of a library that stays loaded.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

pub(crate) fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
    unsafe {
        let e = dlerror();
        if e.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// Symbol `name` of an open library as a `T` (a function pointer or a raw pointer).
pub(crate) unsafe fn sym<T: Copy>(handle: *mut c_void, name: &str) -> std::result::Result<T, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    let p = dlsym(handle, c.as_ptr());
    if p.is_null() {
        return Err(format!("symbol {name} missing: {}", last_dl_error()));
    }
    debug_assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    Ok(std::mem::transmute_copy::<*mut c_void, T>(&p))
}

/// The CUDA version the installed driver supports (cuDriverGetVersion, e.g. 12040 for 12.4), or
/// None where no driver library can be opened (a machine without an NVIDIA driver). Needs no GPU
/// and no cuInit.
pub fn driver_cuda_version() -> Option<i32> {
    static V: OnceLock<Option<i32>> = OnceLock::new();
    *V.get_or_init(|| {
        // SAFETY: only tries to dlopen libcuda by cudarc's list of names; cudarc panics on the
        // first driver call without it, so nothing else is called unless it is present.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return None;
        }
        let mut v = 0i32;
        // SAFETY: an out-parameter; cuDriverGetVersion may be called before cuInit.
        let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
        (r == cudarc::driver::sys::cudaError_enum::CUDA_SUCCESS && v > 0).then_some(v)
    })
}

/// Opens `name` and binds the API; Err(why) when it cannot be opened or lacks a symbol.
fn open_one(name: &str) -> std::result::Result<Api, String> {
    let c = CString::new(name).map_err(|_| format!("{name} (NUL byte in the name)"))?;
    // SAFETY: dlopen with a valid C string; the handle is intentionally never closed once used.
    let h = unsafe { dlopen(c.as_ptr(), RTLD_NOW) };
    if h.is_null() {
        return Err(format!("{name} ({})", last_dl_error()));
    }
    // SAFETY: the symbols are NVRTC's documented C API with these signatures.
    let api = unsafe {
        (|| -> std::result::Result<Api, String> {
            Ok(Api {
                path: name.to_string(),
                version: sym(h, "nvrtcVersion")?,
                error_string: sym(h, "nvrtcGetErrorString")?,
                create: sym(h, "nvrtcCreateProgram")?,
                compile: sym(h, "nvrtcCompileProgram")?,
                destroy: sym(h, "nvrtcDestroyProgram")?,
                log_size: sym(h, "nvrtcGetProgramLogSize")?,
                log: sym(h, "nvrtcGetProgramLog")?,
                cubin_size: sym(h, "nvrtcGetCUBINSize")?,
                cubin: sym(h, "nvrtcGetCUBIN")?,
                ptx_size: sym(h, "nvrtcGetPTXSize")?,
                ptx: sym(h, "nvrtcGetPTX")?,
                driver: None,
            })
        })()
    };
    api.map_err(|e| {
        // SAFETY: the handle came from dlopen above and nothing of it is kept.
        unsafe { dlclose(h) };
        format!("{name} ({e})")
    })
}

/// The version an opened library reports.
fn version_of(a: &Api) -> std::result::Result<(i32, i32), String> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-parameters.
    let r = unsafe { (a.version)(&mut major, &mut minor) };
    if r != 0 {
        return Err(format!("{}: nvrtcVersion failed (error {r})", a.path));
    }
    Ok((major, minor))
}

/// Finds NVRTC: `env_override` (from `$WGAN_NVRTC_LIB`) first and unconditionally, then
/// `candidates` in the order [`plan`] gives for `driver`, skipping a library whose version turns
/// out newer than the driver supports.
fn find(env_override: Option<&str>, candidates: &[&str], driver: Option<i32>) -> std::result::Result<Api, String> {
    let mut tried = Vec::new();
    if let Some(name) = env_override.filter(|v| !v.is_empty()) {
        match open_one(name) {
            Ok(mut a) => {
                a.driver = driver;
                return Ok(a);
            }
            Err(e) => tried.push(e),
        }
    }
    let names = plan(candidates, driver).map_err(|e| format!("no NVRTC fits the driver: {e}"))?;
    let mut too_new = Vec::new();
    for name in &names {
        let mut a = match open_one(name) {
            Ok(a) => a,
            Err(e) => {
                tried.push(e);
                continue;
            }
        };
        if let Some(d) = driver {
            let (major, minor) = match version_of(&a) {
                Ok(v) => v,
                Err(e) => {
                    tried.push(e);
                    continue;
                }
            };
            if !fits(major, d) {
                too_new.push(format!("{name} is NVRTC {major}.{minor}"));
                continue;
            }
        }
        a.driver = driver;
        return Ok(a);
    }
    match driver {
        Some(d) => {
            let found = if too_new.is_empty() { String::new() } else { format!("; found {}", too_new.join(", ")) };
            Err(format!("no NVRTC fits the driver: {}{found} (tried: {})", no_fit_message(d), tried.join("; ")))
        }
        None => Err(format!(
            "NVRTC not found: install the CUDA toolkit's NVRTC (libnvrtc.so.12 or .so.13, e.g. `pip install nvidia-cuda-nvrtc`) and add its directory to LD_LIBRARY_PATH, or set {NVRTC_LIB_ENV}=/path/to/libnvrtc.so.N (tried: {})",
            tried.join("; ")
        )),
    }
}

/// [`find`] without keeping the library: what [`library`] would choose among `candidates` (names
/// or paths; [`NVRTC_CANDIDATES`] is the real list) on a machine whose driver reports `driver`
/// (e.g. `Some(12040)`), with `env_override` standing for `$WGAN_NVRTC_LIB`. For tests.
pub fn choose_for(
    env_override: Option<&str>,
    candidates: &[&str],
    driver: Option<i32>,
) -> Result<(String, (i32, i32))> {
    let a = find(env_override, candidates, driver).map_err(Error)?;
    let v = version_of(&a).map_err(Error)?;
    Ok((a.path.clone(), v))
}

fn open() -> std::result::Result<Api, String> {
    let env = std::env::var(NVRTC_LIB_ENV).ok();
    find(env.as_deref(), NVRTC_CANDIDATES, driver_cuda_version())
}

fn api() -> Result<&'static Api> {
    static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();
    API.get_or_init(open).as_ref().map_err(|e| Error::msg(e.clone()))
}

/// Whether an NVRTC library can be opened.
pub fn is_available() -> bool {
    api().is_ok()
}

/// The NVRTC library name that was opened and its version, e.g. ("libnvrtc.so.13", (13, 0)).
pub fn library() -> Result<(String, (i32, i32))> {
    let a = api()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: plain out-parameters.
    let r = unsafe { (a.version)(&mut major, &mut minor) };
    check(a, r, "nvrtcVersion")?;
    Ok((a.path.clone(), (major, minor)))
}

/// The driver's CUDA version that the opened NVRTC was chosen for (None: chosen without a driver,
/// the first library found).
pub fn chosen_for_driver() -> Result<Option<i32>> {
    Ok(api()?.driver)
}

fn check(a: &Api, r: NvrtcResult, what: &str) -> Result<()> {
    if r == 0 {
        return Ok(());
    }
    // SAFETY: nvrtcGetErrorString returns a static string (or null for unknown codes).
    let s = unsafe {
        let p = (a.error_string)(r);
        if p.is_null() {
            format!("error {r}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(Error(format!("{what}: {s}")))
}

/// What to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Machine code for the exact `sm_XY` (loads on drivers older than the NVRTC within a major).
    Cubin,
    /// PTX text (NUL-terminated as NVRTC returns it).
    Ptx,
}

/// The result of one compilation: the image (CUBIN bytes or PTX text) and NVRTC's log.
pub struct Compiled {
    pub image: Vec<u8>,
    pub log: String,
}

/// Compiles `source` (named `name` in diagnostics) with in-memory `headers` (name, text).
/// A failed compilation returns an error carrying NVRTC's log.
pub fn compile(
    name: &str,
    source: &str,
    headers: &[(&str, &str)],
    options: &[String],
    out: Output,
) -> Result<Compiled> {
    let a = api()?;
    let cstr = |s: &str| CString::new(s).map_err(|_| Error(format!("{name}: NUL byte in kernel source or option")));
    let c_src = cstr(source)?;
    let c_name = cstr(name)?;
    let h_src: Vec<CString> = headers.iter().map(|(_, t)| cstr(t)).collect::<Result<_>>()?;
    let h_name: Vec<CString> = headers.iter().map(|(n, _)| cstr(n)).collect::<Result<_>>()?;
    let h_src_p: Vec<*const c_char> = h_src.iter().map(|c| c.as_ptr()).collect();
    let h_name_p: Vec<*const c_char> = h_name.iter().map(|c| c.as_ptr()).collect();
    let c_opts: Vec<CString> = options.iter().map(|o| cstr(o)).collect::<Result<_>>()?;
    let c_opts_p: Vec<*const c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();

    let mut prog: Program = std::ptr::null_mut();
    // SAFETY: all pointers stay alive for the duration of the calls; counts match the arrays.
    unsafe {
        check(
            a,
            (a.create)(
                &mut prog,
                c_src.as_ptr(),
                c_name.as_ptr(),
                headers.len() as c_int,
                if headers.is_empty() { std::ptr::null() } else { h_src_p.as_ptr() },
                if headers.is_empty() { std::ptr::null() } else { h_name_p.as_ptr() },
            ),
            "nvrtcCreateProgram",
        )?;
    }
    struct Guard<'a>(&'a Api, Program);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            // SAFETY: the program was created above and is destroyed once.
            unsafe {
                (self.0.destroy)(&mut self.1);
            }
        }
    }
    let guard = Guard(a, prog);
    // SAFETY: valid program and option array.
    let rc = unsafe { (a.compile)(guard.1, c_opts_p.len() as c_int, c_opts_p.as_ptr()) };
    let log = read_log(a, guard.1)?;
    if rc != 0 {
        let e = check(a, rc, "nvrtcCompileProgram").err().map(|e| e.0).unwrap_or_default();
        return Err(Error(format!("compiling kernels/{name} ({}): {e}\n{log}", options.join(" "))));
    }
    let (size_fn, get_fn, what) = match out {
        Output::Cubin => (a.cubin_size, a.cubin, "nvrtcGetCUBIN"),
        Output::Ptx => (a.ptx_size, a.ptx, "nvrtcGetPTX"),
    };
    let mut size = 0usize;
    // SAFETY: out-parameter, then a buffer of exactly `size` bytes.
    unsafe { check(a, size_fn(guard.1, &mut size), what)? };
    let mut image = vec![0u8; size];
    unsafe { check(a, get_fn(guard.1, image.as_mut_ptr() as *mut c_char), what)? };
    if image.is_empty() {
        return Err(Error(format!("compiling kernels/{name}: NVRTC returned an empty image ({what})")));
    }
    Ok(Compiled { image, log })
}

fn read_log(a: &Api, prog: Program) -> Result<String> {
    let mut size = 0usize;
    // SAFETY: out-parameter, then a buffer of exactly `size` bytes.
    unsafe { check(a, (a.log_size)(prog, &mut size), "nvrtcGetProgramLogSize")? };
    if size <= 1 {
        return Ok(String::new());
    }
    let mut buf = vec![0u8; size];
    unsafe { check(a, (a.log)(prog, buf.as_mut_ptr() as *mut c_char), "nvrtcGetProgramLog")? };
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

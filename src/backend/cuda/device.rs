//! Opening a GPU, the memory allocator, lazily compiled modules, launches and the sticky error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{result as drv, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};

use super::kernels::{self, Module};
use super::nvrtc;
use crate::{Error, Result};

/// Threads per block of the 1-D kernels (`WG_BLOCK` in common.cuh).
pub const BLOCK: u32 = 256;

/// A dense f32 tensor on the GPU: a shape and a window of shared device storage.
/// Cloning and views share the storage. `storage` is None only for a tensor produced by an op that
/// failed (see [`Cuda::check`]).
#[derive(Clone)]
pub struct CudaTensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) storage: Option<Arc<CudaSlice<f32>>>,
    pub(crate) offset: usize,
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaTensor")
            .field("shape", &self.shape)
            .field("offset", &self.offset)
            .field("storage_len", &self.storage.as_ref().map(|s| s.len()))
            .finish()
    }
}

impl CudaTensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

pub(crate) struct Inner {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub ordinal: usize,
    pub name: String,
    pub arch: String,
    pub nvrtc_version: (i32, i32),
    pub cache_dir: Option<PathBuf>,
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<(Module, &'static str), CudaFunction>>,
    error: Mutex<Option<Error>>,
    poison: AtomicBool,
}

/// The CUDA backend: one device, one non-default stream, kernels compiled by NVRTC on first use.
///
/// Errors: the `Backend` trait's methods cannot return errors, so a failed launch, allocation or
/// copy is recorded (the first one wins), the op returns a tensor without storage, later ops on it
/// fail in turn, and host reads return NaN. Call [`Cuda::check`] (e.g. once per training step) to
/// turn the recorded failure into a `crate::Error`.
#[derive(Clone)]
pub struct Cuda {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn drv_err(what: &str) -> impl FnOnce(drv::DriverError) -> Error + '_ {
    move |e| Error(format!("CUDA {what}: {e}"))
}

/// Checks that libcuda can be opened and initialised; returns the device count.
fn probe_driver() -> Result<usize> {
    // SAFETY: only tries to dlopen libcuda by cudarc's list of names.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::msg(
            "CUDA driver library libcuda.so not found: no NVIDIA driver is installed, or libcuda.so.1 is not on the loader path (LD_LIBRARY_PATH)",
        ));
    }
    drv::init().map_err(|e| Error(format!("no CUDA GPU: the CUDA driver failed to initialise ({e})")))?;
    let count = drv::device::get_count().map_err(drv_err("cuDeviceGetCount"))?;
    if count <= 0 {
        return Err(Error::msg("no CUDA GPU: the driver reports no devices"));
    }
    Ok(count as usize)
}

/// The driver's CUDA version as "major.minor".
pub fn driver_version() -> Result<String> {
    probe_driver()?;
    let mut v = 0i32;
    // SAFETY: out-parameter; the driver library was opened by the probe.
    unsafe { sys::cuDriverGetVersion(&mut v) }.result().map_err(drv_err("cuDriverGetVersion"))?;
    Ok(format!("{}.{}", v / 1000, (v % 1000) / 10))
}

impl Cuda {
    /// Opens GPU `ordinal`. Never panics: a missing driver, a missing NVRTC, no GPU or a bad
    /// ordinal each return a clear error.
    pub fn new(ordinal: usize) -> Result<Cuda> {
        let count = probe_driver()?;
        let (_, nvrtc_version) = nvrtc::library()?;
        if ordinal >= count {
            return Err(Error(format!("no CUDA GPU {ordinal}: the driver reports {count} device(s)")));
        }
        let ctx = CudaContext::new(ordinal).map_err(drv_err("creating a context"))?;
        // One stream, so cudarc's per-allocation events and cross-stream waits are pure overhead
        // (and would break graph capture). Must precede every allocation.
        // SAFETY: nothing has been allocated on this context through cudarc yet, and this backend
        // only ever uses the one stream created below.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(drv_err("creating a stream"))?;
        let (major, minor) = ctx.compute_capability().map_err(drv_err("reading the compute capability"))?;
        let name = ctx.name().map_err(drv_err("reading the device name"))?;
        if ctx.has_async_alloc() {
            // Stream-ordered allocation from the device's default pool; keep freed memory in the
            // pool (release threshold = ∞) so that steady-state steps get no memory from the driver.
            // SAFETY: a valid device handle; the attribute takes a u64.
            unsafe {
                let pool =
                    drv::device::get_default_mem_pool(ctx.cu_device()).map_err(drv_err("cuDeviceGetDefaultMemPool"))?;
                let mut threshold: u64 = u64::MAX;
                drv::mem_pool::set_attribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    &mut threshold as *mut u64 as *mut std::ffi::c_void,
                )
                .map_err(drv_err("setting the memory pool's release threshold"))?;
            }
        }
        let poison = std::env::var("WGAN_CUDA_POISON").map(|v| v == "1").unwrap_or(false);
        Ok(Cuda {
            inner: Arc::new(Inner {
                ctx,
                stream,
                ordinal,
                name,
                arch: format!("sm_{major}{minor}"),
                nvrtc_version,
                cache_dir: kernels::cache_dir(),
                modules: Mutex::new(HashMap::new()),
                funcs: Mutex::new(HashMap::new()),
                error: Mutex::new(None),
                poison: AtomicBool::new(poison),
            }),
        })
    }

    /// The device's architecture as NVRTC names it, e.g. "sm_90".
    pub fn arch(&self) -> &str {
        &self.inner.arch
    }

    /// The device ordinal this backend was opened on.
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }

    /// When on, every fresh allocation is filled with NaN before the op writes it, so that an
    /// element a kernel forgets to write shows up. Also switched on by `WGAN_CUDA_POISON=1`.
    pub fn set_poison(&self, on: bool) {
        self.inner.poison.store(on, Ordering::Relaxed);
    }

    /// Waits for all queued work and returns the first error recorded since the backend was
    /// opened (launch, allocation, copy, compilation or an asynchronous fault), if any.
    /// The error stays recorded: a CUDA context that faulted is not usable again.
    pub fn check(&self) -> Result<()> {
        if let Err(e) = self.inner.stream.synchronize() {
            self.record(Error(format!("CUDA stream synchronize: {e}")));
        }
        if let Err(e) = self.inner.ctx.check_err() {
            self.record(Error(format!("CUDA (asynchronous, e.g. freeing memory): {e}")));
        }
        match self.lock_error().as_ref() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<Error>> {
        self.inner.error.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an error (the first one is kept).
    pub(crate) fn record(&self, e: Error) {
        let mut g = self.lock_error();
        if g.is_none() {
            *g = Some(e);
        }
    }

    /// Turns the result of an op into a tensor, recording a failure.
    pub(crate) fn finish(&self, shape: &[usize], r: Result<CudaTensor>) -> CudaTensor {
        r.unwrap_or_else(|e| {
            self.record(e);
            CudaTensor { shape: shape.to_vec(), storage: None, offset: 0 }
        })
    }

    /// A fresh device buffer of `n` floats (NaN-filled when poisoning is on).
    pub(crate) fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: the memory is uninitialised; every op writes all of its output.
        let s = unsafe { self.inner.stream.alloc::<f32>(n.max(1)) }.map_err(drv_err("allocating device memory"))?;
        if self.inner.poison.load(Ordering::Relaxed) {
            let (p, _g) = s.device_ptr(&self.inner.stream);
            // SAFETY: `p` points to n.max(1) floats on this context; 0x7FC00000 is a quiet NaN.
            unsafe { sys::cuMemsetD32Async(p, 0x7FC0_0000, n.max(1), self.inner.stream.cu_stream()) }
                .result()
                .map_err(drv_err("cuMemsetD32Async"))?;
        }
        Ok(s)
    }

    /// A new tensor of `shape` with fresh storage.
    pub(crate) fn empty(&self, shape: &[usize]) -> Result<CudaTensor> {
        let n = shape.iter().product();
        Ok(CudaTensor { shape: shape.to_vec(), storage: Some(Arc::new(self.alloc(n)?)), offset: 0 })
    }

    /// The device address of a tensor's first element.
    pub(crate) fn ptr(&self, t: &CudaTensor) -> Result<u64> {
        let s =
            t.storage.as_ref().ok_or_else(|| Error::msg("CUDA: input tensor comes from an op that failed earlier"))?;
        if t.offset + t.numel() > s.len().max(1) {
            return Err(Error(format!(
                "CUDA: tensor window {}..{} exceeds its storage of {} elements",
                t.offset,
                t.offset + t.numel(),
                s.len()
            )));
        }
        let (p, _g) = s.device_ptr(&self.inner.stream);
        Ok(p + (t.offset as u64) * 4)
    }

    /// The kernel `name` of module `m`, compiling and loading the module on first use.
    pub(crate) fn func(&self, m: Module, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = self.inner.funcs.lock().unwrap_or_else(|p| p.into_inner()).get(&(m, name)) {
            return Ok(f.clone());
        }
        let module = self.module(m)?;
        let f = module
            .load_function(name)
            .map_err(|e| Error(format!("CUDA: kernel {name} in kernels/{}: {e}", m.file())))?;
        self.inner.funcs.lock().unwrap_or_else(|p| p.into_inner()).insert((m, name), f.clone());
        Ok(f)
    }

    fn module(&self, m: Module) -> Result<Arc<CudaModule>> {
        let mut mods = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(md) = mods.get(&m) {
            return Ok(md.clone());
        }
        let load = |image: Vec<u8>| self.inner.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(image));
        let key = kernels::cache_key(m, &self.inner.arch, self.inner.nvrtc_version);
        let path = self.inner.cache_dir.as_ref().map(|d| kernels::cache_path(d, m, &key));
        // A cached image that is corrupt or that the driver rejects is recompiled, never fatal.
        if let Some(img) = path.as_deref().and_then(kernels::read_cached) {
            if let Ok(md) = load(img) {
                mods.insert(m, md.clone());
                return Ok(md);
            }
        }
        let compiled = kernels::compile(m, &self.inner.arch)?;
        let md = load(compiled.image.clone()).map_err(|e| {
            Error(format!(
                "CUDA: loading kernels/{} compiled by NVRTC {}.{} for {}: {e} (a driver older than the NVRTC's CUDA major version cannot load its output; use the NVRTC matching the driver)",
                m.file(),
                self.inner.nvrtc_version.0,
                self.inner.nvrtc_version.1,
                self.inner.arch
            ))
        })?;
        if let Some(p) = &path {
            if let Err(e) = kernels::write_cached(p, &compiled.image) {
                eprintln!("warning: {e} (the kernel cache is only an optimisation)");
            }
        }
        mods.insert(m, md.clone());
        Ok(md)
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }
}

/// Blocks for a 1-D grid-stride kernel over `n` elements.
pub(crate) fn grid_1d(n: usize) -> u32 {
    n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32
}

/// One launch: `launch!(self, Module::X, "name", (gx, gy, gz), block, args...)`; converts a failed
/// launch into an error naming the kernel.
macro_rules! launch {
    (@push $b:ident, $arg:expr $(, $rest:expr)*) => {
        // Each argument lives in its own local until the launch, as the builder keeps references.
        let value = $arg;
        cudarc::driver::PushKernelArg::arg(&mut $b, &value);
        $crate::backend::cuda::device::launch!(@push $b $(, $rest)*);
    };
    (@push $b:ident) => {};
    ($be:expr, $m:expr, $name:literal, $grid:expr, $block:expr, $($arg:expr),+ $(,)?) => {{
        let f = $be.func($m, $name)?;
        let cfg = cudarc::driver::LaunchConfig { grid_dim: $grid, block_dim: ($block, 1, 1), shared_mem_bytes: 0 };
        let mut b = $be.stream().launch_builder(&f);
        $crate::backend::cuda::device::launch!(@push b, $($arg),+);
        // SAFETY: argument types and order match the kernel's C signature (pointers as u64, then
        // the #[repr(C)] parameter struct); every pointer addresses a live buffer of the size the
        // parameters describe, checked by the caller.
        unsafe { b.launch(cfg) }.map_err(|e| $crate::Error(format!("CUDA launch of {}: {e}", $name)))?;
    }};
}
pub(crate) use launch;

/// A multi-line description of the CUDA setup for `wgan info`: driver, devices, NVRTC, cache.
pub fn system_report() -> String {
    let mut out = Vec::new();
    match driver_version() {
        Ok(v) => {
            out.push(format!("cuda driver: {v}"));
            let count = drv::device::get_count().unwrap_or(0);
            for i in 0..count.max(0) {
                let desc = drv::device::get(i)
                    .and_then(|d| {
                        let name = drv::device::get_name(d)?;
                        // SAFETY: valid device handle.
                        let mem = unsafe { drv::device::total_mem(d) }?;
                        Ok(format!("{name}, {:.1} GiB", mem as f64 / (1u64 << 30) as f64))
                    })
                    .unwrap_or_else(|e| format!("unreadable ({e})"));
                let cc = CudaContext::new(i as usize)
                    .and_then(|c| c.compute_capability())
                    .map(|(a, b)| format!(", sm_{a}{b}"))
                    .unwrap_or_default();
                out.push(format!("cuda:{i}: {desc}{cc}"));
            }
        }
        Err(e) => out.push(format!("cuda: unavailable ({e})")),
    }
    match nvrtc::library() {
        Ok((lib, (a, b))) => out.push(format!("nvrtc: {a}.{b} ({lib})")),
        Err(e) => out.push(format!("nvrtc: unavailable ({e})")),
    }
    match kernels::cache_dir() {
        Some(d) => out.push(format!("kernel cache: {}", d.display())),
        None => out.push("kernel cache: none (set WGAN_KERNEL_CACHE)".into()),
    }
    out.join("\n")
}

/// Like [`system_report`] but an error when no GPU can be used.
pub fn device_info(ordinal: usize) -> Result<String> {
    let c = Cuda::new(ordinal)?;
    let (lib, (a, b)) = nvrtc::library()?;
    Ok(format!(
        "cuda:{ordinal} {} ({}), driver {}, nvrtc {a}.{b} ({lib}), kernel cache {}",
        c.inner.name,
        c.inner.arch,
        driver_version()?,
        c.inner.cache_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "none".into())
    ))
}

//! Opening a GPU (or the host emulator), the memory allocator, lazily compiled modules, launches
//! and the sticky error.

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{result as drv, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};

use super::emu::{Emulator, HostStore};
use super::issued::{Counters, GraphState};
use super::kernels::{self, Module};
use super::nvrtc;
use crate::{Error, Result};

/// Makes [`Cuda::emulated`] stand for a device of this compute capability (e.g. `sm_75`).
pub const EMULATED_SM_ENV: &str = "WGAN_EMULATED_SM";

/// Threads per block of the 1-D kernels (`WG_BLOCK` in common.cuh).
pub const BLOCK: u32 = 256;

/// Which tiles the convolutions use ([`Cuda::set_gemm_tiles`]): [`GemmTiles::Auto`] picks the
/// narrow tile for at most 16 output rows; the forced choices are for tests and benchmarks that
/// compare the two. A setting of the device, so it lives here; `ops/gemm.rs` and `ops/tc.rs` turn
/// it into a tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmTiles {
    Auto,
    Square,
    Narrow,
}

impl GemmTiles {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
    pub(crate) fn from_code(c: u8) -> GemmTiles {
        match c {
            1 => GemmTiles::Square,
            2 => GemmTiles::Narrow,
            _ => GemmTiles::Auto,
        }
    }
}

/// The memory behind a tensor: device memory, or host memory under the emulator.
pub(crate) enum Buffer {
    Gpu(CudaSlice<f32>),
    Host(Arc<HostStore>),
}

impl Drop for Buffer {
    /// cudarc frees a slice (cuMemFreeAsync) without making its context current, which fails on a
    /// thread where it is not; make it current first. Runs before the slice's own Drop.
    fn drop(&mut self) {
        if let Buffer::Gpu(s) = self {
            let ctx = s.context().cu_ctx();
            if drv::ctx::get_current().ok().flatten() != Some(ctx) {
                // SAFETY: the context is alive (the slice holds it). set_current, unlike
                // bind_to_thread, leaves cudarc's recorded asynchronous error for Cuda::check.
                let _ = unsafe { drv::ctx::set_current(ctx) };
            }
        }
    }
}

impl Buffer {
    pub fn len(&self) -> usize {
        match self {
            Buffer::Gpu(s) => s.len(),
            Buffer::Host(h) => h.len(),
        }
    }
}

/// A dense f32 tensor on the GPU: a shape and a window of shared device storage.
/// Cloning and views share the storage. `storage` is None only for a tensor produced by an op that
/// failed (see [`Cuda::check`]).
#[derive(Clone)]
pub struct CudaTensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) storage: Option<Arc<Buffer>>,
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
    /// True when both windows share storage and at least one element. The in-place kernels mark
    /// their pointers `__restrict__` and run threads in no fixed order, so callers copy a read
    /// operand that overlaps a written one, and reject overlapping written buffers, as the CPU
    /// reference does.
    pub(crate) fn overlaps(&self, other: &CudaTensor) -> bool {
        other.overlaps_window(self.storage.as_ref(), self.offset, self.numel())
    }

    /// True when this tensor shares at least one element with elements [offset, offset + len) of
    /// `storage`.
    pub(crate) fn overlaps_window(&self, storage: Option<&Arc<Buffer>>, offset: usize, len: usize) -> bool {
        match (&self.storage, storage) {
            (Some(a), Some(b)) => {
                Arc::ptr_eq(a, b)
                    && self.numel() > 0
                    && len > 0
                    && self.offset < offset + len
                    && offset < self.offset + self.numel()
            }
            _ => false,
        }
    }
}

/// A real device: its context, the backend's one stream, and the loaded modules.
pub(crate) struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<(Module, &'static str), CudaFunction>>,
}

/// Where kernels run.
pub(crate) enum Exec {
    Gpu(Gpu),
    Host(Emulator),
}

pub(crate) struct Inner {
    pub exec: Exec,
    pub ordinal: usize,
    pub name: String,
    pub arch: String,
    /// Compute capability, major·10 + minor (75 for sm_75): what decides the precisions the
    /// device can run. None under the emulator, which emulates every instruction, unless it was
    /// told to stand for a device ([`Cuda::emulated_as`]).
    pub sm: Option<u32>,
    pub nvrtc_version: (i32, i32),
    pub cache_dir: Option<PathBuf>,
    error: Mutex<Option<Error>>,
    poison: AtomicBool,
    /// [`GemmTiles`] as its code.
    tiles: AtomicU8,
    /// [`crate::backend::Precision`] of matrix products and convolutions, as its code.
    pub(crate) precision: AtomicU8,
    /// The capture in progress and the instantiated graphs (`issued.rs`, `graph.rs`).
    pub(crate) graphs: Mutex<GraphState>,
    /// Launches, allocations and copies issued (`issued.rs`).
    pub(crate) counters: Counters,
    /// Use the one-launch layer norm where it applies (on by default; off for tests).
    pub(crate) fused_norm: AtomicBool,
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
            // pool (release threshold = ∞) so that eager steps after the first get no memory from
            // the driver. A step running from CUDA graphs lowers it again (`memory.rs`).
            // Only an optimisation: a failure costs speed, not correctness, so it is a warning.
            // SAFETY: a valid device handle; the attribute takes a u64.
            let r = unsafe {
                drv::device::get_default_mem_pool(ctx.cu_device()).and_then(|pool| {
                    let mut threshold: u64 = u64::MAX;
                    drv::mem_pool::set_attribute(
                        pool,
                        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                        &mut threshold as *mut u64 as *mut std::ffi::c_void,
                    )
                })
            };
            if let Err(e) = r {
                eprintln!(
                    "warning: CUDA: cannot keep freed memory in the pool ({e}); steps may allocate from the driver"
                );
            }
        }
        let gpu = Gpu { ctx, stream, modules: Mutex::new(HashMap::new()), funcs: Mutex::new(HashMap::new()) };
        let sm = Some((major * 10 + minor) as u32);
        let c = Cuda::with(
            Exec::Gpu(gpu),
            ordinal,
            name,
            format!("sm_{major}{minor}"),
            sm,
            nvrtc_version,
            poison_from_env(),
        );
        // TF32 needs sm_80: an older GPU starts at f32 (`wgan train` says so, `precision::resolve`).
        c.set_precision(crate::backend::precision::default_for(sm));
        Ok(c)
    }

    /// The host emulator: this backend's host code and the `kernels/*.cu` sources, compiled for
    /// the CPU with the system's C++ compiler and run with one fiber per CUDA thread (see
    /// `src/backend/cuda/emu/`). Slow, and for tests: it lets every kernel and launch be checked
    /// against the CPU reference without a GPU. Poisoning is on from the start.
    ///
    /// `WGAN_EMULATED_SM=sm_XY` makes it stand for a device of that compute capability where the
    /// host code asks (the precisions it can run, `Cuda::sm`), e.g. `sm_75` to test the f32
    /// fallback of a pre-Ampere GPU; the kernels still run on the CPU.
    pub fn emulated() -> Result<Cuda> {
        Self::emulated_with(super::emu::EmuOptions::from_env()?)
    }

    /// The host emulator with the given checks and schedule (instead of `WGAN_EMU_CHECK` and
    /// `WGAN_EMU_SCHEDULE`), standing for the device of `WGAN_EMULATED_SM` when set.
    pub fn emulated_with(opts: super::emu::EmuOptions) -> Result<Cuda> {
        let sm = match std::env::var(EMULATED_SM_ENV) {
            Ok(v) if !v.is_empty() => Some(crate::backend::precision::sm_of(&v).ok_or_else(|| {
                Error(format!("{EMULATED_SM_ENV}={v}: expected a compute capability such as sm_75 or sm_90"))
            })?),
            _ => None,
        };
        Self::emulated_as_with(sm, opts)
    }

    /// [`Cuda::emulated`] standing for a device of compute capability `sm` (major·10 + minor, e.g.
    /// 75) where the host code asks; None: no device in particular (every precision runs).
    pub fn emulated_as(sm: Option<u32>) -> Result<Cuda> {
        Self::emulated_as_with(sm, super::emu::EmuOptions::from_env()?)
    }

    fn emulated_as_with(sm: Option<u32>, opts: super::emu::EmuOptions) -> Result<Cuda> {
        let emu = Emulator::with_options(opts)?;
        let mut name = format!("host emulator, {}", emu.describe());
        if let Some(s) = sm {
            name += &format!(", standing for sm_{s}");
        }
        let c = Cuda::with(Exec::Host(emu), 0, name, "host".into(), sm, (0, 0), true);
        c.set_precision(crate::backend::precision::default_for(sm));
        Ok(c)
    }

    fn with(
        exec: Exec,
        ordinal: usize,
        name: String,
        arch: String,
        sm: Option<u32>,
        nvrtc_version: (i32, i32),
        poison: bool,
    ) -> Cuda {
        Cuda {
            inner: Arc::new(Inner {
                exec,
                ordinal,
                name,
                arch,
                sm,
                nvrtc_version,
                cache_dir: kernels::cache_dir(),
                error: Mutex::new(None),
                poison: AtomicBool::new(poison),
                tiles: AtomicU8::new(GemmTiles::Auto.code()),
                precision: AtomicU8::new(crate::backend::Precision::default().code()),
                graphs: Mutex::new(Default::default()),
                counters: Default::default(),
                fused_norm: AtomicBool::new(true),
            }),
        }
    }

    /// The device's architecture as NVRTC names it, e.g. "sm_90" ("host" under the emulator).
    pub fn arch(&self) -> &str {
        &self.inner.arch
    }

    /// The compute capability, major·10 + minor (e.g. 90); None under the emulator unless it stands
    /// for a device ([`Cuda::emulated_as`]).
    pub fn sm(&self) -> Option<u32> {
        self.inner.sm
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

    /// Sets the precision of matrix products and convolutions (default [`Precision::Tf32`]).
    ///
    /// [`Precision::Tf32`]: crate::backend::Precision::Tf32
    pub fn set_precision(&self, p: crate::backend::Precision) {
        self.inner.precision.store(p.code(), Ordering::Relaxed);
    }

    /// The precision of matrix products and convolutions (`ops/gemm.rs`, `ops/conv.rs`, `ops/tc.rs`).
    pub fn precision(&self) -> crate::backend::Precision {
        crate::backend::Precision::from_code(self.inner.precision.load(Ordering::Relaxed))
    }

    /// Which tiles the convolutions use (default [`GemmTiles::Auto`]: 16×256 for at most 16 output
    /// rows, else 64×64). For tests and benchmarks that compare the two; results agree to rounding.
    pub fn set_gemm_tiles(&self, t: GemmTiles) {
        self.inner.tiles.store(t.code(), Ordering::Relaxed);
    }

    /// Whether layer norm (per-sample groups of at most `FUSED_NORM_MAX_LEN` elements) and the
    /// penalty (gradients of at most `PENALTY_FUSED_MAX` elements) run as one launch per op
    /// (default) or as separate statistics and apply (mean) launches. Bit-identical results; for
    /// tests and benchmarks.
    pub fn set_fused_norm(&self, on: bool) {
        self.inner.fused_norm.store(on, Ordering::Relaxed);
    }

    pub(crate) fn fused_norm(&self) -> bool {
        self.inner.fused_norm.load(Ordering::Relaxed)
    }

    pub(crate) fn gemm_tiles(&self) -> GemmTiles {
        GemmTiles::from_code(self.inner.tiles.load(Ordering::Relaxed))
    }

    /// Bytes of device memory the stream-ordered allocator's pool holds from the driver
    /// (`CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT` of the device's default pool), after waiting for
    /// queued work. Steady-state training steps must not make it grow. None under the emulator or
    /// where the device has no stream-ordered allocation (then every allocation is a cuMemAlloc).
    pub fn pool_reserved_bytes(&self) -> Result<Option<u64>> {
        let Exec::Gpu(g) = &self.inner.exec else { return Ok(None) };
        if !g.ctx.has_async_alloc() {
            return Ok(None);
        }
        self.sync()?;
        let mut bytes: u64 = 0;
        // SAFETY: a valid device handle; the attribute is a cuuint64_t.
        unsafe {
            let pool =
                drv::device::get_default_mem_pool(g.ctx.cu_device()).map_err(drv_err("cuDeviceGetDefaultMemPool"))?;
            drv::mem_pool::get_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                &mut bytes as *mut u64 as *mut c_void,
            )
            .map_err(drv_err("reading the memory pool's reserved size"))?;
        }
        Ok(Some(bytes))
    }

    /// The real device, or an error naming `what` for work only a GPU can do (timing).
    pub(crate) fn gpu(&self, what: &str) -> Result<&Gpu> {
        match &self.inner.exec {
            Exec::Gpu(g) => Ok(g),
            Exec::Host(_) => Err(Error(format!("CUDA {what}: not available in the host emulator"))),
        }
    }

    /// Waits for all queued work and returns the first error recorded since the backend was
    /// opened (launch, allocation, copy, compilation or an asynchronous fault), if any.
    /// The error stays recorded: a CUDA context that faulted is not usable again.
    pub fn check(&self) -> Result<()> {
        if let Err(e) = self.not_capturing("check (a synchronisation)") {
            self.record(e);
        }
        if let (Exec::Gpu(g), false) = (&self.inner.exec, self.is_capturing()) {
            if let Err(e) = g.stream.synchronize() {
                self.record(Error(format!("CUDA stream synchronize: {e}")));
            }
            if let Err(e) = g.ctx.check_err() {
                self.record(Error(format!("CUDA (asynchronous, e.g. freeing memory): {e}")));
            }
        }
        match self.lock_error().as_ref() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Waits for all queued work (a no-op under the emulator, where launches are synchronous).
    pub(crate) fn sync(&self) -> Result<()> {
        self.not_capturing("stream synchronize")?;
        match &self.inner.exec {
            Exec::Gpu(g) => g.stream.synchronize().map_err(drv_err("stream synchronize")),
            Exec::Host(_) => Ok(()),
        }
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<Error>> {
        self.inner.error.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an error (the first one is kept).
    /// True once an error has been recorded (no synchronisation).
    pub fn has_failed(&self) -> bool {
        self.lock_error().is_some()
    }

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

    /// A fresh buffer of `n` floats (NaN-filled when poisoning is on).
    pub(crate) fn alloc(&self, n: usize) -> Result<Buffer> {
        let poison = self.inner.poison.load(Ordering::Relaxed);
        match &self.inner.exec {
            Exec::Gpu(g) => {
                // SAFETY: the memory is uninitialised; every op writes all of its output.
                let s = unsafe { g.stream.alloc::<f32>(n.max(1)) }.map_err(drv_err("allocating device memory"))?;
                if poison {
                    let (p, _g) = s.device_ptr(&g.stream);
                    // SAFETY: `p` points to n.max(1) floats on this context; 0x7FC00000 is a quiet NaN.
                    unsafe { sys::cuMemsetD32Async(p, 0x7FC0_0000, n.max(1), g.stream.cu_stream()) }
                        .result()
                        .map_err(drv_err("cuMemsetD32Async"))?;
                }
                self.note_alloc(n, None);
                Ok(Buffer::Gpu(s))
            }
            Exec::Host(e) => {
                let h = e.alloc(n, if poison { f32::NAN } else { 0.0 });
                self.note_alloc(n, Some(&h));
                Ok(Buffer::Host(h))
            }
        }
    }

    /// A new tensor of `shape` with fresh storage.
    pub(crate) fn empty(&self, shape: &[usize]) -> Result<CudaTensor> {
        let n = shape.iter().product();
        Ok(CudaTensor { shape: shape.to_vec(), storage: Some(Arc::new(self.alloc(n)?)), offset: 0 })
    }

    /// The device address of element 0 of a buffer.
    pub(crate) fn addr(&self, b: &Buffer) -> Result<u64> {
        match (b, &self.inner.exec) {
            // A buffer of another `Cuda` instance lives on that instance's stream: nothing orders
            // its pending writes and frees with this stream's work (event tracking is off), so it
            // is refused rather than raced. Clones of one `Cuda` share the stream and may mix.
            (Buffer::Gpu(s), Exec::Gpu(g)) if !Arc::ptr_eq(s.stream(), &g.stream) => Err(Error::msg(
                "CUDA: a tensor of another Cuda instance (its own stream, with no ordering against this one); \
                 use one Cuda per device and clone it, or copy the data through the host",
            )),
            (Buffer::Gpu(s), Exec::Gpu(g)) => Ok(s.device_ptr(&g.stream).0),
            (Buffer::Host(h), Exec::Host(_)) => Ok(h.addr()),
            _ => Err(Error::msg("CUDA: a tensor from another device (GPU and host emulator mixed)")),
        }
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
        Ok(self.addr(s)? + (t.offset as u64) * 4)
    }

    /// Copies host data into elements [0, data.len()) of a buffer.
    pub(crate) fn upload(&self, data: &[f32], dst: &mut Buffer) -> Result<()> {
        if data.len() > dst.len() {
            return Err(Error(format!("CUDA host-to-device copy: {} values into {}", data.len(), dst.len())));
        }
        self.not_capturing("host-to-device copy")?;
        self.note_host_copy();
        match (dst, &self.inner.exec) {
            (Buffer::Gpu(s), Exec::Gpu(g)) => {
                let mut view = s.slice_mut(0..data.len());
                g.stream.memcpy_htod(data, &mut view).map_err(drv_err("host-to-device copy"))
            }
            (Buffer::Host(h), Exec::Host(e)) => {
                // SAFETY: bounds checked above; nothing else runs while the emulator copies.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), h.addr() as *mut f32, data.len()) };
                e.note_upload(h.addr(), data.len());
                Ok(())
            }
            _ => Err(Error::msg("CUDA host-to-device copy: buffer of another device")),
        }
    }

    /// Copies host data into elements [offset, offset + data.len()) of a shared buffer (the
    /// stream-ordered copy of a step's input into its fixed buffer).
    pub(crate) fn upload_at(&self, data: &[f32], dst: &Buffer, offset: usize) -> Result<()> {
        if offset + data.len() > dst.len() {
            return Err(Error(format!(
                "CUDA host-to-device copy: {} values at {offset} into {}",
                data.len(),
                dst.len()
            )));
        }
        self.not_capturing("host-to-device copy")?;
        self.note_host_copy();
        let at = self.addr(dst)? + offset as u64 * 4;
        match &self.inner.exec {
            Exec::Gpu(g) => {
                g.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
                // SAFETY: the range lies inside the buffer (checked above); from pageable memory
                // the driver stages the data before returning, so `data` may go away after.
                unsafe {
                    sys::cuMemcpyHtoDAsync_v2(at, data.as_ptr() as *const c_void, data.len() * 4, g.stream.cu_stream())
                }
                .result()
                .map_err(drv_err("host-to-device copy"))
            }
            Exec::Host(e) => {
                // SAFETY: bounds checked above; nothing else runs while the emulator copies.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at as *mut f32, data.len()) };
                e.note_upload(at, data.len());
                Ok(())
            }
        }
    }

    /// Copies elements [offset, offset + out.len()) of a buffer to the host and waits for it.
    pub(crate) fn download(&self, src: &Buffer, offset: usize, out: &mut [f32]) -> Result<()> {
        if offset + out.len() > src.len() {
            return Err(Error(format!(
                "CUDA device-to-host copy: window {offset}..{} exceeds storage of {}",
                offset + out.len(),
                src.len()
            )));
        }
        if out.is_empty() {
            return self.sync();
        }
        self.not_capturing("device-to-host copy")?;
        self.note_host_copy();
        match (src, &self.inner.exec) {
            (Buffer::Gpu(s), Exec::Gpu(g)) => {
                let view = s.slice(offset..offset + out.len());
                g.stream.memcpy_dtoh(&view, out).map_err(drv_err("device-to-host copy"))?;
            }
            (Buffer::Host(h), Exec::Host(_)) => {
                // SAFETY: bounds checked above.
                unsafe {
                    std::ptr::copy_nonoverlapping((h.addr() as *const f32).add(offset), out.as_mut_ptr(), out.len())
                };
            }
            _ => return Err(Error::msg("CUDA device-to-host copy: buffer of another device")),
        }
        self.sync()
    }

    /// Copies `n` floats between device addresses (ranges checked by the caller; may overlap only
    /// under the emulator, where the copy is a memmove).
    pub(crate) fn copy_dtod(&self, dst: u64, src: u64, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if self.note_copy(dst, src, n) {
            return Ok(()); // recorded by the emulator's capture
        }
        match &self.inner.exec {
            Exec::Gpu(g) => {
                g.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
                // SAFETY: both addresses were bounds-checked against their storage by the caller.
                unsafe { drv::memcpy_dtod_async(dst, src, n * 4, g.stream.cu_stream()) }
                    .map_err(drv_err("device-to-device copy"))
            }
            Exec::Host(e) => {
                // SAFETY: both ranges lie inside live buffers (checked by the caller).
                unsafe { e.copy(dst, src, n) };
                Ok(())
            }
        }
    }

    /// Launches kernel `name` of module `m`; `args` point to the argument values in order
    /// (cuLaunchKernel's convention) and `sizes` give their sizes in bytes (for a graph capture
    /// under the emulator, which copies them as the driver does). Use the `launch!` macro, which
    /// builds both.
    pub(crate) fn launch_raw(
        &self,
        m: Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: &mut [*mut c_void],
        sizes: &[usize],
    ) -> Result<()> {
        // SAFETY: `launch!` pairs each argument's address with its size.
        if unsafe { self.note_launch(m, name, grid, block, args, sizes) } {
            return Ok(()); // recorded by the emulator's capture, runs at replay
        }
        match &self.inner.exec {
            Exec::Gpu(g) => {
                g.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
                let f = self.func(g, m, name)?;
                // SAFETY: the caller guarantees `args` match the kernel's C signature and point to
                // live values; every pointer argument addresses a buffer of the size described.
                unsafe { drv::launch_kernel(f.cu_function(), grid, (block, 1, 1), 0, g.stream.cu_stream(), args) }
                    .map_err(|e| Error(format!("CUDA launch of {name}: {e}")))
            }
            Exec::Host(e) => e.launch(m, name, grid, (block, 1, 1), args),
        }
    }

    /// The kernel `name` of module `m`, compiling and loading the module on first use.
    fn func(&self, g: &Gpu, m: Module, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = g.funcs.lock().unwrap_or_else(|p| p.into_inner()).get(&(m, name)) {
            return Ok(f.clone());
        }
        let module = self.module(g, m)?;
        let f = module
            .load_function(name)
            .map_err(|e| Error(format!("CUDA: kernel {name} in kernels/{}: {e}", m.file())))?;
        g.funcs.lock().unwrap_or_else(|p| p.into_inner()).insert((m, name), f.clone());
        Ok(f)
    }

    fn module(&self, g: &Gpu, m: Module) -> Result<Arc<CudaModule>> {
        let mut mods = g.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(md) = mods.get(&m) {
            return Ok(md.clone());
        }
        let load = |image: Vec<u8>| g.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(image));
        let key = kernels::cache_key(m, &self.inner.arch, self.inner.nvrtc_version);
        let path = self.inner.cache_dir.as_ref().map(|d| kernels::cache_path(d, m, &key));
        let failed = |e: drv::DriverError| {
            // Only a rejected image points at the NVRTC; any other error (e.g. a context that an
            // earlier fault broke) is reported as it is.
            let hint = if image_rejected(&e) {
                " (a driver older than the NVRTC's CUDA version cannot load its output; use the NVRTC matching the driver, see docs/CUDA.md)"
            } else {
                ""
            };
            let (a, b) = self.inner.nvrtc_version;
            Error(format!(
                "CUDA: loading kernels/{} compiled by NVRTC {a}.{b} for {}: {e}{hint}",
                m.file(),
                self.inner.arch
            ))
        };
        // A cached image that is corrupt or that the driver rejects is recompiled, never fatal.
        if let Some(img) = path.as_deref().and_then(kernels::read_cached) {
            match load(img) {
                Ok(md) => {
                    mods.insert(m, md.clone());
                    return Ok(md);
                }
                Err(e) if image_rejected(&e) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        let compiled = kernels::compile(m, &self.inner.arch)?;
        let md = load(compiled.image.clone()).map_err(failed)?;
        if let Some(p) = &path {
            if let Err(e) = kernels::write_cached(p, &compiled.image) {
                eprintln!("warning: {e} (the kernel cache is only an optimisation)");
            }
        }
        mods.insert(m, md.clone());
        Ok(md)
    }
}

/// The hooks every launch, allocation and copy above goes through (`issued.rs`): counted, and
/// recorded instead of run while a capture is in progress (`graph.rs` starts and ends captures).
impl Cuda {
    pub(crate) fn graph_state(&self) -> std::sync::MutexGuard<'_, GraphState> {
        self.inner.graphs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while a capture runs.
    pub fn is_capturing(&self) -> bool {
        self.graph_state().capture.is_some()
    }

    /// An error for `what` (a host copy or a synchronisation) when a capture runs.
    pub(crate) fn not_capturing(&self, what: &str) -> Result<()> {
        if self.is_capturing() {
            return Err(Error(format!(
                "CUDA {what} while a step is being captured into a graph: captured work may not touch host memory or wait for the device"
            )));
        }
        Ok(())
    }

    /// Called by every launch: records it when capturing. Returns true when the launch was
    /// recorded by the emulator (and must not run now).
    ///
    /// # Safety
    /// `args[i]` points to `sizes[i]` readable bytes.
    pub(crate) unsafe fn note_launch(
        &self,
        m: Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: &[*mut c_void],
        sizes: &[usize],
    ) -> bool {
        // SAFETY: the caller's contract.
        unsafe { self.graph_state().on_launch(&self.inner.counters, m, name, grid, block, args, sizes) }
    }

    /// Called by every allocation of `n` floats; under an emulated capture, the graph keeps it.
    pub(crate) fn note_alloc(&self, n: usize, host: Option<&Arc<HostStore>>) {
        self.graph_state().on_alloc(&self.inner.counters, n, host)
    }

    /// Called by every device-to-device copy; returns true when the emulator recorded it.
    pub(crate) fn note_copy(&self, dst: u64, src: u64, n: usize) -> bool {
        self.graph_state().on_copy(&self.inner.counters, dst, src, n)
    }

    /// Counts a host-device copy.
    pub(crate) fn note_host_copy(&self) {
        Counters::bump(&self.inner.counters.copies, 1);
    }
}

/// True when the driver refused a module image itself (wrong architecture or too new a format),
/// as opposed to failing for another reason.
fn image_rejected(e: &drv::DriverError) -> bool {
    use sys::cudaError_enum as E;
    matches!(
        e.0,
        E::CUDA_ERROR_INVALID_IMAGE
            | E::CUDA_ERROR_NO_BINARY_FOR_GPU
            | E::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
            | E::CUDA_ERROR_INVALID_PTX
            | E::CUDA_ERROR_INVALID_SOURCE
    )
}

/// The emulator's memory profiler (emu/profile.rs), through the backend.
impl Cuda {
    /// What the emulator's memory profiler has counted (`WGAN_EMU_PROFILE`, [`EmuOptions::profile`]),
    /// per kernel and source line; None on a GPU (use Nsight Compute there).
    ///
    /// [`EmuOptions::profile`]: super::emu::EmuOptions::profile
    pub fn emu_profile(&self) -> Option<super::emu::Profile> {
        match &self.inner.exec {
            Exec::Host(e) => Some(e.profile()),
            Exec::Gpu(_) => None,
        }
    }

    /// Forgets what the emulator's memory profiler has counted (nothing on a GPU).
    pub fn emu_profile_reset(&self) {
        if let Exec::Host(e) = &self.inner.exec {
            e.reset_profile();
        }
    }
}

fn poison_from_env() -> bool {
    std::env::var("WGAN_CUDA_POISON").map(|v| v == "1").unwrap_or(false)
}

/// Blocks for a 1-D grid-stride kernel over `n` elements.
pub(crate) fn grid_1d(n: usize) -> u32 {
    n.div_ceil(BLOCK as usize).clamp(1, 1 << 20) as u32
}

/// A kernel argument's address for [`Cuda::launch_raw`]; only types with a C layout pass.
pub(crate) fn arg_ptr<T: cudarc::driver::DeviceRepr>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

/// One launch: `launch!(self, Module::X, "name", (gx, gy, gz), block, args...)`. Each argument is
/// evaluated into a local that lives until the launch returns, and its address goes into a fixed
/// array (no allocation per launch); a failed launch returns an error naming the kernel.
macro_rules! launch {
    (@push $v:ident, $s:ident, $n:ident, $be:expr, $m:expr, $name:literal, $grid:expr, $block:expr, $arg:expr $(, $rest:expr)*) => {
        let value = $arg;
        $v[$n] = $crate::backend::cuda::device::arg_ptr(&value);
        $s[$n] = std::mem::size_of_val(&value);
        $n += 1;
        $crate::backend::cuda::device::launch!(@push $v, $s, $n, $be, $m, $name, $grid, $block $(, $rest)*);
    };
    (@push $v:ident, $s:ident, $n:ident, $be:expr, $m:expr, $name:literal, $grid:expr, $block:expr) => {
        $be.launch_raw($m, $name, $grid, $block, &mut $v[..$n], &$s[..$n])?;
    };
    ($be:expr, $m:expr, $name:literal, $grid:expr, $block:expr, $($arg:expr),+ $(,)?) => {{
        let mut args = [std::ptr::null_mut::<std::ffi::c_void>(); 8];
        let mut sizes = [0usize; 8];
        let mut n = 0usize;
        $crate::backend::cuda::device::launch!(@push args, sizes, n, $be, $m, $name, $grid, $block, $($arg),+);
    }};
}
pub(crate) use launch;

/// A multi-line description of the CUDA setup for `wgan info`: driver, devices, NVRTC, cache.
pub fn system_report() -> String {
    let mut out = Vec::new();
    // The driver's CUDA version whether or not a GPU is usable: it decides which NVRTC fits.
    match nvrtc::driver_cuda_version() {
        Some(v) => out.push(format!("cuda driver: supports CUDA {}", nvrtc::cuda_version_text(v))),
        None => out.push("cuda driver: none (libcuda.so not found)".into()),
    }
    match probe_driver() {
        Ok(_) => {
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
                // From device attributes: no context is created (a primary context retained just
                // to read two integers would hold memory on every GPU for the life of the process).
                let cc = drv::device::get(i)
                    .and_then(|d| {
                        use sys::CUdevice_attribute as A;
                        // SAFETY: a device handle from `get`.
                        let major =
                            unsafe { drv::device::get_attribute(d, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) }?;
                        // SAFETY: as above.
                        let minor =
                            unsafe { drv::device::get_attribute(d, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) }?;
                        Ok(format!(", sm_{major}{minor}"))
                    })
                    .unwrap_or_default();
                out.push(format!("cuda:{i}: {desc}{cc}"));
            }
        }
        Err(e) => out.push(format!("cuda: unavailable ({e})")),
    }
    match (nvrtc::library(), nvrtc::chosen_for_driver()) {
        (Ok((lib, (a, b))), Ok(driver)) => {
            let why = match driver {
                _ if std::env::var(nvrtc::NVRTC_LIB_ENV).is_ok_and(|v| v == lib) => {
                    format!("set by {}", nvrtc::NVRTC_LIB_ENV)
                }
                Some(d) => format!("chosen for the driver's CUDA {}", nvrtc::cuda_version_text(d)),
                None => "no driver to match: the first one found".into(),
            };
            out.push(format!("nvrtc: {a}.{b} ({lib}, {why})"))
        }
        (Err(e), _) | (_, Err(e)) => out.push(format!("nvrtc: unavailable ({e})")),
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

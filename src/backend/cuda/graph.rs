//! CUDA graphs of the backend's one stream, and the launch and allocation counters.
//!
//! `Cuda::capture_begin` starts stream capture (`cuStreamBeginCapture`, relaxed mode); every op
//! until `Cuda::capture_end` is recorded instead of run: kernel launches with their argument
//! values as they are at capture, device-to-device copies, and stream-ordered allocations and
//! frees (`cuMemAllocAsync`/`cuMemFreeAsync` become the graph's allocation and free nodes; the
//! memory is the graph's). `capture_end` instantiates the graph (`cuGraphInstantiate`, with
//! auto-free-on-launch) and returns its id; `graph_launch` replays it (`cuGraphLaunch`). The host
//! emulator does the same with the same rules (`emu/graph.rs`).
//!
//! Rules for code that is captured (checked on both devices; the emulator also checks the last):
//! - no host-to-device or device-to-host copy and no synchronisation (they are errors);
//! - anything that must change from one replay to the next is read from device memory, not passed
//!   as a kernel argument (arguments are frozen at capture);
//! - every allocation made in the capture is freed in it (the graph can then be relaunched), and
//!   no buffer allocated before the capture is freed in it.

use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::{sys, CudaGraph};

use super::device::{drv_err, Cuda, Exec};
use super::emu::Recording;
use crate::{Error, Result};

/// What the backend has issued since it was opened. "Issued" is what the host did: a replayed
/// graph counts as one graph launch, and its kernels as `replayed_kernels`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Kernel launches issued one by one (cuLaunchKernel outside a capture).
    pub launches: u64,
    /// Graph launches (cuGraphLaunch).
    pub graph_launches: u64,
    /// Kernels run by those graph launches (under the emulator; on a GPU, the captured count).
    pub replayed_kernels: u64,
    /// Kernel launches recorded into graphs while capturing.
    pub captured_launches: u64,
    /// Stream-ordered allocations issued outside a capture (cuMemAllocAsync), and their bytes.
    pub allocs: u64,
    pub alloc_bytes: u64,
    /// Allocations recorded into graphs (the graph's own memory), and their bytes.
    pub captured_allocs: u64,
    pub captured_alloc_bytes: u64,
    /// Host-device and device-device copies issued outside a capture.
    pub copies: u64,
}

impl DeviceCounts {
    /// The difference `self − earlier`, field by field.
    pub fn since(&self, earlier: &DeviceCounts) -> DeviceCounts {
        DeviceCounts {
            launches: self.launches - earlier.launches,
            graph_launches: self.graph_launches - earlier.graph_launches,
            replayed_kernels: self.replayed_kernels - earlier.replayed_kernels,
            captured_launches: self.captured_launches - earlier.captured_launches,
            allocs: self.allocs - earlier.allocs,
            alloc_bytes: self.alloc_bytes - earlier.alloc_bytes,
            captured_allocs: self.captured_allocs - earlier.captured_allocs,
            captured_alloc_bytes: self.captured_alloc_bytes - earlier.captured_alloc_bytes,
            copies: self.copies - earlier.copies,
        }
    }
    /// Calls into the driver that put work on the stream: launches, graph launches and copies.
    pub fn host_submissions(&self) -> u64 {
        self.launches + self.graph_launches + self.copies
    }
}

/// The counters, updated by the device code.
#[derive(Default)]
pub(crate) struct Counters {
    pub launches: AtomicU64,
    pub graph_launches: AtomicU64,
    pub replayed_kernels: AtomicU64,
    pub captured_launches: AtomicU64,
    pub allocs: AtomicU64,
    pub alloc_bytes: AtomicU64,
    pub captured_allocs: AtomicU64,
    pub captured_alloc_bytes: AtomicU64,
    pub copies: AtomicU64,
    /// The emulator's model of the default memory pool (`memory.rs`).
    pub pool: std::sync::Mutex<super::memory::PoolModel>,
}

impl Counters {
    pub fn bump(c: &AtomicU64, by: u64) {
        c.fetch_add(by, Ordering::Relaxed);
    }
    fn read(&self) -> DeviceCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceCounts {
            launches: r(&self.launches),
            graph_launches: r(&self.graph_launches),
            replayed_kernels: r(&self.replayed_kernels),
            captured_launches: r(&self.captured_launches),
            allocs: r(&self.allocs),
            alloc_bytes: r(&self.alloc_bytes),
            captured_allocs: r(&self.captured_allocs),
            captured_alloc_bytes: r(&self.captured_alloc_bytes),
            copies: r(&self.copies),
        }
    }
}

/// An instantiated graph.
pub(crate) enum Graph {
    Gpu {
        exec: GpuGraph,
        kernels: u64,
    },
    /// The recording and the most bytes of its allocations live at once during the capture.
    Host(Recording, u64),
}

/// cudarc's graph holds raw driver handles and is neither Send nor Sync; the backend only touches
/// it under its mutex, on the stream it was captured from.
pub(crate) struct GpuGraph(pub CudaGraph);
// SAFETY: see above; the driver's handles may be used from any thread with the context current.
unsafe impl Send for GpuGraph {}
unsafe impl Sync for GpuGraph {}

/// The capture in progress and the graphs made so far.
#[derive(Default)]
pub(crate) struct GraphState {
    /// Some while capturing: the recording (emulator) or the launch count so far (GPU).
    pub capture: Option<Capture>,
    /// By id; None once dropped (`Cuda::graph_drop`), so that the other ids stay valid.
    pub graphs: Vec<Option<Graph>>,
    /// A failure to inject (`Cuda::fail_graph`): where, and how many such operations to let pass
    /// first.
    fail: Option<(GraphFailure, usize)>,
}

/// The graph operation that [`Cuda::fail_graph`] makes fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFailure {
    /// `capture_begin`: the capture does not start.
    Begin,
    /// `capture_end`: the capture ends (the stream leaves capture mode) and the graph is discarded.
    End,
    /// `graph_launch`: the graph is not launched.
    Launch,
}

impl GraphState {
    /// Whether the operation `at` is to fail now (counting it down otherwise).
    fn injected(&mut self, at: GraphFailure) -> bool {
        match &mut self.fail {
            Some((f, 0)) if *f == at => {
                self.fail = None;
                true
            }
            Some((f, n)) if *f == at => {
                *n -= 1;
                false
            }
            _ => false,
        }
    }
}

fn injected_error(at: GraphFailure) -> Error {
    Error(format!("CUDA graph {at:?}: failure injected by Cuda::fail_graph (a test)"))
}

pub(crate) enum Capture {
    Gpu { kernels: u64 },
    Host(Recording, LivePeak),
}

/// The allocations of an emulated capture, to know the most bytes of them live at once: what the
/// graph needs where it reuses memory freed earlier in it, as CUDA may (the recording keeps every
/// allocation apart, so its bytes are the most it can need).
#[derive(Default)]
pub(crate) struct LivePeak {
    allocs: Vec<(std::sync::Weak<super::emu::HostStore>, u64)>,
    peak: u64,
}

impl LivePeak {
    /// An allocation made in the capture: the recording holds one reference to it, so it is live
    /// while anything else holds another.
    fn on_alloc(&mut self, h: &std::sync::Arc<super::emu::HostStore>) {
        self.allocs.push((std::sync::Arc::downgrade(h), h.len() as u64 * 4));
        let live: u64 = self.allocs.iter().filter(|(w, _)| w.strong_count() > 1).map(|(_, b)| b).sum();
        self.peak = self.peak.max(live);
    }
}

impl Cuda {
    fn graph_state(&self) -> std::sync::MutexGuard<'_, GraphState> {
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

    /// What the backend has issued so far (see [`DeviceCounts`]).
    pub fn counts(&self) -> DeviceCounts {
        self.inner.counters.read()
    }

    /// Test hook: the graph operation `at` fails with an error after `skip` more such operations
    /// have succeeded (0: the next one), once, as a failure of the driver would (on a GPU too:
    /// a capture is still ended). For tests of the fallback to eager execution.
    pub fn fail_graph(&self, at: GraphFailure, skip: usize) {
        self.graph_state().fail = Some((at, skip));
    }

    /// Starts capturing the stream into a graph. Queued work is finished first.
    pub fn capture_begin(&self) -> Result<()> {
        self.sync()?;
        let mut st = self.graph_state();
        if st.capture.is_some() {
            return Err(Error::msg("CUDA graph capture: a capture is already running"));
        }
        if st.injected(GraphFailure::Begin) {
            return Err(injected_error(GraphFailure::Begin));
        }
        match &self.inner.exec {
            Exec::Gpu(g) => {
                g.stream
                    .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                    .map_err(drv_err("cuStreamBeginCapture"))?;
                st.capture = Some(Capture::Gpu { kernels: 0 });
            }
            Exec::Host(e) => {
                e.watch.foreign_frees.store(0, Ordering::Relaxed);
                e.watch.capturing.store(true, Ordering::Relaxed);
                st.capture = Some(Capture::Host(Recording::default(), LivePeak::default()));
            }
        }
        Ok(())
    }

    /// Ends the capture and instantiates the graph; returns its id for [`Cuda::graph_launch`].
    /// Nothing captured has run yet: launch the graph to run it.
    pub fn capture_end(&self) -> Result<usize> {
        let mut st = self.graph_state();
        let capture = st.capture.take().ok_or_else(|| Error::msg("CUDA graph capture: no capture is running"))?;
        let graph = match (capture, &self.inner.exec) {
            (Capture::Gpu { kernels }, Exec::Gpu(g)) => {
                let flags = sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH;
                let exec = g
                    .stream
                    .end_capture(flags)
                    .map_err(drv_err("cuStreamEndCapture / cuGraphInstantiate"))?
                    .ok_or_else(|| Error::msg("CUDA graph capture: the capture recorded nothing"))?;
                exec.upload().map_err(drv_err("cuGraphUpload"))?;
                Graph::Gpu { exec: GpuGraph(exec), kernels }
            }
            (Capture::Host(rec, live), Exec::Host(e)) => {
                e.watch.capturing.store(false, Ordering::Relaxed);
                let freed = e.watch.foreign_frees.swap(0, Ordering::Relaxed);
                if freed > 0 {
                    return Err(Error(format!(
                        "CUDA graph capture: {freed} buffer(s) allocated before the capture were freed inside it (a free node the graph does not own)"
                    )));
                }
                Graph::Host(rec, live.peak)
            }
            _ => return Err(Error::msg("CUDA graph capture: device mismatch")),
        };
        if st.injected(GraphFailure::End) {
            return Err(injected_error(GraphFailure::End)); // the graph is dropped here
        }
        st.graphs.push(Some(graph));
        Ok(st.graphs.len() - 1)
    }

    /// Destroys graph `id` and returns its memory to the driver (`cuDeviceGraphMemTrim`). The id
    /// is not reused; launching it is an error.
    pub fn graph_drop(&self, id: usize) -> Result<()> {
        let dropped = {
            let mut st = self.graph_state();
            st.graphs.get_mut(id).and_then(Option::take)
        };
        if dropped.is_some() {
            drop(dropped); // cuGraphExecDestroy (deferred by the driver while a launch runs)
            self.trim_graph_memory()?;
        }
        Ok(())
    }

    /// Bytes of memory the live graphs own as the emulator keeps them (every allocation apart), and
    /// the sum over the graphs of the most bytes each had live at once; (0, 0) on a GPU, where
    /// [`Cuda::memory`] asks the driver.
    pub(crate) fn graph_bytes(&self) -> (u64, u64) {
        (self.graph_state().graphs.iter().flatten()).fold((0, 0), |(all, live), g| match g {
            Graph::Gpu { .. } => (all, live),
            Graph::Host(r, peak) => (all + r.bytes(), live + peak),
        })
    }

    /// Replays graph `id` on the stream.
    pub fn graph_launch(&self, id: usize) -> Result<()> {
        let mut st = self.graph_state();
        if st.capture.is_some() {
            return Err(Error::msg("CUDA graph launch inside a capture is not supported"));
        }
        if st.injected(GraphFailure::Launch) {
            return Err(injected_error(GraphFailure::Launch));
        }
        let g = st
            .graphs
            .get(id)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error(format!("CUDA graph launch: no graph {id}")))?;
        let c = &self.inner.counters;
        Counters::bump(&c.graph_launches, 1);
        match (g, &self.inner.exec) {
            (Graph::Gpu { exec, kernels }, Exec::Gpu(d)) => {
                d.ctx.bind_to_thread().map_err(drv_err("bind context"))?;
                Counters::bump(&c.replayed_kernels, *kernels);
                exec.0.launch().map_err(drv_err("cuGraphLaunch"))
            }
            (Graph::Host(rec, _), Exec::Host(e)) => {
                Counters::bump(&c.replayed_kernels, rec.kernels() as u64);
                rec.replay(e)
            }
            _ => Err(Error::msg("CUDA graph launch: device mismatch")),
        }
    }

    /// (kernel nodes, bytes of graph-owned memory) of graph `id`; bytes are known under the
    /// emulator only (0 on a GPU).
    pub fn graph_size(&self, id: usize) -> Option<(u64, u64)> {
        match self.graph_state().graphs.get(id)?.as_ref()? {
            Graph::Gpu { kernels, .. } => Some((*kernels, 0)),
            Graph::Host(r, _) => Some((r.kernels() as u64, r.bytes())),
        }
    }

    /// The kernel names of graph `id` in launch order (known under the emulator only: None on a
    /// GPU): what `examples/step_launches` breaks a step's count down by.
    pub fn graph_kernel_names(&self, id: usize) -> Option<Vec<&'static str>> {
        match self.graph_state().graphs.get(id)?.as_ref()? {
            Graph::Gpu { .. } => None,
            Graph::Host(r, _) => Some(r.kernel_names()),
        }
    }

    /// Called by every launch: records it when capturing. Returns true when the launch was
    /// recorded by the emulator (and must not run now).
    ///
    /// # Safety
    /// `args[i]` points to `sizes[i]` readable bytes.
    pub(crate) unsafe fn note_launch(
        &self,
        m: super::kernels::Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: &[*mut std::ffi::c_void],
        sizes: &[usize],
    ) -> bool {
        let c = &self.inner.counters;
        let mut st = self.graph_state();
        match st.capture.as_mut() {
            None => {
                Counters::bump(&c.launches, 1);
                false
            }
            Some(Capture::Gpu { kernels }) => {
                *kernels += 1;
                Counters::bump(&c.captured_launches, 1);
                false
            }
            Some(Capture::Host(rec, _)) => {
                Counters::bump(&c.captured_launches, 1);
                // SAFETY: the caller's contract.
                unsafe { rec.launch(m, name, grid, (block, 1, 1), args, sizes) };
                true
            }
        }
    }

    /// Called by every allocation of `n` floats; under an emulated capture, the graph keeps it.
    pub(crate) fn note_alloc(&self, n: usize, host: Option<&std::sync::Arc<super::emu::HostStore>>) {
        let c = &self.inner.counters;
        let mut st = self.graph_state();
        match st.capture.as_mut() {
            None => {
                Counters::bump(&c.allocs, 1);
                Counters::bump(&c.alloc_bytes, n as u64 * 4);
                if let Some(h) = host {
                    c.pool.lock().unwrap_or_else(|p| p.into_inner()).on_alloc(h);
                }
            }
            Some(cap) => {
                Counters::bump(&c.captured_allocs, 1);
                Counters::bump(&c.captured_alloc_bytes, n as u64 * 4);
                if let (Capture::Host(rec, live), Some(h)) = (cap, host) {
                    rec.keep(h.clone());
                    live.on_alloc(h);
                }
            }
        }
    }

    /// Called by every device-to-device copy; returns true when the emulator recorded it.
    pub(crate) fn note_copy(&self, dst: u64, src: u64, n: usize) -> bool {
        let c = &self.inner.counters;
        let mut st = self.graph_state();
        match st.capture.as_mut() {
            None => {
                Counters::bump(&c.copies, 1);
                false
            }
            Some(Capture::Gpu { .. }) => false,
            Some(Capture::Host(rec, _)) => {
                rec.copy(dst, src, n);
                true
            }
        }
    }

    /// Counts a host-device copy.
    pub(crate) fn note_host_copy(&self) {
        Counters::bump(&self.inner.counters.copies, 1);
    }
}

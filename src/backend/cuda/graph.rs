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

//!
//! The state all this works on (`GraphState`, the counters) is in `issued.rs`, below `device.rs`,
//! whose launches, allocations and copies report to it; this module is above `device.rs`.

use std::sync::atomic::Ordering;

use cudarc::driver::sys;

use super::device::{drv_err, Cuda, Exec};
use super::emu::Recording;
use super::issued::{Capture, Counters, DeviceCounts, GpuGraph, Graph, GraphFailure, LivePeak};
use crate::{Error, Result};

fn injected_error(at: GraphFailure) -> Error {
    Error(format!("CUDA graph {at:?}: failure injected by Cuda::fail_graph (a test)"))
}

impl Cuda {
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
}

//! What the backend has issued to its one stream, kept below the launch (`device.rs`), which
//! reports every launch, allocation and copy here: the counters, the emulator's model of the
//! default memory pool, and the capture in progress, which records the work instead of running
//! it. The graph API that starts, ends and replays captures is `graph.rs`, above `device.rs`; the
//! pool's policy and its report are `memory.rs`. This module imports neither: it holds the state
//! `device.rs` keeps in `Cuda`, so that the layers stay one-way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use cudarc::driver::CudaGraph;

use super::emu::{HostStore, Recording};
use super::kernels::Module;

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
    pub pool: std::sync::Mutex<PoolModel>,
}

impl Counters {
    pub fn bump(c: &AtomicU64, by: u64) {
        c.fetch_add(by, Ordering::Relaxed);
    }
    pub(crate) fn read(&self) -> DeviceCounts {
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
    pub fail: Option<(GraphFailure, usize)>,
}

/// The graph operation that `Cuda::fail_graph` makes fail.
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
    pub fn injected(&mut self, at: GraphFailure) -> bool {
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

/// The hooks of `device.rs` (`Cuda::note_*`): each issued operation is counted, and while a
/// capture runs, recorded instead.
impl GraphState {
    /// A kernel launch; true when the emulator's capture recorded it (it must not run now).
    ///
    /// # Safety
    /// `args[i]` points to `sizes[i]` readable bytes.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn on_launch(
        &mut self,
        c: &Counters,
        m: Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        args: &[*mut std::ffi::c_void],
        sizes: &[usize],
    ) -> bool {
        match self.capture.as_mut() {
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

    /// An allocation of `n` floats; under an emulated capture, the graph keeps it.
    pub fn on_alloc(&mut self, c: &Counters, n: usize, host: Option<&Arc<HostStore>>) {
        match self.capture.as_mut() {
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

    /// A device-to-device copy; true when the emulator's capture recorded it.
    pub fn on_copy(&mut self, c: &Counters, dst: u64, src: u64, n: usize) -> bool {
        match self.capture.as_mut() {
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
}

/// The capture in progress: its kernel count (GPU) or its recording (emulator).
pub(crate) enum Capture {
    Gpu { kernels: u64 },
    Host(Recording, LivePeak),
}

/// The allocations of an emulated capture, to know the most bytes of them live at once: what the
/// graph needs where it reuses memory freed earlier in it, as CUDA may (the recording keeps every
/// allocation apart, so its bytes are the most it can need).
#[derive(Default)]
pub(crate) struct LivePeak {
    allocs: Vec<(Weak<HostStore>, u64)>,
    pub peak: u64,
}

impl LivePeak {
    /// An allocation made in the capture: the recording holds one reference to it, so it is live
    /// while anything else holds another.
    fn on_alloc(&mut self, h: &Arc<HostStore>) {
        self.allocs.push((Arc::downgrade(h), h.len() as u64 * 4));
        let live: u64 = self.allocs.iter().filter(|(w, _)| w.strong_count() > 1).map(|(_, b)| b).sum();
        self.peak = self.peak.max(live);
    }
}

/// The emulator's model of the default pool (see `memory.rs`'s documentation).
#[derive(Default)]
pub(crate) struct PoolModel {
    /// Allocations made outside a capture that may still be alive, and their bytes.
    live: Vec<(Weak<HostStore>, u64)>,
    pub reserved: u64,
    pub peak: u64,
    /// The release threshold is 0: freed memory goes back at synchronisation.
    pub release: bool,
}

impl PoolModel {
    /// Bytes of live allocations (forgetting the freed ones).
    pub fn used(&mut self) -> u64 {
        self.live.retain(|(w, _)| w.strong_count() > 0);
        self.live.iter().map(|(_, b)| b).sum()
    }

    /// An allocation outside a capture: the reserve grows to cover every live allocation.
    pub fn on_alloc(&mut self, h: &Arc<HostStore>) {
        self.live.push((Arc::downgrade(h), h.len() as u64 * 4));
        let used = self.used();
        self.reserved = self.reserved.max(used);
        self.peak = self.peak.max(self.reserved);
    }

    /// A synchronisation point: with the threshold at 0 the freed memory goes back.
    pub fn on_sync(&mut self) {
        if self.release {
            self.reserved = self.used();
        }
    }
}

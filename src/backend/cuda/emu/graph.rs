//! Graph capture and replay in the host emulator, with CUDA's semantics:
//!
//! - While the stream captures, nothing runs: each launch is recorded with a **copy of its
//!   argument bytes taken at capture time** (cuLaunchKernel copies `kernelParams` into the kernel
//!   node), and each device-to-device copy with its addresses and size. Changing a host variable
//!   after capture changes nothing in a replay; a value that must change per replay has to live in
//!   device memory.
//! - A replay runs the recorded operations in capture order (the one stream makes them a chain).
//! - Allocations made while capturing stand for the graph's allocation nodes: the memory belongs
//!   to the graph, keeps its address for every replay, and is released with the graph. (CUDA may
//!   reuse the memory of an allocation freed earlier in the graph for a later one; keeping each
//!   separate is the stricter choice: a kernel that read a buffer after its free node would read
//!   NaN poison, never another tensor's data.) Poisoning happens once, at capture.
//! - Freeing, inside the capture, a buffer that was allocated before it is an error at the end of
//!   the capture: on CUDA that records a free node of memory the graph does not own, which the
//!   second replay would free again.
//! - Host-to-device and device-to-host copies and synchronisation are errors while capturing (the
//!   backend rejects them on both devices), as the step's inputs must come from fixed buffers.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Emulator, HostStore};
use crate::backend::cuda::kernels::Module;
use crate::Result;

/// Shared between the emulator and its buffers: whether a capture is running, and how many
/// buffers allocated before it were freed during it.
#[derive(Default)]
pub(crate) struct CaptureWatch {
    pub capturing: AtomicBool,
    pub foreign_frees: AtomicU64,
}

impl CaptureWatch {
    /// Called when a buffer is freed.
    pub fn on_free(&self) {
        if self.capturing.load(Ordering::Relaxed) {
            self.foreign_frees.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One recorded operation.
enum Op {
    Launch {
        module: Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        /// Each argument's bytes, copied at capture, in 8-byte words (so every argument is aligned
        /// for any type up to 8 bytes, as the kernel's parameter space is).
        args: Vec<Vec<u64>>,
    },
    Copy {
        dst: u64,
        src: u64,
        n: usize,
    },
}

/// A captured graph: its operations and the memory of the allocations made while capturing.
#[derive(Default)]
pub(crate) struct Recording {
    ops: Vec<Op>,
    keep: Vec<Arc<HostStore>>,
}

impl Recording {
    /// Records a launch: copies `sizes[i]` bytes from each `args[i]`.
    ///
    /// # Safety
    /// Each `args[i]` must point to `sizes[i]` readable bytes.
    pub unsafe fn launch(
        &mut self,
        module: Module,
        name: &'static str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[*mut c_void],
        sizes: &[usize],
    ) {
        let args = args
            .iter()
            .zip(sizes)
            .map(|(&p, &n)| {
                let mut words = vec![0u64; n.div_ceil(8).max(1)];
                // SAFETY: the caller's contract; the destination holds at least n bytes.
                unsafe { std::ptr::copy_nonoverlapping(p as *const u8, words.as_mut_ptr() as *mut u8, n) };
                words
            })
            .collect();
        self.ops.push(Op::Launch { module, name, grid, block, args });
    }

    pub fn copy(&mut self, dst: u64, src: u64, n: usize) {
        self.ops.push(Op::Copy { dst, src, n });
    }

    /// Keeps a buffer allocated during the capture alive for as long as the graph.
    pub fn keep(&mut self, s: Arc<HostStore>) {
        self.keep.push(s);
    }

    /// Recorded kernel launches.
    pub fn kernels(&self) -> usize {
        self.ops.iter().filter(|o| matches!(o, Op::Launch { .. })).count()
    }

    /// The recorded kernels' names, in launch order.
    pub fn kernel_names(&self) -> Vec<&'static str> {
        (self.ops.iter())
            .filter_map(|o| match o {
                Op::Launch { name, .. } => Some(*name),
                Op::Copy { .. } => None,
            })
            .collect()
    }

    /// Bytes the graph's allocations hold.
    pub fn bytes(&self) -> u64 {
        self.keep.iter().map(|s| s.len() as u64 * 4).sum()
    }

    /// Runs the recorded operations in order with the frozen arguments.
    pub fn replay(&self, emu: &Emulator) -> Result<()> {
        for op in &self.ops {
            match op {
                Op::Launch { module, name, grid, block, args } => {
                    let mut ptrs: Vec<*mut c_void> = args.iter().map(|w| w.as_ptr() as *mut c_void).collect();
                    emu.launch(*module, name, *grid, *block, &mut ptrs)?;
                }
                Op::Copy { dst, src, n } => {
                    // SAFETY: both ranges were checked against live buffers at capture; buffers
                    // allocated in the capture are kept by this recording, the others must outlive
                    // the graph (CUDA's rule too).
                    unsafe { emu.copy(*dst, *src, *n) };
                }
            }
        }
        Ok(())
    }
}

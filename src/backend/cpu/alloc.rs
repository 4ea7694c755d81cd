//! Keeps freed memory in the process (glibc's malloc) so that per-op buffers stop page-faulting.
//!
//! Every op of the backend returns a fresh tensor, and the `gemm` crate allocates its packing
//! buffer on each call; a training step frees and allocates hundreds of buffers of 0.1–2 MB. With
//! glibc's defaults, blocks above the (adaptive) mmap threshold are mapped and unmapped per call and
//! the heap top above 128 KB is returned to the kernel, so the next allocation of the same size
//! page-faults every page again (about 5,000 faults a step for the default job before the
//! convolutions were split into tasks, 20,000 after). Raising the mmap threshold to its maximum
//! (32 MB) and the trim threshold to 512 MB keeps those blocks on malloc's free lists instead, as a
//! caching allocator would; the cost is that the process keeps its peak heap.
//! Done once, on the first CPU backend created; a no-op off glibc.

use std::sync::Once;

static ONCE: Once = Once::new();

pub(crate) fn keep_freed_memory() {
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // SAFETY: mallopt only changes malloc's tuning parameters; glibc is the allocator here.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 32 << 20);
                mallopt(M_TRIM_THRESHOLD, 512 << 20);
            }
        }
    });
}

//! Opt-in per-op timing of the CPU backend, for `examples/profile_step`: off by default (one
//! relaxed atomic load per op), on after [`enable`]. Each record is an op and its operand shapes,
//! with the calls, wall time and FLOPs summed (FLOPs only for products and convolutions).
//! With [`use_thread_cpu_time`] the records hold the calling thread's CPU time instead
//! (CLOCK_THREAD_CPUTIME_ID, Linux): run everything on one thread (inside a one-thread rayon pool's
//! `install`) and the records say what each op costs in CPU time, which a busy shared machine
//! disturbs far less than the wall clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static CPU_TIME: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Vec<OpStat>> = Mutex::new(Vec::new());

/// Time spent in one op on one set of operand shapes.
#[derive(Clone, Debug)]
pub struct OpStat {
    pub op: &'static str,
    pub shapes: String,
    pub calls: u64,
    pub secs: f64,
    pub flops: f64,
}

/// Starts (or stops) recording.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Records the calling thread's CPU time (`true`) or the wall time (`false`, the default). Where the
/// thread clock is unavailable (not Linux) the wall time is recorded either way.
pub fn use_thread_cpu_time(on: bool) {
    CPU_TIME.store(on, Ordering::Relaxed);
}

/// This thread's CPU time in seconds (CLOCK_THREAD_CPUTIME_ID).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn thread_cpu_secs() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: CLOCK_THREAD_CPUTIME_ID (3) with a valid out pointer (64-bit Linux timespec).
    (unsafe { clock_gettime(3, &mut t) } == 0).then_some(t.sec as f64 + t.nsec as f64 * 1e-9)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn thread_cpu_secs() -> Option<f64> {
    None
}

/// The records so far, which are cleared.
pub fn take() -> Vec<OpStat> {
    std::mem::take(&mut *TABLE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `f`, recording its time under `op` and `key()` = (shapes, FLOPs) when recording is on.
#[inline(always)]
pub(crate) fn timed<R>(op: &'static str, key: impl FnOnce() -> (String, f64), f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let cpu0 = if CPU_TIME.load(Ordering::Relaxed) { thread_cpu_secs() } else { None };
    let t = Instant::now();
    let r = f();
    let secs = match (cpu0, cpu0.and(thread_cpu_secs())) {
        (Some(a), Some(b)) => b - a,
        _ => t.elapsed().as_secs_f64(),
    };
    let (shapes, flops) = key();
    let mut tab = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match tab.iter_mut().find(|s| s.op == op && s.shapes == shapes) {
        Some(s) => {
            s.calls += 1;
            s.secs += secs;
            s.flops += flops;
        }
        None => tab.push(OpStat { op, shapes, calls: 1, secs, flops }),
    }
    r
}

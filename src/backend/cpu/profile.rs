//! Opt-in per-op timing of the CPU backend, for `examples/profile_step`: off by default (one
//! relaxed atomic load per op), on after [`enable`]. Each record is an op and its operand shapes,
//! with the calls, wall time and FLOPs summed (FLOPs only for products and convolutions).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
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
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
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

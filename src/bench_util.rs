//! Small helpers the benchmarks share: wall-clock timing, today's date for result file names, and
//! the commit measured.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Median and minimum, in ms, of `runs` timings of `f` after `warm` warm-up calls.
pub fn time_ms(warm: usize, runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..warm {
        f();
    }
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    (t[t.len() / 2], t[0])
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, no calendar crate needed).
pub fn today() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The commit being measured: `git rev-parse --short HEAD`, else `.gpu/COMMIT` (written by
/// scripts/gpu-pack for a GPU machine that has the binaries but no repository), else "unknown".
pub fn commit() -> String {
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    git.filter(|c| !c.is_empty())
        .or_else(|| std::fs::read_to_string(".gpu/COMMIT").ok().map(|c| c.trim().to_string()))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

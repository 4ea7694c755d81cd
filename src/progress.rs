//! A training progress reporter on stderr.
//!
//! On a terminal it keeps one line redrawn in place, at most about ten times a second:
//!
//! ```text
//! [#####.....] step 120/2000  3.2 it/s  ETA 9m48s  W 0.123  d_loss -0.118
//! ```
//!
//! (MNIST runs add the FID of their latest sample step, `FID 205.3`: `src/train/run.rs`.)
//!
//! Elsewhere (a log file, a pipe, CI) it writes a plain line every max(1, total/20) steps or every
//! ten seconds, whichever comes first, and always for the last step. [`Progress::message`] prints a
//! line of its own without breaking the bar. The formatting helpers are pure functions, tested alone.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Minimum time between two redraws of the terminal line.
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(100);
/// Maximum time between two plain log lines when stderr is not a terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Width of the bar between the brackets, in characters.
pub const BAR_WIDTH: usize = 10;

/// Formats a duration in seconds for an ETA: `42s`, `9m48s`, `3h05m`, `2d04h`; `--` when unknown
/// (negative, infinite or NaN).
pub fn format_eta(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "--".to_string();
    }
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Steps per second, or `None` when nothing can be said yet (no steps, or no time elapsed).
pub fn rate(steps_done: u64, elapsed_secs: f64) -> Option<f64> {
    if steps_done == 0 || elapsed_secs.is_nan() || elapsed_secs <= 0.0 {
        None
    } else {
        Some(steps_done as f64 / elapsed_secs)
    }
}

/// Seconds left at `rate` steps per second for the steps from `step` to `total`.
pub fn eta_secs(step: u64, total: u64, rate: Option<f64>) -> Option<f64> {
    match rate {
        Some(r) if r > 0.0 => Some(total.saturating_sub(step) as f64 / r),
        _ => None,
    }
}

/// `3.2 it/s`, `45 it/s`, `1234 it/s`, or `12.5 s/it` below one step per second; `-- it/s` when unknown.
pub fn format_rate(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r.is_finite() && r >= 1.0 => {
            if r < 10.0 {
                format!("{r:.1} it/s")
            } else {
                format!("{r:.0} it/s")
            }
        }
        Some(r) if r.is_finite() && r > 0.0 => {
            let s = 1.0 / r;
            if s < 10.0 {
                format!("{s:.2} s/it")
            } else {
                format!("{s:.1} s/it")
            }
        }
        _ => "-- it/s".to_string(),
    }
}

/// A field value: about four significant digits, scientific notation when very large or small.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".to_string() } else { "-inf".to_string() };
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else if a < 10.0 {
        format!("{v:.3}")
    } else if a < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// `[####......]` with `width` cells, filled in proportion to step/total.
pub fn format_bar(step: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 { width } else { ((step.min(total) as f64 / total as f64) * width as f64) as usize };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled.min(width)))
}

/// The status text after the bar: `step 120/2000  3.2 it/s  ETA 9m48s  W 0.123`.
pub fn format_status(step: u64, total: u64, rate: Option<f64>, fields: &[(&str, f64)]) -> String {
    let mut s = format!(
        "step {step}/{total}  {}  ETA {}",
        format_rate(rate),
        format_eta(eta_secs(step, total, rate).unwrap_or(f64::NAN))
    );
    for (name, v) in fields {
        s.push_str("  ");
        s.push_str(name);
        s.push(' ');
        s.push_str(&format_value(*v));
    }
    s
}

/// Reports progress of steps `start_step..total` on stderr (or any writer, for tests).
pub struct Progress {
    total: u64,
    start_step: u64,
    started: Instant,
    terminal: bool,
    out: Box<dyn Write + Send>,
    last_draw: Option<Instant>,
    last_log: Option<(u64, Instant)>,
    log_every: u64,
    /// The text of the bar line, kept to redraw it after a message.
    line: String,
    line_on_screen: bool,
    step: u64,
    finished: bool,
}

impl Progress {
    /// A reporter on stderr, redrawing a bar when stderr is a terminal. `start_step` is where a
    /// resumed run begins, so the rate counts only steps taken in this process.
    pub fn new(total: u64, start_step: u64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Self::with_writer(total, start_step, terminal, Box::new(std::io::stderr()))
    }

    /// A reporter on any writer, in terminal (`terminal = true`) or log style.
    pub fn with_writer(total: u64, start_step: u64, terminal: bool, out: Box<dyn Write + Send>) -> Self {
        Progress {
            total,
            start_step,
            started: Instant::now(),
            terminal,
            out,
            last_draw: None,
            last_log: None,
            log_every: (total / 20).max(1),
            line: String::new(),
            line_on_screen: false,
            step: start_step,
            finished: false,
        }
    }

    /// Whether the reporter redraws a line in place.
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Steps per second since the reporter was made.
    pub fn rate(&self) -> Option<f64> {
        rate(self.step.saturating_sub(self.start_step), self.started.elapsed().as_secs_f64())
    }

    /// Records that `step` steps are done (of `total`), with named values to show (e.g. `("W", w)`).
    pub fn update(&mut self, step: u64, fields: &[(&str, f64)]) {
        self.step = step;
        let now = Instant::now();
        let last = step >= self.total;
        if self.terminal {
            let due = self.last_draw.map_or(true, |t| now.duration_since(t) >= REDRAW_INTERVAL);
            if due || last {
                self.line = format!(
                    "{} {}",
                    format_bar(step, self.total, BAR_WIDTH),
                    format_status(step, self.total, self.rate(), fields)
                );
                let _ = write!(self.out, "\r{}\x1b[K", self.line);
                let _ = self.out.flush();
                self.line_on_screen = true;
                self.last_draw = Some(now);
            }
        } else {
            let due = match self.last_log {
                None => true,
                Some((s, t)) => {
                    step != s && (step / self.log_every != s / self.log_every || now.duration_since(t) >= LOG_INTERVAL)
                }
            };
            if due || (last && self.last_log.map_or(true, |(s, _)| s != step)) {
                self.line = format_status(step, self.total, self.rate(), fields);
                let _ = writeln!(self.out, "{}", self.line);
                let _ = self.out.flush();
                self.last_log = Some((step, now));
            }
        }
    }

    /// Prints `msg` on a line of its own; on a terminal the bar is cleared first and redrawn after.
    pub fn message(&mut self, msg: &str) {
        if self.terminal && self.line_on_screen {
            let _ = write!(self.out, "\r\x1b[K{msg}\n{}\x1b[K", self.line);
        } else {
            let _ = writeln!(self.out, "{msg}");
        }
        let _ = self.out.flush();
    }

    /// Ends the bar (leaving its last state on screen) and prints a summary line. Called again, or
    /// on drop after a call, it does nothing.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.terminal && self.line_on_screen {
            let _ = writeln!(self.out);
            self.line_on_screen = false;
        }
        let done = self.step.saturating_sub(self.start_step);
        let secs = self.started.elapsed().as_secs_f64();
        let _ = writeln!(self.out, "done: {done} steps in {} ({})", format_eta(secs), format_rate(rate(done, secs)));
        let _ = self.out.flush();
    }
}

impl Drop for Progress {
    /// Leaves the cursor on a fresh line if the bar was never finished (e.g. on an error).
    fn drop(&mut self) {
        if self.terminal && self.line_on_screen && !self.finished {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
    }
}

//! Progress on stderr: a bar redrawn in place when stderr is a terminal, else a line every
//! few seconds; and the summary line at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    tty: bool,
    total: Option<u64>,
    /// Rows done before this run (a resumed run).
    before: u64,
    start: Instant,
    last: Option<Instant>,
}

/// Seconds as `1h02m03s`, `4m05s` or `6s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

impl Progress {
    pub fn new(enabled: bool, total: Option<u64>, before: u64) -> Progress {
        Progress {
            enabled,
            tty: std::io::stderr().is_terminal(),
            total,
            before,
            start: Instant::now(),
            last: None,
        }
    }

    /// How often [`Progress::show`] draws.
    pub fn every(&self) -> Duration {
        if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        }
    }

    /// Shows the rows done so far (those of earlier runs included) when it is time to.
    pub fn show(&mut self, done: u64, failed: u64) {
        if !self.enabled || self.last.is_some_and(|l| l.elapsed() < self.every()) {
            return;
        }
        self.last = Some(Instant::now());
        let secs = self.start.elapsed().as_secs_f64();
        let rate = done.saturating_sub(self.before) as f64 / secs.max(1e-3);
        let of = match self.total {
            Some(t) => format!("/{t}"),
            None => String::new(),
        };
        let eta = match self.total {
            Some(t) if rate > 0.0 && t >= done => {
                format!(", ETA {}", duration((t - done) as f64 / rate))
            }
            _ => String::new(),
        };
        let failed = if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        };
        let mut err = std::io::stderr().lock();
        if self.tty {
            let bar = match self.total {
                Some(t) if t > 0 => {
                    let w = 30;
                    let filled = ((done.min(t) as f64 / t as f64) * w as f64) as usize;
                    format!("[{}{}] ", "#".repeat(filled), "-".repeat(w - filled))
                }
                _ => String::new(),
            };
            let _ = write!(
                err,
                "\r\x1b[2K{bar}{done}{of} rows, {rate:.0} rows/s{eta}{failed}"
            );
        } else {
            let _ = writeln!(err, "batch: {done}{of} rows, {rate:.0} rows/s{eta}{failed}");
        }
        let _ = err.flush();
    }

    /// The final line (shown even with progress off).
    pub fn summary(&self, ok: u64, failed: u64, retries: u64) {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = (ok + failed).saturating_sub(self.before) as f64 / secs.max(1e-3);
        let mut err = std::io::stderr().lock();
        if self.enabled && self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(
            err,
            "batch: done: {ok} rows ok, {failed} rows failed, {secs:.1} s, {rate:.0} rows/s, {retries} retries"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration(6.2), "6s");
        assert_eq!(super::duration(245.0), "4m05s");
        assert_eq!(super::duration(3723.0), "1h02m03s");
    }
}

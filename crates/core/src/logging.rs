//! The one logging set-up of the three binaries.
//!
//! Every binary logs to stderr, never stdout: from OpenSMTPD 7.x the
//! table's stdout is the protocol channel (`fork_proc_backend` in
//! `usr.sbin/smtpd/smtpd.c`), Dovecot copies a checkpassword child's stderr
//! into its own log, and systemd puts `serve`'s into the journal. No colour
//! codes, since none of those readers is a terminal. `MAILTABLE_LOG` (an
//! `EnvFilter` directive such as `debug` or `mailtable_core=trace`)
//! overrides each binary's default level.
//!
//! [`Throttle`]: at most one line a second for a kind of failure. During a
//! database outage the daemons fail every uncached lookup, thousands a
//! second under load, and a line for each buried the rest of the log (a
//! tester counted 9,482 lines from `serve` for a 4-second outage). The
//! line that is written says how many were left out since the last one,
//! so nothing is hidden but the repetition; the left-out ones still go to
//! the debug level.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The environment variable that sets the log filter.
pub const ENV: &str = "MAILTABLE_LOG";

/// Install the stderr logger; `default` is the filter when [`ENV`] is unset
/// or invalid (`"info"` for daemons, `"warn"` for the CLI and helpers run
/// once per request).
pub fn init(default: &str) {
    // A second call (tests) keeps the first logger; that is not an error.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter(default))
        .try_init();
}

/// Install a logger that hands each line to `writer` without a time stamp
/// (syslog adds its own): for a daemon whose stderr goes nowhere.
pub fn init_without_time<W>(default: &str, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .without_time()
        .with_env_filter(filter(default))
        .try_init();
}

fn filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env(ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// The shortest time between two lines.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One kind of failure's log rate.
#[derive(Debug)]
pub struct Throttle {
    last: Mutex<Option<Instant>>,
    left_out: AtomicU64,
}

impl Throttle {
    /// A throttle that lets the first line through.
    pub const fn new() -> Throttle {
        Throttle {
            last: Mutex::new(None),
            left_out: AtomicU64::new(0),
        }
    }

    /// Whether a failure at `now` is logged: `Some(n)` with the number left
    /// out since the last logged one, `None` to leave this one out.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        // A panic elsewhere cannot leave an Option<Instant> inconsistent.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now.saturating_duration_since(t) < INTERVAL => {
                self.left_out.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.left_out.swap(0, Ordering::Relaxed))
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

/// The suffix of a logged line for `left_out` failures not logged before it.
pub fn left_out_note(left_out: u64) -> String {
    match left_out {
        0 => String::new(),
        n => format!(" ({n} more failure(s) since the last line not logged)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_left_out() {
        let t = Throttle::new();
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for ms in [1, 10, 500, 999] {
            assert_eq!(t.admit(t0 + Duration::from_millis(ms)), None, "{ms}");
        }
        assert_eq!(t.admit(t0 + Duration::from_millis(1000)), Some(4));
        assert_eq!(t.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.admit(t0 + Duration::from_millis(5000)), Some(1));
        assert_eq!(t.admit(t0 + Duration::from_millis(7000)), Some(0));
        assert_eq!(left_out_note(0), "");
        assert!(left_out_note(3).contains("3 more"));
    }
}

//! Reconnect back-off, shared by every store of the process that uses the
//! same URL and access.
//!
//! Attempts back off from 200 ms, doubling to 5 s, after consecutive failed
//! attempts or after a call that got no answer at all. The state is
//! process-wide, keyed by the redacted URL and the access mode, not kept in
//! the store: the decision a reader would question. A caller that throws a
//! failing store away and opens a new one (`table-mailtable` does) must not
//! bypass the wait, or a server that is down would be hammered once per
//! lookup and every lookup would wait for a full connect timeout. Inside
//! the window a call answers `Unavailable` at once.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wait after the first failed attempt; doubles with each further one.
pub(super) const FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
pub(super) const MAX: Duration = Duration::from_secs(5);

struct Entry {
    failures: u32,
    not_before: Instant,
    last: String,
}

/// Keyed by the redacted URL and the access mode.
static STATE: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

fn state() -> std::sync::MutexGuard<'static, BTreeMap<String, Entry>> {
    // A panic elsewhere cannot leave this map inconsistent.
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The wait after `failures` consecutive failed attempts.
pub(super) fn delay(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (FIRST * (1u32 << shift)).min(MAX)
}

/// May we try to connect now? Inside the window after a failed attempt:
/// no, and here is why. Otherwise the caller claims the attempt: other
/// callers wait for the next window meanwhile, so a failing server gets
/// at most one attempt per window from this process.
pub(super) fn claim(key: &str, now: Instant) -> Result<(), String> {
    let mut map = state();
    let Some(e) = map.get_mut(key) else {
        return Ok(());
    };
    if now < e.not_before {
        let left = e.not_before - now;
        return Err(format!(
            "{} (next connection attempt in {} ms)",
            e.last,
            left.as_millis().max(1)
        ));
    }
    e.not_before = now + delay(e.failures);
    Ok(())
}

/// An attempt failed.
pub(super) fn failed(key: &str, now: Instant, why: &str) {
    let mut map = state();
    let e = map.entry(key.to_string()).or_insert(Entry {
        failures: 0,
        not_before: now,
        last: String::new(),
    });
    e.failures = e.failures.saturating_add(1);
    e.not_before = now + delay(e.failures);
    e.last = why.to_string();
}

/// An attempt succeeded; returns whether earlier ones had failed.
pub(super) fn succeeded(key: &str) -> bool {
    state().remove(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_cap() {
        assert_eq!(delay(1), Duration::from_millis(200));
        assert_eq!(delay(2), Duration::from_millis(400));
        assert_eq!(delay(4), Duration::from_millis(1600));
        assert_eq!(delay(6), MAX);
        assert_eq!(delay(1000), MAX);
    }

    #[test]
    fn backoff_window_answers_at_once() {
        let key = "postgresql://test-window/db#ro";
        let t0 = Instant::now();
        assert!(claim(key, t0).is_ok());
        failed(key, t0, "cannot connect to x: refused");
        let why = claim(key, t0 + Duration::from_millis(50)).unwrap_err();
        assert!(why.starts_with("cannot connect to x: refused (next connection attempt in "));
        // After the window: one caller gets the attempt, the next waits.
        assert!(claim(key, t0 + Duration::from_millis(250)).is_ok());
        assert!(claim(key, t0 + Duration::from_millis(260)).is_err());
        failed(key, t0 + Duration::from_millis(300), "again");
        assert!(claim(key, t0 + Duration::from_millis(650)).is_err());
        assert!(claim(key, t0 + Duration::from_millis(701)).is_ok());
        assert!(succeeded(key));
        assert!(claim(key, t0).is_ok());
        assert!(!succeeded(key));
    }
}

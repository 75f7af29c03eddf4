//! Ctrl-C (SIGINT), SIGTERM and SIGHUP while a write transaction is open.
//!
//! Killed inside a transaction, the CLI left SQLite's journal behind, hot:
//! the data was safe (the next writer rolls it back), but readers that may
//! not write, as the daemons are installed, cannot roll it back and fail
//! every lookup not in their cache until a write as root (a review saw
//! this after Ctrl-C in a long `import`). While a write runs, such a signal
//! is only noted; the write checks for it ([`check`]) and, when it came,
//! rolls back and says so, so the journal is gone before the process ends.
//! A signal that comes after the last check (the commit is done) is
//! delivered again once the transaction is over ([`Deferred`]'s drop).

use crate::error::CliError;
use mailtable_core::StoreError;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signal noted while a write runs, 0 for none.
static NOTED: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn note(sig: libc::c_int) {
    NOTED.store(sig, Ordering::Relaxed);
}

/// The signals noted instead of acted on, until dropped.
struct Deferred {
    previous: Vec<(Signal, SigAction)>,
}

/// Whether a signal was noted and not yet acted on: a lock wait gives up
/// ([`mailtable_core::store::watch::give_up_waiting_when`]).
fn pending() -> bool {
    NOTED.load(Ordering::Relaxed) != 0
}

/// Make every lock wait of this process end once a signal is noted
/// (Ctrl-C while a write waits for another writer's lock: within a sleep
/// step, not at `query_timeout_ms`). Before any database is opened: a
/// connection takes its busy handler when it opens.
pub(crate) fn cut_lock_waits() {
    mailtable_core::store::watch::give_up_waiting_when(pending);
}

/// `f` with the signals deferred ([`defer`]), its failure after a signal
/// reported as the interruption ([`or_interrupted`]): a write's whole
/// life, from opening to commit or rollback.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, CliError>) -> Result<T, CliError> {
    // Declared first, dropped last: after the rollback or commit.
    let _deferred = defer();
    or_interrupted(f())
}

/// Note the signals instead of dying of them, until the result is dropped.
fn defer() -> Deferred {
    // SA_RESTART: SQLite's reads and writes go on where they were.
    let action = SigAction::new(
        SigHandler::Handler(note),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut previous = Vec::new();
    for s in SIGNALS {
        // SAFETY: `note` only stores to an atomic, which is
        // async-signal-safe.
        let Ok(old) = (unsafe { signal::sigaction(s, &action) }) else {
            continue;
        };
        if old.handler() == SigHandler::SigIgn {
            // Ignored as the process started (`nohup`, a job a script
            // runs in the background): it stays ignored.
            // SAFETY: the action that was in place.
            let _ = unsafe { signal::sigaction(s, &old) };
        } else {
            previous.push((s, old));
        }
    }
    Deferred { previous }
}

/// An error when one of the signals came: the caller rolls back.
pub(crate) fn check() -> Result<(), CliError> {
    Ok(stopped()?)
}

/// `result`, or, when it failed after a signal came, the interruption
/// itself: a lock wait it cut short, or any failure on the way out, is not
/// what the admin should read. The transaction is rolled back by then.
fn or_interrupted<T>(result: Result<T, CliError>) -> Result<T, CliError> {
    match result {
        Err(e) => check().and(Err(e)),
        ok => ok,
    }
}

/// [`check`] for the loops that return a store's error (the import's
/// check and verification of every address).
pub(crate) fn stopped() -> Result<(), StoreError> {
    match NOTED.swap(0, Ordering::Relaxed) {
        0 => Ok(()),
        sig => {
            let name = Signal::try_from(sig)
                .map(Signal::as_str)
                .unwrap_or("a signal");
            Err(StoreError::Unavailable(format!(
                "interrupted by {name}: nothing was changed"
            )))
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        for (s, old) in &self.previous {
            // SAFETY: the action in place before `defer`.
            let _ = unsafe { signal::sigaction(*s, old) };
        }
        // One that came after the last check: as it would have been.
        if let Ok(sig) = Signal::try_from(NOTED.swap(0, Ordering::Relaxed)) {
            let _ = signal::raise(sig);
        }
    }
}

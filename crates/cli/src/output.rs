//! The commands' standard output, written without ever panicking.
//!
//! `println!` panics when stdout cannot be written (a full disk under a
//! script's log file, a closed descriptor): exit 101 and a Rust message,
//! and for a write command after its commit, so a script read a failure
//! for a change that was made and, run again, was told the mailbox
//! already exists. Here the first failed write is kept, the rest of the
//! output dropped, and [`settle`] decides what the command's result is:
//! a change that was committed stays done (the lost report is said on
//! stderr); a command that only reads fails, since its output was its
//! result (exit 75: nothing was changed, the disk may have room later).
//!
//! A reader that went away (`mailtable user list | head`) ends the process
//! by SIGPIPE before any write fails (see `main`); this is for the rest.

use crate::error::CliError;
use mailtable_core::exit::Exit;
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The first write to stdout that failed.
static FAILED: Mutex<Option<io::Error>> = Mutex::new(None);

/// A write transaction of this command was committed.
static CHANGED: AtomicBool = AtomicBool::new(false);

/// A line on stdout, as `println!` writes it, minus the panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use say;

/// `text` on stdout as it is (for output made whole first).
pub(crate) fn write(text: fmt::Arguments<'_>) {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    if failed.is_none() {
        if let Err(e) = io::stdout().lock().write_fmt(text) {
            *failed = Some(e);
        }
    }
}

/// Keep `e`, a failed write to stdout made elsewhere (a list's own
/// buffer), as if made here.
pub(crate) fn failed(e: io::Error) {
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    failed.get_or_insert(e);
}

/// Note that a write transaction was committed: from here on, the command
/// has done what it was asked, whatever happens to its report.
pub(crate) fn changed() {
    CHANGED.store(true, Ordering::Relaxed);
}

/// The command's result once its output is flushed: `result` as it is, or,
/// when stdout could not take the output of a command that changed
/// nothing, a temporary failure saying so.
pub(crate) fn settle(result: Result<Exit, CliError>) -> Result<Exit, CliError> {
    if let Err(e) = io::stdout().lock().flush() {
        failed(e);
    }
    let unwritten = FAILED.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (result, unwritten) {
        (Ok(exit), Some(e)) if CHANGED.load(Ordering::Relaxed) => {
            eprintln!("mailtable: the change was made, but its report could not be written to stdout: {e}");
            Ok(exit)
        }
        (Ok(_), Some(e)) => Err(CliError::temp(format!(
            "cannot write to stdout: {e}; nothing was changed"
        ))),
        (result, _) => result,
    }
}

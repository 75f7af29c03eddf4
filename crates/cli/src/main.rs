//! `mailtable`: the admin CLI. Thin: parse arguments, load the config, run
//! the command, turn its error into one line on stderr and an exit code from
//! the table in `mailtable_core::exit`.

mod args;
mod cmd;
mod ctx;
mod doctor;
mod error;
mod import;
mod interrupt;
mod output;
mod quota;
mod secret_input;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    interrupt::cut_lock_waits();
    let cli = args::Cli::parse();
    mailtable_core::logging::init("warn");
    match output::settle(cmd::run(cli)) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            eprintln!("mailtable: {e}");
            ExitCode::from(e.exit().code())
        }
    }
}

/// `mailtable user list | head` must end like any Unix tool when `head`
/// has read enough: killed by SIGPIPE, quietly. Rust ignores SIGPIPE, so
/// the next `println!` would instead panic with a backtrace and exit 101.
/// A command killed this way mid-write loses nothing: a write transaction
/// not yet committed is rolled back by the database.
fn quiet_on_closed_pipe() {
    // SAFETY: called first in `main`, before any other thread exists;
    // SIG_DFL is a valid disposition for SIGPIPE (signal(2)).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

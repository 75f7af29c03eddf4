//! `dovecot-mailtable`: placeholder entry point.
//!
//! The subcommands (`checkpassword`, `serve` for the dict socket and the
//! HTTP API) are wired to the mailtable store once `mailtable-core` is
//! ready; the protocol code they will drive lives in the library
//! (`dovecot_mailtable::{checkpassword, dict, http}`).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("dovecot-mailtable: not wired to the store yet");
    ExitCode::from(111)
}

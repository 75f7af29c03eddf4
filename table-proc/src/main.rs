//! `table-mailtable`: the OpenSMTPD table backend.
//!
//! smtpd runs it as `table-mailtable CONFIG` (argv[0] is the table name,
//! argv[1] the part after `mailtable:` in `table NAME mailtable:/etc/mail/
//! mailtable.toml`) with the socket on fd 0 (and fd 1 from 7.x), and keeps
//! stderr for logs (`fork_proc_backend` in `usr.sbin/smtpd/smtpd.c`): smtpd's
//! own under `smtpd -d`, `/dev/null` when smtpd runs as a daemon, where the
//! table logs to syslog instead ([`syslog`]).
//!
//! It exits only at EOF: smtpd dies with its tables, so even a broken config
//! is served (every answer `error`, smtpd tempfails and logs why) rather than
//! reported by exiting, and stray signals are ignored ([`signals`]).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use mailtable_core::Config;
use table_mailtable::answer::Tables;
use table_mailtable::channel::{input_pending, smtpd_channel};
use table_mailtable::{serve_with_probe, signals, syslog};

fn main() -> ExitCode {
    signals::ignore_stray_signals();
    // Lookups run on this thread, the one that opens the store: a SQLite
    // file's changes can then be signalled to it instead of checked for
    // at every lookup (mailtable_core::store::watch).
    mailtable_core::store::watch::enable();
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-h" | "--help")) {
        println!(
            "usage: table-mailtable [CONFIG]\n\nRun by smtpd for `table NAME mailtable:CONFIG`; \
             speaks the smtpd table protocols on fd 0. Logs go to stderr, or to syslog (facility mail) when stderr is /dev/null (MAILTABLE_LOG=debug for more)."
        );
        return ExitCode::SUCCESS;
    }
    if matches!(arg.as_deref(), Some("-V" | "--version")) {
        println!("table-mailtable {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    // smtpd as a daemon leaves the table's stderr on /dev/null: syslog
    // then, where smtpd logs too.
    if syslog::stderr_discarded() {
        syslog::init("info");
    } else {
        mailtable_core::logging::init("info");
    }
    let path = arg.map(PathBuf::from);
    let mut tables =
        Tables::loading(move || Config::locate(path.as_deref()).map_err(|e| e.to_string()));
    let mut run = || -> std::io::Result<()> {
        let (reader, writer) = smtpd_channel()?;
        let probe = reader.try_clone()?;
        serve_with_probe(reader, writer, &mut tables, move || {
            input_pending(probe.as_fd())
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("smtpd channel failed: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `dovecot-mailtable`: Dovecot's passdb and userdb from the mailtable
//! database.
//!
//! ```text
//! dovecot-mailtable [-c CONFIG] checkpassword [REPLY-PROG...]   # Dovecot 2.3 checkpassword
//! dovecot-mailtable [-c CONFIG] serve                          # dict socket and HTTP API
//! ```
//!
//! Without `-c`, `/etc/mail/mailtable.toml` is read when it exists, else the
//! built-in defaults apply (the same rule as the `mailtable` CLI).
//!
//! # Exit codes
//!
//! `checkpassword` uses Dovecot's table (reference §1.7,
//! core@2.3.19.1:src/auth/db-checkpassword.c); anything that is not a clear
//! answer about the user, including a bad config, a database that cannot be
//! opened or a usage error, is a temporary failure:
//!
//! | code | verify (plaintext login) | lookup (`AUTHORIZED=1`) |
//! |---|---|---|
//! | 0 | password correct, fields on fd 4 | — |
//! | 1 | wrong password, unknown user, disabled mailbox | — |
//! | 2 | — | user found, fields on fd 4 |
//! | 3 | — | unknown user |
//! | 111 | temporary failure | temporary failure |
//!
//! `serve`:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | stopped by SIGTERM or SIGINT, sockets removed |
//! | 2 | usage or config error (e.g. a non-loopback `http_listen`): fix the config |
//! | 75 | could not set up a socket or thread (`EX_TEMPFAIL`): retry |
//!
//! `REPLY-PROG` (Dovecot appends the path of `checkpassword-reply`) is
//! accepted and not run: the reply goes to fd 4 directly, which Dovecot
//! reads the same way (reference §1.6, way B; see `src/checkpassword.rs`).
//! Nothing here ever prints a password.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dovecot_mailtable::backend::{checkpassword_answer, Directory};
use dovecot_mailtable::checkpassword::{self, Mode, Outcome, EXIT_TEMPFAIL};
use dovecot_mailtable::serve::{self, ServeError};
use mailtable_core::store::{self, Access, OpenOptions};
use mailtable_core::Config;

/// `serve`: stopped by a signal.
const SERVE_OK: u8 = 0;
/// `serve`: usage or config error.
const SERVE_USAGE: u8 = 2;
/// `serve`: could not set up sockets or threads.
const SERVE_TEMPFAIL: u8 = 75;

/// The fd Dovecot writes the request to.
const REQUEST_FD: RawFd = 3;
/// The fd Dovecot reads the reply from.
const REPLY_FD: RawFd = 4;

#[derive(Parser)]
#[command(
    name = "dovecot-mailtable",
    version,
    about = "Dovecot passdb/userdb from the mailtable database",
    after_help = "checkpassword exits 0/1 (verify), 2/3 (lookup), 111 (temporary failure); \
                  serve exits 0 on SIGTERM, 2 on a config error, 75 when sockets cannot be set up."
)]
struct Cli {
    /// Config file [default: /etc/mail/mailtable.toml if it exists]
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dovecot 2.3 `driver = checkpassword`: request on fd 3, reply on fd 4.
    Checkpassword {
        /// Dovecot's checkpassword-reply path (appended by Dovecot; not run).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "REPLY-PROG"
        )]
        reply: Vec<OsString>,
    },
    /// The dict proxy server (Dovecot 2.3) and the HTTP API for the Lua
    /// script (2.3 and 2.4), as configured in [serve].
    Serve,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                // Run by Dovecot, a usage error must be a temporary failure,
                // never exit 1 ("wrong password") or 2 ("found").
                _ if std::env::args().any(|a| a == "checkpassword") => EXIT_TEMPFAIL as u8,
                _ => SERVE_USAGE,
            });
        }
    };
    let checkpassword = matches!(cli.command, Command::Checkpassword { .. });
    mailtable_core::logging::init(if checkpassword { "warn" } else { "info" });
    let config = Config::locate(cli.config.as_deref()).map_err(|e| e.to_string());
    match cli.command {
        Command::Checkpassword { .. } => {
            let code = run_checkpassword(config);
            ExitCode::from(u8::try_from(code).unwrap_or(EXIT_TEMPFAIL as u8))
        }
        Command::Serve => {
            let config = match config {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(SERVE_USAGE);
                }
            };
            match serve::run(config) {
                Ok(signal) => {
                    tracing::info!("stopped by {signal}");
                    ExitCode::from(SERVE_OK)
                }
                Err(e @ ServeError::Config(_)) => {
                    tracing::error!("{e}");
                    ExitCode::from(SERVE_USAGE)
                }
                Err(e @ ServeError::Io { .. }) => {
                    tracing::error!("{e}");
                    ExitCode::from(SERVE_TEMPFAIL)
                }
            }
        }
    }
}

/// Takes ownership of an inherited descriptor, if it is open.
fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor table.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    // SAFETY: the descriptor is open and nothing else in this process uses
    // it: Dovecot set it up for us (fd 3 request, fd 4 reply).
    open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn run_checkpassword(config: Result<Config, String>) -> i32 {
    let mode = Mode::from_env(|k: &str| std::env::var_os(k));
    let Some(request_fd) = inherited_fd(REQUEST_FD) else {
        tracing::error!("checkpassword: fd 3 is not open; this command is run by Dovecot's checkpassword passdb/userdb");
        return EXIT_TEMPFAIL;
    };
    // Taken now, before anything opens descriptors of its own: without
    // Dovecot's fd 4 the PostgreSQL client's runtime gets that number,
    // and writing the reply there, then closing it, broke the runtime.
    let reply_fd = inherited_fd(REPLY_FD);
    let input = match checkpassword::read_input(File::from(request_fd)) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("checkpassword: cannot read fd 3: {e}");
            return EXIT_TEMPFAIL;
        }
    };
    let request = match checkpassword::parse_request(&input) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("checkpassword: {e}");
            return e.outcome().exit_code(&mode);
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("checkpassword: {e}");
            return EXIT_TEMPFAIL;
        }
    };
    let opened = config
        .database_url()
        .map_err(|e| e.to_string())
        .and_then(|url| {
            let options = OpenOptions {
                access: Access::ReadOnly,
                timeout: config.timeout(),
            };
            store::open(&url, &options).map_err(|e| e.to_string())
        });
    let mut store = match opened {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("checkpassword: {e}");
            return EXIT_TEMPFAIL;
        }
    };
    let directory = Directory::new(config);
    let (outcome, fields) = checkpassword_answer(&directory, store.as_mut(), &mode, &request);
    if outcome == Outcome::Success {
        let reply = match checkpassword::write_reply(&fields) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("checkpassword: {e}");
                return EXIT_TEMPFAIL;
            }
        };
        let Some(reply_fd) = reply_fd else {
            tracing::error!("checkpassword: fd 4 is not open; cannot reply");
            return EXIT_TEMPFAIL;
        };
        let mut out = File::from(reply_fd);
        if let Err(e) = out.write_all(&reply).and_then(|()| out.flush()) {
            tracing::error!("checkpassword: cannot write fd 4: {e}");
            return EXIT_TEMPFAIL;
        }
    }
    outcome.exit_code(&mode)
}

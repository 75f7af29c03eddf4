//! The one logging set-up of the three binaries.
//!
//! Every binary logs to stderr, never stdout: from OpenSMTPD 7.x the
//! table's stdout is the protocol channel (`fork_proc_backend` in
//! `usr.sbin/smtpd/smtpd.c`), Dovecot copies a checkpassword child's stderr
//! into its own log, and systemd puts `serve`'s into the journal. No colour
//! codes, since none of those readers is a terminal. `MAILTABLE_LOG` (an
//! `EnvFilter` directive such as `debug` or `mailtable_core=trace`)
//! overrides each binary's default level.

/// The environment variable that sets the log filter.
pub const ENV: &str = "MAILTABLE_LOG";

/// Install the stderr logger; `default` is the filter when [`ENV`] is unset
/// or invalid (`"info"` for daemons, `"warn"` for the CLI and helpers run
/// once per request).
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second call (tests) keeps the first logger; that is not an error.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

//! The built `table-mailtable` survives the signals a host sends around
//! (log rotation's USR1, stray ALRM, real-time signals): smtpd exits when
//! one of its tables does. Played over a socketpair on fd 0 with the text
//! protocol, as smtpd 7.6 does.

mod common;
use common::Table;
use std::path::Path;

#[test]
fn stray_signals_do_not_end_the_table() {
    // A config that does not exist: every answer is an error, which is
    // all this test needs (an answer at all).
    let mut t = Table::start(Path::new("/nonexistent/mailtable.toml"));
    let signals = [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGHUP,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGPIPE,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGRTMIN(),
        libc::SIGRTMAX(),
    ];
    for sig in signals {
        t.signal(sig);
        let answer = t.alias("hugo@barrera.io");
        assert!(
            answer.starts_with("error"),
            "after signal {sig}: {answer:?}"
        );
    }
    t.end();
}

//! Signals that would end the table process, ignored: smtpd dies with its
//! tables (the lookup process exits on the broken pipe: "lka socket
//! closed"), so a stray `kill -USR1`, as log-rotation scripts send to
//! whatever they find, must not end it.
//!
//! smtpd's own children inherit HUP, INT, QUIT and TERM ignored already
//! (a disposition of `SIG_IGN` survives exec); every other signal whose
//! default action ends a process was fatal (signal(7)). Faults raised by
//! the process itself (SEGV, BUS, ILL, FPE, ABRT, TRAP, SYS) keep their
//! default: ignoring them would spin on the faulting instruction. KILL and
//! STOP cannot be ignored. The process still ends at EOF on its socket,
//! which is how smtpd stops it.

/// The signals set to `SIG_IGN`: those that end or stop a process by
/// default and are sent from outside (signal(7)), and every real-time
/// signal (default: end the process).
fn stray_signals() -> impl Iterator<Item = libc::c_int> {
    const FIXED: [libc::c_int; 18] = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGPIPE,
        libc::SIGVTALRM,
        libc::SIGPROF,
        // Counted instead once the database watch is enabled (main).
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGXCPU,
        // Ignored, a write past RLIMIT_FSIZE fails with EFBIG instead.
        libc::SIGXFSZ,
        libc::SIGSTKFLT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ];
    FIXED.into_iter().chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
}

/// Ignore every stray signal (the list in `stray_signals`). Call first
/// thing in `main`, before any thread exists. A signal that cannot be
/// ignored is skipped: nothing about it is worth failing the table for.
pub fn ignore_stray_signals() {
    for sig in stray_signals() {
        // SAFETY: SIG_IGN installs no handler code, and `sig` is a valid
        // signal number (a constant of libc, or within SIGRTMIN..=SIGRTMAX);
        // an error (EINVAL) changes nothing.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_kill_are_left_alone() {
        let set: Vec<libc::c_int> = stray_signals().collect();
        for keep in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGABRT,
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGCHLD,
        ] {
            assert!(!set.contains(&keep), "{keep}");
        }
        assert!(set.contains(&libc::SIGUSR1));
        assert!(set.contains(&libc::SIGRTMAX()));
    }
}

//! Exit codes, in one place, for every binary. Scripts may rely on them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | not found (`resolve`, `senders`, and removing what is not there); `doctor` found a problem |
//! | 2 | usage error or bad input (invalid address, conflict, bad config, not a database, no users table, schema too new) |
//! | 75 | temporary failure (`EX_TEMPFAIL` of sysexits.h): database locked, unreachable, timed out; retry later |
//!
//! `dovecot-mailtable checkpassword` follows Dovecot's checkpassword table
//! instead (1, 2, 3, 111), because Dovecot reads those codes; see that crate.

use crate::store::StoreError;

/// Process exit codes of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Ok,
    /// 1: the thing asked about does not exist.
    NotFound,
    /// 1: `doctor` found at least one problem (its report says which).
    Problems,
    /// 2: usage error or bad input; nothing was changed.
    Usage,
    /// 75: temporary failure; nothing was changed, retry later.
    TempFail,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::NotFound | Exit::Problems => 1,
            Exit::Usage => 2,
            Exit::TempFail => 75,
        }
    }

    /// The code for a storage error: temporary problems are 75, problems
    /// with what the admin pointed us at are 2.
    pub fn for_store(e: &StoreError) -> Exit {
        match e {
            StoreError::Unavailable(_) | StoreError::Other(_) => Exit::TempFail,
            StoreError::NotADatabase(_)
            | StoreError::Schema(_)
            | StoreError::Conflict(_)
            | StoreError::Config(_) => Exit::Usage,
        }
    }
}

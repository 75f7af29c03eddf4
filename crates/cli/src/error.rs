//! The CLI's error: one line for the admin, and the exit code it maps to
//! (the table lives in `mailtable_core::exit`).

use mailtable_core::exit::Exit;
use mailtable_core::{AddressError, ResolveError, StoreError};
use std::fmt;

/// A failed command.
#[derive(Debug)]
pub struct CliError {
    message: String,
    exit: Exit,
}

impl CliError {
    /// Bad input or usage (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            exit: Exit::Usage,
        }
    }

    /// A temporary failure (exit 75): nothing was changed, retry later.
    pub fn temp(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            exit: Exit::TempFail,
        }
    }

    /// Not found (exit 1).
    pub fn not_found(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            exit: Exit::NotFound,
        }
    }

    /// The same failure, its message preceded by `what` (`what: message`),
    /// its exit code kept: a source that cannot be read for a while stays
    /// a temporary failure however it is worded.
    pub fn context(self, what: impl fmt::Display) -> CliError {
        CliError {
            message: format!("{what}: {}", self.message),
            exit: self.exit,
        }
    }

    /// The exit code.
    pub fn exit(&self) -> Exit {
        self.exit
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError {
            exit: Exit::for_store(&e),
            message: e.to_string(),
        }
    }
}

impl From<AddressError> for CliError {
    fn from(e: AddressError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<ResolveError> for CliError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Store(s) => s.into(),
            // Loops, dangling targets and bad rows make smtpd tempfail too:
            // report the same.
            other => CliError {
                message: other.to_string(),
                exit: Exit::TempFail,
            },
        }
    }
}

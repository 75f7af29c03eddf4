//! Reading a password: from a terminal prompt without echo (asked twice), or
//! the first line of stdin with `--password-stdin`. Never from argv, where
//! every local user could read it in `ps`.

use crate::error::CliError;
use mailtable_core::Secret;
use std::io::{BufRead, IsTerminal};

/// Read a new password for `what`.
pub fn read(password_stdin: bool, what: &str) -> Result<Secret, CliError> {
    if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("cannot read the password from stdin: {e}")))?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        let secret = Secret::new(pw);
        line.clear();
        if secret.expose().is_empty() {
            return Err(CliError::usage("empty password on stdin"));
        }
        return Ok(secret);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "no terminal to prompt for a password; use --password-stdin",
        ));
    }
    let first = Secret::new(
        rpassword::prompt_password(format!("Password for {what}: "))
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?,
    );
    let again = Secret::new(
        rpassword::prompt_password("Again: ")
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?,
    );
    if first != again {
        return Err(CliError::usage("the two passwords differ"));
    }
    Ok(first)
}

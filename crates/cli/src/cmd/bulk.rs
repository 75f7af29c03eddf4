//! `mailtable user add --from-file FILE|-`: many mailboxes at once, from
//! lines `address<TAB>hash` or `address<TAB>quota<TAB>hash`.
//!
//! The decisions a reader might question:
//! - **Hashes only.** The file is read by a script or moved between hosts;
//!   a cleartext password there would end up in backups and shell
//!   histories. A third field that is not a hash mailtable recognises and
//!   can check ([`PasswordHash::mailtable_checks`]) refuses the whole file, and the
//!   message names the line, never the field's text: it may well be a
//!   password.
//! - **All or nothing.** Every line is parsed and checked first (with its
//!   number in the error), then all rows are inserted in one transaction,
//!   so a refused file leaves the database exactly as it was and can simply
//!   be fixed and run again.

use super::user::insert_mailbox;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::say;
use mailtable_core::exit::Exit;
use mailtable_core::password::PasswordHash;
use mailtable_core::{delivery, Address};
use std::io::Read;
use std::path::Path;

/// One mailbox of the file.
struct Entry {
    line: usize,
    address: Address,
    quota: Option<String>,
    hash: PasswordHash,
}

/// `user add --from-file`.
pub(super) fn add(ctx: &Ctx, file: &Path, force: bool) -> Result<Exit, CliError> {
    let shown = if file == Path::new("-") {
        "stdin".to_string()
    } else {
        file.display().to_string()
    };
    let text = read(file).map_err(|e| CliError::usage(format!("cannot read {shown}: {e}")))?;
    let entries = parse(&text, ctx.resolver.delimiter)
        .map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
    if entries.is_empty() {
        return Err(CliError::usage(format!("{shown} lists no mailbox")));
    }
    let broken = ctx.write(|s| {
        let domains: Vec<_> = entries.iter().map(|e| e.address.domain()).collect();
        let arrival = super::guard::Arrival::before(&ctx.resolver, s, &domains)?;
        for e in &entries {
            // The line for context, the exit code of the failure kept: a
            // database that is down is a temporary failure (75), not bad
            // input.
            insert_mailbox(s, &e.address, e.hash.clone(), e.quota.clone())
                .map_err(|err| err.context(format_args!("{shown}: line {}", e.line)))?;
        }
        arrival.refuse(&ctx.resolver, s, force)
    })?;
    for e in &entries {
        say!(
            "added mailbox {} (delivery user {})",
            e.address,
            delivery::encode(&e.address)
        );
    }
    say!("added {} mailbox(es) from {shown}", entries.len());
    super::guard::warn_arrival(&broken);
    Ok(Exit::Ok)
}

fn read(file: &Path) -> std::io::Result<String> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file)
    }
}

/// Every line, checked; the first problem as `line N: why`.
fn parse(text: &str, delimiter: char) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = Vec::new();
    // The line each address is on, so that finding a repeated one is a
    // lookup (a scan per line made 60,000 lines take 15 s).
    let mut lines: std::collections::HashMap<Address, usize> = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        if l.trim().is_empty() || l.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split('\t').collect();
        let (addr, quota, hash) = match fields.as_slice() {
            [a, h] => (*a, None, *h),
            [a, q, h] => (*a, Some(*q), *h),
            _ => {
                return Err(format!(
                    "line {line}: expected address<TAB>hash or address<TAB>quota<TAB>hash, \
                     found {} field(s)",
                    fields.len()
                ))
            }
        };
        // A field that is not what its place asks for is not shown either:
        // a line with its fields in the wrong order (`password<TAB>hash`)
        // puts a secret there. Only text that parsed as an address is.
        let parsed = Address::parse(addr.trim()).map_err(|e| {
            format!(
                "line {line}: the first field is not an address ({}; the field is not \
                 shown, it may be a password)",
                e.reason()
            )
        })?;
        let address =
            super::user::as_mailbox(parsed, delimiter).map_err(|e| format!("line {line}: {e}"))?;
        let quota = match quota {
            Some(q) => crate::quota::parse(q.trim()).map_err(|_| {
                format!(
                    "line {line}: the second field of three is not a quota (a size such as \
                     500M, 2G, 1T, a byte count, or none; the field is not shown, it may be a \
                     password)"
                )
            })?,
            None => None,
        };
        let hash = PasswordHash::new(hash.trim());
        // Never the field itself in the message: it may be a password. A
        // hash only Dovecot's dict mode could check (yescrypt, PBKDF2)
        // would fail every login through checkpassword and Lua.
        if !hash.mailtable_checks() || hash.is_cleartext() {
            return Err(format!(
                "line {line}: the last field is not a password hash mailtable recognises \
                 (bcrypt, SHA-crypt, Argon2, MD5-crypt, Dovecot's salted digests, optionally \
                 with a {{SCHEME}} prefix); \
                 cleartext passwords are refused"
            ));
        }
        if let Some(first) = lines.insert(address.clone(), line) {
            return Err(format!("line {line}: {address} is already on line {first}"));
        }
        out.push(Entry {
            line,
            address,
            quota,
            hash,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BCRYPT: &str = "$2b$04$9rERsNbp0S1V9T8wbr0UXOvPcf.X7zDMJgYH.ZPhHx5wHfXDkBpBi";

    #[test]
    fn both_line_forms_comments_and_blank_lines() {
        let text = format!(
            "# mailboxes\n\nHugo@Barrera.io\t{BCRYPT}\nann@ex.org\t2g\t{{BLF-CRYPT}}{BCRYPT}\r\n"
        );
        let e = parse(&text, '+').unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].line, e[0].address.to_string()),
            (3, "hugo@barrera.io".into())
        );
        assert_eq!(e[0].quota, None);
        assert_eq!((e[1].line, e[1].quota.as_deref()), (4, Some("2G")));
    }

    #[test]
    fn refusals_name_the_line_and_never_the_cleartext() {
        let cases = [
            (
                format!("a@ex.org\t{BCRYPT}\nb@ex.org\thunter2secret\n"),
                "line 2: the last field is not a password hash",
            ),
            (
                format!("a@ex.org\t{BCRYPT}\nb@ex.org\t{{PLAIN}}hunter2secret\n"),
                "line 2: the last field",
            ),
            (
                format!("a@ex.org {BCRYPT}\n"),
                "line 1: expected address<TAB>hash",
            ),
            // A hash only Dovecot's dict mode could check (README: hashes
            // mailtable checks), made up or real.
            (
                format!("a@ex.org\t{BCRYPT}\nb@ex.org\t$y$garbage\n"),
                "line 2: the last field is not a password hash",
            ),
            (
                "b@ex.org\t$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4\n"
                    .to_string(),
                "line 1: the last field is not a password hash",
            ),
            (
                "b@ex.org\t{PBKDF2}$1$c2FsdA$1000$abcdef0123\n".to_string(),
                "line 1: the last field is not a password hash",
            ),
            (
                format!("not an address\t{BCRYPT}\n"),
                "line 1: the first field is not an address (expected local@domain;",
            ),
            // Fields in the wrong place: a password where the address or
            // the quota goes, a hash where the quota goes.
            (
                format!("hunter2secret\t{BCRYPT}\n"),
                "line 1: the first field is not an address",
            ),
            (
                "b@ex.org\thunter2secret\t2G\n".to_string(),
                "line 1: the second field of three is not a quota",
            ),
            (
                format!("b@ex.org\t{BCRYPT}\t\n"),
                "line 1: the second field of three is not a quota",
            ),
            (
                format!("hunter2 secret@ex.org\t{BCRYPT}\n"),
                "line 1: the first field is not an address (a character that is not allowed",
            ),
            (
                format!("a+b@ex.org\t{BCRYPT}\n"),
                "line 1: a+b@ex.org cannot be a mailbox: `+` is the tag delimiter",
            ),
            (
                format!("a@ex.org\t10%\t{BCRYPT}\n"),
                "line 1: the second field of three is not a quota (a size such as 500M",
            ),
            (
                format!("a@ex.org\t{BCRYPT}\n\nA@ex.org\t{BCRYPT}\n"),
                "line 3: a@ex.org is already on line 1",
            ),
            (
                "a@ex.org\t$2b$04$short\n".to_string(),
                "line 1: the last field",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text, '+').err().unwrap();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
            assert!(!e.contains("$2b$"), "{e}");
        }
    }
}

//! One row of the `users` table and what kind of entry it is.
//!
//! The table has no `kind` column: the article's schema tells entries apart
//! by their shape alone (a password makes a mailbox, `%` in `username` a
//! wildcard, `%` in `mailbox` a substitution). [`Row::kind`] is the one place
//! that reads that shape; everything else matches on [`RowKind`] instead of
//! testing strings, so a new kind of entry is a compile error everywhere it
//! matters rather than a silent miss.

use crate::password::PasswordHash;
use std::fmt;

/// One row of `users(username, domain, mailbox, password)` plus the optional
/// columns added by `migrate` (defaults when the database lacks them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Local part or pattern (`hugo`, `sales-%`, `%`), as stored.
    pub username: String,
    /// Domain, as stored.
    pub domain: String,
    /// Target address; `%` is replaced by what the username's `%` matched.
    pub mailbox: String,
    /// `Some` makes this a mailbox row (the address can log in).
    pub password: Option<PasswordHash>,
    /// `false`: login refused, mail still accepted (column `active`).
    pub active: bool,
    /// Dovecot quota such as `2G` (column `quota`).
    pub quota: Option<String>,
}

/// What a row is, read from its shape (DESIGN.md, "The data model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowKind {
    /// `hugo@barrera.io` with a password: can log in, mail is stored for it.
    Mailbox,
    /// `contact@example.com -> hugo@barrera.io`: no password, no wildcard.
    Alias,
    /// `sales-%@example.com -> ...`: a wildcard with literal text.
    Pattern,
    /// `%@barrera.io -> hugo@barrera.io`: the domain's catch-all.
    CatchAll,
    /// `%@old.org -> %@new.org`: a catch-all whose target keeps the local part.
    DomainAlias,
}

impl RowKind {
    /// The name used in listings and JSON (`mailbox`, `alias`, `pattern`,
    /// `catch-all`, `domain-alias`).
    pub fn name(self) -> &'static str {
        match self {
            RowKind::Mailbox => "mailbox",
            RowKind::Alias => "alias",
            RowKind::Pattern => "pattern",
            RowKind::CatchAll => "catch-all",
            RowKind::DomainAlias => "domain-alias",
        }
    }

    /// Whether rows of this kind match more than one address.
    pub fn is_wildcard(self) -> bool {
        matches!(
            self,
            RowKind::Pattern | RowKind::CatchAll | RowKind::DomainAlias
        )
    }
}

impl fmt::Display for RowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Row {
    /// What this row is. A wildcard row is never a mailbox, even with a
    /// password: a login needs one concrete address.
    pub fn kind(&self) -> RowKind {
        if self.username == "%" {
            if self.has_template_target() {
                RowKind::DomainAlias
            } else {
                RowKind::CatchAll
            }
        } else if self.username.contains('%') {
            RowKind::Pattern
        } else if self.password.is_some() {
            RowKind::Mailbox
        } else {
            RowKind::Alias
        }
    }

    /// A mailbox row: the address can log in and mail is stored for it.
    pub fn is_mailbox(&self) -> bool {
        self.kind() == RowKind::Mailbox
    }

    /// Whether the target contains `%`, replaced by what the username's `%`
    /// matched (a domain alias, or a pattern that keeps part of the name).
    pub fn has_template_target(&self) -> bool {
        self.mailbox.contains('%')
    }

    /// `username@domain` as stored.
    pub fn address(&self) -> String {
        format!("{}@{}", self.username, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(username: &str, mailbox: &str, password: Option<&str>) -> Row {
        Row {
            username: username.into(),
            domain: "example.org".into(),
            mailbox: mailbox.into(),
            password: password.map(PasswordHash::new),
            active: true,
            quota: None,
        }
    }

    #[test]
    fn kinds_from_the_shape_of_a_row() {
        let cases = [
            (
                row("hugo", "hugo@example.org", Some("$2b$")),
                RowKind::Mailbox,
            ),
            (row("hugo", "hugo@example.org", Some("")), RowKind::Mailbox),
            (row("info", "hugo@example.org", None), RowKind::Alias),
            (row("sales-%", "bob@example.org", None), RowKind::Pattern),
            (row("sales-%", "%@other.org", None), RowKind::Pattern),
            (row("%", "hugo@example.org", None), RowKind::CatchAll),
            (row("%", "%@new.org", None), RowKind::DomainAlias),
            // A wildcard with a password is still a wildcard: nobody can log
            // in as `%@example.org`.
            (row("%", "x@example.org", Some("$2b$")), RowKind::CatchAll),
            (row("a%", "x@example.org", Some("$2b$")), RowKind::Pattern),
        ];
        for (r, want) in cases {
            assert_eq!(r.kind(), want, "{r:?}");
            assert_eq!(r.is_mailbox(), want == RowKind::Mailbox, "{r:?}");
            assert_eq!(r.kind().is_wildcard(), r.username.contains('%'), "{r:?}");
        }
        assert_eq!(RowKind::DomainAlias.to_string(), "domain-alias");
    }
}

//! `mailtable domain list` and `domain del`, and the `--domain` filter of
//! the other list commands. mailtable has no domain table: a domain is ours
//! because some row has it, so listing domains is a query over `users`, and
//! removing one removes its rows.
//!
//! The one decision a reader might question: the counts are of addresses,
//! not rows (an alias that fans out to three targets is one alias), counted
//! here from the rows by [`RowKind`] rather than by SQL, so that the one
//! reading of a row's shape stays in `Row::kind`. They are counted as the
//! rows come ([`Store::scan`](mailtable_core::Store::scan), ordered by
//! domain then username), so listing the domains of a million rows holds
//! one row and one domain's counts at a time.

use crate::args::ListArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::say;
use mailtable_core::exit::Exit;
use mailtable_core::store::{Access, Delete};
use mailtable_core::{Address, Domain, Row, RowKind};
use serde_json::json;
use std::collections::BTreeSet;

/// What a domain holds: distinct addresses of each kind, and its rows.
/// Fed the domain's rows in username order ([`Counts::add`]), so an
/// address is counted once per kind when its rows end.
#[derive(Default)]
struct Counts {
    mailboxes: usize,
    aliases: usize,
    catch_alls: usize,
    rows: usize,
    /// The username whose rows are being read, and the kinds seen so far
    /// among them (mailbox, alias, catch-all).
    user: Option<String>,
    seen: [bool; 3],
}

impl Counts {
    fn of(rows: &[Row]) -> Counts {
        let mut c = Counts::default();
        for r in rows {
            c.add(r);
        }
        c.end_user();
        c
    }

    /// One more row of the domain; rows of one username come together.
    fn add(&mut self, r: &Row) {
        if self.user.as_deref() != Some(r.username.as_str()) {
            self.end_user();
            self.user = Some(r.username.clone());
        }
        self.rows += 1;
        let kind = match r.kind() {
            RowKind::Mailbox => 0,
            RowKind::Alias | RowKind::Pattern => 1,
            RowKind::CatchAll | RowKind::DomainAlias => 2,
        };
        self.seen[kind] = true;
    }

    /// Count the address whose rows just ended, once per kind.
    fn end_user(&mut self) {
        let [mailbox, alias, catch_all] = std::mem::take(&mut self.seen);
        self.mailboxes += usize::from(mailbox);
        self.aliases += usize::from(alias);
        self.catch_alls += usize::from(catch_all);
        self.user = None;
    }

    fn text(&self) -> String {
        format!(
            "{} mailbox(es), {} alias(es), {} catch-all(s)",
            self.mailboxes, self.aliases, self.catch_alls
        )
    }
}

/// `mailtable domain list`: one line per domain, the name first.
pub(super) fn list(ctx: &Ctx, json: bool) -> Result<Exit, CliError> {
    let mut s = ctx.open(Access::ReadOnly)?;
    let mut out = super::listing::Listing::new(json);
    let mut print = |d: &str, mut c: Counts| {
        c.end_user();
        out.item(
            || format!("{d}\t{}\t{}\t{}", c.mailboxes, c.aliases, c.catch_alls),
            || {
                json!({
                    "domain": d,
                    "mailboxes": c.mailboxes,
                    "aliases": c.aliases,
                    "catch_alls": c.catch_alls,
                    "rows": c.rows,
                })
            },
        );
    };
    // The rows come ordered by domain: each domain's rows are one run.
    let mut current: Option<(String, Counts)> = None;
    s.scan(None, &mut |r| {
        if current.as_ref().is_none_or(|(d, _)| *d != r.domain) {
            if let Some((d, c)) = current.take() {
                print(&d, c);
            }
            current = Some((r.domain.clone(), Counts::default()));
        }
        if let Some((_, c)) = current.as_mut() {
            c.add(&r);
        }
    })?;
    if let Some((d, c)) = current.take() {
        print(&d, c);
    }
    out.finish()
}

/// `mailtable domain del DOMAIN [--force]`: every row of the domain, in one
/// transaction; without `--force` only says what it would remove.
pub(super) fn del(ctx: &Ctx, domain: &str, force: bool) -> Result<Exit, CliError> {
    let domain = Domain::parse(domain)?.to_string();
    let (counts, outside) = ctx.write(|s| {
        let rows = s.list(Some(&domain))?;
        if rows.is_empty() {
            return Err(CliError::not_found(format!("{domain} has no rows")));
        }
        let counts = Counts::of(&rows);
        if !force {
            return Err(CliError::usage(format!(
                "refused: {domain} has {} row(s): {}; use --force to remove them all",
                counts.rows,
                counts.text()
            )));
        }
        let users: BTreeSet<&str> = rows.iter().map(|r| r.username.as_str()).collect();
        for u in users {
            s.delete(u, &domain, Delete::Mailbox)?;
            s.delete(u, &domain, Delete::Alias(None))?;
        }
        // Rows of other domains aimed into this one: their targets are now
        // outside our domains, so smtpd would relay that mail.
        let outside: Vec<Row> = s
            .list(None)?
            .into_iter()
            .filter(|r| {
                Address::parse(&r.mailbox.replace('%', "x"))
                    .is_ok_and(|a| a.domain().as_str() == domain)
            })
            .collect();
        Ok((counts, outside))
    })?;
    say!(
        "removed domain {domain}: {} row(s), {}",
        counts.rows,
        counts.text()
    );
    for r in &outside {
        eprintln!(
            "mailtable: warning: {} -> {} points into the removed domain; its mail would now leave this host",
            r.address(),
            r.mailbox
        );
    }
    Ok(Exit::Ok)
}

/// The `--domain` of a list command, in the stored form (lower case,
/// IDNA ASCII), so `--domain Bücher.example` finds `xn--bcher-kva.example`.
pub(super) fn filter(a: &ListArgs) -> Result<Option<String>, CliError> {
    a.domain
        .as_deref()
        .map(|d| Domain::parse(d).map(|d| d.to_string()))
        .transpose()
        .map_err(CliError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::PasswordHash;

    fn row(username: &str, mailbox: &str, password: Option<&str>) -> Row {
        Row {
            username: username.into(),
            domain: "barrera.io".into(),
            mailbox: mailbox.into(),
            password: password.map(PasswordHash::new),
            active: true,
            quota: None,
        }
    }

    /// An address is counted once per kind, however many rows it has, and
    /// in each kind its rows have: a mailbox that also forwards is a
    /// mailbox and an alias; a list of two targets is one alias.
    #[test]
    fn counts_are_of_addresses_per_kind_not_rows() {
        let rows = [
            row("%", "hugo@barrera.io", None),
            row("hugo", "hugo@barrera.io", Some("$2b$04$x")),
            row("hugo", "copy@example.net", None),
            row("sales-%", "hugo@barrera.io", None),
            row("team", "hugo@barrera.io", None),
            row("team", "ann@barrera.io", None),
        ];
        let c = Counts::of(&rows);
        assert_eq!((c.mailboxes, c.aliases, c.catch_alls, c.rows), (1, 3, 1, 6));
        assert_eq!(c.text(), "1 mailbox(es), 3 alias(es), 1 catch-all(s)");
        let none = Counts::of(&[]);
        assert_eq!(
            (none.mailboxes, none.aliases, none.catch_alls, none.rows),
            (0, 0, 0, 0)
        );
    }
}

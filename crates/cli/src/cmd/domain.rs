//! `mailtable domain list` and `domain del`, and the `--domain` filter of
//! the other list commands. mailtable has no domain table: a domain is ours
//! because some row has it, so listing domains is a query over `users`, and
//! removing one removes its rows.
//!
//! The one decision a reader might question: the counts are of addresses,
//! not rows (an alias that fans out to three targets is one alias), counted
//! here from the rows by [`RowKind`] rather than by SQL, so that the one
//! reading of a row's shape stays in `Row::kind`.

use crate::args::ListArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use mailtable_core::exit::Exit;
use mailtable_core::store::{Access, Delete};
use mailtable_core::{Address, Domain, Row, RowKind};
use serde_json::json;
use std::collections::BTreeSet;

/// What a domain holds: distinct addresses of each kind, and its rows.
#[derive(Default)]
struct Counts {
    mailboxes: BTreeSet<String>,
    aliases: BTreeSet<String>,
    catch_alls: BTreeSet<String>,
    rows: usize,
}

impl Counts {
    fn of(rows: &[Row]) -> Counts {
        let mut c = Counts::default();
        for r in rows {
            c.rows += 1;
            let set = match r.kind() {
                RowKind::Mailbox => &mut c.mailboxes,
                RowKind::Alias | RowKind::Pattern => &mut c.aliases,
                RowKind::CatchAll | RowKind::DomainAlias => &mut c.catch_alls,
            };
            set.insert(r.username.clone());
        }
        c
    }

    fn text(&self) -> String {
        format!(
            "{} mailbox(es), {} alias(es), {} catch-all(s)",
            self.mailboxes.len(),
            self.aliases.len(),
            self.catch_alls.len()
        )
    }
}

/// `mailtable domain list`: one line per domain, the name first.
pub(super) fn list(ctx: &Ctx, json: bool) -> Result<Exit, CliError> {
    let mut s = ctx.open(Access::ReadOnly)?;
    let rows = s.list(None)?;
    let mut domains: Vec<(String, Counts)> = Vec::new();
    // `list` is ordered by domain: each domain's rows are one run.
    for chunk in rows.chunk_by(|a, b| a.domain == b.domain) {
        domains.push((chunk[0].domain.clone(), Counts::of(chunk)));
    }
    if json {
        let v: Vec<_> = domains
            .iter()
            .map(|(d, c)| {
                json!({
                    "domain": d,
                    "mailboxes": c.mailboxes.len(),
                    "aliases": c.aliases.len(),
                    "catch_alls": c.catch_alls.len(),
                    "rows": c.rows,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for (d, c) in &domains {
            println!(
                "{d}\t{}\t{}\t{}",
                c.mailboxes.len(),
                c.aliases.len(),
                c.catch_alls.len()
            );
        }
    }
    Ok(Exit::Ok)
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
    println!(
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

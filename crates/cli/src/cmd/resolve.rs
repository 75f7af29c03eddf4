//! `mailtable resolve ADDRESS` and `mailtable senders ADDRESS`: the two
//! read-only questions about one address, answered by the core
//! [`Resolver`](mailtable_core::Resolver) exactly as the daemons answer them.
//!
//! The one decision a reader might question: `resolve` prints smtpd's own
//! key walk next to the algorithm's result, because that walk is what the
//! table actually answers; if the two ever disagreed, this is where an admin
//! would see it.

use crate::ctx::Ctx;
use crate::error::CliError;
use crate::output::say;
use mailtable_core::exit::Exit;
use mailtable_core::resolve::{
    wire_len, Match, Step, WalkEntry, SMTPD_ALIAS_VALUE_MAX, SMTPD_IMSG_VALUE_MAX,
};
use mailtable_core::store::Access;
use mailtable_core::{delivery, Address, Destination, Outcome, ResolveError, Row};
use serde_json::json;

fn step_name(step: Step) -> &'static str {
    match step {
        Step::TaggedExact => "exact rows for the tagged address",
        Step::Exact => "exact rows",
        Step::Pattern => "pattern",
        Step::CatchAll => "catch-all",
    }
}

/// `mailtable resolve`: exit 0 when the address is deliverable, 1 when not,
/// 75 when its mail fails (a loop, a target that resolves to nothing, or
/// a key smtpd's walk gets an error for: the table tempfails it there).
pub(super) fn resolve(ctx: &Ctx, address: &str, json: bool) -> Result<Exit, CliError> {
    // As smtpd may send it: a longer local part, `%` and `|` included,
    // which no row has but a pattern or catch-all may take.
    let addr = Address::parse_key(address)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    let r = &ctx.resolver;
    let m = r.match_address(s.as_mut(), &addr)?;
    // A loop or a target without rows is this address's answer (mail to
    // it is deferred), reported like any other, in JSON too; only the
    // database failing is an error of the command.
    let data = |e: ResolveError| match e {
        ResolveError::Store(e) => Err(e),
        e => Ok(e.to_string()),
    };
    // The rows the mail goes by: the address's own match, or a later
    // key's when that one made it unknown (a pattern whose target has no
    // rows leaves it to the catch-all).
    let (outcome, by, mut failed) = match r.resolve_by(s.as_mut(), &addr) {
        Ok((o, by)) => (o, by, None),
        Err(e) => (Outcome::NotFound, None, Some(data(e)?)),
    };
    let matched = Matched {
        first: m.as_ref(),
        by: by.as_ref(),
    };
    let walk = match r.smtpd_walk(s.as_mut(), &addr) {
        Ok(w) => w,
        Err(e) => {
            let why = data(e)?;
            failed.get_or_insert(why);
            Vec::new()
        }
    };
    // What smtpd gets decides: a walk that ends in an error defers the
    // mail, whatever the algorithm alone would deliver to; so does an
    // error at an alias the answer lists one level deep, which smtpd
    // expands in turn.
    if failed.is_none() && walk.iter().all(|w| w.error.is_none()) {
        if let Outcome::Found(_) = outcome {
            failed = match r.smtpd_failure(s.as_mut(), &addr) {
                Ok(why) => why,
                Err(e) => Some(data(e)?),
            };
        }
    }
    let failure = failed
        .as_deref()
        .or_else(|| walk.iter().find_map(|w| w.error.as_deref()));
    if json {
        print_json(&addr, &matched, &outcome, &walk, failure);
    } else {
        print_text(&addr, &matched, &outcome, &walk, failure);
    }
    Ok(match (failure, outcome) {
        (Some(_), _) => Exit::TempFail,
        (None, Outcome::Found(_)) => Exit::Ok,
        (None, _) => Exit::NotFound,
    })
}

/// The matches `resolve` reports: the address's own (`first`), and the
/// one the destinations come from (`by`), which is another when the first
/// made the address unknown, and `None` when nothing delivers.
struct Matched<'a> {
    first: Option<&'a Match>,
    by: Option<&'a Match>,
}

impl Matched<'_> {
    /// The match the destinations come from; `None` when nothing
    /// delivers.
    fn deciding(&self, outcome: &Outcome) -> Option<&Match> {
        match outcome {
            Outcome::Found(_) => self.by.or(self.first),
            _ => None,
        }
    }
}

fn print_json(
    addr: &Address,
    matched: &Matched<'_>,
    outcome: &Outcome,
    walk: &[WalkEntry],
    failure: Option<&str>,
) {
    let (result, dests): (_, &[Destination]) = match (failure, outcome) {
        (Some(_), _) => ("error", &[]),
        (None, Outcome::Found(d)) => ("found", d),
        (None, Outcome::NotFound) => ("not-found", &[]),
        (None, Outcome::UnknownDomain) => ("unknown-domain", &[]),
    };
    let m = match failure {
        Some(_) => matched.first,
        None => matched.deciding(outcome),
    };
    let v = json!({
        "address": addr.to_string(),
        "result": result,
        "error": failure,
        "step": m.map(|m| m.step.number()),
        "matched": m.and_then(|m| m.rows.first()).map(Row::address),
        "destinations": dests.iter().map(|d| d.address().to_string()).collect::<Vec<_>>(),
        "deliveries": dests.iter().map(|d| match d {
            Destination::Mailbox(a) => json!({"address": a.to_string(), "kind": "mailbox", "delivery_user": delivery::encode(a)}),
            Destination::External(a) => json!({"address": a.to_string(), "kind": "external"}),
        }).collect::<Vec<_>>(),
        "smtpd_walk": walk,
    });
    say!("{v}");
}

fn print_text(
    addr: &Address,
    matched: &Matched<'_>,
    outcome: &Outcome,
    walk: &[WalkEntry],
    failure: Option<&str>,
) {
    say!("{addr}");
    let step = |m: &Match, why: &str| {
        let rows: Vec<String> = m
            .rows
            .iter()
            .map(|r| format!("{} -> {}", r.address(), r.mailbox))
            .collect();
        say!(
            "  step {}: {}: {}{why}",
            m.step.number(),
            step_name(m.step),
            rows.join(", ")
        );
    };
    if let Some(first) = matched.first {
        let deciding = matched.deciding(outcome);
        let passed = failure.is_none() && deciding.is_none_or(|d| d.step != first.step);
        match passed {
            true => step(
                first,
                " (gives this address no destination: smtpd's walk goes on)",
            ),
            false => step(first, ""),
        }
        if let Some(d) = deciding.filter(|_| passed) {
            step(d, "");
        }
    }
    say!("  smtpd lookups:");
    for w in walk {
        match (&w.answer, &w.error) {
            (_, Some(why)) => say!("    {:<40} error: {why}", w.key),
            (Some(a), None) => say!("    {:<40} {}", w.key, a.join(", ")),
            (None, None) => say!("    {:<40} not found", w.key),
        }
    }
    // The table answers the alias's own targets when the destinations
    // do not fit smtpd's alias buffer: say why the two lists differ.
    if let (Outcome::Found(d), Some(a)) = (outcome, walk.last().and_then(|w| w.answer.as_ref())) {
        if d.iter().map(Destination::wire).ne(a.iter().cloned()) {
            say!(
                "  (the {} destinations take more than the {SMTPD_ALIAS_VALUE_MAX} bytes smtpd's \
                 alias expansion holds: the table answers the alias's targets, and smtpd looks \
                 each up in turn)",
                d.len()
            );
        }
    }
    if let Some(why) = failure {
        say!("  result: error: smtpd's lookup fails, its mail is deferred (4xx): {why}");
        return;
    }
    match outcome {
        Outcome::Found(d) => {
            say!("  result: found");
            for d in d {
                say!("    -> {d}");
            }
        }
        Outcome::NotFound => say!(
            "  result: not found ({} is ours, smtpd rejects with 5xx)",
            addr.domain()
        ),
        Outcome::UnknownDomain => {
            say!("  result: unknown domain ({} is not ours)", addr.domain())
        }
    }
}

/// `mailtable senders`: what an authenticated user may send as.
pub(super) fn senders(ctx: &Ctx, address: &str, json: bool) -> Result<Exit, CliError> {
    // Either login form, as the table's `mailaddrmap` takes it: an SMTP
    // AUTH login may be the delivery user name (`hugo_barrera.io`).
    let addr = delivery::parse_login(address)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    if !s.has_domain(addr.domain().as_str())? {
        return Err(CliError::usage(format!(
            "domain {} of {addr} is not one of ours",
            addr.domain()
        )));
    }
    match ctx.resolver.senders(s.as_mut(), &addr)? {
        None => Err(CliError::not_found(format!("{addr} has no mailbox"))),
        Some(list) => {
            // The one bound on the table's answer: smtpd 7.5 and older
            // cannot take it in one reply, and nothing else would say why
            // every MAIL FROM of this login fails there.
            let wire = wire_len(&list);
            if wire > SMTPD_IMSG_VALUE_MAX {
                eprintln!(
                    "mailtable: warning: this list is {wire} bytes as the table answers it, over \
                     the {SMTPD_IMSG_VALUE_MAX} one reply carries to smtpd 7.5 and older: \
                     there the table answers an error and smtpd refuses every MAIL FROM of \
                     {addr} with 421 (smtpd 7.6 and later take it)"
                );
            }
            if json {
                say!(
                    "{}",
                    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
                );
            } else {
                for a in list {
                    say!("{a}");
                }
            }
            Ok(Exit::Ok)
        }
    }
}

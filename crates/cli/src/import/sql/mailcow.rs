//! mailcow's tables: PostfixAdmin's layout (`domain`, `mailbox`, `alias`,
//! `alias_domain`), read as mailcow's own Postfix maps read them.
//!
//! The maps are written by mailcow's `data/Dockerfiles/postfix/postfix.sh`
//! (`mysql_virtual_*.cf`), the tables by `data/web/inc/init_db.inc.php`.
//! Where they differ from PostfixAdmin's:
//!
//! - `mysql_virtual_alias_domain_maps.cf` answers `u@alias` with the
//!   *mailbox* `u@target` only (`SELECT username FROM mailbox ...`): not
//!   with an alias of the target, and there is no alias-domain catch-all
//!   map. A mailtable domain alias would reach both, so an alias domain
//!   comes over as one alias `u@alias -> u@target` per mailbox of the
//!   target (the alias domain's own `alias` rows, its catch-all among
//!   them, stay its own);
//! - `null@localhost`, `spam@localhost` and `ham@localhost` are no
//!   addresses: Postfix delivers `localhost` locally (`local_transport`),
//!   where they drop the mail or hand it to rspamd to learn from. Such a
//!   target cannot be represented, and is reported;
//! - `spamalias` holds the disposable addresses of its "temporary aliases"
//!   (`mysql_virtual_spamalias_maps.cf`: valid until `validity`, or
//!   `permanent`): a permanent one is an alias; one that expires is
//!   reported (mailtable's aliases do not expire), an expired one refused
//!   mail already;
//! - a SOGo resource (`mailbox.kind`) had its mail dropped
//!   (`mysql_virtual_resource_maps.cf`) and cannot log in: not imported;
//! - `active = 2` and the login switches of `attributes` are read with
//!   PostfixAdmin's login switches ([`super::postfixadmin_login_switches`]);
//! - app passwords, BCC maps, recipient rewriting, sender ACLs and
//!   per-domain relay hosts are in tables mailtable has no place for: the
//!   report counts their rows.

use super::{
    alias_domains, note_not_held, read_aliases, select, take_alias_domain, text, truthy, AliasMaps,
    Cell, Domains, Tables,
};
use crate::error::CliError;
use crate::import::{Finding, LoginName, Origin, Parsed, Route, RouteKey, Target};
use mailtable_core::Address;
use std::collections::BTreeSet;

/// mailcow's `alias` table and maps: an alias domain is a domain of its
/// own (`mysql_virtual_domains_maps.cf` lists `alias_domain` rows too).
pub(super) const MAILCOW_MAPS: &AliasMaps = &AliasMaps {
    table: "alias",
    owner: "mailcow's",
    target_catch_all_first: false,
    alias_domain_needs_row: false,
};

/// Whether the PostfixAdmin-layout tables of `db` are mailcow's: its
/// `mailbox` has `mailbox_path_prefix`, or `kind` and `attributes`.
pub(super) fn is_mailcow(db: &mut dyn Tables, source: &str) -> Result<bool, CliError> {
    let columns = db
        .columns("mailbox")
        .map_err(|e| e.context(format_args!("cannot read {source}")))?;
    let has = |c: &str| columns.iter().any(|h| h == c);
    Ok(has("mailbox_path_prefix") || (has("kind") && has("attributes")))
}

/// The local addresses of mailcow's Postfix that are no mailbox, with what
/// became of mail sent there.
const LOCAL_TARGETS: &[(&str, &str)] = &[
    (
        "null@localhost",
        "mailcow's discard address: the mail was dropped",
    ),
    (
        "spam@localhost",
        "mailcow's learn-as-spam address: rspamd learned the mail as spam and dropped it",
    ),
    (
        "ham@localhost",
        "mailcow's learn-as-ham address: rspamd learned the mail as ham and dropped it",
    ),
];

/// Tables of mailcow whose rows mailtable has no place for, the column
/// that switches a row on (if any), and what a row did.
const NOT_HELD: &[(&str, Option<&str>, &str)] = &[
    (
        "app_passwd",
        Some("active"),
        "an app password of a mailbox (mailtable keeps one password per mailbox: logins with it \
         fail after the import)",
    ),
    ("bcc_maps", Some("active"), "a BCC copy of mail"),
    (
        "recipient_maps",
        Some("active"),
        "a recipient rewritten to another address before delivery",
    ),
    (
        "sender_acl",
        None,
        "a permission to send as another address",
    ),
    (
        "relayhosts",
        Some("active"),
        "a relay host for outgoing mail",
    ),
    ("transports", Some("active"), "a transport to another host"),
];

/// What mailcow's maps do beyond PostfixAdmin's rows (see the module
/// docs), on the rows [`super::read_postfixadmin`] read.
pub(super) fn mailcow_maps(
    db: &mut dyn Tables,
    source: &str,
    domain_active: &Domains,
    p: &mut Parsed,
) -> Result<(), CliError> {
    // The resources first: they are no mailboxes an alias domain reaches.
    mailboxes_apart(db, source, p)?;
    alias_domains_reach_mailboxes(p);
    local_targets(p);
    read_spam_aliases(db, source, domain_active, p)?;
    note_not_held(db, source, NOT_HELD, "", p)?;
    p.notes.push(Finding::new(
        Origin::whole(source),
        "mailcow's tables (PostfixAdmin's layout), read as mailcow's Postfix maps read them: an \
         alias domain reaches the mailboxes of its target only",
    ));
    Ok(())
}

/// Each alias domain as aliases `u@alias -> u@target`, one per mailbox of
/// the target that the alias domain has no row of its own for.
fn alias_domains_reach_mailboxes(p: &mut Parsed) {
    for (a, t, at) in alias_domains(p) {
        if !take_alias_domain(p, &a, &at) {
            continue;
        }
        let own: BTreeSet<Address> = p
            .routes
            .iter()
            .filter_map(|r| match &r.key {
                RouteKey::Exact(x) if *x.domain() == a => Some(x.clone()),
                _ => None,
            })
            .collect();
        let reached: Vec<(Address, Address)> = p
            .logins
            .iter()
            .filter_map(|l| match &l.name {
                LoginName::Address(x) if *x.domain() == t => Some(x.clone()),
                _ => None,
            })
            .filter_map(|x| {
                Address::from_parts(x.local(), a.as_str())
                    .ok()
                    .map(|k| (k, x))
            })
            .filter(|(k, _)| !own.contains(k))
            .collect();
        if reached.is_empty() {
            p.skipped.push(Finding::about(
                at,
                &format!("@{a}"),
                format!(
                    "alias domain of {t}, which has no mailbox: mailcow's alias-domain map finds \
                     mailboxes only, so mail to {a} reached nothing; not imported"
                ),
            ));
            continue;
        }
        p.notes.push(Finding::about(
            at.clone(),
            &format!("@{a}"),
            format!(
                "alias domain of {t}: mailcow's alias-domain map finds only the mailboxes of {t} \
                 (not its aliases, not its catch-all), so it comes over as {} alias(es) \
                 u@{a} -> u@{t}, one per mailbox; a mailbox added to {t} later needs its own \
                 alias at {a}",
                reached.len()
            ),
        ));
        for (key, target) in reached {
            p.routes.push(Route {
                key: RouteKey::Exact(key),
                targets: vec![Target::Address(target)],
                origin: at.clone(),
            });
        }
    }
}

/// The targets of [`LOCAL_TARGETS`] as targets that cannot be represented.
fn local_targets(p: &mut Parsed) {
    for r in &mut p.routes {
        for t in &mut r.targets {
            let Target::Address(a) = t else {
                continue;
            };
            let Some((_, why)) = LOCAL_TARGETS.iter().find(|(x, _)| *x == a.to_string()) else {
                continue;
            };
            *t = Target::Unrepresentable {
                text: a.to_string(),
                why: (*why).into(),
            };
        }
    }
}

/// `spamalias(address, goto, validity, permanent)`: permanent rows as
/// aliases; rows that expire as entries mailtable cannot hold (their mail
/// is lost after the import, and counted so); expired rows are skipped.
fn read_spam_aliases(
    db: &mut dyn Tables,
    source: &str,
    domain_active: &Domains,
    p: &mut Parsed,
) -> Result<(), CliError> {
    let Some(rows) = select(
        db,
        source,
        "spamalias",
        &["address", "goto"],
        &["validity", "permanent"],
    )?
    else {
        return Ok(());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut permanent = Vec::new();
    for (id, v) in rows {
        let at = Origin::row(source, "spamalias", id);
        let address = text(&v[0]).unwrap_or_default().trim().to_ascii_lowercase();
        if v[3].is_some() && truthy(&v[3]) {
            permanent.push((id, vec![v[0].clone(), v[1].clone(), Some("1".into())]));
            continue;
        }
        let until: Option<i64> = text(&v[2]).and_then(|s| s.trim().parse().ok());
        match until {
            Some(until) if until >= now => match Address::parse(&address) {
                Ok(key) => p.routes.push(Route {
                    key: RouteKey::Exact(key),
                    targets: vec![Target::Unrepresentable {
                        text: format!("temporary alias valid until {until} (Unix time)"),
                        why: "mailcow's spam alias expires, mailtable's aliases do not (add it \
                              with `mailtable alias add` where it should stay)"
                            .into(),
                    }],
                    origin: at,
                }),
                Err(e) => p.address_left_behind(at, &address, &e.to_string()),
            },
            _ => p.skipped.push(Finding::about(
                at,
                &address,
                "expired spam alias: the source refused its mail (its spam alias map lists valid \
                 ones only); not imported",
            )),
        }
    }
    read_aliases(source, "spamalias", &permanent, domain_active, p);
    Ok(())
}

/// Mailboxes mailcow treats apart: a login checked elsewhere
/// (`authsource` other than `mailcow`) is noted, a SOGo resource (`kind`)
/// is no mailbox.
fn mailboxes_apart(db: &mut dyn Tables, source: &str, p: &mut Parsed) -> Result<(), CliError> {
    let Some(rows) = select(
        db,
        source,
        "mailbox",
        &["username"],
        &["authsource", "kind"],
    )?
    else {
        return Ok(());
    };
    for (id, v) in rows {
        let user = text(&v[0]).unwrap_or_default().trim().to_ascii_lowercase();
        let at = Origin::row(source, "mailbox", id);
        let auth = text(&v[1]).unwrap_or_default().trim().to_ascii_lowercase();
        if !auth.is_empty() && auth != "mailcow" {
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                format!(
                    "authsource {auth}: mailcow checked this login's password there, not against \
                     the table's hash; after the import the hash of the table is what logs in \
                     (set a password with `mailtable user passwd {user}`)"
                ),
            ));
        }
        // mysql_virtual_resource_maps.cf: `kind REGEXP 'location|thing|group'`.
        let kind = text(&v[2]).unwrap_or_default().to_ascii_lowercase();
        if ["location", "thing", "group"]
            .iter()
            .any(|k| kind.contains(k))
        {
            p.logins.retain(|l| l.origin != at);
            p.skipped.push(Finding::about(
                at,
                &user,
                format!(
                    "kind {}: a SOGo resource, booked through mailcow's calendar; its resource \
                     map dropped mail to it (null@localhost) and it has no password to log in \
                     with; not imported",
                    kind.trim()
                ),
            ));
        }
    }
    Ok(())
}

/// The login switches of mailcow's `mailbox.attributes` (a JSON object of
/// strings, `"1"` or `"0"`, its `imap_access` and siblings; webmail and
/// groupware switches are not logins mailtable serves).
pub(super) const LOGIN_SWITCHES: &[&str] =
    &["imap_access", "pop3_access", "smtp_access", "sieve_access"];

/// The switches of [`LOGIN_SWITCHES`] that are off in an `attributes`
/// cell, written `name = 0`; none where the cell is no such object.
pub(super) fn refused_services(attributes: &Cell) -> Vec<String> {
    let Some(serde_json::Value::Object(o)) = attributes
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
    else {
        return Vec::new();
    };
    LOGIN_SWITCHES
        .iter()
        .filter(|k| match o.get(**k) {
            Some(serde_json::Value::String(s)) => s.trim() == "0",
            Some(serde_json::Value::Number(n)) => n.as_f64() == Some(0.0),
            Some(serde_json::Value::Bool(b)) => !b,
            _ => false,
        })
        .map(|k| format!("{k} = 0"))
        .collect()
}

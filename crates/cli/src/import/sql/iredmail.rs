//! iRedMail's tables, as its Postfix maps and Dovecot queries read them.
//!
//! The layout is iRedMail's `samples/iredmail/iredmail.mysql` (MariaDB)
//! and `iredmail.pgsql` (PostgreSQL, the same columns); the maps are its
//! `samples/postfix/mysql/*.cf` (and `pgsql/`), listed in
//! `main.cf.mysql`, and the Dovecot queries `samples/dovecot/dovecot-sql.conf`:
//!
//! - `domain` and `alias_domain` are PostfixAdmin's tables, read by the
//!   same code: `virtual_mailbox_domains.cf` accepts the active domains
//!   that are no backup MX, and the alias domains whose target is one;
//! - `mailbox(username, password, domain, quota, active, enabledeliver,
//!   enable<service>...)`: `username` is the whole address, `quota`
//!   megabytes (`quota_rule = *:bytes=` quota times 1048576, 0: none).
//!   `virtual_mailbox_maps.cf` delivers to a mailbox that is active with
//!   `enabledeliver = 1` in an active domain; Dovecot's `password_query`
//!   lets it log in where `enable%Ls%Lc` (`enableimap`,
//!   `enableimapsecured`, `enablesmtp`, ...) is 1 for the service;
//! - `forwardings(address, forwarding, active, is_maillist)`: one row per
//!   target. `virtual_alias_maps` lists, in this order,
//!   `virtual_alias_maps.cf` (`address='%s'`), `domain_alias_maps.cf`,
//!   `catchall_maps.cf` (`address='%d'`: the catch-all's address is the
//!   bare domain) and `domain_alias_catchall_maps.cf`. Every mailbox has a
//!   row to itself (`tools/create_mail_user_SQL.sh` writes it with the
//!   mailbox), which keeps a catch-all off its mail as PostfixAdmin's
//!   self-alias does; a mailbox without one loses its mail to the
//!   catch-all there, as it does after the import;
//! - `maillists` (mlmmj mailing lists) are delivered by their transport
//!   (`transport_maps_maillist.cf`): mailtable holds no lists, so each is
//!   an entry that cannot be represented, reported with every alias that
//!   reaches it.
//!
//! What mailtable does not hold is reported, never dropped silently: a
//! login refused for some services only (one login switch here), a
//! mailbox that logs in but refuses mail (`enabledeliver = 0`), a
//! transport other than the local one (a mailbox's or a domain's),
//! `allow_nets`, a mail location other than `maildir:~/Maildir`, a
//! restricted alias access policy (iRedAPD's), and rows of the BCC and
//! sender relay host tables.

use super::{
    note_not_held, postfix_maps_start, read_alias_domains, read_aliases, read_user, select, text,
    truthy, AliasMaps, Cell, Domains, TableRow, Tables,
};
use crate::error::CliError;
use crate::import::{Finding, Inactive, Origin, Parsed, Route, RouteKey, Target, UserInfo};
use mailtable_core::Address;
use std::collections::BTreeSet;

/// iRedMail's `forwardings` table and the order of its maps.
pub(super) const IREDMAIL_MAPS: &AliasMaps = &AliasMaps {
    table: "forwardings",
    owner: "iRedMail's",
    target_catch_all_first: false,
    alias_domain_needs_row: false,
};

/// The `mailbox` columns that switch a login for one service: Dovecot's
/// `password_query` asks `enable%Ls%Lc = 1`, the service (`imap`,
/// `pop3`, `smtp` for SMTP AUTH, `sieve` for ManageSieve) followed by
/// `secured` on a TLS or local connection.
const LOGIN_FLAGS: &[&str] = &[
    "enableimap",
    "enableimapsecured",
    "enablepop3",
    "enablepop3secured",
    "enablesmtp",
    "enablesmtpsecured",
    "enablesieve",
    "enablesievesecured",
];

/// The other `mailbox` columns read, after `username` and `password`.
const MAILBOX_COLUMNS: &[&str] = &[
    "domain",
    "active",
    "quota",
    "enabledeliver",
    "transport",
    "storagebasedirectory",
    "storagenode",
    "maildir",
    "mailboxformat",
    "mailboxfolder",
    "allow_nets",
];

/// The cell of a column the table lacks.
const ABSENT: Cell = None;

/// Tables whose rows mailtable has no place for, with their `active`
/// column and what a row did.
const NOT_HELD: &[(&str, Option<&str>, &str)] = &[
    (
        "recipient_bcc_user",
        Some("active"),
        "a BCC copy of the mail a user receives",
    ),
    (
        "recipient_bcc_domain",
        Some("active"),
        "a BCC copy of the mail a domain receives",
    ),
    (
        "sender_bcc_user",
        Some("active"),
        "a BCC copy of the mail a user sends",
    ),
    (
        "sender_bcc_domain",
        Some("active"),
        "a BCC copy of the mail a domain sends",
    ),
    (
        "sender_relayhost",
        Some("active"),
        "a relay host per sender",
    ),
];

/// iRedMail's tables of `db` (see the module docs).
pub(super) fn read_iredmail(
    db: &mut dyn Tables,
    source: &str,
    inactive: Inactive,
) -> Result<Parsed, CliError> {
    let (mut p, domain_active) = postfix_maps_start(db, source, inactive)?;
    read_iredmail_mailboxes(db, source, &domain_active, inactive, &mut p)?;
    note_domain_transports(db, source, &domain_active, &mut p)?;
    let lists = read_lists(db, source, &domain_active, &mut p)?;
    let forwardings = select(
        db,
        source,
        "forwardings",
        &["address", "forwarding"],
        &["active", "is_maillist"],
    )?
    .unwrap_or_default();
    let rows: Vec<TableRow> = forwardings
        .into_iter()
        .filter(|(_, v)| {
            let is_list = v[3].is_some() && truthy(&v[3]);
            !is_list && !lists.contains(&key_text(&v[0]))
        })
        .map(|(id, v)| {
            let key = key_text(&v[0]);
            // catchall_maps.cf: `address='%d'`, the bare domain.
            let key = if key.contains('@') {
                key
            } else {
                format!("@{key}")
            };
            (id, vec![Some(key), v[1].clone(), v[2].clone()])
        })
        .collect();
    read_aliases(source, "forwardings", &rows, &domain_active, &mut p);
    read_alias_domains(db, source, &domain_active, IREDMAIL_MAPS, &mut p)?;
    super::alias_domain_chains(&mut p, IREDMAIL_MAPS);
    super::alias_domain_catch_alls(&mut p, IREDMAIL_MAPS);
    note_access_policies(db, source, &mut p)?;
    note_not_held(
        db,
        source,
        NOT_HELD,
        " (set them up in smtpd.conf where still needed)",
        &mut p,
    )?;
    p.notes.push(Finding::new(
        Origin::whole(source),
        "iRedMail's tables (mailbox, forwardings, domain, alias_domain), read as its Postfix \
         maps read them: a forwardings row of a mailbox's own address keeps its mail from the \
         catch-all",
    ));
    Ok(p)
}

/// A `forwardings.address` or list address as a key: trimmed, lower case.
fn key_text(c: &Option<String>) -> String {
    text(c).unwrap_or_default().trim().to_ascii_lowercase()
}

/// The mailboxes: logins as PostfixAdmin's ([`read_user`]), with iRedMail's
/// delivery switch, per-service login switches, quota in megabytes, home
/// and transport.
fn read_iredmail_mailboxes(
    db: &mut dyn Tables,
    source: &str,
    domain_active: &Domains,
    inactive: Inactive,
    p: &mut Parsed,
) -> Result<(), CliError> {
    let optional: Vec<&str> = MAILBOX_COLUMNS.iter().chain(LOGIN_FLAGS).copied().collect();
    let rows =
        select(db, source, "mailbox", &["username", "password"], &optional)?.unwrap_or_default();
    for (id, v) in &rows {
        let at = Origin::row(source, "mailbox", *id);
        let user = key_text(&v[0]);
        // A column the table lacks reads as NULL.
        let cell = |name: &str| {
            optional
                .iter()
                .position(|c| *c == name)
                .map_or(&ABSENT, |i| &v[2 + i])
        };
        // virtual_mailbox_maps.cf: `mailbox.enabledeliver=1`. An inactive
        // mailbox is refused anyway, and read_user says so.
        let held = truthy(cell("active")) && !truthy(cell("enabledeliver"));
        if held && inactive == Inactive::Disabled {
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                "enabledeliver = 0: the source refused its mail but let it log in; imported as \
                 a mailbox that accepts mail, as --inactive disabled says",
            ));
            if let Ok(a) = Address::parse(&user) {
                p.accepted_inactive.push(a);
            }
        } else if held {
            p.skipped.push(Finding::about(
                at,
                &user,
                "enabledeliver = 0: the source refused its mail (its mailbox map lists only \
                 mailboxes with enabledeliver = 1) but let it log in; a mailtable mailbox that \
                 logs in also receives mail, so it is not imported (set enabledeliver = 1 in the \
                 source, or --inactive disabled, to bring it over receiving mail)",
            ));
            if let Ok(a) = Address::parse(&user) {
                p.refused.push(a);
            }
            continue;
        }
        let mb: i64 = text(cell("quota"))
            .and_then(|q| q.trim().parse().ok())
            .unwrap_or(0);
        let quota = crate::quota::of_bytes(mb.saturating_mul(1 << 20));
        let row = [
            v[0].clone(),
            v[1].clone(),
            cell("domain").clone(),
            cell("active").clone(),
        ];
        let before = p.logins.len();
        read_user(&at, &row, quota, domain_active, inactive, p);
        if p.logins.len() == before {
            continue;
        }
        let refused: Vec<&str> = LOGIN_FLAGS
            .iter()
            .filter(|f| cell(f).is_some() && !truthy(cell(f)))
            .copied()
            .collect();
        let present = LOGIN_FLAGS.iter().filter(|f| cell(f).is_some()).count();
        if !refused.is_empty() && refused.len() == present {
            if let Some(login) = p.logins.last_mut() {
                login.active = false;
            }
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                format!(
                    "every login switch is 0 ({}): imported as a disabled mailbox (logins \
                     refused, mail accepted, as in the source)",
                    refused.join(", ")
                ),
            ));
        } else if !refused.is_empty() {
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                format!(
                    "the source refused its logins where {} = 0; mailtable has one login switch \
                     for every service, so it is imported with logins allowed (`mailtable user \
                     disable {user}` refuses them all)",
                    refused.join(", ")
                ),
            ));
        }
        if let Some(t) = text(cell("transport")).filter(|t| !local_transport(t)) {
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                format!(
                    "transport {t:?} (mailbox.transport): the source delivered this mailbox \
                     there; mailtable's mailboxes are delivered where smtpd.conf delivers them"
                ),
            ));
        }
        // dovecot-sql.conf's password_query returns `allow_nets`: Dovecot
        // refused logins from elsewhere (doc: passdb extra field
        // `allow_nets`).
        if let Some(nets) = text(cell("allow_nets")).filter(|n| !n.trim().is_empty()) {
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                format!(
                    "allow_nets {:?}: Dovecot refused its logins from other networks; mailtable \
                     has no such field, so it may log in from anywhere after the import",
                    nets.trim()
                ),
            ));
        }
        // The user_query's `mail` is `mailboxformat:~/mailboxfolder`
        // (`maildir:~/Maildir` unless changed); mailtable leaves the mail
        // location to Dovecot's config.
        let format = text(cell("mailboxformat")).map(|f| f.trim().to_ascii_lowercase());
        let folder = text(cell("mailboxfolder")).map(|f| f.trim().to_string());
        if format.as_deref().is_some_and(|f| f != "maildir")
            || folder.as_deref().is_some_and(|f| f != "Maildir")
        {
            p.notes.push(Finding::about(
                at.clone(),
                &user,
                format!(
                    "mail {}:~/{}: the source stored this mailbox's mail so, not in Dovecot's \
                     default of iRedMail (maildir:~/Maildir); mailtable gives no mail location \
                     per user, so set mail_location (2.4: mail_driver, mail_path) to match, or \
                     convert the mail (doveadm sync)",
                    format.as_deref().unwrap_or("maildir"),
                    folder.as_deref().unwrap_or("Maildir"),
                ),
            ));
        }
        // dovecot-sql.conf's user_query: the home is
        // LOWER(storagebasedirectory/storagenode/maildir); the import notes
        // where mailtable's differs.
        let parts: Vec<String> = ["storagebasedirectory", "storagenode", "maildir"]
            .iter()
            .filter_map(|c| text(cell(c)))
            .collect();
        if parts.len() == 3 && !parts[2].trim().is_empty() {
            p.userinfo.push(UserInfo {
                user: user.clone(),
                uid: None,
                gid: None,
                home: Some(parts.join("/").to_lowercase()),
                userbase: false,
                origin: at,
            });
        }
    }
    Ok(())
}

/// A served domain whose `domain.transport` is not the local delivery:
/// `transport_maps_domain.cf` sent the mail of its mailboxes there (a
/// mailbox's own `transport` comes first, and is noted with it).
fn note_domain_transports(
    db: &mut dyn Tables,
    source: &str,
    domain_active: &Domains,
    p: &mut Parsed,
) -> Result<(), CliError> {
    let Some(rows) = select(db, source, "domain", &["domain"], &["transport"])? else {
        return Ok(());
    };
    for (id, v) in rows {
        let name = key_text(&v[0]);
        let Some(t) = text(&v[1]).filter(|t| !local_transport(t)) else {
            continue;
        };
        if !mailtable_core::Domain::parse(&name).is_ok_and(|d| domain_active.ok(&d)) {
            continue;
        }
        p.notes.push(Finding::about(
            Origin::row(source, "domain", id),
            &name,
            format!(
                "transport {t:?} (domain.transport): the source delivered this domain's \
                 mailboxes there; mailtable's mailboxes are delivered where smtpd.conf delivers \
                 them"
            ),
        ));
    }
    Ok(())
}

/// Whether a `transport` value is the local delivery iRedMail sets up:
/// empty (the domain's), `dovecot` (its pipe to Dovecot's LDA) or LMTP to
/// Dovecot on a UNIX socket.
fn local_transport(t: &str) -> bool {
    let t = t.trim();
    t.is_empty() || t == "dovecot" || t.starts_with("lmtp:unix:")
}

/// The active mlmmj lists of served domains as entries that cannot be
/// represented (the alias rows of their addresses are theirs, and left
/// out of the aliases), keyed by address; an inactive list is reported:
/// its mail was refused (no transport, no mailbox).
fn read_lists(
    db: &mut dyn Tables,
    source: &str,
    domain_active: &Domains,
    p: &mut Parsed,
) -> Result<BTreeSet<String>, CliError> {
    let mut lists = BTreeSet::new();
    let Some(rows) = select(
        db,
        source,
        "maillists",
        &["address"],
        &["active", "transport"],
    )?
    else {
        return Ok(lists);
    };
    for (id, v) in rows {
        let at = Origin::row(source, "maillists", id);
        let key = key_text(&v[0]);
        lists.insert(key.clone());
        let addr = match Address::parse(&key) {
            Ok(a) => a,
            Err(e) => {
                p.address_left_behind(at, &key, &e.to_string());
                continue;
            }
        };
        if !truthy(&v[1]) || !domain_active.ok(addr.domain()) {
            p.skipped.push(Finding::about(
                at,
                &key,
                "inactive mailing list: the source refused its mail (its list transport map \
                 lists active lists of active domains only); not imported",
            ));
            continue;
        }
        let transport = text(&v[2]).unwrap_or_default();
        p.routes.push(Route {
            key: RouteKey::Exact(addr),
            targets: vec![Target::Unrepresentable {
                text: format!("mailing list ({})", transport.trim()),
                why: "an mlmmj mailing list, delivered by its transport: mailtable holds no \
                      mailing lists (keep mlmmj and route the list address to it in smtpd.conf)"
                    .into(),
            }],
            origin: at,
        });
    }
    Ok(lists)
}

/// A mail alias account (`alias` table) with an access policy other than
/// public: iRedAPD refused mail to it from other senders. mailtable has
/// no such check, so the report says the alias becomes public.
fn note_access_policies(db: &mut dyn Tables, source: &str, p: &mut Parsed) -> Result<(), CliError> {
    let Some(rows) = select(db, source, "alias", &["address"], &["accesspolicy"])? else {
        return Ok(());
    };
    for (id, v) in rows {
        let policy = text(&v[1]).unwrap_or_default().trim().to_ascii_lowercase();
        if policy.is_empty() || policy == "public" {
            continue;
        }
        p.notes.push(Finding::about(
            Origin::row(source, "alias", id),
            &key_text(&v[0]),
            format!(
                "access policy {policy:?}: iRedAPD refused mail to this alias from senders the \
                 policy does not allow; mailtable does not check senders of aliases, so after \
                 the import anyone may send to it"
            ),
        ));
    }
    Ok(())
}

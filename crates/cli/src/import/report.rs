//! The import report: what will be written, what will not and why, what
//! conflicts, which password schemes each daemon can check, and whether
//! every address resolves as in the source. Printed as text or JSON; the
//! same data either way. Hashes never appear, only their scheme.
//!
//! Which daemon can check a hash: OpenSMTPD calls crypt(3) on the bare
//! string ([`PasswordHash::for_smtpd`]: libxcrypt's formats, never a
//! `{SCHEME}` it cannot parse); Dovecot checks its own scheme list
//! (`doveadm pw -l` of 2.3.19.1, reference dovecot-auth-protocols.md §4.2),
//! and 2.4 refuses the weak ones unless `auth_allow_weak_schemes = yes`
//! (§4.1).

use super::check::Checked;
use super::plan::{Group, Plan};
use super::verify::Verification;
use super::{At, Conflict, Finding, Origin};
use crate::output::say;
use mailtable_core::{PasswordHash, RowKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// Schemes Dovecot 2.4 refuses unless `auth_allow_weak_schemes = yes`.
const DOVECOT_WEAK: &[&str] = &[
    "MD5",
    "MD5-CRYPT",
    "SMD5",
    "HMAC-MD5",
    "PLAIN-MD4",
    "PLAIN-MD5",
    "LDAP-MD5",
    "DES-CRYPT",
];

/// The first five of `items`, comma-separated, with `, ...` when there are
/// more: a line naming every one of a big source's addresses helps nobody.
pub fn first_few<T: std::fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let more = items.len() > 5;
    // Source text, as in the findings: a control character (an escape
    // sequence, a NUL) is shown escaped, never sent to the terminal.
    let mut s = items
        .take(5)
        .map(|i| super::parsed::one_line(i.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    if more {
        s.push_str(", ...");
    }
    s
}

/// How many keys of the sources lose their mail, named as what they are:
/// `3 address(es)`, `1 catch-all(s)` (an `@domain` key), or both.
pub fn lost_keys(keys: &[String]) -> String {
    let catch_alls = keys.iter().filter(|k| k.starts_with('@')).count();
    match (keys.len() - catch_alls, catch_alls) {
        (a, 0) => format!("{a} address(es)"),
        (0, c) => format!("{c} catch-all(s)"),
        (a, c) => format!("{a} address(es) and {c} catch-all(s)"),
    }
}

/// The crypt(3) family of a bare crypt string, for the label.
fn crypt_family(c: &str) -> Option<String> {
    let known = [
        ("$2a$", "bcrypt"),
        ("$2b$", "bcrypt"),
        ("$2y$", "bcrypt"),
        ("$2x$", "bcrypt"),
        ("$6$", "SHA512-crypt"),
        ("$5$", "SHA256-crypt"),
        ("$argon2id$", "Argon2id"),
        ("$argon2i$", "Argon2i"),
        ("$argon2d$", "Argon2d"),
        ("$y$", "yescrypt"),
        ("$gy$", "gost-yescrypt"),
        ("$7$", "scrypt"),
        ("$1$", "MD5-crypt"),
    ];
    for (p, name) in known {
        if c.starts_with(p) {
            return Some(format!("{name} ({p})"));
        }
    }
    let des = c.len() == 13
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    des.then(|| "DES crypt".to_string())
}

/// What the report says about one hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeInfo {
    /// `bcrypt ($2b$)`, `{SSHA512}`, `{BLF-CRYPT} bcrypt ($2y$)`.
    pub label: String,
    /// OpenSMTPD (crypt(3)) can check it.
    pub opensmtpd: bool,
    /// It logs in through every Dovecot mode of mailtable: mailtable checks
    /// it (checkpassword, the Lua endpoint), and so does Dovecot (dict).
    pub dovecot: bool,
    /// Only through the dict mode, where Dovecot checks it itself.
    pub dovecot_dict_only: bool,
    /// A caveat.
    pub note: Option<&'static str>,
}

/// Classify a hash for the report.
pub fn scheme_info(h: &PasswordHash) -> SchemeInfo {
    // Locked in the source (passwd(5)'s `!`, `*`): refused at every login
    // there and here, on purpose; no new password is called for.
    if h.is_locked() {
        return SchemeInfo {
            label: "locked (! or * before the hash)".to_string(),
            opensmtpd: false,
            dovecot: false,
            dovecot_dict_only: false,
            note: Some("every login refused, as in the source; mail still delivered"),
        };
    }
    let prefix = h.prefix();
    let c = h.crypt_string();
    let family = crypt_family(c);
    let crypt_prefix = prefix.as_deref().is_some_and(|p| {
        [
            "CRYPT",
            "BLF-CRYPT",
            "SHA512-CRYPT",
            "SHA256-CRYPT",
            "MD5-CRYPT",
            "DES-CRYPT",
            "ARGON2I",
            "ARGON2ID",
            "ARGON2",
        ]
        .contains(&p)
    });
    let well_formed = h.validate().is_ok();
    let mut label = match (&prefix, &family) {
        (Some(p), Some(f)) if crypt_prefix => format!("{{{p}}} {f}"),
        (Some(p), _) => format!("{{{p}}}"),
        (None, Some(f)) => f.clone(),
        (None, None) => "unknown (no scheme prefix)".to_string(),
    };
    // A malformed hash of a known family is a line of its own: no daemon
    // checks it (the login paths refuse it before any daemon sees it),
    // whatever the well-formed hashes of its family get.
    // (A scheme mailtable does not check at all, such as DES crypt, is not
    // malformed: its row says no daemon of mailtable checks it.)
    let unsupported = matches!(
        h.validate(),
        Err(mailtable_core::password::PasswordError::Unsupported(_))
    );
    if !well_formed && !unsupported && family.is_some() && !h.dovecot_only() {
        label.push_str(", malformed");
    }
    // checkpassword and the Lua endpoint check with mailtable's code; the
    // dict hands the hash to Dovecot (Accounts::credentials), which reads
    // a bare crypt string with its CRYPT scheme.
    let dovecot = h.mailtable_checks();
    let dict = (well_formed && h.for_dovecot().is_some()) || h.dovecot_only();
    // Inside {PBKDF2} a `$1$` is Dovecot's own format, not MD5-crypt.
    let read_as_crypt = matches!(prefix.as_deref(), None | Some("CRYPT"));
    let weak = prefix.as_deref().is_some_and(|p| DOVECOT_WEAK.contains(&p))
        || (read_as_crypt && (c.starts_with("$1$") || family.as_deref() == Some("DES crypt")));
    let note = if matches!(prefix.as_deref(), Some("PLAIN" | "CLEAR" | "CLEARTEXT")) {
        Some("cleartext password: set a new one with `mailtable user passwd`")
    } else if weak {
        Some("Dovecot 2.4 refuses it unless auth_allow_weak_schemes = yes")
    } else {
        None
    };
    SchemeInfo {
        label,
        opensmtpd: well_formed && h.for_smtpd().is_some(),
        dovecot,
        dovecot_dict_only: dict && !dovecot,
        note,
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Not decided yet.
    Planned,
    /// Written.
    Imported,
    /// `--dry-run`: nothing written.
    DryRun,
    /// `--verify`: nothing written.
    Verified,
    /// Malformed input, a conflict or a difference: nothing written.
    Refused,
}

/// One finding, for printing.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `file:line`.
    pub at: String,
    /// The key, login or address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why.
    pub why: String,
}

/// The subject, unless the origin already names it (`db:key`).
fn subject(at: &Origin, s: Option<&str>) -> Option<String> {
    match (&at.at, s) {
        (At::Key(k), Some(s)) if k == s => None,
        (_, s) => s.map(str::to_string),
    }
}

impl From<&Finding> for Item {
    fn from(f: &Finding) -> Item {
        Item {
            at: f.at.to_string(),
            subject: subject(&f.at, f.subject.as_deref()),
            why: f.why.clone(),
        }
    }
}

impl From<&Conflict> for Item {
    fn from(c: &Conflict) -> Item {
        Item {
            at: c.at.to_string(),
            subject: subject(&c.at, Some(&c.subject)),
            why: c.why.clone(),
        }
    }
}

/// Counts per kind.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Distinct domains of the rows.
    pub domains: usize,
    /// Mailboxes.
    pub mailboxes: usize,
    /// Of which disabled.
    pub disabled: usize,
    /// Of which with a quota.
    pub with_quota: usize,
    /// Addresses with alias rows.
    pub aliases: usize,
    /// Their rows.
    pub alias_rows: usize,
    /// `%@domain` catch-alls.
    pub catch_alls: usize,
    /// `%@old -> %@new`.
    pub domain_aliases: usize,
    /// `sales-%@domain`.
    pub patterns: usize,
    /// All rows the sources give.
    pub rows: usize,
    /// Rows not yet in the database.
    pub rows_to_write: usize,
    /// Keys whose rows are already present, identical.
    pub keys_already_present: usize,
}

/// One password scheme.
#[derive(Debug, Serialize)]
pub struct SchemeLine {
    /// Label.
    pub scheme: String,
    /// Mailboxes using it.
    pub users: usize,
    /// OpenSMTPD can check it.
    pub opensmtpd: bool,
    /// It logs in through every Dovecot mode of mailtable.
    pub dovecot: bool,
    /// Only through the dict mode.
    pub dovecot_dict_only: bool,
    /// Caveat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// A mailbox some daemon cannot check.
#[derive(Debug, Clone, Serialize)]
pub struct Flagged {
    /// The address.
    pub address: String,
    /// Its scheme.
    pub scheme: String,
    /// Where.
    pub at: String,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `format:source`.
    pub sources: Vec<String>,
    /// Outcome.
    pub status: Status,
    /// Counts.
    pub counts: Counts,
    /// Domains of the rows.
    pub domains: Vec<String>,
    /// Schemes found.
    pub password_schemes: Vec<SchemeLine>,
    /// Mailboxes only Dovecot can check: SMTP AUTH fails for them.
    pub smtpd_cannot_verify: Vec<Flagged>,
    /// Mailboxes no daemon can check: login impossible.
    pub no_daemon_can_verify: Vec<Flagged>,
    /// Mailboxes only Dovecot itself can check (the dict mode):
    /// checkpassword and the Lua endpoint cannot log them in.
    pub dovecot_dict_only: Vec<Flagged>,
    /// Entries not imported, and why.
    pub not_imported: Vec<Item>,
    /// Conflicts: inside the sources, and with rows present.
    pub conflicts: Vec<Item>,
    /// Notes.
    pub notes: Vec<Item>,
    /// Lines the source's own software would refuse.
    pub malformed: Vec<Item>,
    /// Keys of the sources (addresses, `@domain`) that received mail there
    /// and will not after the import.
    pub undeliverable: Vec<String>,
    /// Logins and local delivery users of the sources that do not come
    /// over.
    pub mailboxes_not_imported: Vec<String>,
    /// `--inactive`: what became of inactive SQL mailboxes and domains.
    pub inactive: &'static str,
    /// Inactive mailboxes the source refused mail to, not imported so that
    /// it stays refused (`--inactive reject`).
    pub refused_inactive: Vec<String>,
    /// The resolution check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl Report {
    /// An empty report for these sources.
    pub fn new(sources: Vec<String>) -> Report {
        Report {
            sources,
            status: Status::Planned,
            counts: Counts::default(),
            domains: Vec::new(),
            password_schemes: Vec::new(),
            smtpd_cannot_verify: Vec::new(),
            no_daemon_can_verify: Vec::new(),
            dovecot_dict_only: Vec::new(),
            not_imported: Vec::new(),
            conflicts: Vec::new(),
            notes: Vec::new(),
            malformed: Vec::new(),
            undeliverable: Vec::new(),
            mailboxes_not_imported: Vec::new(),
            inactive: crate::import::Inactive::default().name(),
            refused_inactive: Vec::new(),
            verification: None,
        }
    }

    /// Fill in everything the plan and the database check tell.
    pub fn fill(&mut self, plan: &Plan, checked: &Checked) {
        let c = &mut self.counts;
        let mut domains = std::collections::BTreeSet::new();
        for g in &plan.groups {
            domains.insert(g.domain().to_string());
            c.rows += g.len();
            let kind = g.kind();
            match kind {
                RowKind::CatchAll => c.catch_alls += 1,
                RowKind::DomainAlias => c.domain_aliases += 1,
                RowKind::Pattern => c.patterns += 1,
                RowKind::Mailbox | RowKind::Alias => {}
            }
            let mut aliases = 0;
            for r in g.rows() {
                if r.is_mailbox() {
                    c.mailboxes += 1;
                    c.disabled += usize::from(!r.active);
                    c.with_quota += usize::from(r.quota.is_some());
                } else {
                    aliases += 1;
                }
            }
            if !kind.is_wildcard() && aliases > 0 {
                c.aliases += 1;
                c.alias_rows += aliases;
            }
        }
        c.domains = domains.len();
        c.rows_to_write = checked.new_groups(plan).map(Group::len).sum();
        c.keys_already_present = checked.present;
        self.domains = domains.into_iter().collect();

        let mut schemes: BTreeMap<String, (SchemeInfo, usize)> = BTreeMap::new();
        // The mailboxes are the groups' rows with a password.
        let logins = plan.groups.iter().flat_map(|g| {
            g.rows()
                .filter_map(move |mut r| r.password.take().map(|h| (r, h, &g.origin)))
        });
        for (row, hash, origin) in logins {
            let info = scheme_info(&hash);
            let flagged = Flagged {
                address: format!("{}@{}", row.username, row.domain),
                scheme: info.label.clone(),
                at: origin.to_string(),
            };
            let dovecot = info.dovecot || info.dovecot_dict_only;
            match (info.opensmtpd, dovecot) {
                _ if hash.is_locked() => {}
                (false, true) => self.smtpd_cannot_verify.push(flagged.clone()),
                (false, false) => self.no_daemon_can_verify.push(flagged.clone()),
                _ => {}
            }
            if info.dovecot_dict_only {
                self.dovecot_dict_only.push(flagged);
            }
            schemes
                .entry(info.label.clone())
                .or_insert_with(|| (info, 0))
                .1 += 1;
        }
        self.password_schemes = schemes
            .into_values()
            .map(|(i, n)| SchemeLine {
                scheme: i.label,
                users: n,
                opensmtpd: i.opensmtpd,
                dovecot: i.dovecot,
                dovecot_dict_only: i.dovecot_dict_only,
                note: i.note,
            })
            .collect();
        self.undeliverable = plan.lost.clone();
        self.mailboxes_not_imported = plan.lost_mailboxes.clone();
        self.refused_inactive = plan.refused.clone();
        self.not_imported = plan.skipped.iter().map(Item::from).collect();
        self.notes = plan.notes.iter().map(Item::from).collect();
        self.conflicts = plan
            .conflicts
            .iter()
            .chain(&checked.conflicts)
            .map(Item::from)
            .collect();
    }

    /// Print to stdout.
    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_string(self) {
                Ok(s) => say!("{s}"),
                Err(e) => eprintln!("mailtable: cannot print the report as JSON: {e}"),
            }
        } else {
            crate::output::write(format_args!("{}", self.text()));
        }
    }

    /// The text form.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let mut line = |s: String| {
            o.push_str(s.trim_end());
            o.push('\n');
        };
        // The first line says what an admin must not miss: how many
        // addresses of the source lose their mail.
        let mut redirected = match self.verification.as_ref().map_or(0, |v| v.redirected.len()) {
            0 => String::new(),
            n => format!("; {n} would reach another mailbox (see redirected)"),
        };
        if let n @ 1.. = self
            .verification
            .as_ref()
            .map_or(0, |v| v.differences.len())
        {
            redirected.push_str(&format!(
                "; {n} would resolve differently (see verification)"
            ));
        }
        let failing = self
            .verification
            .as_ref()
            .map_or(&[][..], |v| &v.failing[..]);
        let failing_too = match failing.len() {
            0 => String::new(),
            n => format!("; smtpd will defer the mail of {n} more (see failing)"),
        };
        line(match (self.undeliverable.len(), failing.len()) {
            _ if !self.malformed.is_empty() => "mailtable import: malformed input".to_string(),
            (0, 0) => {
                format!("mailtable import: no address of the sources loses its mail{redirected}")
            }
            (0, n) => format!(
                "mailtable import: smtpd will defer the mail of {n} address(es) of the sources: \
                 {} (see failing){redirected}",
                first_few(failing.iter().map(|f| &f.address))
            ),
            // Refused before the proof (a conflict): the keys the plan
            // leaves out, some of which a catch-all or their own mailbox
            // may still take; only the proof tells them apart.
            _ if self.verification.is_none() => format!(
                "mailtable import: up to {} of the sources would not receive mail: {} (the \
                 proof, once nothing stops the import, tells which a catch-all or a mailbox \
                 still takes)",
                lost_keys(&self.undeliverable),
                first_few(self.undeliverable.iter())
            ),
            _ => format!(
                "mailtable import: {} of the sources will not receive mail: \
                 {}{redirected}{failing_too}",
                lost_keys(&self.undeliverable),
                first_few(self.undeliverable.iter())
            ),
        });
        line(format!("sources: {}", self.sources.join(", ")));
        let c = &self.counts;
        line(match self.status {
            Status::Imported => format!("result: imported, {} row(s) written", c.rows_to_write),
            Status::DryRun => format!(
                "result: dry run, nothing written ({} row(s) would be)",
                c.rows_to_write
            ),
            Status::Verified => "result: verify only, nothing written".to_string(),
            Status::Refused => "result: refused, nothing written".to_string(),
            Status::Planned => "result: planned".to_string(),
        });
        if !self.malformed.is_empty() {
            line(String::new());
            line(format!("malformed ({}):", self.malformed.len()));
            for m in &self.malformed {
                line(format!("  {}", item_text(m)));
            }
            return o;
        }
        self.counts_text(&mut line);
        if !self.refused_inactive.is_empty() {
            line(String::new());
            line(format!(
                "inactive: {} mailbox(es) not imported: the source delivered nothing to them, \
                 and neither will mailtable (--inactive disabled imports them disabled, \
                 accepting their mail): {}",
                self.refused_inactive.len(),
                self.refused_inactive.join(", ")
            ));
        }
        self.schemes_text(&mut line);
        self.flagged_text(&mut line);
        self.items_text(&mut line);
        self.verification_text(&mut line);
        o
    }

    /// The counts per kind.
    fn counts_text(&self, line: &mut impl FnMut(String)) {
        let c = &self.counts;
        line(String::new());
        let mut extra = Vec::new();
        if c.disabled > 0 {
            extra.push(format!("{} disabled", c.disabled));
        }
        if c.with_quota > 0 {
            extra.push(format!("{} with a quota", c.with_quota));
        }
        let paren = |v: Vec<String>| {
            if v.is_empty() {
                String::new()
            } else {
                format!("  ({})", v.join(", "))
            }
        };
        line(format!(
            "  domains         {:>5}  {}",
            c.domains,
            self.domains.join(", ")
        ));
        line(format!(
            "  mailboxes       {:>5}{}",
            c.mailboxes,
            paren(extra)
        ));
        line(format!(
            "  aliases         {:>5}  ({} row(s))",
            c.aliases, c.alias_rows
        ));
        line(format!("  catch-alls      {:>5}", c.catch_alls));
        if c.domain_aliases > 0 {
            line(format!("  domain aliases  {:>5}", c.domain_aliases));
        }
        if c.patterns > 0 {
            line(format!("  patterns        {:>5}", c.patterns));
        }
        line(format!(
            "  rows            {:>5}  ({} to write, {} key(s) already present and identical)",
            c.rows, c.rows_to_write, c.keys_already_present
        ));
    }

    /// The password schemes and who can check them.
    fn schemes_text(&self, line: &mut impl FnMut(String)) {
        if !self.password_schemes.is_empty() {
            line(String::new());
            let w = self
                .password_schemes
                .iter()
                .map(|s| s.scheme.len())
                .max()
                .unwrap_or(0)
                .max("password scheme".len());
            line(format!(
                "{:<w$}  users  OpenSMTPD  Dovecot",
                "password scheme"
            ));
            let yn = |b: bool| if b { "yes" } else { "no" };
            for s in &self.password_schemes {
                let note = s.note.map(|n| format!("  {n}")).unwrap_or_default();
                let dovecot = match (s.dovecot, s.dovecot_dict_only) {
                    (true, _) => "yes",
                    (false, true) => "dict only",
                    (false, false) => "no",
                };
                line(format!(
                    "{:<w$}  {:>5}  {:<9}  {:<9}{note}",
                    s.scheme,
                    s.users,
                    yn(s.opensmtpd),
                    dovecot
                ));
            }
        }
    }

    /// Mailboxes some daemon cannot check.
    fn flagged_text(&self, line: &mut impl FnMut(String)) {
        if !self.smtpd_cannot_verify.is_empty() {
            line(String::new());
            line(format!(
                "only Dovecot can check these passwords; SMTP AUTH through OpenSMTPD fails for \
                 them until `mailtable user passwd` gives them a bcrypt hash ({}):",
                self.smtpd_cannot_verify.len()
            ));
            for f in &self.smtpd_cannot_verify {
                line(format!("  {}  {}  ({})", f.address, f.scheme, f.at));
            }
        }
        if !self.dovecot_dict_only.is_empty() {
            line(String::new());
            line(format!(
                "only Dovecot itself can check these passwords (the dict mode): through \
                 checkpassword or the Lua endpoint they cannot log in until `mailtable user \
                 passwd` gives them a bcrypt hash ({}):",
                self.dovecot_dict_only.len()
            ));
            for f in &self.dovecot_dict_only {
                line(format!("  {}  {}  ({})", f.address, f.scheme, f.at));
            }
        }
        if !self.no_daemon_can_verify.is_empty() {
            line(String::new());
            line(format!(
                "neither daemon can check these passwords, so they cannot log in ({}):",
                self.no_daemon_can_verify.len()
            ));
            for f in &self.no_daemon_can_verify {
                line(format!("  {}  {}  ({})", f.address, f.scheme, f.at));
            }
        }
    }

    /// Entries not imported, conflicts, notes.
    fn items_text(&self, line: &mut impl FnMut(String)) {
        if !self.mailboxes_not_imported.is_empty() {
            line(String::new());
            line(format!(
                "logins and mailboxes of the sources not imported ({}): {}",
                self.mailboxes_not_imported.len(),
                self.mailboxes_not_imported.join(", ")
            ));
        }
        for (title, items) in [
            ("not imported", &self.not_imported),
            ("conflicts", &self.conflicts),
            ("notes", &self.notes),
        ] {
            if items.is_empty() {
                continue;
            }
            line(String::new());
            line(format!("{title} ({}):", items.len()));
            for i in items {
                line(format!("  {}", item_text(i)));
            }
        }
    }

    /// The resolution check.
    fn verification_text(&self, line: &mut impl FnMut(String)) {
        if let Some(v) = &self.verification {
            line(String::new());
            let skipped = if v.not_comparable > 0 {
                format!(
                    " ({} more reach entries not imported and are not compared)",
                    v.not_comparable
                )
            } else {
                String::new()
            };
            if v.differences.is_empty() {
                line(format!(
                    "verification: all {} address(es) the source knew resolve as in the source{skipped}",
                    v.checked
                ));
            } else {
                line(format!(
                    "verification: {} of {} address(es) resolve differently from the source{skipped}:",
                    v.differences.len(),
                    v.checked
                ));
                for d in &v.differences {
                    line(format!(
                        "  {}: the source gives {}; mailtable gives {}",
                        d.address, d.source, d.mailtable
                    ));
                }
            }
            if !v.redirected.is_empty() {
                line(format!(
                    "redirected: {} address(es) the source delivered through an entry not \
                     imported now reach another mailbox (another entry takes them: a \
                     catch-all, a pattern, an alias of the local user they went to); add an \
                     alias for each where they should go:",
                    v.redirected.len()
                ));
                for d in &v.redirected {
                    line(format!("  {} -> {}", d.address, d.mailtable));
                }
            }
            if !v.failing.is_empty() {
                line(format!(
                    "failing: smtpd will defer the mail of {} address(es) (4xx on every try) \
                     until their rows are fixed (`mailtable resolve ADDRESS` shows the walk):",
                    v.failing.len()
                ));
                for f in &v.failing {
                    line(format!("  {}: {}", f.address, f.why));
                }
            }
        }
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{}: {s}: {}", self.at, self.why),
            None => write!(f, "{}: {}", self.at, self.why),
        }
    }
}

fn item_text(i: &Item) -> String {
    i.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(h: &str) -> SchemeInfo {
        scheme_info(&PasswordHash::new(h))
    }

    /// The report's first line lists source addresses: an escape sequence
    /// or a NUL in one is shown escaped, never sent to the terminal.
    #[test]
    fn first_few_escapes_control_characters() {
        let keys = [
            "x\u{1b}[31mred@example.org",
            "b\0x@example.org",
            "ok@example.org",
        ];
        let line = first_few(keys.iter());
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            line,
            "x\\u{1b}[31mred@example.org, b\\u{0}x@example.org, ok@example.org"
        );
    }

    #[test]
    fn who_can_check_what() {
        let b = info("$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
        assert_eq!(
            (b.label.as_str(), b.opensmtpd, b.dovecot),
            ("bcrypt ($2b$)", true, true)
        );
        let y = info("{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
        assert_eq!(y.label, "{BLF-CRYPT} bcrypt ($2y$)");
        assert!(y.opensmtpd && y.dovecot);
        // Salted SHA-512: 64 bytes of digest, then salt.
        let s = info("{SSHA512}M8AgWyPjdKo8Cp+VUlYW1Y2mwA/5jXhqZymqmlm2FjgQmPbq1nxLDPfEwqYeSEj8R2e4AijSTO0PgVSYDvHprYiFTrI=");
        assert_eq!((s.opensmtpd, s.dovecot), (false, true));
        // Too short to be one: neither daemon checks it.
        let s = info("{SSHA512}c2VjcmV0c2FsdA==");
        assert_eq!(
            (s.opensmtpd, s.dovecot, s.dovecot_dict_only),
            (false, false, false)
        );
        let a = info(
            "$argon2id$v=19$m=65536,t=3,p=1$YbhB3+dPpV2cIVF/Hr2KQQ$Eo7xsjLuF1ojmW4Nxic70puU+o1YPRzjyhAl4+YBTOw",
        );
        assert_eq!((a.opensmtpd, a.dovecot), (false, true));
        let m = info("$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/");
        assert!(m.opensmtpd && m.dovecot);
        assert!(m.note.unwrap().contains("2.4"));
        let p = info("{PLAIN}secret");
        assert!(p.note.unwrap().contains("cleartext"));
        assert!(!p.opensmtpd);
        let d = info("{CRYPT}abJnggxhB/yWI");
        assert_eq!(d.label, "{CRYPT} DES crypt");
        assert_eq!(
            (d.opensmtpd, d.dovecot, d.dovecot_dict_only),
            (false, false, true)
        );
        let y = info("$y$j9T$F5Jx5fExrKuJdvTI5b7Ak/$5UiCg2g.gQ2w4go5BZ2i.aIHSEum6qlbkN8Z1WSBsh4");
        assert_eq!(
            (y.opensmtpd, y.dovecot, y.dovecot_dict_only),
            (true, false, true)
        );
        let junk = info("not-a-hash");
        assert_eq!((junk.opensmtpd, junk.dovecot), (false, false));
        let pbkdf2 =
            info("{PBKDF2}$1$.8EG.f/6LSIKluCw$5000$473c6686f453b9113ca0eb28c3c293c4d4de909f");
        assert_eq!(
            (
                pbkdf2.opensmtpd,
                pbkdf2.dovecot,
                pbkdf2.dovecot_dict_only,
                pbkdf2.note
            ),
            (false, false, true, None)
        );
        let odd = info("{FOO}bar");
        assert!(!odd.dovecot);
        // A malformed hash of a known family: its own line, checked by no
        // daemon (not counted with the well-formed ones of its family).
        let bad = info("$2b$04$garbage");
        assert_eq!(
            (
                bad.label.as_str(),
                bad.opensmtpd,
                bad.dovecot,
                bad.dovecot_dict_only
            ),
            ("bcrypt ($2b$), malformed", false, false, false)
        );
        let blank = info("$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234 ");
        assert_eq!((blank.opensmtpd, blank.dovecot), (false, false));
        assert!(blank.label.ends_with(", malformed"), "{}", blank.label);
    }
}

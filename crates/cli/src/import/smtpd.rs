//! OpenSMTPD file tables: the virtual alias file, userinfo, credentials, and
//! the `passwd` format of opensmtpd-extras' `table-passwd`. Pure: text in,
//! [`Parsed`] out; unit tests feed literal lines.
//!
//! The line and value grammars are smtpd's own, so that what smtpd would
//! have refused is refused here too, and what it accepted means the same:
//!
//! - a line is `key value`: the key runs to the first space, tab or `:`,
//!   one separator is consumed, then spaces and tabs; `#` starts a comment
//!   only at the start of a line; a key without a value in a mapping table
//!   is "invalid map entry" (`parse_table_line` in OpenSMTPD
//!   `usr.sbin/smtpd/util.c`, `table_static_priv_load` in
//!   `usr.sbin/smtpd/table_static.c`). Keys are lower-cased, and a repeated
//!   key replaces the earlier one (`dict_set` in `table_static_priv_add`);
//!   the model reports such repeats instead of picking one silently.
//!   smtpd 6.x also skipped a `:` followed by a blank there
//!   (`table_static_parse` in 6.x's `table_static.c`), so `key : value`
//!   meant `value`; 7.x reads `: value`, which no lookup accepts. Such a
//!   line is read the 6.x way, the only one under which it ever worked,
//!   and the report says so ([`TableLine::smtpd6_only`]).
//! - an alias value is a comma list with `"`/`'` quoting and `\` escapes,
//!   each element an `:error:`, an `:include:`, a `|pipe`, a `/file`, an
//!   address or a user name, and one element that is none of these breaks
//!   the whole lookup (`expand_line` in `usr.sbin/smtpd/expand.c`,
//!   `text_to_expandnode` in `usr.sbin/smtpd/to.c`; reference
//!   opensmtpd-table-protocol.md §4.2).
//! - a credentials value is `user:hash`, split at the first `:`, and a value
//!   that starts or ends with `:` or is shorter than 3 bytes is refused
//!   (`table_parse_lookup`, K_CREDENTIALS, in `usr.sbin/smtpd/table.c`;
//!   reference §4.4).
//! - a `passwd` line has at least the six `:`-separated fields up to the
//!   home; uid, gid and home matter only to userinfo (`parse_passwd_entry`
//!   in OpenSMTPD-extras `extras/tables/table-passwd/table_passwd.c`).
//!
//! Hashes never appear in a message: errors about a credentials or passwd
//! line name the line and the login, not the value.

use super::{Finding, Login, LoginName, Origin, Parsed, Route, RouteKey, Target, UserInfo};
use mailtable_core::{Address, Domain, PasswordHash};

/// A data line of a mapping table, split as smtpd splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLine<'a> {
    /// The key, lower-cased as smtpd stores it.
    pub key: String,
    /// The value, after the separator and the blanks behind it.
    pub value: &'a str,
    /// The line is `key : value`: smtpd 6.x skipped the `:` and read
    /// `value`; 7.x reads `: value`, which fails every lookup of the key.
    /// `value` is the 6.x reading.
    pub smtpd6_only: bool,
}

impl TableLine<'_> {
    /// The report's note for a [`TableLine::smtpd6_only`] line, `None` for
    /// any other.
    pub fn smtpd6_note(&self, at: &Origin) -> Option<Finding> {
        self.smtpd6_only.then(|| {
            Finding::about(
                at.clone(),
                &self.key,
                "a `:` and a blank between key and value (`key : value`): read as smtpd 6.x \
                 read it, without the colon; smtpd 7.x reads the value as \": ...\" and fails \
                 every lookup of this key",
            )
        })
    }
}

/// A data line of a mapping table, `None` for blank and comment lines,
/// `Err` for a line smtpd calls an invalid map entry.
pub fn split_table_line(line: &str) -> Option<Result<TableLine<'_>, String>> {
    let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let key_end = if line.starts_with('[') {
        match line.find(']') {
            Some(i) => i + 1,
            None => return Some(Err("unbalanced [ in the key".into())),
        }
    } else {
        line.find([' ', '\t', ':']).unwrap_or(line.len())
    };
    let key = &line[..key_end];
    let mut value = &line[key_end..];
    if !value.is_empty() && !line.starts_with('[') {
        value = &value[1..]; // the one separator smtpd consumes
    }
    let mut value = value.trim_start_matches([' ', '\t']);
    if value.is_empty() {
        return Some(Err(format!("key {key:?} has no value")));
    }
    // 6.x's loop: skip blanks, and a `:` whose next byte is a blank. The
    // line's end is trimmed, so a value that is left is never empty.
    let mut smtpd6_only = false;
    while let Some(rest) = value.strip_prefix(':') {
        if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            break;
        }
        value = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        smtpd6_only = true;
    }
    // smtpd lower-cases keys when it loads the table (table_static_priv_add).
    Some(Ok(TableLine {
        key: key.to_ascii_lowercase(),
        value,
        smtpd6_only,
    }))
}

/// The line (counted from 0) of a `# @list` comment that comes before the
/// first entry of a table file. smtpd's file backend then reads the whole
/// file as a list table, whatever its lines hold
/// (`table_static_priv_load` in `usr.sbin/smtpd/table_static.c`, 6.8 and
/// 7.6: the comment is trimmed, and only while the table's kind is still
/// open).
fn list_declared(text: &str) -> Option<usize> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
        match line.strip_prefix('#') {
            Some(comment) if comment.trim_start() == "@list" => return Some(n),
            Some(_) => {}
            None if line.is_empty() => {}
            None => return None,
        }
    }
    None
}

/// The finding for a mapping table that `# @list` made a list: smtpd's
/// `virtual`, `alias`, `userbase` and `auth` take only mappings
/// (`table_check_use(t, T_DYNAMIC|T_HASH, ...)` in `usr.sbin/smtpd/parse.y`),
/// so smtpd refused its config and never ran with this file as it is.
fn declared_list(source: &str, text: &str, used_by: &str) -> Option<Finding> {
    list_declared(text).map(|n| {
        Finding::new(
            Origin::line(source, n + 1),
            format!(
                "`# @list` before the first entry makes smtpd read this file as a list \
                 table, which {used_by} refuses (smtpd would not start with it): remove \
                 that comment"
            ),
        )
    })
}

/// Split an alias value at commas, honouring `"`/`'` quotes and `\`
/// escapes, trimming each element and dropping empty ones.
pub fn split_alias_value(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => match chars.next() {
                Some(n) => cur.push(n),
                None => return Err("the value ends with a lone \\".into()),
            },
            ('"' | '\'', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                cur.push(c);
            }
            (',', None) => {
                let e = cur.trim().to_string();
                if !e.is_empty() {
                    out.push(e);
                }
                cur.clear();
            }
            (c, _) => cur.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unbalanced {q} quote"));
    }
    let e = cur.trim().to_string();
    if !e.is_empty() {
        out.push(e);
    }
    Ok(out)
}

/// One element of an alias value, classified in smtpd's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// `:error:550 text` or `error:...`.
    Error(String),
    /// `:include:/path` or `include:/path`.
    Include(String),
    /// `|command`.
    Pipe(String),
    /// `/path/to/mbox`.
    File(String),
    /// `local@domain`.
    Address(String),
    /// A local user name.
    User(String),
}

/// Classify one element, or say why smtpd would refuse the lookup.
///
/// Quotes stay part of the element, as in smtpd: `expand_line_split`
/// (expand.c) keeps them while it splits, and only the filter test
/// (`alias_is_filter`, to.c) looks past a leading `"`. A quoted address
/// or user name matches no element kind, so smtpd fails the whole lookup.
pub fn classify(element: &str) -> Result<Element, String> {
    let e = element.trim();
    let lower = e.to_ascii_lowercase();
    for p in [":error:", "error:"] {
        if let Some(rest) = lower.strip_prefix(p) {
            let b = rest.as_bytes();
            let ok = b.len() > 4
                && matches!(b[0], b'4' | b'5')
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && b[3] == b' '
                && b[4].is_ascii_alphanumeric();
            return if ok {
                Ok(Element::Error(e.to_string()))
            } else {
                Err(format!(
                    "{element:?}: an error element needs a 4xx or 5xx code, a space and text"
                ))
            };
        }
    }
    for p in [":include:", "include:"] {
        if lower.starts_with(p) {
            return Ok(Element::Include(e.to_string()));
        }
    }
    // `"|command"`: the one quoted element smtpd reads (alias_is_filter).
    if e.starts_with('|') || (e.len() > 2 && e.starts_with("\"|") && e.ends_with('"')) {
        return Ok(Element::Pipe(e.to_string()));
    }
    if e.starts_with('/') {
        return Ok(Element::File(e.to_string()));
    }
    if let Some(at) = e.rfind('@') {
        let (local, domain) = (&e[..at], &e[at + 1..]);
        let local_ok = !local.is_empty()
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%*/?|^{}`~&'+-=_.".contains(&b));
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if local_ok && domain_ok {
            return Ok(Element::Address(e.to_string()));
        }
    }
    if !e.is_empty()
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
    {
        return Ok(Element::User(e.to_ascii_lowercase()));
    }
    if e.starts_with(['"', '\'']) {
        return Err(format!(
            "{e}: smtpd keeps the quotes and refuses the whole line (a temporary \
             error for every message to the key); write it without quotes"
        ));
    }
    // Fields joined by `:` are another file's line (a credentials or
    // passwd-file line given as aliases), whose second field is a password
    // that may be plain text: named by its place, never quoted.
    let shown = match e.contains(':') {
        true => "this element (':'-separated fields, not shown: another format's line?)".into(),
        false => format!("{element:?}"),
    };
    Err(format!(
        "{shown} is not an address, a user name, a /file, a |pipe, an :include: or an :error:"
    ))
}

/// The delivery users of an alias value given with a tag (`vgilles+archive`),
/// as (user, tag). smtpd cuts the tag off before the user lookup and keeps
/// it for the delivery (lka_expand in lka_session.c), where a maildir
/// files the mail in that folder (seen on smtpd 6.8: `Maildir/.archive`).
fn tagged_users(value: &str) -> Vec<(String, String)> {
    split_alias_value(value)
        .unwrap_or_default()
        .iter()
        .filter_map(|e| match classify(e) {
            Ok(Element::User(u)) => {
                let (user, tag) = u.split_once('+')?;
                (!user.is_empty() && !tag.is_empty()).then(|| (user.into(), tag.into()))
            }
            _ => None,
        })
        .collect()
}

/// The targets of an alias value, or why smtpd would refuse it.
pub fn parse_targets(value: &str) -> Result<Vec<Target>, String> {
    let elements = split_alias_value(value)?;
    if elements.is_empty() {
        return Err("the value lists no target".into());
    }
    // Sized once: a growing Vec would keep room for four targets per
    // alias, and a big source holds half a million of them.
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        let t = match classify(&e)? {
            Element::Error(s) => Target::Error {
                // `classify` checked the code after the prefix.
                temporary: s.trim_start_matches(':').get(6..7) == Some("4"),
                text: s,
            },
            Element::Include(s) => Target::Unrepresentable {
                text: s,
                why: "an :include: file; import its addresses as aliases instead".into(),
            },
            Element::Pipe(s) => Target::Unrepresentable {
                text: s,
                why: "a pipe to a command; mailtable delivers to mailboxes and addresses only"
                    .into(),
            },
            Element::File(s) => Target::Unrepresentable {
                text: s,
                why: "an mbox file; mailtable delivers to mailboxes and addresses only".into(),
            },
            Element::Address(s) => match Address::parse(&s) {
                Ok(a) => Target::Address(a),
                Err(err) => Target::Unrepresentable {
                    text: s,
                    why: format!("mailtable refuses this address ({err})"),
                },
            },
            // smtpd cuts the tag off a user name before it looks the user
            // up (lka_expand in lka_session.c, at its subaddressing
            // delimiter, `+` by default): `vmail+folder` is vmail.
            Element::User(u) => Target::LocalUser(match u.find('+') {
                Some(i) if i > 0 => u[..i].to_string(),
                _ => u,
            }),
        };
        out.push(t);
    }
    Ok(out)
}

/// The key of a virtual alias line.
fn route_key(key: &str) -> Result<RouteKey, String> {
    if key == "@" {
        return Ok(RouteKey::Global);
    }
    if let Some(d) = key.strip_prefix('@') {
        return Domain::parse(d)
            .map(RouteKey::CatchAll)
            .map_err(|e| e.to_string());
    }
    if key.contains('@') {
        return Address::parse(key)
            .map(RouteKey::Exact)
            .map_err(|e| e.to_string());
    }
    Ok(RouteKey::Bare(key.to_string()))
}

/// `smtpd-aliases`: the table behind `action ... virtual <t>`.
pub fn parse_aliases(source: &str, text: &str) -> Parsed {
    let mut p = Parsed {
        defines_routes: true,
        ..Parsed::default()
    };
    if let Some(f) = declared_list(source, text, "`virtual <table>` (and `alias <table>`)") {
        p.malformed.push(f);
        return p;
    }
    for (n, line) in text.lines().enumerate() {
        let at = Origin::line(source, n + 1);
        let (key, value) = match split_table_line(line) {
            None => continue,
            Some(Err(why)) => {
                p.malformed.push(Finding::new(at, why));
                continue;
            }
            Some(Ok(l)) => {
                p.notes.extend(l.smtpd6_note(&at));
                (l.key, l.value)
            }
        };
        let targets = match parse_targets(value) {
            Ok(t) => t,
            Err(why) => {
                p.malformed.push(Finding::new(at, format!("{key}: {why}")));
                continue;
            }
        };
        for (user, tag) in tagged_users(value) {
            p.notes.push(Finding::about(
                at.clone(),
                &key,
                format!(
                    "target {user}+{tag}: smtpd handed the tag to the delivery, which files the \
                     mail in the folder {tag}; after the import it goes to the mailbox of {user} \
                     itself (a Sieve rule can file it there again)"
                ),
            ));
        }
        // smtpd looks up the recipient as it came, only lower-cased
        // (aliases_virtual_get in usr.sbin/smtpd/aliases.c): a key whose
        // domain ends with a dot matched no address in the form mail
        // comes with. Stored without the dot, as mailtable stores every
        // domain, it would start to take mail (a dead `@dom.` a live
        // catch-all), so it is left out, and said.
        if key.rsplit_once('@').is_some_and(|(_, d)| d.ends_with('.')) {
            p.skipped.push(Finding::about(
                at,
                &key,
                "smtpd never matched this key: its domain ends with a dot, which the \
                 recipients it looks up do not; left out, as it delivered nothing (write \
                 it without the dot to make it deliver)",
            ));
            continue;
        }
        match route_key(&key) {
            Ok(k) => {
                p.notes
                    .extend(Finding::stored_as(&at, &key, &k.to_string(), SMTPD_MATCHED));
                p.routes.push(Route {
                    key: k,
                    targets,
                    origin: at,
                })
            }
            Err(why) => p.address_left_behind(
                at,
                &key,
                &format!("key is not an address mailtable can store ({why})"),
            ),
        }
    }
    p
}

/// What smtpd compared a key with: the recipient or login as it came, only
/// lower-cased (`aliases_virtual_get` in `usr.sbin/smtpd/aliases.c`), so a
/// key with a Unicode domain matched its written form only.
const SMTPD_MATCHED: &str = "smtpd matched only the form written here";

/// uid, gid and home of a user.
type Ids = (u32, u32, String);

/// `uid:gid:home` of a userinfo value.
fn parse_userinfo_value(value: &str) -> Result<Ids, String> {
    let mut parts = value.splitn(3, ':');
    let (Some(uid), Some(gid), Some(home)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected uid:gid:home".into());
    };
    // Not quoted: in a line of another format (a passwd-file line given
    // as userinfo) the field is a password.
    let num = |s: &str, what: &str| {
        s.parse::<u32>().map_err(|_| {
            format!(
                "{what} (field {}) is not a number",
                1 + usize::from(what == "gid")
            )
        })
    };
    let (uid, gid) = (num(uid, "uid")?, num(gid, "gid")?);
    if !home.starts_with('/') {
        return Err(format!("home {home:?} is not an absolute path"));
    }
    Ok((uid, gid, home.to_string()))
}

/// `smtpd-userinfo`: `user uid:gid:home`, the `userbase` of the delivery
/// users. Nothing to store per row (mailtable derives uid, gid and home
/// from its config); kept for the report.
///
/// smtpd's userbase can also be a table-passwd file (`userbase <passwd>`
/// next to `auth <passwd>`): a line that is no userinfo line but a
/// table-passwd entry gives its user, uid, gid and home. So the one file
/// is given twice, `smtpd-passwd:F` for the logins and `smtpd-userinfo:F`
/// for the userbase; as `smtpd-passwd` alone it may serve `auth` only.
pub fn parse_userinfo(source: &str, text: &str) -> Parsed {
    let mut p = Parsed::default();
    if let Some(f) = declared_list(source, text, "`userbase <table>`") {
        p.malformed.push(f);
        return p;
    }
    for (n, line) in text.lines().enumerate() {
        let at = Origin::line(source, n + 1);
        let (key, value) = match (split_table_line(line), passwd_userinfo(line)) {
            (None, _) => continue,
            (Some(Ok(l)), _) if parse_userinfo_value(l.value).is_ok() => {
                p.notes.extend(l.smtpd6_note(&at));
                (l.key, l.value)
            }
            (_, Some((user, Some((uid, gid, home))))) => {
                p.userinfo.push(UserInfo {
                    user,
                    uid: Some(uid),
                    gid: Some(gid),
                    home: Some(home),
                    userbase: true,
                    origin: at,
                });
                continue;
            }
            // In the userbase, but table-passwd's lookup of it is an
            // error (smtpd: "backend error while searching user", 451).
            (_, Some((user, None))) => {
                p.notes.push(Finding::about(
                    at.clone(),
                    &user,
                    "uid, gid or home is empty or not a number: table-passwd's userinfo \
                     lookup of this user fails, and smtpd deferred mail reaching it (451)",
                ));
                p.userinfo.push(UserInfo {
                    user,
                    uid: None,
                    gid: None,
                    home: None,
                    userbase: true,
                    origin: at,
                });
                continue;
            }
            (Some(Err(why)), None) => {
                p.malformed.push(Finding::new(at, why));
                continue;
            }
            (Some(Ok(l)), None) => (l.key, l.value),
        };
        match parse_userinfo_value(value) {
            Ok((uid, gid, home)) => p.userinfo.push(UserInfo {
                user: key,
                uid: Some(uid),
                gid: Some(gid),
                home: Some(home),
                userbase: true,
                origin: at,
            }),
            Err(why) => p.malformed.push(Finding::new(at, format!("{key}: {why}"))),
        }
    }
    p
}

fn login_name(key: &str) -> Result<LoginName, String> {
    if key.contains('@') {
        Address::parse(key)
            .map(LoginName::Address)
            .map_err(|e| e.to_string())
    } else {
        Ok(LoginName::Bare(key.to_string()))
    }
}

/// `smtpd-credentials`: `login login:hash`, the listener's `auth <t>`.
pub fn parse_credentials(source: &str, text: &str) -> Parsed {
    let mut p = Parsed::default();
    if let Some(f) = declared_list(source, text, "a listener's `auth <table>`") {
        p.malformed.push(f);
        return p;
    }
    for (n, line) in text.lines().enumerate() {
        let at = Origin::line(source, n + 1);
        let (key, value) = match split_table_line(line) {
            None => continue,
            // The value is a hash: never echo it.
            Some(Err(_)) => {
                p.malformed
                    .push(Finding::new(at, "a credentials line without a value"));
                continue;
            }
            Some(Ok(l)) => {
                p.notes.extend(l.smtpd6_note(&at));
                (l.key, l.value)
            }
        };
        if value.len() < 3 || value.starts_with(':') || value.ends_with(':') {
            p.malformed.push(Finding::new(
                at,
                format!("{key}: the value must be user:hash (smtpd refuses an empty user or hash)"),
            ));
            continue;
        }
        let hash = value.split_once(':').map_or(value, |(_, h)| h);
        push_login(&mut p, at, &key, hash, false);
    }
    p
}

fn push_login(p: &mut Parsed, at: Origin, key: &str, hash: &str, implied_route: bool) {
    let hash = PasswordHash::new(hash);
    // smtpd hands the stored string to crypt(3) as it is (table(5):
    // "the password is encrypted with crypt(3)"), which knows no `{SCHEME}`
    // prefix: the check failed on every login. Said where mailtable can
    // give smtpd a crypt(3) string instead (the report's scheme table
    // lists the others as smtpd cannot check); only the scheme is named,
    // never the hash.
    if let Some(scheme) = hash.prefix().filter(|_| hash.for_smtpd().is_some()) {
        p.notes.push(Finding::about(
            at.clone(),
            key,
            format!(
                "the hash starts with Dovecot's {{{scheme}}} prefix, which smtpd's crypt(3) \
                 check does not strip: this login failed through smtpd; mailtable hands smtpd \
                 the hash without it, so it works after the import"
            ),
        ));
    }
    match login_name(key) {
        Ok(name) => {
            if let LoginName::Address(a) = &name {
                p.notes
                    .extend(Finding::stored_as(&at, key, &a.to_string(), SMTPD_MATCHED));
            }
            p.logins.push(Login {
                name,
                hash,
                active: true,
                quota: None,
                implied_route,
                origin: at,
            })
        }
        Err(why) => p.mailbox_left_behind(
            at,
            key,
            &format!("login is not an address mailtable can store ({why})"),
        ),
    }
}

/// `smtpd-domains`: the list table a rule accepts mail for (`match from
/// any for domain <domains>`), read as smtpd's file backend reads it
/// (`table_static_parse` in `usr.sbin/smtpd/table_static.c`): blank lines
/// and lines starting with `#` are skipped; the first entry decides the
/// table's kind, a list unless it holds a blank or a `:` (then it is a
/// mapping, which smtpd refuses for `for domain`, so it never ran with
/// it) or a `# @list` comment came first; each later line, trimmed, is
/// one key as it is, lower-cased (`example.net  true` further down is a
/// key no domain equals). smtpd compares the keys with its own glob
/// ([`hostname_match`]). An address of the other tables whose domain no
/// key matches got 550 there.
pub fn parse_domains(source: &str, text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut listed = Vec::new();
    let list = list_declared(text).is_some();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = Origin::line(source, n + 1);
        if listed.is_empty() && !list && line.contains([' ', '\t', ':']) {
            p.malformed.push(Finding::new(
                at,
                "smtpd reads this file as a mapping table (its first entry holds a blank or a \
                 `:`), which `match ... for domain` refuses: write one domain per line",
            ));
            return p;
        }
        listed.push((line.to_ascii_lowercase(), at));
    }
    if listed.is_empty() && !list {
        p.malformed.push(Finding::new(
            Origin::whole(source),
            "no domain in it: smtpd reads an empty file as a mapping table, which `match ... \
             for domain` refuses",
        ));
    }
    p.accepted_domains = Some(listed);
    p
}

/// Whether smtpd's domain table entry `pattern` matches `domain`, as
/// `hostname_match` in OpenSMTPD `usr.sbin/smtpd/util.c` decides it: case
/// folded, and a `*` skips the domain's characters up to the first one
/// equal to the pattern's next (no backtracking: `*.example.org` matches
/// `a.example.org`, neither `a.b.example.org` nor `example.org`).
pub fn hostname_match(domain: &str, pattern: &str) -> bool {
    let d = domain.as_bytes();
    let p = pattern.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < d.len() && j < p.len() {
        if p[j] == b'*' {
            while j < p.len() && p[j] == b'*' {
                j += 1;
            }
            // The pattern's next character, or the end (then nothing
            // equals it and the rest of the domain is skipped).
            let next = p.get(j).map(u8::to_ascii_lowercase);
            while i < d.len() && Some(d[i].to_ascii_lowercase()) != next {
                i += 1;
            }
            continue;
        }
        if !p[j].eq_ignore_ascii_case(&d[i]) {
            return false;
        }
        i += 1;
        j += 1;
    }
    i == d.len() && j == p.len()
}

/// The fields of a table-passwd line, cut as table-passwd cuts it (see
/// [`parse_passwd`]): `None` for a line with nothing before a `#`.
fn passwd_fields(line: &str) -> Option<Vec<&str>> {
    let line = line.split('#').next().unwrap_or_default();
    let line = line.trim_end_matches(['\r', '\n']);
    (!line.is_empty()).then(|| line.split(':').collect())
}

/// uid, gid and home of table-passwd fields, as its userinfo lookup takes
/// them (strtonum(p, 0, UID_MAX): 0 is a valid id there); `None` where
/// that lookup fails.
fn passwd_ids(fields: &[&str]) -> Option<Ids> {
    let id = |s: &str| s.parse::<u32>().ok();
    let home = fields.get(5).filter(|h| !h.is_empty())?;
    Some((id(fields.get(2)?)?, id(fields.get(3)?)?, home.to_string()))
}

/// A table-passwd line with the six fields up to the home: its user, and
/// its uid, gid and home where its userinfo lookup works.
fn passwd_userinfo(line: &str) -> Option<(String, Option<Ids>)> {
    let fields = passwd_fields(line)?;
    if fields.len() < 6 || fields[0].is_empty() {
        return None;
    }
    // As written: table-passwd keeps the name as the file has it, and
    // smtpd asks for the lower-cased user, so `Gilles` is never found.
    Some((fields[0].to_string(), passwd_ids(&fields)))
}

/// `smtpd-passwd`: `user:hash:uid:gid:gecos:home[:shell[:...]]`,
/// credentials and userinfo in one file, read as table-passwd reads it
/// (`table_passwd_update` and `parse_passwd_entry` in OpenSMTPD-extras
/// `extras/tables/table-passwd/table_passwd.c`):
///
/// - a `#` anywhere ends the line; a line that is then empty is skipped;
/// - every other line needs the six fields up to the home; a line without
///   them stops the whole table from loading (so smtpd never ran with this
///   file as it is): malformed;
/// - the shell is optional and further fields are allowed (a file shared
///   with Dovecot's passwd-file); table-passwd ignores them, and so do the
///   credentials and userinfo read here (a note says where they went);
/// - uid, gid and home are checked only when smtpd asks for userinfo, and a
///   bad one fails that lookup, not the login: the login comes over, the
///   userinfo is noted and left out.
pub fn parse_passwd(source: &str, text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (n, line) in text.lines().enumerate() {
        let at = Origin::line(source, n + 1);
        let Some(fields) = passwd_fields(line) else {
            continue;
        };
        let user = fields[0].trim();
        if fields.len() < 6 || user.is_empty() {
            p.malformed.push(Finding::new(
                at,
                format!(
                    "{user}: expected user:hash:uid:gid:gecos:home[:shell], found {} \
                     field(s); table-passwd refuses the whole file for such a line",
                    fields.len()
                ),
            ));
            continue;
        }
        if fields.len() > 7 {
            p.notes.push(Finding::about(
                at.clone(),
                user,
                "fields after the shell are Dovecot's and table-passwd ignores them; \
                 import the file as dovecot-passwd too to keep them",
            ));
        }
        if fields[1].is_empty() {
            p.skipped.push(Finding::about(
                at,
                user,
                "no password: smtpd cannot check a login, and a mailbox needs a hash",
            ));
            continue;
        }
        let key = user.to_ascii_lowercase();
        push_login(&mut p, at.clone(), &key, fields[1], false);
        match passwd_ids(&fields) {
            Some((uid, gid, home)) => p.userinfo.push(UserInfo {
                user: key,
                uid: Some(uid),
                gid: Some(gid),
                home: Some(home),
                // A passwd table may serve `auth` only, with the system's
                // users as the userbase: not taken as the userbase unless
                // given as smtpd-userinfo too.
                userbase: false,
                origin: at,
            }),
            None => p.notes.push(Finding::about(
                at,
                user,
                "uid, gid or home is empty or not a number: smtpd's userinfo lookup of \
                 this user failed (the login worked); mailtable's own uid, gid and home \
                 apply",
            )),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(line: &str) -> Option<Result<(String, String), String>> {
        split_table_line(line).map(|r| r.map(|l| (l.key, l.value.to_string())))
    }

    #[test]
    fn table_lines_split_like_smtpd() {
        assert_eq!(kv("   "), None);
        assert_eq!(kv("# comment"), None);
        assert_eq!(kv("  # indented comment"), None);
        assert_eq!(
            kv("M@Example.org  m"),
            Some(Ok(("m@example.org".into(), "m".into())))
        );
        assert_eq!(kv("root: pi"), Some(Ok(("root".into(), "pi".into()))));
        assert_eq!(
            kv("a@x.org\ta@y.org, b@y.org\r"),
            Some(Ok(("a@x.org".into(), "a@y.org, b@y.org".into())))
        );
        // A `#` after the key is part of the value, as in smtpd.
        assert_eq!(
            kv("a@x.org b # note"),
            Some(Ok(("a@x.org".into(), "b # note".into())))
        );
        assert!(matches!(kv("lonely@x.org"), Some(Err(_))));
    }

    #[test]
    fn alias_values_split_on_commas_with_quotes() {
        assert_eq!(
            split_alias_value(" a@x.org ,b , ,c ").unwrap(),
            vec!["a@x.org", "b", "c"]
        );
        assert_eq!(
            split_alias_value(r#""|/bin/echo a,b", c"#).unwrap(),
            vec![r#""|/bin/echo a,b""#, "c"]
        );
        assert_eq!(split_alias_value(r"a\,b").unwrap(), vec!["a,b"]);
        assert!(split_alias_value(r#""open"#).is_err());
        assert!(split_alias_value("trailing\\").is_err());
    }

    /// A field that may be another format's password is named by its
    /// place, never quoted.
    #[test]
    fn errors_never_quote_what_may_be_a_password() {
        let e = classify("S3cretPW:5000:5000::/h").unwrap_err();
        assert!(!e.contains("S3cret"), "{e}");
        assert!(e.contains("':'-separated fields, not shown"), "{e}");
        // Without a `:` the element is quoted: it is what to fix.
        let e = classify("no such thing").unwrap_err();
        assert!(e.starts_with("\"no such thing\" is not an address"), "{e}");
        let e = parse_userinfo_value("S3cretPW:5000:/h").unwrap_err();
        assert_eq!(e, "uid (field 1) is not a number");
        let e = parse_userinfo_value("5000:S3cretPW:/h").unwrap_err();
        assert_eq!(e, "gid (field 2) is not a number");
    }

    #[test]
    fn elements_classify_in_smtpd_order() {
        assert_eq!(
            classify(":error:550 No such user"),
            Ok(Element::Error(":error:550 No such user".into()))
        );
        assert!(classify("error:250 ok").is_err());
        assert!(matches!(
            classify(":include:/etc/mail/list"),
            Ok(Element::Include(_))
        ));
        assert!(matches!(
            classify("\"|/usr/bin/vacation\""),
            Ok(Element::Pipe(_))
        ));
        assert!(matches!(classify("/var/mail/m"), Ok(Element::File(_))));
        assert_eq!(
            classify("Bob@Example.org"),
            Ok(Element::Address("Bob@Example.org".into()))
        );
        assert_eq!(classify("Vmail"), Ok(Element::User("vmail".into())));
        assert!(classify("@example.org").is_err());
        // Quotes stay, as smtpd keeps them: only a quoted pipe is read.
        for quoted in [
            "\"friend@partner.example\"",
            "'friend@partner.example'",
            "\"vmail\"",
            "\"/var/mail/m\"",
            "\":error:550 gone\"",
            "\"|\"x",
        ] {
            let why = classify(quoted).unwrap_err();
            assert!(why.contains("without quotes"), "{quoted}: {why}");
        }
        assert!(matches!(classify("\"|\""), Ok(Element::Pipe(_))));
        assert!(classify("two words").is_err());
    }

    #[test]
    fn targets_mark_what_mailtable_cannot_hold() {
        let t = parse_targets("a@x.org, m, |/bin/cat, 50%@x.org").unwrap();
        assert!(matches!(&t[0], Target::Address(a) if a.to_string() == "a@x.org"));
        assert_eq!(t[1], Target::LocalUser("m".into()));
        assert!(matches!(&t[2], Target::Unrepresentable { why, .. } if why.contains("pipe")));
        assert!(matches!(&t[3], Target::Unrepresentable { why, .. } if why.contains("refuses")));
        assert!(parse_targets(" , ").is_err());
        let t = parse_targets(":error:451 later, error:550 gone").unwrap();
        assert!(matches!(
            &t[0],
            Target::Error {
                temporary: true,
                ..
            }
        ));
        assert!(matches!(
            &t[1],
            Target::Error {
                temporary: false,
                ..
            }
        ));
    }

    #[test]
    fn aliases_file_keys() {
        let text = "\
# virtual users
m@example.org      m
mayeu@example.org  m
example.org        true
@example.org       m
root: pi
@                  m
broken@example.org a@x.org, @nowhere
bad-key@-x.org     m
@example.net.      m
dot@example.org.   m
";
        let p = parse_aliases("virtuals", text);
        assert_eq!(p.malformed.len(), 1);
        assert_eq!(p.malformed[0].at.to_string(), "virtuals:8");
        assert!(p.malformed[0].why.contains("@nowhere"));
        assert_eq!(p.skipped.len(), 3);
        assert_eq!(p.skipped[0].at.to_string(), "virtuals:9");
        // Keys smtpd never matched: left out, not counted as lost mail.
        for (i, line) in [(1, "virtuals:10"), (2, "virtuals:11")] {
            assert_eq!(p.skipped[i].at.to_string(), line);
            assert!(
                p.skipped[i].why.contains("never matched"),
                "{:?}",
                p.skipped[i]
            );
        }
        assert!(p
            .lost
            .iter()
            .all(|l| !l.contains("example.net") && !l.starts_with("dot@")));
        let keys: Vec<String> = p.routes.iter().map(|r| r.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "m@example.org",
                "mayeu@example.org",
                "example.org",
                "@example.org",
                "root",
                "@"
            ]
        );
        assert_eq!(p.routes[4].origin.to_string(), "virtuals:6");
    }

    /// `key : value` works on smtpd 6.x only: read the 6.x way, with a
    /// note; a `:` not followed by a blank stays part of the value, as in
    /// both versions.
    #[test]
    fn a_blank_before_the_colon_is_read_as_smtpd_6_read_it() {
        let six = |line: &str| {
            let l = split_table_line(line).unwrap().unwrap();
            (l.key, l.value.to_string(), l.smtpd6_only)
        };
        assert_eq!(six("root : pi"), ("root".into(), "pi".into(), true));
        assert_eq!(
            six("a@x.org\t:\t: b@y.org"),
            ("a@x.org".into(), "b@y.org".into(), true)
        );
        assert_eq!(six("root: pi"), ("root".into(), "pi".into(), false));
        assert_eq!(six("root :"), ("root".into(), ":".into(), false));
        assert_eq!(
            six("a@x.org :error:550 gone"),
            ("a@x.org".into(), ":error:550 gone".into(), false)
        );

        let p = parse_aliases("virtuals", "a@x.org : b@y.org, c@y.org\nd@x.org  b@y.org\n");
        assert!(p.malformed.is_empty(), "{:?}", p.malformed);
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.routes[0].targets.len(), 2);
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert_eq!(p.notes[0].at.to_string(), "virtuals:1");
        assert!(p.notes[0].why.contains("smtpd 6.x"), "{}", p.notes[0].why);

        let p = parse_credentials("credentials", "m : m:$2b$08$secrethashsecrethash\n");
        assert!(p.malformed.is_empty());
        assert_eq!(p.logins[0].hash.stored(), "$2b$08$secrethashsecrethash");
        assert_eq!(p.notes.len(), 1);
        assert!(!p.notes[0].why.contains('$'));

        let p = parse_userinfo("userinfo", "m : 5000:5000:/var/vmail/m\n");
        assert!(p.malformed.is_empty());
        assert_eq!(p.userinfo[0].uid, Some(5000));
        assert_eq!(p.notes.len(), 1);
    }

    #[test]
    fn userinfo_lines() {
        let p = parse_userinfo(
            "userinfo",
            "m  5000:5000:/var/vmail/m\nx 50a0:1:/h\ny 1:2:relative\n",
        );
        assert_eq!(p.userinfo.len(), 1);
        assert_eq!(p.userinfo[0].home.as_deref(), Some("/var/vmail/m"));
        assert_eq!(p.malformed.len(), 2);
        assert!(p.malformed[0].why.contains("uid"));
    }

    /// smtpd's domain glob, on the cases its loop decides: case, `*`
    /// at either end or inside, no backtracking, and the empty domain.
    #[test]
    fn hostname_match_as_smtpd_matches() {
        for (domain, pattern, want) in [
            ("example.org", "example.org", true),
            ("Example.ORG", "example.org", true),
            ("example.org", "example.net", false),
            ("mail.example.org", "example.org", false),
            ("a.example.com", "*.example.com", true),
            // The `*` stops at the first `.`: one label only.
            ("a.b.example.com", "*.example.com", false),
            ("example.com", "*.example.com", false),
            ("anything", "*", true),
            ("", "*", false),
            ("example.org", "ex*.org", true),
            // The `*` stops at the first `a`; "a.org" then fails on "ample.org".
            ("example.org", "*a.org", false),
            // A `*` left over once the domain ends is no match.
            ("example.org", "example.org*", false),
            ("example.org", "example.or", false),
        ] {
            assert_eq!(
                hostname_match(domain, pattern),
                want,
                "{domain} ~ {pattern}"
            );
        }
    }

    /// The file backend's rules: the first entry decides list or mapping
    /// (a mapping smtpd refuses for `for domain`), a later line is one
    /// key as it is, `# @list` first makes any line a key.
    #[test]
    fn domain_list_lines() {
        let keys = |p: Parsed| -> Vec<(String, String)> {
            p.accepted_domains
                .unwrap_or_default()
                .into_iter()
                .map(|(d, at)| (d, at.to_string()))
                .collect()
        };
        let p = parse_domains(
            "domains",
            "# ours\n\nExample.org\n  *.example.com\nexample.net  true\n",
        );
        assert!(p.malformed.is_empty());
        assert_eq!(
            keys(p),
            [
                ("example.org".into(), "domains:3".into()),
                ("*.example.com".into(), "domains:4".into()),
                ("example.net  true".into(), "domains:5".into()),
            ]
        );
        assert!(!hostname_match("example.net", "example.net  true"));
        for mapping in [
            "example.net true\nexample.org\n",
            "a:b\n",
            "# nothing\n",
            "",
        ] {
            let p = parse_domains("domains", mapping);
            assert_eq!(p.malformed.len(), 1, "{mapping:?}");
        }
        let p = parse_domains("domains", "# @list\nexample.net true\n");
        assert!(p.malformed.is_empty());
        assert_eq!(keys(p), [("example.net true".into(), "domains:2".into())]);
    }

    /// A key with a Unicode domain is kept in its IDNA form, with a note
    /// naming both; an ASCII key, lower-cased as smtpd reads it, gets none.
    #[test]
    fn unicode_keys_are_stored_in_idna_form_and_said() {
        let text = "info@B\u{fc}cher.de vmail\n@b\u{fc}cher.de x\nA@Example.org y\n";
        let p = parse_aliases("v", text);
        let keys: Vec<String> = p.routes.iter().map(|r| r.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "info@xn--bcher-kva.de",
                "@xn--bcher-kva.de",
                "a@example.org"
            ]
        );
        let notes: Vec<String> = p.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("v:1: info@b\u{fc}cher.de: stored as info@xn--bcher-kva.de"));
        assert!(notes[1].starts_with("v:2: @b\u{fc}cher.de: stored as @xn--bcher-kva.de"));
        let text = "info@b\u{fc}cher.de $2b$08$hash\nb@example.org $2b$08$hash\n";
        let p = parse_credentials("c", text);
        assert_eq!(p.logins.len(), 2);
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0]
            .to_string()
            .contains("stored as info@xn--bcher-kva.de"));
    }

    /// `# @list` before the first entry makes a mapping file a list, which
    /// smtpd refuses for `virtual`, `userbase` and `auth`: the source is
    /// refused at that line, nothing of it taken. After an entry, or with
    /// more after `@list`, it is only a comment.
    #[test]
    fn mapping_tables_declared_lists() {
        type Parser = fn(&str, &str) -> Parsed;
        let parsers: [(Parser, &str); 3] = [
            (parse_aliases, "a@example.org bob@example.net"),
            (parse_userinfo, "vmail 2000:2000:/var/vmail"),
            (parse_credentials, "a@example.org $2b$08$hash"),
        ];
        for (parse, entry) in parsers {
            for head in ["# @list\n", "\n  #   @list  \n# more\n"] {
                let text = format!("{head}{entry}\n");
                let p = parse("t", &text);
                assert_eq!(p.malformed.len(), 1, "{text:?}");
                let f = p.malformed[0].to_string();
                assert!(f.contains("list table") && f.contains("remove"), "{f}");
                assert!(p.routes.is_empty() && p.logins.is_empty() && p.userinfo.is_empty());
            }
            for text in [
                format!("{entry}\n# @list\n"),
                format!("# @list of ours\n{entry}\n"),
                format!("#@listed\n{entry}\n"),
            ] {
                let p = parse("t", &text);
                assert!(p.malformed.is_empty(), "{text:?}: {:?}", p.malformed);
                assert_eq!(
                    p.routes.len() + p.logins.len() + p.userinfo.len(),
                    1,
                    "{text:?}"
                );
            }
        }
        assert_eq!(list_declared("\n# x\n#@list\nk v\n"), Some(2));
    }

    /// A table-passwd file as the userbase: each entry's user, uid, gid
    /// and home; one whose userinfo lookup fails is in it without them, and a line
    /// that is neither form is malformed. A `user:uid:gid:home` line (the
    /// `:` separator of a file table) stays a userinfo line.
    #[test]
    fn userinfo_from_a_passwd_file() {
        let p = parse_userinfo(
            "passwd",
            "Gilles:$2b$08$hash:5000:5001:Gilles:/var/vmail/gilles:/sbin/nologin # him\n\
             # comment\n\
             eric:$2b$08$hash:5002:5002::/var/vmail/eric\n\
             broken:$2b$08$hash:x:5002::/h:\n\
             m:5003:5003:/var/vmail/m\n\
             short:$2b$08$hash:1:2\n",
        );
        let got: Vec<_> = p
            .userinfo
            .iter()
            .map(|u| (u.user.as_str(), u.uid, u.gid, u.home.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                // As written: smtpd asks for `gilles`, and never finds it.
                ("Gilles", Some(5000), Some(5001), Some("/var/vmail/gilles")),
                ("eric", Some(5002), Some(5002), Some("/var/vmail/eric")),
                // In the userbase, its lookup failing.
                ("broken", None, None, None),
                ("m", Some(5003), Some(5003), Some("/var/vmail/m")),
            ]
        );
        assert!(p.userinfo.iter().all(|u| u.userbase));
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].why.contains("deferred mail reaching it (451)"));
        assert_eq!(p.malformed.len(), 1);
        assert_eq!(p.malformed[0].at.to_string(), "passwd:6");
        for f in p.notes.iter().chain(&p.malformed) {
            assert!(!f.why.contains("$2b$08$hash"), "{}", f.why);
        }
    }

    /// A Dovecot scheme prefix in an smtpd table never worked there: said,
    /// by scheme only.
    #[test]
    fn a_scheme_prefix_in_smtpd_credentials_is_noted() {
        let p = parse_credentials(
            "credentials",
            "a@example.org a@example.org:{SHA512-CRYPT}$6$salt$secrethash\n\
             b@example.org b@example.org:$6$salt$secrethash\n\
             c@example.org c@example.org:{not a scheme}x\n\
             d@example.org d@example.org:{SSHA}c2VjcmV0aGFzaHNhbHQ=\n",
        );
        // d's digest smtpd cannot check after the import either: the
        // report's scheme table says so, no note claims it works.
        assert_eq!(p.logins.len(), 4);
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert_eq!(p.notes[0].at.to_string(), "credentials:1");
        assert!(p.notes[0].why.contains("{SHA512-CRYPT} prefix"));
        assert!(!p.notes[0].why.contains("secrethash"));
        let p = parse_passwd("passwd", "a:{BLF-CRYPT}$2y$05$x:1:1::/h:\n");
        assert!(p.notes.iter().any(|n| n.why.contains("{BLF-CRYPT} prefix")));
    }

    /// A delivery user with a tag delivered into that folder in smtpd: the
    /// import says the mail goes to the mailbox itself from now on.
    #[test]
    fn a_tagged_delivery_user_is_noted() {
        let p = parse_aliases(
            "virtuals",
            "folder@example.org vgilles+archive, x@example.net\n\
             plain@example.org vgilles, a+b@example.net\n",
        );
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.routes[0].targets[0], Target::LocalUser("vgilles".into()));
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert_eq!(p.notes[0].at.to_string(), "virtuals:1");
        assert!(p.notes[0].why.contains("folder archive"));
    }

    #[test]
    fn credentials_never_echo_the_hash() {
        let p = parse_credentials(
            "credentials",
            "m@example.org  m@example.org:$2b$08$secrethashsecrethash\n\
             bare  $6$saltsalt$onlyahash\n\
             oops@example.org  oops@example.org:\n\
             lone@example.org\n",
        );
        assert_eq!(p.logins.len(), 2);
        assert_eq!(
            p.logins[0].hash.stored(),
            "$2b$08$secrethashsecrethash",
            "kept verbatim"
        );
        assert_eq!(p.logins[1].name, LoginName::Bare("bare".into()));
        assert_eq!(p.logins[1].hash.stored(), "$6$saltsalt$onlyahash");
        assert_eq!(p.malformed.len(), 2);
        for m in &p.malformed {
            assert!(!m.why.contains('$'), "{}", m.why);
        }
    }

    #[test]
    fn passwd_table_read_as_table_passwd_reads_it() {
        let p = parse_passwd(
            "passwd",
            "# comment\n\
             gilles@example.org:$2b$08$abc:2000:2000::/var/vmail/example.org/gilles:/sbin/nologin\n\
             eric@example.org:$2b$08$abc:2000:2000::/h::userdb_mail=maildir\n\
             zero@example.org:$2b$08$abc:0:0::/h\n\
             nopw@example.org::2000:2000::/h:\n\
             short@example.org:$2b$08$abc:2000:2000:\n\
             named@example.org:$2b$08$abc:vmail:vmail::/h:\n\
             cut@example.org:$2b$08$abc:2000:2000:Joe #1:/h:/bin/sh\n\
             tail@example.org:$2b$08$abc:2000:2000::/h # a note\n",
        );
        let logins: Vec<String> = p.logins.iter().map(|l| l.name.to_string()).collect();
        assert_eq!(
            logins,
            [
                "gilles@example.org",
                "eric@example.org",
                "zero@example.org",
                "named@example.org",
                "tail@example.org"
            ]
        );
        let info: Vec<_> = p
            .userinfo
            .iter()
            .map(|u| (u.user.as_str(), u.uid, u.home.as_deref()))
            .collect();
        assert_eq!(
            info,
            [
                (
                    "gilles@example.org",
                    Some(2000),
                    Some("/var/vmail/example.org/gilles")
                ),
                ("eric@example.org", Some(2000), Some("/h")),
                ("zero@example.org", Some(0), Some("/h")),
                ("tail@example.org", Some(2000), Some("/h ")),
            ]
        );
        // Too few fields, also where a `#` cut the line: the file never
        // loaded in smtpd.
        let bad: Vec<String> = p.malformed.iter().map(|m| m.at.to_string()).collect();
        assert_eq!(bad, ["passwd:6", "passwd:8"]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].at.to_string(), "passwd:5");
        let notes: Vec<String> = p.notes.iter().map(|n| n.to_string()).collect();
        assert!(
            notes[0].contains("passwd:3") && notes[0].contains("Dovecot's"),
            "{notes:?}"
        );
        assert!(
            notes[1].contains("passwd:7") && notes[1].contains("userinfo"),
            "{notes:?}"
        );
        for m in p.malformed.iter().chain(&p.notes) {
            assert!(!m.why.contains('$'), "{}", m.why);
        }
    }
}

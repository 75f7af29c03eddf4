//! Dovecot passwd-file: `user:password:uid:gid:gecos:home:shell:extra_fields`.
//! Pure: text in, [`Parsed`] out.
//!
//! Grammar (core@2.3.19.1:src/auth/db-passwd-file.c, `passwd_file_open` and
//! `passwd_file_add`): empty lines and lines starting with `#` or `:` (no
//! user name) are skipped; fields are split at `:`; trailing fields may be
//! missing; everything after the seventh `:` is the extra fields, joined
//! back with `:` (values such as `userdb_quota_rule=*:storage=1G` contain
//! colons) and split at spaces, except in the old format, where an empty
//! eighth field is followed by the mail location (`userdb_mail`). uid and
//! gid may be numbers or system user and group names (`userdb_parse_uid`).
//! A password ending in `[NN]` is libpam-pwdfile's notation, which Dovecot
//! rewrites: `[34]` is `{PLAIN-MD5}`, `[56]` `{DIGEST-MD5}` (32 characters,
//! or the user is refused), any other `{CRYPT}`.
//!
//! Every entry is a login that also receives mail (Dovecot's users are its
//! mailboxes), so logins here imply their own delivery. The password keeps
//! its `{SCHEME}` prefix verbatim; a bare value gets the passwd-file default
//! scheme written out as `{CRYPT}` when mailtable could not tell its scheme
//! otherwise (reference dovecot-auth-protocols.md §4.1: the passwd-file
//! default is CRYPT), so that Dovecot keeps checking it the same way.
//!
//! Extra fields: `userdb_quota_rule=*:storage=SIZE` becomes the quota
//! column (dovecot-mailtable answers `quota_rule=*:storage=<quota>`), read
//! as Dovecot reads it and stored in mailtable's canonical form;
//! `nologin` becomes a disabled mailbox; `nopassword` (any password
//! accepted) is refused; anything else is reported as not kept.

use super::{Finding, Login, LoginName, Origin, Parsed, UserInfo};
use mailtable_core::password::Scheme;
use mailtable_core::{Address, Domain, PasswordHash};

/// What one extra field means for mailtable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// `userdb_quota_rule=*:storage=SIZE`: the size in mailtable's form,
    /// `None` for 0 (no limit).
    Quota(Option<String>),
    /// `nologin`: Dovecot refuses the login.
    NoLogin,
    /// `nopassword`: Dovecot accepts any password.
    NoPassword,
    /// Anything mailtable does not keep, with why.
    NotKept(String),
}

/// A `storage=` size as Dovecot 2.3 reads it (`quota_limit_parse` in
/// core@2.3.19.1:src/plugins/quota/quota-util.c): a number, then a unit of
/// which only the first letter counts (`2GB` is `2G`), kilobytes without
/// one. Returns the size in mailtable's form (`None`: 0, no limit), or
/// `Err` for anything else (percentages, relative `+` rules, other units).
fn dovecot_size(s: &str) -> Result<Option<String>, ()> {
    let digits = s.trim_end_matches(|c: char| !c.is_ascii_digit());
    let unit = &s[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let shift = match unit.bytes().next().map(|b| b.to_ascii_uppercase()) {
        None | Some(b'K') => 10,
        Some(b'B') => 0,
        Some(b'M') => 20,
        Some(b'G') => 30,
        Some(b'T') => 40,
        Some(_) => return Err(()),
    };
    let n: i64 = digits.parse().map_err(|_| ())?;
    let bytes = n.checked_mul(1 << shift).ok_or(())?;
    Ok(crate::quota::of_bytes(bytes))
}

/// Interpret one `key=value` (or bare `key`) extra field. Names are read
/// as Dovecot reads them, case and all (`USERDB_QUOTA_RULE` is a passdb
/// field of that name, no quota), and `nologin` and `nopassword` count by
/// their presence, whatever their value (`auth_fields_exists` in
/// core@2.3.19.1:src/auth/auth-request.c): `nologin=no` refuses the login.
pub fn extra_field(field: &str) -> Extra {
    let (key, value) = field.split_once('=').unwrap_or((field, ""));
    match key {
        "userdb_quota_rule" => match value.strip_prefix("*:storage=").map(dovecot_size) {
            Some(Ok(size)) => Extra::Quota(size),
            _ => Extra::NotKept(format!(
                "quota rule {value:?}: mailtable keeps one *:storage=SIZE rule per mailbox"
            )),
        },
        "nologin" => Extra::NoLogin,
        "nopassword" => Extra::NoPassword,
        "userdb_home" | "userdb_uid" | "userdb_gid" | "userdb_mail" => Extra::NotKept(format!(
            "{key}: mailtable derives uid, gid, home and mail location from its config"
        )),
        _ => Extra::NotKept(format!("{key}: no mailtable column for it")),
    }
}

/// `dovecot-passwd` of one domain's file, where Dovecot reads a file per
/// domain ([`super::domain_files`]): a user name without a domain is a
/// user of `domain` (Dovecot looks it up with `username_format=%n`, the
/// login's user part); one with `domain` is taken as written
/// (`username_format=%u`); one of another domain is left out and reported,
/// since Dovecot looks for that login in its own domain's file, never in
/// this one. Line numbers stay those of the file.
pub fn parse_in_domain(source: &str, text: &str, domain: &Domain) -> Parsed {
    let mut qualified = String::with_capacity(text.len());
    let mut elsewhere = Vec::new();
    let (mut bare, mut own) = (false, false);
    for (n, line) in text.lines().enumerate() {
        let entry = !(line.trim().is_empty() || line.trim_start().starts_with(['#', ':']));
        let user = line.split(':').next().unwrap_or_default();
        match user.rsplit_once('@') {
            _ if !entry => qualified.push_str(line),
            // Blanks around the name are parse's to report, as ever.
            None if user.trim() == user => {
                bare = true;
                qualified.push_str(user);
                qualified.push('@');
                qualified.push_str(domain.as_str());
                qualified.push_str(&line[user.len()..]);
            }
            Some((_, d)) if !d.trim().eq_ignore_ascii_case(domain.as_str()) => {
                elsewhere.push((n + 1, user.trim().to_ascii_lowercase()));
            }
            Some(_) => {
                own = true;
                qualified.push_str(line);
            }
            None => qualified.push_str(line),
        }
        qualified.push('\n');
    }
    let mut p = parse(source, &qualified);
    // Seen with Dovecot 2.3.19: under `username_format=%n` an entry
    // `bob@example.org` in example.org's file fails `doveadm auth test`,
    // the bare `alice` succeeds as alice@example.org; under `%u` the
    // reverse. Which one the host used, the file cannot tell.
    if bare && own {
        p.notes.push(Finding::new(
            Origin::whole(source),
            format!(
                "user names with and without @{domain} in one file: Dovecot matched only one \
                 kind (username_format=%n the names without, %u those with); both come over"
            ),
        ));
    }
    for (n, user) in elsewhere {
        p.skipped.push(Finding::about(
            Origin::line(source, n),
            &user,
            format!(
                "in the file of {domain}: Dovecot looks for {user} in its own domain's file, \
                 never in this one, so the entry was never used"
            ),
        ));
    }
    p
}

/// `dovecot-passwd`.
pub fn parse(source: &str, text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (n, line) in text.lines().enumerate() {
        let at = Origin::line(source, n + 1);
        let line = line.trim_end_matches(['\r', '\n']);
        // Dovecot skips a line without a user name (`:` first) like a
        // comment.
        if line.trim().is_empty() || line.trim_start().starts_with(['#', ':']) {
            continue;
        }
        parse_entry(at, line, &mut p);
    }
    p
}

/// One entry `user:password:uid:gid:(gecos):home:(shell):extra_fields`.
fn parse_entry(at: Origin, line: &str, p: &mut Parsed) {
    let fields: Vec<&str> = line.splitn(8, ':').collect();
    // Never empty: `parse` skips blank lines and lines starting with `:`.
    let user = fields[0].trim();
    let field = |i: usize| fields.get(i).copied().unwrap_or("").trim();
    let key = user.to_ascii_lowercase();
    // Dovecot looks a login up by the exact name, after its default
    // auth_username_format (%Lu) lower-cased it, and keeps the entry's
    // name as written: one with blanks around it or an upper-case letter
    // never matched a login or a delivery there. Another format may have
    // matched it, so it is not dropped quietly: left behind, the import
    // refused without --partial.
    if fields[0] != user || user != key {
        let what = if fields[0] != user {
            "the user name has blanks around it"
        } else {
            "the user name has upper-case letters"
        };
        p.mailbox_left_behind(
            at,
            &key,
            &format!(
                "{what}: Dovecot looks logins up lower-cased (auth_username_format %Lu, the \
                 default) and exactly as written, so with the default this entry never \
                 matched; write the name in lower case, without blanks, to import it"
            ),
        );
        return;
    }
    // A uid or gid of 0, or a number beyond uid_t, makes Dovecot drop the
    // entry when the file is also its userdb, the usual setup
    // (passwd_file_add in core@2.3.19.1:src/auth/db-passwd-file.c).
    for (i, what) in [(2, "uid"), (3, "gid")] {
        let f = field(i);
        let bad = f.bytes().all(|b| b.is_ascii_digit())
            && !f.is_empty()
            && f.parse::<u32>()
                .ok()
                .filter(|n| *n != 0 && *n != u32::MAX)
                .is_none();
        if bad {
            p.mailbox_left_behind(
                at,
                &key,
                &format!(
                    "{what} {f}: Dovecot drops this entry when the file is also its userdb (no \
                     login, no mail); if its userdb is another (static), fix the {what} and \
                     import again"
                ),
            );
            return;
        }
    }
    // A number, or a system user or group name Dovecot looks up
    // (`userdb_parse_uid`/`userdb_parse_gid`): not compared then.
    let mut num = |i: usize, what: &str| -> Option<u32> {
        let f = field(i);
        if f.is_empty() {
            return None;
        }
        let n = f.parse::<u32>().ok();
        if n.is_none() {
            p.notes.push(Finding::about(
                at.clone(),
                &key,
                format!(
                    "{what} {f:?} is a system name Dovecot looks up: not compared with the config"
                ),
            ));
        }
        n
    };
    let (uid, gid) = (num(2, "uid"), num(3, "gid"));
    let home = Some(field(5).to_string()).filter(|h| !h.is_empty());

    // As Dovecot reads it: split at `:`, nothing trimmed (a space is part
    // of a password, and the hash is kept byte for byte).
    let raw_password = fields.get(1).copied().unwrap_or("");
    let Extras {
        quota,
        active,
        refused,
    } = extras(field(7), &at, &key, !raw_password.is_empty(), &mut p.notes);
    if !active {
        p.notes.push(Finding::about(
            at.clone(),
            &key,
            "nologin: imported as a disabled mailbox (mail accepted, login refused)",
        ));
    }
    if let Some(why) = refused {
        // Dovecot's userdb answers for it like any user: it received mail,
        // which has nowhere to go without a row.
        p.mailbox_left_behind(at, &key, why);
        return;
    }
    let password = match pwdfile_notation(raw_password) {
        Ok(pw) => pw,
        Err(why) => {
            // Dovecot logs the entry as invalid and does not add it.
            p.skipped.push(Finding::about(at, &key, why));
            return;
        }
    };
    if password.is_empty() {
        // Dovecot's userdb still answers for it: it received mail, which
        // has nowhere to go without a row.
        p.mailbox_left_behind(
            at,
            &key,
            "no password: a userdb-only entry cannot log in, and a mailbox needs a hash",
        );
        return;
    }
    let mut hash = PasswordHash::new(password.as_ref());
    if hash.prefix().is_none() && hash.scheme() == Scheme::Unknown {
        // The passwd-file default scheme, made explicit (DES crypt and
        // the like): the hash itself is unchanged.
        hash = PasswordHash::new(format!("{{CRYPT}}{password}"));
    }
    let name = if key.contains('@') {
        match Address::parse(&key) {
            Ok(a) => LoginName::Address(a),
            Err(e) => {
                // Dovecot took it (its user names are any text): the user
                // logged in and got mail there.
                p.mailbox_left_behind(
                    at,
                    &key,
                    &format!("user name is not an address mailtable can store ({e})"),
                );
                return;
            }
        }
    } else {
        LoginName::Bare(key.clone())
    };
    p.logins.push(Login {
        name,
        hash,
        active,
        quota,
        // Dovecot receives what the MTA hands it and routes nothing: a
        // user gets mail by itself only where no source of the import
        // says where mail goes. With smtpd's virtual table in the import,
        // smtpd looks up every recipient there (a catch-all takes a user
        // without a key of its own, one without either is refused), and
        // Postfix delivers to its own mailbox maps; so the source walk
        // must not deliver to a Dovecot user no route reaches.
        implied_route: false,
        origin: at.clone(),
    });
    p.userinfo.push(UserInfo {
        user: key,
        uid,
        gid,
        home,
        userbase: false,
        origin: at,
    });
}

/// What the extra fields of an entry say.
struct Extras {
    quota: Option<String>,
    active: bool,
    /// Why the entry cannot be a mailbox at all.
    refused: Option<&'static str>,
}

/// libpam-pwdfile's `hash[NN]` as Dovecot's `passwd_file_add` reads it:
/// `[34]` PLAIN-MD5, `[56]` DIGEST-MD5 (exactly 32 characters, or Dovecot
/// refuses the user), anything else CRYPT. Other passwords as they are.
fn pwdfile_notation(pw: &str) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    let b = pw.as_bytes();
    let n = b.len();
    if n <= 4 || matches!(b[0], b'{' | b'$') || b[n - 1] != b']' || b[n - 4] != b'[' {
        return Ok(pw.into());
    }
    let (hash, kind) = (&pw[..n - 4], &pw[n - 3..n - 1]);
    Ok(match kind {
        "34" => format!("{{PLAIN-MD5}}{hash}").into(),
        "56" if hash.len() == 32 => format!("{{DIGEST-MD5}}{hash}").into(),
        "56" => return Err("a [56] (DIGEST-MD5) password of the wrong length: Dovecot refuses it"),
        _ => format!("{{CRYPT}}{hash}").into(),
    })
}

/// Read the extra fields; the ones mailtable does not keep become notes.
/// In the old format (an empty eighth field) the rest is the mail location.
/// `nopassword` next to a password is ignored, as Dovecot ignores it
/// ("nopassword set but password is non-empty", auth-request.c).
fn extras(
    text: &str,
    at: &Origin,
    key: &str,
    has_password: bool,
    notes: &mut Vec<Finding>,
) -> Extras {
    let mut x = Extras {
        quota: None,
        active: true,
        refused: None,
    };
    let old_format;
    let text = match text.strip_prefix(':') {
        Some(mail) if !mail.is_empty() => {
            old_format = format!("userdb_mail={mail}");
            old_format.as_str()
        }
        Some(_) => "",
        None => text,
    };
    for f in text.split_whitespace() {
        match extra_field(f) {
            Extra::Quota(q) => x.quota = q,
            Extra::NoLogin => x.active = false,
            Extra::NoPassword if has_password => notes.push(Finding::about(
                at.clone(),
                key,
                "nopassword next to a password: Dovecot ignores it and checks the password, \
                 and so does mailtable",
            )),
            Extra::NoPassword => {
                x.refused =
                    Some("nopassword: Dovecot accepts any password for it; mailtable needs a hash")
            }
            Extra::NotKept(why) => notes.push(Finding::about(
                at.clone(),
                key,
                format!("extra field not kept: {why}"),
            )),
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_fields() {
        assert_eq!(
            extra_field("userdb_quota_rule=*:storage=1G"),
            Extra::Quota(Some("1G".into()))
        );
        // A bare number is kilobytes to Dovecot's quota_rule; stored in
        // mailtable's canonical form.
        assert_eq!(
            extra_field("userdb_quota_rule=*:storage=1048576"),
            Extra::Quota(Some("1G".into()))
        );
        assert!(matches!(
            extra_field("userdb_quota_rule=Trash:storage=+100M"),
            Extra::NotKept(_)
        ));
        assert!(matches!(
            extra_field("userdb_quota_rule=*:storage=1.5G"),
            Extra::NotKept(_)
        ));
        assert_eq!(extra_field("nologin"), Extra::NoLogin);
        assert_eq!(extra_field("nopassword=y"), Extra::NoPassword);
        // By presence, whatever the value; names as written.
        assert_eq!(extra_field("nologin=no"), Extra::NoLogin);
        assert_eq!(extra_field("nopassword=0"), Extra::NoPassword);
        assert!(matches!(extra_field("NOLOGIN"), Extra::NotKept(_)));
        assert!(matches!(
            extra_field("USERDB_QUOTA_RULE=*:storage=1G"),
            Extra::NotKept(_)
        ));
        assert!(
            matches!(extra_field("userdb_mail=maildir:~/Maildir"), Extra::NotKept(w) if w.contains("config"))
        );
    }

    /// Dovecot splits at `:` and trims nothing: spaces around a password
    /// are part of it, and come over byte for byte.
    #[test]
    fn a_password_keeps_its_spaces() {
        let p = parse(
            "users",
            "c@example.org:{PLAIN}pw  :5000:5000\nd@example.org:{PLAIN}tail  \r\n",
        );
        let hashes: Vec<&str> = p.logins.iter().map(|l| l.hash.stored()).collect();
        assert_eq!(hashes, ["{PLAIN}pw  ", "{PLAIN}tail  "]);
    }

    #[test]
    fn entries() {
        let text = "\
# Dovecot users
alice@example.org:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234:5000:5000::/var/vmail/example.org/alice::userdb_quota_rule=*:storage=2G userdb_mail=maildir:~/Maildir

bob:{SSHA512}c2VjcmV0:5000:5000::/var/vmail/bob
carol@example.org:abJnggxhB/yWI
dave@example.org::5000:5000
erin@example.org:{PLAIN}x:::::: nologin
frank@example.org::::::: nopassword
bad@example.org:{PLAIN}x:five:5000
";
        let p = parse("users", text);
        assert_eq!(p.logins.len(), 5);
        let alice = &p.logins[0];
        assert_eq!(alice.quota.as_deref(), Some("2G"));
        assert!(alice.hash.stored().starts_with("{BLF-CRYPT}$2y$"));
        assert!(!alice.implied_route);
        assert_eq!(p.logins[1].name, LoginName::Bare("bob".into()));
        assert_eq!(p.logins[2].hash.stored(), "{CRYPT}abJnggxhB/yWI");
        assert!(!p.logins[3].active);
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
        assert_eq!(p.skipped[0].at.to_string(), "users:6");
        // Both received mail in the source (a userdb entry), and neither
        // can be a mailbox here: their mail would bounce from now on.
        assert_eq!(p.lost_mailboxes, ["dave@example.org", "frank@example.org"]);
        assert!(p.malformed.is_empty(), "{:?}", p.malformed);
        // A uid that is no number is a name Dovecot looks up.
        assert!(p
            .notes
            .iter()
            .any(|n| n.at.to_string() == "users:9" && n.why.contains("\"five\"")));
        assert!(p.notes.iter().any(|n| n.why.contains("userdb_mail")));
        assert_eq!(
            p.userinfo[0].home.as_deref(),
            Some("/var/vmail/example.org/alice")
        );
    }

    /// A file of one domain (`/etc/auth/%d/passwd`): bare names are its
    /// users, its own addresses stay, another domain's are reported and
    /// left out; comments, blank lines and the line numbers stay.
    #[test]
    fn a_file_of_one_domain() {
        let text = "# example.org\n\
                    alice:{PLAIN}a:5000:5000::/var/vmail/alice\n\
                    \n\
                    bob@example.org:{PLAIN}b\n\
                    carol@example.net:{PLAIN}c\n\
                    Dave:{PLAIN}d\n\
                    :{PLAIN}e\n";
        let domain = Domain::parse("example.org").unwrap();
        let p = parse_in_domain("example.org/passwd", text, &domain);
        let names: Vec<String> = p.logins.iter().map(|l| format!("{:?}", l.name)).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].contains("\"alice\"") && names[0].contains("example.org"));
        assert!(names[1].contains("\"bob\"") && names[1].contains("example.org"));
        assert_eq!(p.logins[0].hash.stored(), "{PLAIN}a");
        assert_eq!(p.userinfo[0].home.as_deref(), Some("/var/vmail/alice"));
        let skipped: Vec<String> = p
            .skipped
            .iter()
            .map(|f| format!("{} {}", f.at, f.why))
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        for line in [
            "example.org/passwd:5 in the file of example.org",
            "example.org/passwd:6 the user name has upper-case",
        ] {
            assert!(skipped.iter().any(|s| s.starts_with(line)), "{skipped:?}");
        }
        assert_eq!(p.lost_mailboxes, ["dave@example.org"]);
        assert!(p
            .notes
            .iter()
            .any(|n| n.at.to_string() == "example.org/passwd"
                && n.why
                    .starts_with("user names with and without @example.org in one file")));
        // One kind only: no such note.
        let p = parse_in_domain("f", "alice:{PLAIN}a\nbob:{PLAIN}b\n", &domain);
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        let p = parse_in_domain("f", "alice@example.org:{PLAIN}a\n", &domain);
        assert!(p.notes.is_empty(), "{:?}", p.notes);
    }

    /// Entries Dovecot never matched or dropped, and users it had that
    /// mailtable cannot hold, as Dovecot 2.3 reads the file (checked
    /// against it with doveadm auth test and doveadm user).
    #[test]
    fn entries_dovecot_never_used_and_users_it_had() {
        let text = "\
Bob@example.net:{PLAIN}x:5000:5000
  lead@example.net:{PLAIN}x:5000:5000
trail@example.net :{PLAIN}x:5000:5000
zero@example.net:{PLAIN}x:0:5000
huge@example.net:{PLAIN}x:5000:99999999999999999999
named@example.net:{PLAIN}x:vmail:vmail
dots..x@example.net:{PLAIN}x:5000:5000
keep@example.net:{PLAIN}x:5000:5000::/h::nopassword nologin=no
";
        let p = parse("users", text);
        let logins: Vec<String> = p.logins.iter().map(|l| l.name.to_string()).collect();
        // nopassword next to a password is ignored; nologin=no is nologin.
        assert_eq!(logins, ["named@example.net", "keep@example.net"]);
        assert!(!p.logins[1].active);
        assert!(p.notes.iter().any(|n| n.why.contains("Dovecot ignores it")));
        let skipped: Vec<String> = p.skipped.iter().map(|f| f.at.to_string()).collect();
        assert_eq!(
            skipped,
            ["users:1", "users:2", "users:3", "users:4", "users:5", "users:7"]
        );
        // Never matched with Dovecot's default username format, dropped as
        // a userdb entry, or a user mailtable cannot hold: left behind, the
        // import refused without --partial.
        assert_eq!(
            p.lost_mailboxes,
            [
                "bob@example.net",
                "lead@example.net",
                "trail@example.net",
                "zero@example.net",
                "huge@example.net",
                "dots..x@example.net"
            ]
        );
        assert!(p.skipped[3].why.contains("uid 0"), "{}", p.skipped[3].why);
        assert!(
            p.skipped[4].why.contains("gid 9999"),
            "{}",
            p.skipped[4].why
        );
    }

    #[test]
    fn quota_sizes_read_as_dovecot_reads_them() {
        // quota_limit_parse (core@2.3.19.1:src/plugins/quota/quota-util.c):
        // only the first letter after the number is the unit, none means
        // kilobytes, and 0 is no limit.
        let q = |v: &str| extra_field(&format!("userdb_quota_rule=*:storage={v}"));
        assert_eq!(q("2GB"), Extra::Quota(Some("2G".into())));
        assert_eq!(q("500m"), Extra::Quota(Some("500M".into())));
        assert_eq!(q("2048M"), Extra::Quota(Some("2G".into())));
        assert_eq!(q("1536"), Extra::Quota(Some("1536K".into())));
        assert_eq!(q("100b"), Extra::Quota(Some("100B".into())));
        assert_eq!(q("0"), Extra::Quota(None), "unlimited");
        for bad in [
            "",
            "G",
            "-1G",
            "+100M",
            "10%",
            "2P",
            "99999999999999999999T",
        ] {
            assert!(matches!(q(bad), Extra::NotKept(_)), "{bad}");
        }
    }

    #[test]
    fn messy_entries_read_as_dovecot_reads_them() {
        let text = "\
:{PLAIN}no user name, skipped by Dovecot
uid@example.org:{PLAIN}x:vmail:mail::/var/vmail/uid
des@example.org:abJnggxhB/yWI[13]
md5@example.org:5f4dcc3b5aa765d61d8327deb882cf99[34]
dig@example.org:0123456789abcdef0123456789abcdef[56]
digbad@example.org:0123[56]
old@example.org:{PLAIN}x:5000:5000::/var/vmail/old:::maildir:~/Maildir
nopw@example.org::5000:5000::/var/vmail/nopw
";
        let p = parse("users", text);
        assert!(p.malformed.is_empty(), "{:?}", p.malformed);
        let hashes: Vec<(String, &str)> = p
            .logins
            .iter()
            .map(|l| (format!("{:?}", l.name), l.hash.stored()))
            .collect();
        assert_eq!(hashes.len(), 5, "{hashes:?}");
        // libpam-pwdfile's `hash[NN]`, as passwd_file_add rewrites it.
        assert_eq!(p.logins[1].hash.stored(), "{CRYPT}abJnggxhB/yWI");
        assert_eq!(
            p.logins[2].hash.stored(),
            "{PLAIN-MD5}5f4dcc3b5aa765d61d8327deb882cf99"
        );
        assert_eq!(
            p.logins[3].hash.stored(),
            "{DIGEST-MD5}0123456789abcdef0123456789abcdef"
        );
        // uid and gid given as system user names: read, not compared.
        assert_eq!(p.userinfo[0].uid, None);
        assert!(
            p.notes.iter().any(|n| n.why.contains("vmail")),
            "{:?}",
            p.notes
        );
        // The old format's mail field after an empty eighth field.
        assert!(
            p.notes
                .iter()
                .any(|n| n.at.to_string() == "users:7" && n.why.contains("userdb_mail")),
            "{:?}",
            p.notes
        );
        // Dovecot refuses a [56] hash of another length: no such user there.
        assert!(p.skipped.iter().any(|s| s.at.to_string() == "users:6"));
        // A user without a password still received mail (a userdb entry):
        // its mailbox does not come over.
        assert_eq!(p.lost_mailboxes, ["nopw@example.org"]);
        for f in p.skipped.iter().chain(&p.notes) {
            assert!(!f.why.contains("5f4dcc"), "{f}");
        }
    }
}

//! Dovecot passwd-file: `user:password:uid:gid:gecos:home:shell:extra_fields`.
//! Pure: text in, [`Parsed`] out.
//!
//! Grammar (core@2.3.19.1:src/auth/db-passwd-file.c, `passwd_file_add`):
//! blank lines and lines starting with `#` are skipped; fields are split at
//! `:`; trailing fields may be missing; everything after the seventh `:` is
//! the extra fields, joined back with `:` (values such as
//! `userdb_quota_rule=*:storage=1G` contain colons) and split at spaces.
//!
//! Every entry is a login that also receives mail (Dovecot's users are its
//! mailboxes), so logins here imply their own delivery. The password keeps
//! its `{SCHEME}` prefix verbatim; a bare value gets the passwd-file default
//! scheme written out as `{CRYPT}` when mailtable could not tell its scheme
//! otherwise (reference dovecot-auth-protocols.md §4.1: the passwd-file
//! default is CRYPT), so that Dovecot keeps checking it the same way.
//!
//! Extra fields: `userdb_quota_rule=*:storage=SIZE` becomes the quota
//! column (dovecot-mailtable answers `quota_rule=*:storage=<quota>`);
//! `nologin` becomes a disabled mailbox; `nopassword` (any password
//! accepted) is refused; anything else is reported as not kept.

use super::{Finding, Login, LoginName, Origin, Parsed, UserInfo};
use mailtable_core::password::Scheme;
use mailtable_core::{Address, PasswordHash};

/// What one extra field means for mailtable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// `userdb_quota_rule=*:storage=SIZE`.
    Quota(String),
    /// `nologin`: Dovecot refuses the login.
    NoLogin,
    /// `nopassword`: Dovecot accepts any password.
    NoPassword,
    /// Anything mailtable does not keep, with why.
    NotKept(String),
}

/// A quota size as Dovecot writes it: digits and an optional unit.
fn is_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| "bBkKmMgGtT".contains(c));
    !digits.is_empty() && s.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Interpret one `key=value` (or bare `key`) extra field.
pub fn extra_field(field: &str) -> Extra {
    let (key, value) = field.split_once('=').unwrap_or((field, ""));
    let key_l = key.to_ascii_lowercase();
    match key_l.as_str() {
        "userdb_quota_rule" => match value.strip_prefix("*:storage=") {
            Some(size) if is_size(size) => Extra::Quota(size.to_string()),
            _ => Extra::NotKept(format!(
                "quota rule {value:?}: mailtable keeps one *:storage=SIZE rule per mailbox"
            )),
        },
        "nologin" if !matches!(value, "n" | "no" | "0") => Extra::NoLogin,
        "nopassword" if !matches!(value, "n" | "no" | "0") => Extra::NoPassword,
        "userdb_home" | "userdb_uid" | "userdb_gid" | "userdb_mail" => Extra::NotKept(format!(
            "{key}: mailtable derives uid, gid, home and mail location from its config"
        )),
        _ => Extra::NotKept(format!("{key}: no mailtable column for it")),
    }
}

/// `dovecot-passwd`.
pub fn parse(source: &str, text: &str) -> Parsed {
    let mut p = Parsed::default();
    for (n, line) in text.lines().enumerate() {
        let at = Origin::line(source, n + 1);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        parse_entry(at, line, &mut p);
    }
    p
}

/// One entry `user:password:uid:gid:(gecos):home:(shell):extra_fields`.
fn parse_entry(at: Origin, line: &str, p: &mut Parsed) {
    let fields: Vec<&str> = line.splitn(8, ':').collect();
    let user = fields[0].trim();
    if user.is_empty() {
        p.malformed
            .push(Finding::new(at, "an entry without a user name"));
        return;
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or("").trim();
    let num = |i: usize, what: &str| -> Result<Option<u32>, String> {
        let f = field(i);
        if f.is_empty() {
            return Ok(None);
        }
        f.parse::<u32>()
            .map(Some)
            .map_err(|_| format!("{user}: {what} {f:?} is not a number"))
    };
    let (uid, gid) = match (num(2, "uid"), num(3, "gid")) {
        (Ok(u), Ok(g)) => (u, g),
        (Err(why), _) | (_, Err(why)) => {
            p.malformed.push(Finding::new(at, why));
            return;
        }
    };
    let home = Some(field(5).to_string()).filter(|h| !h.is_empty());
    let key = user.to_ascii_lowercase();

    let Extras {
        quota,
        active,
        refused,
    } = extras(field(7), &at, &key, &mut p.notes);
    if !active {
        p.notes.push(Finding::about(
            at.clone(),
            &key,
            "nologin: imported as a disabled mailbox (mail accepted, login refused)",
        ));
    }
    let password = field(1);
    if let Some(why) = refused {
        p.skipped.push(Finding::about(at, &key, why));
        return;
    }
    if password.is_empty() {
        // Dovecot's userdb still answers for it: it received mail, which
        // has nowhere to go without a row.
        if key.contains('@') {
            p.lost.push(key.clone());
        }
        p.lost_mailboxes.push(key.clone());
        p.skipped.push(Finding::about(
            at,
            &key,
            "no password: a userdb-only entry cannot log in, and a mailbox needs a hash",
        ));
        return;
    }
    let mut hash = PasswordHash::new(password);
    if hash.prefix().is_none() && hash.scheme() == Scheme::Unknown {
        // The passwd-file default scheme, made explicit (DES crypt and
        // the like): the hash itself is unchanged.
        hash = PasswordHash::new(format!("{{CRYPT}}{password}"));
    }
    let name = if key.contains('@') {
        match Address::parse(&key) {
            Ok(a) => LoginName::Address(a),
            Err(e) => {
                p.skipped.push(Finding::about(
                    at,
                    &key,
                    format!("user name is not an address mailtable can store ({e})"),
                ));
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
        implied_route: true,
        origin: at.clone(),
    });
    p.userinfo.push(UserInfo {
        user: key,
        uid,
        gid,
        home,
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

/// Read the extra fields; the ones mailtable does not keep become notes.
fn extras(text: &str, at: &Origin, key: &str, notes: &mut Vec<Finding>) -> Extras {
    let mut x = Extras {
        quota: None,
        active: true,
        refused: None,
    };
    for f in text.split_whitespace() {
        match extra_field(f) {
            Extra::Quota(q) => x.quota = Some(q),
            Extra::NoLogin => x.active = false,
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
            Extra::Quota("1G".into())
        );
        assert_eq!(
            extra_field("userdb_quota_rule=*:storage=1048576"),
            Extra::Quota("1048576".into())
        );
        assert!(matches!(
            extra_field("userdb_quota_rule=Trash:storage=+100M"),
            Extra::NotKept(_)
        ));
        assert!(matches!(
            extra_field("userdb_quota_rule=*:storage=1GG"),
            Extra::NotKept(_)
        ));
        assert_eq!(extra_field("nologin"), Extra::NoLogin);
        assert_eq!(extra_field("nopassword=y"), Extra::NoPassword);
        assert!(
            matches!(extra_field("userdb_mail=maildir:~/Maildir"), Extra::NotKept(w) if w.contains("config"))
        );
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
frank@example.org:{PLAIN}x:::::: nopassword
bad@example.org:{PLAIN}x:five:5000
";
        let p = parse("users", text);
        assert_eq!(p.logins.len(), 4);
        let alice = &p.logins[0];
        assert_eq!(alice.quota.as_deref(), Some("2G"));
        assert!(alice.hash.stored().starts_with("{BLF-CRYPT}$2y$"));
        assert!(alice.implied_route);
        assert_eq!(p.logins[1].name, LoginName::Bare("bob".into()));
        assert_eq!(p.logins[2].hash.stored(), "{CRYPT}abJnggxhB/yWI");
        assert!(!p.logins[3].active);
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
        assert_eq!(p.skipped[0].at.to_string(), "users:6");
        assert_eq!(p.malformed.len(), 1);
        assert_eq!(p.malformed[0].at.to_string(), "users:9");
        assert!(p.notes.iter().any(|n| n.why.contains("userdb_mail")));
        assert_eq!(
            p.userinfo[0].home.as_deref(),
            Some("/var/vmail/example.org/alice")
        );
    }
}

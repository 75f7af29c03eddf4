//! The `database` setting: `sqlite:///var/lib/mailtable/mail.db` or a
//! `postgresql://` URL. `Debug` and `Display` never show a password that a
//! PostgreSQL URL may carry.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the users table lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (kept verbatim; printed redacted).
    Postgres(String),
}

/// The default: the embedded SQLite database of DESIGN.md.
pub const DEFAULT_DATABASE: &str = "sqlite:///var/lib/mailtable/mail.db";

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((_, rest)) = s
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgresql" | "postgres"))
        {
            // The driver takes the user info up to the FIRST `@`
            // (tokio-postgres `UrlParser::parse_credentials`): a raw `@`
            // in a password makes the rest of it the host name.
            let before_query = rest.split('?').next().unwrap_or(rest);
            if before_query.matches('@').count() > 1 {
                return Err(format!(
                    "database URL {:?} has more than one '@': write an '@' in the user name \
                     or password as %40",
                    redact(s)
                ));
            }
            return Ok(DatabaseUrl::Postgres(s.to_string()));
        }
        let path = if let Some(rest) = s.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = s.strip_prefix("sqlite:") {
            rest
        } else if s.contains("://") {
            return Err(format!(
                "unsupported database URL {:?}: use sqlite:///path/to/file.db or postgresql://...",
                redact(s)
            ));
        } else if looks_like_conninfo(s) {
            // Not echoed: such a string often holds `password=`.
            return Err(
                "the database setting looks like a libpq key=value connection string, which \
                 mailtable does not read (it would be taken for a SQLite file name): write it \
                 as postgresql://USER@HOST:PORT/DBNAME (parameters such as sslmode after ?)"
                    .to_string(),
            );
        } else {
            s
        };
        if path.is_empty() {
            return Err(format!("database URL {s:?} names no file"));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }
}

/// Whether `s` is a libpq keyword/value connection string (`host=db
/// dbname=mail user=reader`: "Connection Strings" in the PostgreSQL
/// manual, libpq chapter): one of its words starts with a connection
/// keyword and `=`.
fn looks_like_conninfo(s: &str) -> bool {
    const KEYWORDS: [&str; 12] = [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "sslmode",
        "service",
        "options",
        "application_name",
        "connect_timeout",
    ];
    s.split_whitespace().any(|word| {
        word.split_once('=')
            .is_some_and(|(k, _)| KEYWORDS.contains(&k.trim()))
    })
}

/// Replace the password of `scheme://user:password@host` (and a
/// `password=` query parameter) with `***`.
///
/// The user info is taken to end at the LAST `@`, not at the first one the
/// driver stops at (tokio-postgres `config.rs`, `UrlParser::parse_credentials`
/// takes everything up to the first `@`): a password typed with a raw `@`,
/// `?`, `/` or `#` is then masked whole, where any narrower rule would
/// print its tail as a host or a query. Masking too much is harmless;
/// masking too little puts a password into smtpd's log.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let mut out = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => userinfo.to_string(),
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => url.to_string(),
    };
    // `password=` in the query string (libpq keyword form), every one.
    let mut from = 0;
    while let Some(i) = out[from..].find("password=").map(|i| from + i) {
        let value = i + "password=".len();
        let end = out[value..].find('&').map_or(out.len(), |e| value + e);
        out.replace_range(value..end, "***");
        from = value + 3;
    }
    // And every parameter whose key names a password once decoded as the
    // driver decodes keys (percent escapes: `UrlParser::parse_params` in
    // tokio-postgres `config.rs`), `pass%77ord=` as much as
    // `sslpassword=`, the client key's passphrase.
    if let Some(q) = out.find('?') {
        let params: Vec<String> = out[q + 1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if names_password(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{}?{}", &out[..q], params.join("&"));
    }
    out
}

/// Whether a URL query key is, or holds, `password` once its percent
/// escapes are decoded, in any case.
fn names_password(key: &str) -> bool {
    percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .to_ascii_lowercase()
        .contains("password")
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_forms() {
        let want = DatabaseUrl::Sqlite(PathBuf::from("/var/lib/mailtable/mail.db"));
        assert_eq!(DEFAULT_DATABASE.parse::<DatabaseUrl>().unwrap(), want);
        assert_eq!(
            "sqlite:/var/lib/mailtable/mail.db"
                .parse::<DatabaseUrl>()
                .unwrap(),
            want
        );
        assert_eq!(
            "/var/lib/mailtable/mail.db".parse::<DatabaseUrl>().unwrap(),
            want
        );
        assert!("mysql://x/y".parse::<DatabaseUrl>().is_err());
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }

    /// A raw `@` in a password is refused with how to write it, the
    /// password not shown; percent-encoded it is fine.
    #[test]
    fn a_raw_at_in_a_postgres_password_is_refused() {
        let err = "postgresql://u:Sec@ret@127.0.0.1/mail"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(err.contains("%40"), "{err}");
        assert!(!err.contains("Sec") && !err.contains("ret@"), "{err}");
        assert!("postgresql://u:Sec%40ret@127.0.0.1/mail?options=a@b"
            .parse::<DatabaseUrl>()
            .is_ok());
    }

    /// A libpq keyword/value string is refused, never taken for a file
    /// name, and its password never echoed.
    #[test]
    fn a_libpq_connection_string_is_refused_without_its_password() {
        for s in [
            "host=127.0.0.1 port=5432 dbname=mail user=mailer password=S3cretLeak",
            "dbname=mail",
            "user = x host=/run/postgresql",
        ] {
            let err = s.parse::<DatabaseUrl>().unwrap_err();
            assert!(err.contains("postgresql://USER@HOST"), "{s}: {err}");
            assert!(!err.contains("S3cret"), "{err}");
        }
        // File names with `=` that name no connection keyword stay files.
        assert_eq!(
            "/srv/a=b/mail.db".parse::<DatabaseUrl>().unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/srv/a=b/mail.db"))
        );
    }

    #[test]
    fn never_prints_passwords() {
        let u: DatabaseUrl = "postgresql://mail:s3cret@db1,db2/mail?sslmode=disable"
            .parse()
            .unwrap();
        for shown in [format!("{u}"), format!("{u:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("mail:***@db1,db2/mail"), "{shown}");
        }
        assert_eq!(
            redact("postgresql://h/db?user=a&password=s3cret&x=1"),
            "postgresql://h/db?user=a&password=***&x=1"
        );
        assert_eq!(redact("postgresql://h/db"), "postgresql://h/db");
        for typed in ["pa/ss", "pa?ss", "pa@ss", "pa#ss", "p%40ss", "pa:ss"] {
            let url = format!("postgresql://mail:{typed}@db1/mail?sslmode=require");
            assert_eq!(
                redact(&url),
                "postgresql://mail:***@db1/mail?sslmode=require",
                "{typed}"
            );
        }
        assert_eq!(
            redact("postgresql:///mail?password=a&password=b&user=x"),
            "postgresql:///mail?password=***&password=***&user=x"
        );
        // Keys the driver decodes to `password`, and other secrets' keys.
        for key in [
            "pass%77ord",
            "%70assword",
            "PASSWORD",
            "sslpassword",
            "%73slpassword",
        ] {
            let url = format!("postgresql://mail@db1/mail?sslmode=require&{key}=pssW0rdX&x=1");
            assert_eq!(
                redact(&url),
                format!("postgresql://mail@db1/mail?sslmode=require&{key}=***&x=1"),
                "{key}"
            );
        }
    }
}

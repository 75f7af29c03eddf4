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
        if s.starts_with("postgresql://") || s.starts_with("postgres://") {
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
        } else {
            s
        };
        if path.is_empty() {
            return Err(format!("database URL {s:?} names no file"));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }
}

/// Replace the password of `scheme://user:password@host` with `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The user info ends at the last `@` before the query: a password with
    // a raw `/` (invalid, but typed) must not end the search early and be
    // printed.
    let (auth_end, _) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth_end.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            let mut out = format!("{scheme}://{masked}{}", &rest[at..]);
            // `password=` in the query string (libpq keyword form).
            if let Some(i) = out.find("password=") {
                let end = out[i..].find('&').map_or(out.len(), |e| i + e);
                out.replace_range(i..end, "password=***");
            }
            out
        }
        None => match url.find("password=") {
            Some(i) => {
                let mut out = url.to_string();
                let end = out[i..].find('&').map_or(out.len(), |e| i + e);
                out.replace_range(i..end, "password=***");
                out
            }
            None => url.to_string(),
        },
    }
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
        assert_eq!(
            redact("postgresql://mail:pa/ss@db1/mail"),
            "postgresql://mail:***@db1/mail"
        );
    }
}

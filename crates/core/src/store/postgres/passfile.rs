//! The PostgreSQL password from a password file, so that it need appear
//! neither in a command line (`ps` shows argv to every local user) nor in
//! `mailtable.toml`.
//!
//! The format and the search are libpq's (libpq manual, "The Password
//! File"): one `hostname:port:database:username:password` per line, `*`
//! matching anything in the first four fields, `\:` and `\\` escaping,
//! the first matching line winning, `#` starting a comment line. The file
//! is the URL's `passfile` parameter, else `$PGPASSFILE`, else
//! `~/.pgpass`; it is read only when the URL itself carries no password.
//! A TCP host matches by the name in the URL; a Unix socket in libpq's
//! default directory matches `localhost`, another socket its directory
//! (libpq `fe-connect.c`, `passwordFromFile` and its caller).
//!
//! One deliberate difference: libpq ignores a file that its group may
//! read. mailtable's readers are several system users (smtpd's table runs
//! as `opensmtpd`, Dovecot's helpers as `dovecot`, `serve` as its own
//! user) that share the `mailtable` group, exactly like the config file
//! (0640 root:mailtable), so group read is allowed here; a file that
//! every local user may read is refused, with the `chmod` that fixes it.
//! A file named explicitly (`passfile`, `$PGPASSFILE`) that cannot be
//! read is an error naming it; a missing `~/.pgpass` is simply not used.
//!
//! With several hosts in the URL, each host's config is given the line
//! that matches it (`config::per_host`), as libpq looks each host up; the
//! whole URL's config keeps the first match, for the back-off's key.

use crate::store::StoreError;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio_postgres::config::Host;
use tokio_postgres::Config;
use zeroize::Zeroizing;

use super::config::DEFAULT_SOCKET_DIR;

/// What one line asks to match, and its password.
#[derive(PartialEq, Eq)]
struct Entry {
    host: String,
    port: String,
    database: String,
    user: String,
    password: Zeroizing<String>,
}

/// Never print the password, not even in a test failure.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Entry({}:{}:{}:{}:<redacted>)",
            self.host, self.port, self.database, self.user
        )
    }
}

/// One line of a password file; `None` for comments, blank lines and lines
/// with fewer than five fields (libpq skips those too). A `:` or `\`
/// in a field is written `\:` or `\\`; the password ends at the next
/// unescaped `:` or the end of the line, unescaped the same way
/// (`passwordFromFile` in libpq's `fe-connect.c`).
fn parse_line(line: &str) -> Option<Entry> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let mut fields = Vec::with_capacity(5);
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.push(chars.next().unwrap_or('\\')),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
            ':' => break,
            c => cur.push(c),
        }
    }
    if fields.len() < 4 {
        return None;
    }
    let mut f = fields.into_iter();
    let mut next = || f.next().unwrap_or_default();
    Some(Entry {
        host: next(),
        port: next(),
        database: next(),
        user: next(),
        password: Zeroizing::new(cur),
    })
}

impl Entry {
    fn matches(&self, host: &str, port: &str, database: &str, user: &str) -> bool {
        let field = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        field(&self.host, host)
            && field(&self.port, port)
            && field(&self.database, database)
            && field(&self.user, user)
    }
}

/// The password of the first line of `text` that matches.
fn find(
    text: &str,
    host: &str,
    port: &str,
    database: &str,
    user: &str,
) -> Option<Zeroizing<String>> {
    text.lines()
        .filter_map(parse_line)
        .find(|e| e.matches(host, port, database, user))
        .map(|e| e.password)
}

/// The file to read: the URL's `passfile`, `$PGPASSFILE`, `~/.pgpass`;
/// with whether it was named explicitly.
fn location(from_url: Option<&str>) -> Option<(PathBuf, bool)> {
    if let Some(p) = from_url.filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    if let Some(p) = std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some((Path::new(&home).join(".pgpass"), false))
}

/// Read `path`, refusing a file every local user may read.
fn read(path: &Path) -> Result<Zeroizing<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.permissions().mode() & 0o007 != 0 {
        return Err(format!(
            "readable by every local user; run: chmod o= {}",
            path.display()
        ));
    }
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| e.to_string())
}

/// Set the password of `config` from the password file, when the URL has
/// none. `passfile`: the URL's parameter; `shown`: the redacted URL.
pub(super) fn apply(
    config: &mut Config,
    passfile: Option<&str>,
    shown: &str,
) -> Result<(), StoreError> {
    if config.get_password().is_some() {
        return Ok(());
    }
    let Some((path, explicit)) = location(passfile) else {
        return Ok(());
    };
    if !explicit && !path.exists() {
        return Ok(());
    }
    let text = read(&path).map_err(|e| {
        StoreError::Config(format!("password file {} for {shown}: {e}", path.display()))
    })?;
    let user = config.get_user().unwrap_or_default().to_string();
    // libpq: the database defaults to the user name.
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let ports = config.get_ports();
    let found = config.get_hosts().iter().enumerate().find_map(|(i, h)| {
        let host = match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) if dir == Path::new(DEFAULT_SOCKET_DIR) => "localhost".into(),
            Host::Unix(dir) => dir.display().to_string(),
        };
        // One port for every host, or one per host (libpq rules).
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        find(&text, &host, &port.to_string(), &database, &user)
    });
    if let Some(password) = found {
        config.password(password.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pw(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
        find(text, host, port, db, user).map(|p| p.to_string())
    }

    #[test]
    fn lines_are_read_the_libpq_way() {
        let text = "# comment\n\
                    \n\
                    db1:5432:mail:mail:s3cret\n\
                    too:few:fields\n\
                    *:*:*:reader:r\\:e\\\\ad:er\n\
                    db2:5433:*:mail:two\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pw(text, "db1", "5432", "mail", "mail").as_deref(),
            Some("s3cret")
        );
        // Escapes in the fields, and a raw `:` inside the password.
        assert_eq!(
            pw(text, "db9", "1", "x", "reader").as_deref(),
            Some("r:e\\ad")
        );
        assert_eq!(
            pw(text, "db2", "5433", "any", "mail").as_deref(),
            Some("two")
        );
        // The first matching line wins; the wildcard line catches the rest.
        assert_eq!(
            pw(text, "db1", "5433", "mail", "mail").as_deref(),
            Some("fallback")
        );
        assert_eq!(
            pw("db1:5432:mail:mail:x\n", "db1", "5432", "mail", "other"),
            None
        );
        assert_eq!(
            pw("#db1:5432:mail:mail:x\n", "db1", "5432", "mail", "mail"),
            None
        );
        // Debug never shows it.
        let e = parse_line("h:1:d:u:s3cret").unwrap();
        assert!(!format!("{e:?}").contains("s3cret"));
    }

    fn file(mode: u32, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    fn config(url: &str) -> Config {
        url.parse().unwrap()
    }

    #[test]
    fn the_url_parameter_gives_the_password() {
        let (_d, path) = file(0o640, "db1:5432:mail:mail:from-file\n");
        let p = path.to_str().unwrap();
        let mut c = config("postgresql://mail@db1/mail");
        apply(&mut c, Some(p), "shown").unwrap();
        assert_eq!(c.get_password(), Some(&b"from-file"[..]));
        // A password in the URL wins: the file is not even read.
        let mut c = config("postgresql://mail:inline@db1/mail");
        apply(&mut c, Some("/nonexistent/pgpass"), "shown").unwrap();
        assert_eq!(c.get_password(), Some(&b"inline"[..]));
        // No matching line: no password (the server will say so).
        let mut c = config("postgresql://other@db1/mail");
        apply(&mut c, Some(p), "shown").unwrap();
        assert_eq!(c.get_password(), None);
        // The second host matches when the first does not.
        let mut c = config("postgresql://mail@db0:6000,db1:5432/mail");
        apply(&mut c, Some(p), "shown").unwrap();
        assert_eq!(c.get_password(), Some(&b"from-file"[..]));
        // The default socket directory is `localhost`.
        let (_d2, local) = file(0o600, "localhost:5432:mail:mail:sock\n");
        let mut c = config("postgresql://mail@%2Fvar%2Frun%2Fpostgresql/mail");
        apply(&mut c, local.to_str(), "shown").unwrap();
        assert_eq!(c.get_password(), Some(&b"sock"[..]));
    }

    #[test]
    fn an_unusable_named_file_is_an_error_that_names_it() {
        let (_d, path) = file(0o644, "*:*:*:*:s3cret\n");
        let mut c = config("postgresql://mail@db1/mail");
        let err = apply(&mut c, path.to_str(), "postgresql://mail@db1/mail")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chmod o= ") && err.contains(path.to_str().unwrap()),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        assert_eq!(c.get_password(), None);
        let err = apply(&mut c, Some("/nonexistent/pgpass"), "shown")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/pgpass"), "{err}");
        assert!(matches!(
            apply(&mut c, Some("/nonexistent/pgpass"), "shown"),
            Err(StoreError::Config(_))
        ));
    }
}

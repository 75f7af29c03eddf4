//! The one TOML file read by all three binaries (`-c PATH`; smtpd passes it
//! to the table as `argv[1]`). Every key has a default, so an empty file, or
//! no file at all for the CLI, gives the embedded SQLite database.
//!
//! ```toml
//! database = "sqlite:///var/lib/mailtable/mail.db"  # or postgresql://...
//! uid = 5000                  # owner of the virtual mailboxes
//! gid = 5000
//! home = "/var/vmail/%d/%n"   # %d domain, %n local part, %u address
//! tag_delimiter = "+"
//! password_cost = 10          # bcrypt cost of new hashes
//! query_timeout_ms = 5000     # bound on one lookup, write or lock wait (whole-table reads, migrations: 10 min)
//! cache_entries = 20000       # answers the daemons keep (0 = no cache)
//! stale_if_error = 3600       # seconds a found answer outlives an outage
//!
//! [table]                     # table-mailtable
//! auth = false                # register smtpd's `auth` service (7.6+)
//!
//! [serve]                     # dovecot-mailtable serve
//! dict_socket = "/run/mailtable/dict.sock"
//! http_listen = "unix:/run/mailtable/http.sock"   # or 127.0.0.1:PORT below 1024
//! http_listen_unprivileged_port = false   # true: allow a TCP port >= 1024
//! http_secret_file = "/etc/mailtable/dovecot-api.secret"
//! socket_owner = "dovecot"    # sockets: owner, group, mode
//! socket_group = "mailtable"
//! socket_mode = "0660"
//! workers = 4                 # password-hashing threads
//! max_connections = 1024      # per listener
//! database_connections = 16   # database handles open at once
//! ```
//!
//! Unknown keys are refused: a typo must not silently fall back to a default.

use crate::address::{Address, Domain};
use crate::store::DatabaseUrl;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where every binary looks when no path is given and the file exists.
pub const DEFAULT_PATH: &str = "/etc/mail/mailtable.toml";

/// A config problem, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (from the TOML parser, with line and column).
        message: String,
    },
}

/// `[table]`: the OpenSMTPD table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableConfig {
    /// Register smtpd's `auth` service (7.6+). smtpd lower-cases the whole
    /// key, password included (OpenSMTPD issue #1268), so this only works for
    /// passwords without upper-case letters. Off by default: `credentials`
    /// is the safe choice.
    pub auth: bool,
}

/// `[serve]`: the Dovecot daemon.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// UNIX socket of the dict proxy server (Dovecot 2.3); empty = off.
    pub dict_socket: String,
    /// HTTP API for the Lua script: `unix:/path` or `127.0.0.1:PORT`
    /// (loopback only, a port below 1024 unless
    /// `http_listen_unprivileged_port`); empty = off.
    pub http_listen: String,
    /// Allow `http_listen` on a TCP port of 1024 or above, which any local
    /// user can bind while `serve` is not running.
    pub http_listen_unprivileged_port: bool,
    /// Shared secret the Lua script sends (`Authorization: Bearer ...`).
    pub http_secret: String,
    /// Read the secret from this file instead.
    pub http_secret_file: String,
    /// Owner (user name) of the sockets; empty = the running user.
    pub socket_owner: String,
    /// Group of the sockets; empty = the running group.
    pub socket_group: String,
    /// Octal mode of the sockets.
    pub socket_mode: String,
    /// Threads hashing passwords.
    pub workers: usize,
    /// Most client connections served at once by each listener (the dict
    /// socket and the HTTP API have this many each); more wait in the
    /// listen queue.
    pub max_connections: usize,
    /// Most database connections open at once; a lookup that finds them
    /// all busy waits up to `query_timeout_ms`, then fails temporarily.
    pub database_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            dict_socket: String::new(),
            http_listen: String::new(),
            http_listen_unprivileged_port: false,
            http_secret: String::new(),
            http_secret_file: String::new(),
            socket_owner: String::new(),
            socket_group: String::new(),
            socket_mode: "0660".into(),
            workers: 4,
            max_connections: 1024,
            database_connections: 16,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite:///path` or `postgresql://...` (several hosts allowed).
    pub database: String,
    /// uid of the virtual mail owner (smtpd userinfo, Dovecot userdb).
    pub uid: u32,
    /// gid of the virtual mail owner.
    pub gid: u32,
    /// Home template: `%d` domain, `%n` local part, `%u` address, `%%`.
    pub home: String,
    /// Subaddress delimiter.
    pub tag_delimiter: String,
    /// bcrypt cost of new hashes.
    pub password_cost: u32,
    /// Upper bound for one database call, in milliseconds, lock waits
    /// included; whole-table reads and migrations have their own
    /// ([`crate::store::BULK_TIMEOUT`]).
    pub query_timeout_ms: u64,
    /// Most answers `table-mailtable` and `serve` keep in their cache
    /// ([`crate::cache`]); 0 turns the cache off.
    pub cache_entries: usize,
    /// Seconds after the database last gave a positive answer (a mailbox,
    /// an alias's destinations, a login's hash) during which the daemons
    /// may still serve it when the database fails; 0 turns that off.
    pub stale_if_error: u64,
    /// `[table]`.
    pub table: TableConfig,
    /// `[serve]`.
    pub serve: ServeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: crate::store::url::DEFAULT_DATABASE.into(),
            uid: 5000,
            gid: 5000,
            home: "/var/vmail/%d/%n".into(),
            tag_delimiter: "+".into(),
            password_cost: 10,
            query_timeout_ms: 5000,
            cache_entries: crate::cache::DEFAULT_ENTRIES,
            stale_if_error: crate::cache::DEFAULT_STALE_IF_ERROR.as_secs(),
            table: TableConfig::default(),
            serve: ServeConfig::default(),
        }
    }
}

/// A TOML error without the line it quotes: the file holds the database
/// URL's password and the HTTP secret, and the message reaches smtpd's log
/// (the table answers every lookup with it) and the terminal. Where, and
/// what is wrong; a value the message repeats (a type error quotes it) is
/// masked when its line is a secret's or a URL's.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut message = e.message().trim().to_string();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if value.is_empty() {
            continue;
        }
        if key.trim().ends_with("secret") {
            message = message.replace(value, "***");
        } else if value.contains("://") {
            message = message.replace(value, &crate::store::url::redact(value));
        }
    }
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            format!("TOML parse error at line {line}, column {column}: {message}")
        }
        None => format!("TOML parse error: {message}"),
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// The one rule all three binaries follow: the file given (`-c`, or the
    /// table's argument from smtpd.conf) must load; without one,
    /// [`DEFAULT_PATH`] is read when it exists, else the built-in defaults
    /// apply, so a first `mailtable user add` works on a fresh host.
    pub fn locate(given: Option<&Path>) -> Result<Config, ConfigError> {
        match given {
            Some(path) => Config::load(path),
            None => {
                let default = Path::new(DEFAULT_PATH);
                if default.exists() {
                    Config::load(default)
                } else {
                    Ok(Config::default())
                }
            }
        }
    }

    /// Parse and validate config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        self.database_url()?;
        self.delimiter()?;
        let costs = crate::password::CONFIG_COST_RANGE;
        if !costs.contains(&self.password_cost) {
            return Err(format!(
                "password_cost {} is outside {}..={}: each step doubles the time of \
                 a hash and of every login's check of it",
                self.password_cost,
                costs.start(),
                costs.end()
            ));
        }
        if !self.home.starts_with('/') {
            return Err(format!(
                "home {:?} must be an absolute path template",
                self.home
            ));
        }
        if self.query_timeout_ms == 0 {
            return Err("query_timeout_ms must be positive".into());
        }
        Ok(())
    }

    /// The answer cache's bounds.
    pub fn cache_settings(&self) -> crate::cache::CacheSettings {
        crate::cache::CacheSettings {
            entries: self.cache_entries,
            stale_if_error: Duration::from_secs(self.stale_if_error),
        }
    }

    /// The parsed `database` URL.
    pub fn database_url(&self) -> Result<DatabaseUrl, String> {
        self.database.parse()
    }

    /// The subaddress delimiter as a char.
    ///
    /// Not `.` or `_` either: smtpd cuts a delivery user name at its
    /// subaddressing delimiter (lka_expand in usr.sbin/smtpd/lka_session.c),
    /// and every delivery user name (`hugo_barrera.io`) holds both.
    pub fn delimiter(&self) -> Result<char, String> {
        let mut chars = self.tag_delimiter.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_punctuation() && !"@%:,|\"._".contains(c) => Ok(c),
            _ => Err(format!(
                "tag_delimiter {:?} must be one punctuation character other than \
                 @ % : , | \" . _ (smtpd cuts a delivery user name such as hugo_barrera.io \
                 at it)",
                self.tag_delimiter
            )),
        }
    }

    /// The per-call database timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }

    /// The home directory of a mailbox, from the template.
    pub fn home_for(&self, addr: &Address) -> String {
        expand_home(&self.home, addr)
    }
}

/// `template` with `%d` (domain), `%n` (local part), `%u` (address) and
/// `%%` replaced; other `%x` stay as they are, like Dovecot's own
/// variables would leave them visible to the admin.
pub(crate) fn expand_home(template: &str, addr: &Address) -> String {
    expand(template, addr.local(), addr.domain())
}

fn expand(template: &str, local: &str, domain: &Domain) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(domain.as_str()),
            Some('n') => out.push_str(local),
            Some('u') => {
                out.push_str(local);
                out.push('@');
                out.push_str(domain.as_str());
            }
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parse() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.database, "sqlite:///var/lib/mailtable/mail.db");
        assert_eq!(c.delimiter().unwrap(), '+');
        let c =
            Config::parse("uid = 2000\ngid = 2001\nhome = \"/m/%d/%n\"\n[table]\nauth = true\n")
                .unwrap();
        let a = Address::parse("john_doe@example.com").unwrap();
        assert_eq!(c.home_for(&a), "/m/example.com/john_doe");
        assert!(c.table.auth);
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        assert!(Config::parse("databse = \"x\"")
            .unwrap_err()
            .contains("databse"));
        assert!(Config::parse("tag_delimiter = \"@\"").is_err());
        assert!(Config::parse("tag_delimiter = \"++\"").is_err());
        // In every delivery user name, where smtpd would cut it.
        for d in [".", "_"] {
            let e = Config::parse(&format!("tag_delimiter = \"{d}\"")).unwrap_err();
            assert!(e.contains("delivery user name"), "{d}: {e}");
        }
        assert!(Config::parse("tag_delimiter = \"-\"").is_ok());
        assert!(Config::parse("password_cost = 3").is_err());
        assert!(Config::parse("password_cost = 16").is_ok());
        let slow = Config::parse("password_cost = 17").unwrap_err();
        assert!(slow.contains("outside 4..=16"), "{slow}");
    }

    #[test]
    fn a_config_error_never_quotes_a_secret() {
        let cases = [
            // An unterminated string, an unquoted URL: TOML's own message
            // quotes the line.
            "database = \"postgresql://mailer:S3cretPW@127.0.0.1/mail\n",
            "database = postgresql://mailer:S3cretPW@127.0.0.1/mail\n",
            // Type errors quote the value.
            "query_timeout_ms = \"postgresql://mailer:S3cretPW@127.0.0.1/mail\"\n",
            "[serve]\nhttp_secret = 4711\nworkers = \"S3cretPW\"\n",
            "[serve]\nhttp_secret = \"S3cretPW\"\nworkers = \"S3cretPW\"\n",
        ];
        for text in cases {
            let e = Config::parse(text).unwrap_err();
            assert!(
                !e.contains("S3cretPW") && !e.contains("4711"),
                "{text}: {e}"
            );
            assert!(e.starts_with("TOML parse error at line "), "{text}: {e}");
        }
        let e = Config::parse("cache_entries = 1\n\ncache_entries = 2\n").unwrap_err();
        assert!(e.contains("line 3, column 1"), "{e}");
        assert!(Config::parse("home = \"relative/%d\"").is_err());
        assert!(Config::parse("database = \"mysql://x\"").is_err());
    }

    #[test]
    fn home_template() {
        let d = Domain::parse("x.org").unwrap();
        assert_eq!(
            expand("/v/%d/%n/%u/%%/%z", "a", &d),
            "/v/x.org/a/a@x.org/%/%z"
        );
    }
}

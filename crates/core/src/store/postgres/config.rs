//! The connection settings: the URL's own (libpq syntax, parsed by
//! tokio-postgres' `Config`), plus what mailtable needs on every
//! connection.
//!
//! - A URL may name several hosts (`postgresql://h1:5432,h2:5433/db`;
//!   libpq manual, "Connection Strings"), tried in order. Read-only access
//!   (the daemons) takes the first reachable host, replicas included
//!   (`target_session_attrs` as the URL says, default `any`); read-write
//!   access (the CLI) forces `target_session_attrs=read-write` (libpq
//!   manual, "Parameter Key Words").
//! - `statement_timeout` is set to the configured timeout as a startup
//!   option (`options=-c ...`), so it bounds the very first statement too;
//!   readers also get `default_transaction_read_only=on` (PostgreSQL
//!   manual, "Client Connection Defaults").
//! - `application_name` is the binary's name unless the URL sets one, so
//!   `pg_stat_activity` shows who is connected.
//! - A URL without a host uses the Unix socket in `/var/run/postgresql`,
//!   where libpq looks on Debian. This is the one decision a reader would
//!   question: tokio-postgres has no compiled-in default socket directory
//!   and would refuse such a URL, while `psql` on the same machine accepts it.
//! - TLS: libpq's `sslmode` and `sslrootcert` (libpq manual, "Parameter Key
//!   Words" and "SSL Support"). tokio-postgres itself knows only
//!   `disable`, `prefer` and `require` and refuses `sslrootcert`, so both
//!   are taken out of the URL here, the one place that reads it, and
//!   carried in [`Tls`] to `tls.rs`. Without `sslmode` the default depends
//!   on where the server is: `prefer` (libpq's own default) when every host
//!   is a loopback address or a Unix socket, `require` for anything else,
//!   so that a password never crosses a network in cleartext unless the
//!   URL says `sslmode=disable` (or `prefer`). As in libpq, `require` with
//!   an `sslrootcert` verifies the chain like `verify-ca`, and a Unix
//!   socket never uses TLS whatever the mode.

use super::passfile;
use crate::store::{Access, OpenOptions, StoreError};
use percent_encoding::percent_decode_str;
use std::net::IpAddr;
use std::path::PathBuf;
use tokio_postgres::config::{Host, SslMode as DriverSslMode, TargetSessionAttrs};
use tokio_postgres::Config;

/// libpq's socket directory on Debian, for URLs that name no host.
pub(super) const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// libpq's `sslmode` (libpq manual, "SSL Support", table "SSL Mode
/// Descriptions"); `allow` is not offered (tokio-postgres cannot try
/// cleartext first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Cleartext only.
    Disable,
    /// TLS if the server offers it, unverified; else cleartext.
    Prefer,
    /// TLS, unverified (verified like `VerifyCa` when a root file is given).
    Require,
    /// TLS, the chain checked against the root certificates.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The name as written in a URL.
    pub(super) fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted root certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trusted CAs (libpq 16).
    System,
}

/// The TLS part of the settings, for `tls.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tls {
    /// The effective mode: what the URL says, else the default by host.
    pub(super) mode: SslMode,
    /// `sslrootcert`, if the URL names one.
    pub(super) root: Option<RootCert>,
}

impl Tls {
    /// Whether the server's certificate chain is checked.
    pub(super) fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.root.is_some(),
            SslMode::Disable | SslMode::Prefer => false,
        }
    }
}

/// Everything needed to connect.
pub(super) struct Settings {
    pub(super) config: Config,
    /// One config per host of the URL, in its order, each with its own
    /// password from the password file ([`per_host`]).
    pub(super) hosts: Vec<(String, Config)>,
    pub(super) tls: Tls,
}

/// The parameters tokio-postgres does not know, taken out of the URL
/// (percent-decoded, the last one winning as in libpq).
#[derive(Debug, Default, PartialEq, Eq)]
struct Taken {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    passfile: Option<String>,
}

/// The URL without its `sslmode`, `sslrootcert` and `passfile`
/// parameters, and their values.
///
/// The query is found the way tokio-postgres finds it (`UrlParser` in its
/// `config.rs`): the user info ends at the first `@`, the query starts at
/// the first `?` after that. Nothing before the query is touched, so the
/// password reaches the driver exactly as typed.
fn take_params(url: &str) -> (String, Taken) {
    let mut taken = Taken::default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), taken);
    };
    let after_creds = rest.find('@').map_or(0, |at| at + 1);
    let Some(q) = rest[after_creds..].find('?').map(|q| after_creds + q) else {
        return (url.to_string(), taken);
    };
    let mut kept = Vec::new();
    for pair in rest[q + 1..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || percent_decode_str(value).decode_utf8_lossy().into_owned();
        match percent_decode_str(key).decode_utf8_lossy().as_ref() {
            "sslmode" => taken.sslmode = Some(decoded()),
            "sslrootcert" => taken.sslrootcert = Some(decoded()),
            "passfile" => taken.passfile = Some(decoded()),
            _ => kept.push(pair),
        }
    }
    let mut out = format!("{scheme}://{}", &rest[..q]);
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    (out, taken)
}

/// Whether every host of `config` is on this machine: a loopback address,
/// `localhost`, or a Unix socket.
fn all_local(config: &Config) -> bool {
    let hosts = config.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    // A `hostaddr` is where tokio-postgres really connects.
    hosts && config.get_hostaddrs().iter().all(IpAddr::is_loopback)
}

/// The connection settings for `url` (`shown`: the same, redacted, for
/// messages).
pub(super) fn from_url(
    url: &str,
    shown: &str,
    options: &OpenOptions,
) -> Result<Settings, StoreError> {
    let (url, taken) = take_params(url);
    let mut config: Config = url.parse().map_err(|e| {
        // The driver's message names no parameter; libpq's other
        // `target_session_attrs` (primary, standby, prefer-standby) are the
        // likely ones it does not take.
        let attrs = match url.contains("target_session_attrs=") {
            true => " (target_session_attrs takes any, read-write or read-only here)",
            false => "",
        };
        StoreError::Config(format!("invalid PostgreSQL URL {shown}: {e}{attrs}"))
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host_path(DEFAULT_SOCKET_DIR);
    }
    // The URL's own password serves every host; one from the password
    // file is looked up per host, as libpq does (below).
    let url_password = config.get_password().is_some();
    passfile::apply(&mut config, taken.passfile.as_deref(), shown)?;
    let mode = match taken.sslmode.as_deref() {
        Some(m) => SslMode::parse(m).ok_or_else(|| {
            StoreError::Config(format!(
                "invalid PostgreSQL URL {shown}: sslmode={m} is not one of \
                 disable, prefer, require, verify-ca, verify-full"
            ))
        })?,
        None if all_local(&config) => SslMode::Prefer,
        None => SslMode::Require,
    };
    let root = match taken.sslrootcert.as_deref() {
        None | Some("") => None,
        Some("system") => Some(RootCert::System),
        Some(path) => Some(RootCert::File(PathBuf::from(path))),
    };
    let sockets_only = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
        && config.get_hostaddrs().is_empty();
    config.ssl_mode(match mode {
        // libpq never uses TLS on a Unix socket, whatever sslmode says.
        _ if sockets_only => DriverSslMode::Disable,
        SslMode::Disable => DriverSslMode::Disable,
        SslMode::Prefer => DriverSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
    });
    let tls = Tls {
        mode: if sockets_only { SslMode::Disable } else { mode },
        root,
    };
    let mut startup = config.get_options().unwrap_or_default().to_string();
    // Later `-c` settings win, so ours override any the URL carries.
    startup.push_str(&format!(
        " -c statement_timeout={}",
        options.timeout.as_millis().max(1)
    ));
    // Readers' sessions are made read-only once chosen (connect.rs): as a
    // startup option it made every server look read-only to the driver's
    // `target_session_attrs` check, so `read-write` refused the primary
    // and `read-only` took it.
    if options.access != Access::ReadOnly {
        // Writes go to the primary only (libpq's target_session_attrs).
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    }
    config.options(startup.trim_start());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name(program_name());
    }
    // What the driver refuses when it is given several hosts at once,
    // refused here too: `per_host` would pair them up some other way
    // (`host=a&port=5999` is two ports for one host).
    let (n_hosts, n_addrs, n_ports) = (
        config.get_hosts().len(),
        config.get_hostaddrs().len(),
        config.get_ports().len(),
    );
    if n_hosts > 0 && n_addrs > 0 && n_hosts != n_addrs {
        return Err(StoreError::Config(format!(
            "invalid PostgreSQL URL {shown}: {n_hosts} host(s) and {n_addrs} hostaddr(s)"
        )));
    }
    if n_ports > 1 && n_ports != n_hosts.max(n_addrs) {
        return Err(StoreError::Config(format!(
            "invalid PostgreSQL URL {shown}: {n_ports} ports for {} host(s) (one port for \
             all, or one per host)",
            n_hosts.max(n_addrs)
        )));
    }
    let mut hosts = per_host(&config, url_password);
    for (_, host) in &mut hosts {
        passfile::apply(host, taken.passfile.as_deref(), shown)?;
    }
    Ok(Settings { config, hosts, tls })
}

/// `config` once per host, in the URL's order, each naming that host
/// alone (with its `hostaddr` and port: one port for all hosts or one
/// each, as libpq pairs them), and a label for messages. The driver tries
/// a multi-host URL in one call whose connect timeout covers the TCP
/// connect only: a host that accepts and never answers (a stopped
/// server, a proxy without a backend) held every lookup past the whole
/// deadline, and the next host was never tried. One at a time, each gets
/// a deadline of its own (libpq's `connect_timeout` is per host too).
/// `password`: with the password `config` has (the URL's), or without.
pub(super) fn per_host(config: &Config, password: bool) -> Vec<(String, Config)> {
    let (hosts, addrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    let n = hosts.len().max(addrs.len()).max(1);
    (0..n)
        .map(|i| {
            let mut c = Config::new();
            copy_settings(config, &mut c, password);
            let mut label = match hosts.get(i) {
                Some(Host::Tcp(name)) => {
                    c.host(name);
                    name.clone()
                }
                Some(Host::Unix(dir)) => {
                    c.host_path(dir);
                    dir.display().to_string()
                }
                None => String::new(),
            };
            if let Some(addr) = addrs.get(i) {
                c.hostaddr(*addr);
                if label.is_empty() {
                    label = addr.to_string();
                }
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                c.port(*port);
                label = format!("{label}:{port}");
            }
            (label, c)
        })
        .collect()
}

/// Every setting of `from` but its hosts and ports (and its password
/// unless `password`), into `to`.
fn copy_settings(from: &Config, to: &mut Config, password: bool) {
    if let Some(user) = from.get_user() {
        to.user(user);
    }
    if let Some(p) = from.get_password().filter(|_| password) {
        to.password(p);
    }
    if let Some(dbname) = from.get_dbname() {
        to.dbname(dbname);
    }
    if let Some(options) = from.get_options() {
        to.options(options);
    }
    if let Some(name) = from.get_application_name() {
        to.application_name(name);
    }
    to.ssl_mode(from.get_ssl_mode());
    to.ssl_negotiation(from.get_ssl_negotiation());
    if let Some(t) = from.get_connect_timeout() {
        to.connect_timeout(*t);
    }
    if let Some(t) = from.get_tcp_user_timeout() {
        to.tcp_user_timeout(*t);
    }
    to.keepalives(from.get_keepalives());
    to.keepalives_idle(from.get_keepalives_idle());
    if let Some(t) = from.get_keepalives_interval() {
        to.keepalives_interval(t);
    }
    if let Some(n) = from.get_keepalives_retries() {
        to.keepalives_retries(n);
    }
    to.target_session_attrs(from.get_target_session_attrs());
    to.channel_binding(from.get_channel_binding());
    to.load_balance_hosts(from.get_load_balance_hosts());
}

/// The binary's name, for `application_name`: the executable's file name,
/// not argv[0], which smtpd sets to the table's name for its table
/// processes (`fork_proc_backend` in usr.sbin/smtpd/smtpd.c).
fn program_name() -> String {
    let file_name = |p: &std::path::Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
    };
    std::env::current_exe()
        .ok()
        .and_then(|p| file_name(&p))
        .or_else(|| file_name(std::path::Path::new(&std::env::args_os().next()?)))
        .unwrap_or_else(|| "mailtable".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::url::redact;
    use std::time::Duration;
    use tokio_postgres::config::Host;

    fn opts(access: Access) -> OpenOptions {
        OpenOptions {
            access,
            timeout: Duration::from_millis(1500),
        }
    }

    #[test]
    fn settings_added_to_the_url() {
        let url = "postgresql://mail:s3cret@db1:5432,db2:5433/mail?options=-c%20search_path%3Dmt";
        let ro = from_url(url, &redact(url), &opts(Access::ReadOnly))
            .unwrap()
            .config;
        assert_eq!(ro.get_hosts().len(), 2);
        assert_eq!(ro.get_ports(), &[5432, 5433]);
        assert_eq!(ro.get_target_session_attrs(), TargetSessionAttrs::Any);
        assert_eq!(
            ro.get_options(),
            Some("-c search_path=mt -c statement_timeout=1500")
        );
        assert_eq!(ro.get_connect_timeout(), Some(&Duration::from_millis(1500)));
        assert!(ro.get_application_name().is_some());
        let rw = from_url(url, &redact(url), &opts(Access::ReadWrite))
            .unwrap()
            .config;
        assert_eq!(rw.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert_eq!(
            rw.get_options(),
            Some("-c search_path=mt -c statement_timeout=1500")
        );
        // No host: Debian's socket directory, as libpq does there.
        let local = from_url(
            "postgresql:///mail",
            "postgresql:///mail",
            &opts(Access::ReadOnly),
        )
        .unwrap()
        .config;
        assert!(
            matches!(local.get_hosts(), [Host::Unix(p)] if p.as_path() == std::path::Path::new(DEFAULT_SOCKET_DIR))
        );
    }

    /// One config per host, each with every setting of the URL's and its
    /// own host and port, in the URL's order.
    #[test]
    fn each_host_gets_a_config_of_its_own() {
        let url = "postgresql://mail:s3cret@db1:5432,db2:5433,%2Frun%2Fpg/mail\
                   ?options=-c%20search_path%3Dmt&target_session_attrs=read-only\
                   &keepalives_idle=30&channel_binding=disable";
        let s = from_url(url, &redact(url), &opts(Access::ReadOnly)).unwrap();
        let labels: Vec<&str> = s.hosts.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["db1:5432", "db2:5433", "/run/pg:5432"]);
        let (_, first) = &s.hosts[0];
        assert_eq!(first.get_hosts(), &[Host::Tcp("db1".into())]);
        assert_eq!(first.get_ports(), &[5432]);
        // Everything else as the whole URL's config has it: the two print
        // the same once the hosts and ports are the same.
        let mut whole = Config::new();
        copy_settings(&s.config, &mut whole, true);
        whole.host("db1").port(5432);
        assert_eq!(format!("{first:?}"), format!("{whole:?}"));
        assert_eq!(
            first.get_target_session_attrs(),
            TargetSessionAttrs::ReadOnly
        );
        assert_eq!(first.get_password(), Some(&b"s3cret"[..]));
        // A password file's line per host, as libpq reads it; the URL's
        // own password, where it has one, for every host.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "db1:5432:mail:mail:one\ndb2:5433:mail:mail:two\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let url = format!(
            "postgresql://mail@db1:5432,db2:5433/mail?passfile={}",
            file.display()
        );
        let s = from_url(&url, &redact(&url), &opts(Access::ReadOnly)).unwrap();
        let passwords: Vec<_> = s.hosts.iter().map(|(_, c)| c.get_password()).collect();
        assert_eq!(passwords, [Some(&b"one"[..]), Some(&b"two"[..])]);
        let url = url.replace("mail@", "mail:given@");
        let s = from_url(&url, &redact(&url), &opts(Access::ReadOnly)).unwrap();
        let passwords: Vec<_> = s.hosts.iter().map(|(_, c)| c.get_password()).collect();
        assert_eq!(passwords, [Some(&b"given"[..]), Some(&b"given"[..])]);
        // Ports and hostaddrs that do not pair up with the hosts, as the
        // driver would refuse them (`?port=` after a host written without
        // one is a second port).
        for bad in [
            "postgresql://mail@127.0.0.1/mail?port=5999",
            "postgresql://mail@db1:1,db2:2,db3:3/mail?port=4",
            "postgresql://mail@db1,db2/mail?hostaddr=127.0.0.1",
        ] {
            let e = from_url(bad, &redact(bad), &opts(Access::ReadOnly)).err();
            assert!(matches!(e, Some(StoreError::Config(_))), "{bad}: {e:?}");
        }
        // A URL of one host: the same config.
        let one = "postgresql://mail:s3cret@db1:5432/mail?keepalives_idle=30";
        let s = from_url(one, &redact(one), &opts(Access::ReadOnly)).unwrap();
        assert_eq!(format!("{:?}", s.hosts[0].1), format!("{:?}", s.config));
    }

    fn tls(url: &str) -> Result<(Tls, DriverSslMode), StoreError> {
        from_url(url, &redact(url), &opts(Access::ReadOnly))
            .map(|s| (s.tls, s.config.get_ssl_mode()))
    }

    #[test]
    fn sslmode_and_sslrootcert_are_read() {
        for (mode, want, driver) in [
            ("disable", SslMode::Disable, DriverSslMode::Disable),
            ("prefer", SslMode::Prefer, DriverSslMode::Prefer),
            ("require", SslMode::Require, DriverSslMode::Require),
            ("verify-ca", SslMode::VerifyCa, DriverSslMode::Require),
            ("verify-full", SslMode::VerifyFull, DriverSslMode::Require),
        ] {
            let url = format!(
                "postgresql://mail:pw@db1.example.net/mail?sslmode={mode}&connect_timeout=3"
            );
            let (t, d) = tls(&url).unwrap();
            assert_eq!((t.mode, t.root, d), (want, None, driver), "{mode}");
        }
        // Percent-encoded, anywhere in the query, the last one wins.
        let (t, _) = tls("postgresql://db1/mail?sslmode=require&application_name=x\
             &sslrootcert=%2Fetc%2Fmail%20ca.pem&ssl%6dode=verify-full")
        .unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(
            t.root,
            Some(RootCert::File(PathBuf::from("/etc/mail ca.pem")))
        );
        let (t, _) = tls("postgresql://db1/mail?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!(t.root, Some(RootCert::System));
        assert!(t.verifies_chain());
        // libpq: `require` with a root file verifies the chain.
        let (t, _) = tls("postgresql://db1/mail?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert!(t.verifies_chain());
        let (t, _) = tls("postgresql://db1/mail?sslmode=require").unwrap();
        assert!(!t.verifies_chain());
        for bad in ["allow", "verify_full", "VERIFY-FULL", ""] {
            let url = format!("postgresql://mail:s3cret@db1/mail?sslmode={bad}");
            let err = tls(&url).err().unwrap().to_string();
            assert!(
                err.contains("verify-full") && !err.contains("s3cret"),
                "{err}"
            );
        }
    }

    #[test]
    fn default_sslmode_depends_on_the_host() {
        for local in [
            "postgresql:///mail",
            "postgresql://localhost/mail",
            "postgresql://127.0.0.1:5433/mail",
            "postgresql://127.0.0.2/mail",
            "postgresql://[::1]:5432/mail",
            "postgresql://LocalHost,127.0.0.1/mail",
            "postgresql://%2Frun%2Fpostgresql/mail",
            "postgresql:///mail?host=/run/postgresql",
        ] {
            let (t, _) = tls(local).unwrap();
            assert!(
                matches!(t.mode, SslMode::Prefer | SslMode::Disable),
                "{local}: {t:?}"
            );
        }
        for remote in [
            "postgresql://db1.example.net/mail",
            "postgresql://192.0.2.7/mail",
            "postgresql://localhost,db2.example.net/mail",
            "postgresql://[2001:db8::1]/mail",
            "postgresql://localhost/mail?hostaddr=192.0.2.7",
        ] {
            let (t, d) = tls(remote).unwrap();
            assert_eq!(
                (t.mode, d),
                (SslMode::Require, DriverSslMode::Require),
                "{remote}"
            );
        }
        // The URL's word wins over the default, both ways.
        let (t, _) = tls("postgresql://db1/mail?sslmode=disable").unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        let (t, _) = tls("postgresql://127.0.0.1/mail?sslmode=verify-full").unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        // Never TLS on a Unix socket (libpq ignores sslmode there).
        let (t, d) = tls("postgresql:///mail?sslmode=verify-full").unwrap();
        assert_eq!((t.mode, d), (SslMode::Disable, DriverSslMode::Disable));
    }

    #[test]
    fn taken_parameters_leave_the_rest_of_the_url_alone() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            take_params("postgresql://mail:pa?ss@db1/mail?sslmode=verify-full&sslrootcert=/ca.pem"),
            (
                "postgresql://mail:pa?ss@db1/mail".to_string(),
                Taken {
                    sslmode: some("verify-full"),
                    sslrootcert: some("/ca.pem"),
                    passfile: None
                }
            )
        );
        assert_eq!(
            take_params(
                "postgres://db1/mail?user=a&sslmode=require&passfile=%2Fetc%2Fpw&password=p%26w"
            ),
            (
                "postgres://db1/mail?user=a&password=p%26w".to_string(),
                Taken {
                    sslmode: some("require"),
                    sslrootcert: None,
                    passfile: some("/etc/pw")
                }
            )
        );
        assert_eq!(
            take_params("postgresql://db1/mail"),
            ("postgresql://db1/mail".to_string(), Taken::default())
        );
        // The password still reaches the driver as typed.
        let url = "postgresql://mail:p%40ss?x@db1/mail?sslmode=verify-ca&sslrootcert=/ca.pem";
        let s = from_url(url, &redact(url), &opts(Access::ReadOnly)).unwrap();
        assert_eq!(s.config.get_password(), Some(&b"p@ss?x"[..]));
        assert_eq!(s.config.get_dbname(), Some("mail"));
        // And the redacted form keeps the TLS settings, not the password.
        assert_eq!(
            redact(url),
            "postgresql://mail:***@db1/mail?sslmode=verify-ca&sslrootcert=/ca.pem"
        );
    }
}

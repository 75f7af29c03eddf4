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

use crate::store::{Access, OpenOptions, StoreError};
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::Config;

/// libpq's socket directory on Debian, for URLs that name no host.
pub(super) const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The connection settings for `url` (`shown`: the same, redacted, for
/// messages).
pub(super) fn from_url(
    url: &str,
    shown: &str,
    options: &OpenOptions,
) -> Result<Config, StoreError> {
    let mut config: Config = url
        .parse()
        .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL {shown}: {e}")))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host_path(DEFAULT_SOCKET_DIR);
    }
    let mut startup = config.get_options().unwrap_or_default().to_string();
    // Later `-c` settings win, so ours override any the URL carries.
    startup.push_str(&format!(
        " -c statement_timeout={}",
        options.timeout.as_millis().max(1)
    ));
    if options.access == Access::ReadOnly {
        startup.push_str(" -c default_transaction_read_only=on");
    } else {
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
    Ok(config)
}

/// The binary's name, for `application_name`.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| !n.is_empty())
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
        let ro = from_url(url, &redact(url), &opts(Access::ReadOnly)).unwrap();
        assert_eq!(ro.get_hosts().len(), 2);
        assert_eq!(ro.get_ports(), &[5432, 5433]);
        assert_eq!(ro.get_target_session_attrs(), TargetSessionAttrs::Any);
        assert_eq!(
            ro.get_options(),
            Some("-c search_path=mt -c statement_timeout=1500 -c default_transaction_read_only=on")
        );
        assert_eq!(ro.get_connect_timeout(), Some(&Duration::from_millis(1500)));
        assert!(ro.get_application_name().is_some());
        let rw = from_url(url, &redact(url), &opts(Access::ReadWrite)).unwrap();
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
        .unwrap();
        assert!(
            matches!(local.get_hosts(), [Host::Unix(p)] if p.as_path() == std::path::Path::new(DEFAULT_SOCKET_DIR))
        );
    }
}

//! The `[serve]` settings, checked before anything is bound: where to
//! listen, the API secret, the socket files' owner, group and mode, and the
//! limits.
//!
//! The decision a reader would question: the HTTP API never listens on
//! anything but loopback or a UNIX socket. It answers password checks, and
//! even with its bearer token it has no business on a network (issue 4).
//! `0.0.0.0`, `::`, host names and any other address are refused here, at
//! start-up, with exit code 2.
//!
//! Loopback is not enough either: any local user may bind a TCP port of
//! 1024 or above whenever `serve` is not running (boot, restart, upgrade,
//! a config error), and would then receive every login's token and
//! password and could answer "ok" to all of them (issue 12). So a TCP
//! `http_listen` must use a port below 1024, unless the config says
//! `http_listen_unprivileged_port = true`, which is logged as a warning at
//! every start. The default is a UNIX socket in a directory only root and
//! the service can write (see `listen::prepare_socket_dir`).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mailtable_core::Config;
use nix::unistd::{Group, User};

use crate::http::HEADER_TIMEOUT;
use crate::secret::Secret;

/// Why `serve` cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is wrong; fixing the config is the only cure.
    #[error("{0}")]
    Config(String),
    /// A socket or thread could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpListen {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A UNIX socket path.
    Unix(PathBuf),
}

impl HttpListen {
    /// Parses `http_listen`: `unix:/absolute/path`, `127.0.0.1:PORT` (any
    /// 127.0.0.0/8 address) or `[::1]:PORT`. Everything else is refused.
    pub fn parse(s: &str) -> Result<HttpListen, ServeError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(ServeError::Config(format!(
                    "http_listen {s:?}: the socket path must be absolute"
                )));
            }
            return Ok(HttpListen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s.parse().map_err(|_| {
            ServeError::Config(format!(
                "http_listen {s:?} is neither unix:/path nor IP:PORT \
                 (use 127.0.0.1:PORT or [::1]:PORT; host names are not accepted)"
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(ServeError::Config(format!(
                "http_listen {s:?} is not a loopback address: the password API only \
                 listens on 127.0.0.1, [::1] or a UNIX socket"
            )));
        }
        if addr.port() == 0 {
            return Err(ServeError::Config(format!(
                "http_listen {s:?}: choose a port; the Lua script needs to know it"
            )));
        }
        Ok(HttpListen::Tcp(addr))
    }
}

/// Everything `serve` needs, checked before anything is bound.
#[derive(Debug)]
pub struct Settings {
    /// Dict socket path, if the dict server is on.
    pub dict_socket: Option<PathBuf>,
    /// HTTP API listener, if on.
    pub http: Option<HttpListen>,
    /// Bearer token of the API.
    pub secret: Secret,
    /// Owner of the socket files (`None`: the running user).
    pub owner: Option<u32>,
    /// Group of the socket files (`None`: the running group).
    pub group: Option<u32>,
    /// Mode of the socket files.
    pub mode: u32,
    /// Hashing threads.
    pub workers: usize,
    /// Cap on concurrent connections, per listener.
    pub max_connections: usize,
    /// Cap on database handles open at once, both listeners together.
    pub database_connections: usize,
    /// Deadline for a whole HTTP request head.
    pub header_timeout: Duration,
}

/// Ports below this can only be bound by root (or `CAP_NET_BIND_SERVICE`).
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

impl Settings {
    /// Reads the `[serve]` section.
    pub fn from_config(config: &Config) -> Result<Settings, ServeError> {
        let s = &config.serve;
        let dict_socket = match s.dict_socket.as_str() {
            "" => None,
            p if p.starts_with('/') && !p.contains(':') => Some(PathBuf::from(p)),
            p => {
                return Err(ServeError::Config(format!(
                    "dict_socket {p:?} must be an absolute path without ':' \
                     (Dovecot's proxy dict URI cannot name another)"
                )))
            }
        };
        let http = match s.http_listen.as_str() {
            "" => None,
            l => Some(HttpListen::parse(l)?),
        };
        if let Some(HttpListen::Tcp(addr)) = &http {
            if addr.port() >= FIRST_UNPRIVILEGED_PORT && !s.http_listen_unprivileged_port {
                return Err(ServeError::Config(format!(
                    "http_listen \"{addr}\": any local user can listen on port {} while \
                     serve is not running and receive every password; use \
                     \"unix:/run/mailtable/http.sock\" or a port below {FIRST_UNPRIVILEGED_PORT}, \
                     or set http_listen_unprivileged_port = true in [serve] to accept that",
                    addr.port()
                )));
            }
        }
        if dict_socket.is_none() && http.is_none() {
            return Err(ServeError::Config(
                "nothing to serve: set dict_socket and/or http_listen in [serve]".into(),
            ));
        }
        // The token belongs to the HTTP API: without `http_listen` it is
        // neither needed nor read, so a dict-only config (Dovecot 2.3) works
        // whether or not the token file exists.
        let secret = match (s.http_secret.as_str(), s.http_secret_file.as_str()) {
            _ if http.is_none() => Secret::default(),
            ("", "") => Secret::default(),
            (inline, "") => Secret::new(inline.trim()),
            ("", file) => read_secret_file(file)?,
            _ => {
                return Err(ServeError::Config(
                    "set http_secret or http_secret_file, not both".into(),
                ))
            }
        };
        if http.is_some() && secret.is_empty() {
            return Err(ServeError::Config(
                "http_listen needs a secret (http_secret or http_secret_file): \
                 without it any local user could test passwords"
                    .into(),
            ));
        }
        let mode = u32::from_str_radix(s.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                ServeError::Config(format!(
                    "socket_mode {:?} is not an octal mode",
                    s.socket_mode
                ))
            })?;
        // The dict protocol has no authentication of its own: the socket
        // file's mode is all that keeps other local users from reading
        // every hash (`{PLAIN}` ones in clear). Connecting to a UNIX
        // socket needs write permission on it (unix(7)). The HTTP API asks
        // its token, so its socket may be more open.
        if dict_socket.is_some() && mode & 0o002 != 0 {
            return Err(ServeError::Config(format!(
                "socket_mode {:?} lets every local user connect to the dict socket, which \
                 answers any user's password hash without asking who is connecting; use \
                 \"0660\" with socket_group = the group Dovecot's auth runs in (dovecot)",
                s.socket_mode
            )));
        }
        let owner = match s.socket_owner.as_str() {
            "" => None,
            name => Some(lookup_user(name)?),
        };
        let group = match s.socket_group.as_str() {
            "" => None,
            name => Some(lookup_group(name)?),
        };
        if s.database_connections == 0 {
            return Err(ServeError::Config(
                "database_connections must be positive".into(),
            ));
        }
        if s.max_connections == 0 {
            return Err(ServeError::Config(
                "max_connections must be positive".into(),
            ));
        }
        Ok(Settings {
            dict_socket,
            http,
            secret,
            owner,
            group,
            mode,
            workers: s.workers.max(1),
            max_connections: s.max_connections,
            database_connections: s.database_connections,
            header_timeout: HEADER_TIMEOUT,
        })
    }
}

/// Reads the API token. A missing or unreadable file is a config error
/// (exit 2: restarting cannot make the file appear), naming the file and
/// the command that makes it.
fn read_secret_file(file: &str) -> Result<Secret, ServeError> {
    let text = std::fs::read(file).map_err(|e| {
        let dir = std::path::Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| "/".to_owned(), |d| d.display().to_string());
        ServeError::Config(format!(
            "cannot read http_secret_file {file}: {e}; make it as root with: \
             install -d -m 0755 {dir} && (umask 027 && head -c 32 /dev/urandom | \
             od -An -tx1 | tr -d ' \\n' >{file}) && chgrp dovecot {file} \
             (the package does this when Dovecot is installed: dpkg-reconfigure mailtable), \
             or remove http_listen if Dovecot does not use the Lua script"
        ))
    })?;
    Ok(Secret::new(text.trim_ascii()))
}

/// uid of a user name or number.
fn lookup_user(name: &str) -> Result<u32, ServeError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(ServeError::Config(format!(
            "socket_owner: no such user {name:?}"
        ))),
        Err(e) => Err(ServeError::Config(format!(
            "socket_owner: cannot look up user {name:?}: {e}"
        ))),
    }
}

/// gid of a group name or number.
fn lookup_group(name: &str) -> Result<u32, ServeError> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(ServeError::Config(format!(
            "socket_group: no such group {name:?}"
        ))),
        Err(e) => Err(ServeError::Config(format!(
            "socket_group: cannot look up group {name:?}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_unix_listen_addresses() {
        assert_eq!(
            HttpListen::parse("127.0.0.1:8787").ok(),
            Some(HttpListen::Tcp("127.0.0.1:8787".parse().expect("literal")))
        );
        assert!(matches!(
            HttpListen::parse("[::1]:8787"),
            Ok(HttpListen::Tcp(_))
        ));
        assert!(matches!(
            HttpListen::parse("127.0.0.2:1"),
            Ok(HttpListen::Tcp(_))
        ));
        assert_eq!(
            HttpListen::parse("unix:/run/mailtable/http.sock").ok(),
            Some(HttpListen::Unix("/run/mailtable/http.sock".into()))
        );
    }

    #[test]
    fn other_listen_addresses_are_refused() {
        for bad in [
            "0.0.0.0:8787",
            "[::]:8787",
            "192.168.1.10:8787",
            "10.0.0.1:80",
            "localhost:8787",
            "8787",
            "127.0.0.1:0",
            "unix:relative.sock",
            "",
        ] {
            let e = HttpListen::parse(bad);
            assert!(matches!(e, Err(ServeError::Config(_))), "{bad}: {e:?}");
        }
        let Err(ServeError::Config(msg)) = HttpListen::parse("0.0.0.0:8787") else {
            panic!("0.0.0.0 accepted");
        };
        assert!(msg.contains("not a loopback address"), "{msg}");
    }

    fn settings(toml: &str) -> Result<Settings, ServeError> {
        Settings::from_config(&Config::parse(toml).map_err(ServeError::Config)?)
    }

    #[test]
    fn unprivileged_tcp_ports_need_the_opt_in() {
        let refused = settings("[serve]\nhttp_listen = \"127.0.0.1:8787\"\nhttp_secret = \"x\"");
        let Err(ServeError::Config(msg)) = refused else {
            panic!("port 8787 accepted without the opt-in: {refused:?}");
        };
        assert!(msg.contains("http_listen_unprivileged_port"), "{msg}");
        assert!(settings("[serve]\nhttp_listen = \"[::1]:1024\"\nhttp_secret = \"x\"").is_err());
        let s = settings("[serve]\nhttp_listen = \"127.0.0.1:1023\"\nhttp_secret = \"x\"")
            .expect("a privileged port needs no opt-in");
        assert!(matches!(s.http, Some(HttpListen::Tcp(_))));
        let s = settings(
            "[serve]\nhttp_listen = \"127.0.0.1:8787\"\nhttp_secret = \"x\"\nhttp_listen_unprivileged_port = true",
        )
        .expect("explicit opt-in");
        assert!(matches!(s.http, Some(HttpListen::Tcp(_))));
        // The opt-in never allows a non-loopback address.
        assert!(settings(
            "[serve]\nhttp_listen = \"0.0.0.0:80\"\nhttp_secret = \"x\"\nhttp_listen_unprivileged_port = true",
        )
        .is_err());
    }

    #[test]
    fn the_token_file_is_read_only_for_the_http_api() {
        let missing = "/nonexistent-mailtable-test/dovecot-api.secret";
        // dict only: the token file of the shipped config is not needed.
        let s = settings(&format!(
            "[serve]\ndict_socket = \"/run/mt/dict.sock\"\nhttp_secret_file = \"{missing}\""
        ))
        .expect("dict-only config with a missing token file");
        assert!(s.http.is_none());
        // with the HTTP API, a missing token file is a config error (exit 2)
        // that names the file and how to make it.
        let e = settings(&format!(
            "[serve]\nhttp_listen = \"unix:/run/mt/http.sock\"\nhttp_secret_file = \"{missing}\""
        ));
        let Err(ServeError::Config(msg)) = e else {
            panic!("missing token file accepted or not a config error: {e:?}");
        };
        assert!(msg.contains(missing), "{msg}");
        assert!(msg.contains("head -c 32 /dev/urandom"), "{msg}");
        assert!(msg.contains("umask 027"), "{msg}");
    }

    #[test]
    fn settings_need_a_listener_and_a_secret() {
        assert!(settings("").is_err());
        assert!(settings("[serve]\nhttp_listen = \"127.0.0.1:787\"").is_err());
        assert!(settings("[serve]\nhttp_listen = \"0.0.0.0:8787\"\nhttp_secret = \"x\"").is_err());
        assert!(settings("[serve]\ndict_socket = \"relative.sock\"").is_err());
        assert!(settings("[serve]\ndict_socket = \"/run/a:b\"").is_err());
        let s = settings("[serve]\ndict_socket = \"/run/mt/dict.sock\"\nsocket_mode = \"0660\"")
            .expect("valid settings");
        assert_eq!(s.mode, 0o660);
        assert_eq!(s.dict_socket, Some(PathBuf::from("/run/mt/dict.sock")));
        let s = settings(
            "[serve]\nhttp_listen = \"[::1]:787\"\nhttp_secret = \" tok \"\nsocket_owner = \"0\"\nsocket_group = \"root\"",
        )
        .expect("valid settings");
        assert!(s.secret.ct_eq(b"tok"));
        assert_eq!((s.owner, s.group), (Some(0), Some(0)));
        assert!(settings("[serve]\ndict_socket = \"/x\"\nsocket_mode = \"rw\"").is_err());
        // Others may not reach the dict socket, which has no authentication;
        // the HTTP socket asks its token.
        for open in ["0666", "0662", "0622", "0777"] {
            let msg = settings(&format!(
                "[serve]\ndict_socket = \"/x\"\nsocket_mode = \"{open}\""
            ))
            .unwrap_err()
            .to_string();
            assert!(msg.contains("every local user"), "{open}: {msg}");
        }
        assert!(settings(
            "[serve]\nhttp_listen = \"unix:/x\"\nhttp_secret = \"t\"\nsocket_mode = \"0666\""
        )
        .is_ok());
        // Reading the socket file is no connecting to it.
        assert!(settings("[serve]\ndict_socket = \"/x\"\nsocket_mode = \"0664\"").is_ok());
        assert!(
            settings("[serve]\ndict_socket = \"/x\"\nsocket_owner = \"no-such-user-mt\"").is_err()
        );
    }
}

//! Dovecot: which mailtable mode `doveconf` shows, whether this version has
//! it, and whether the process that uses it can: the auth process reading
//! the database (checkpassword), the auth worker reaching serve's socket
//! (dict) or reading the token file (Lua).
//!
//! Facts relied on:
//! - Dovecot 2.4 removed the checkpassword and dict passdb/userdb drivers
//!   (doc.dovecot.org, "Upgrading Dovecot CE from 2.3 to 2.4"); Lua stays.
//! - A service's processes get the user, `group` and `extra_groups` of its
//!   `service` block and no other supplementary groups (doc.dovecot.org,
//!   "Service configuration"; core@2.3.19.1:src/lib/restrict-access.c), so
//!   `usermod -aG` does not help the auth process: `extra_groups` does.
//! - `service auth` runs as `$default_internal_user`, `service auth-worker`
//!   as root (an empty `user`, in 2.3.19 and 2.4.1 alike: `doveconf
//!   service/auth-worker`); the checkpassword helper is forked by auth.
//!   Dict and Lua lookups run in the auth worker (2.3: their `blocking`
//!   default; 2.4: Lua there too, as root, [`lua_processes`]).
//! - 2.4's `doveconf -a` leaves out the built-in `service` blocks its
//!   config does not mention; `doveconf service/NAME` prints them.
//! - The shipped Lua script takes its url and secret_file from 2.4's
//!   `lua_settings`, else from the `config` table at its top (2.3 passes no
//!   settings; lua/mailtable-auth.lua).
//!
//! The facts come from `doveconf -a`'s full dump (every setting with its
//! value, defaults included), parsed by [`parse`].

use super::database::Reader;
use super::exec::{self, Ran};
use super::unix::{self, Creds, Want};
use super::{Check, DoctorArgs};
use mailtable_core::Config;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One `name [label] { ... }` block of doveconf's output (the root has an
/// empty kind).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) kind: String,
    pub(crate) label: String,
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) children: Vec<Section>,
}

impl Section {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.children.iter().filter(move |s| s.kind == kind)
    }

    pub(crate) fn find(&self, kind: &str, label: &str) -> Option<&Section> {
        self.children
            .iter()
            .find(|s| s.kind == kind && s.label == label)
    }
}

/// Parse doveconf output: `key = value` lines and `kind [label] {` ... `}`
/// blocks; `#` lines are comments.
pub(crate) fn parse(text: &str) -> Section {
    let mut stack = vec![Section::default()];
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "}" {
            if stack.len() > 1 {
                if let Some(done) = stack.pop() {
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(done);
                    }
                }
            }
        } else if let Some(head) = line.strip_suffix('{') {
            let mut words = head.split_whitespace();
            stack.push(Section {
                kind: words.next().unwrap_or("").to_string(),
                label: words.collect::<Vec<_>>().join(" "),
                ..Section::default()
            });
        } else if let Some((k, v)) = line.split_once('=') {
            if let Some(cur) = stack.last_mut() {
                cur.settings
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    while stack.len() > 1 {
        if let Some(done) = stack.pop() {
            if let Some(parent) = stack.last_mut() {
                parent.children.push(done);
            }
        }
    }
    stack.pop().unwrap_or_default()
}

/// `# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf` -> (2, 3, 19);
/// Debian 13's `# 2.4.1-4 (7d8c0e5759): ...` -> (2, 4, 1) (the package
/// revision after `-` is not part of the version).
pub(crate) fn version(text: &str) -> Option<(u32, u32, u32)> {
    let first = text.lines().next()?.strip_prefix("# ")?;
    let v = first.split_whitespace().next()?;
    let mut n = v.split('.').map(|p| {
        let digits = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
        p[..digits].parse::<u32>().ok()
    });
    Some((n.next()??, n.next()??, n.next().flatten().unwrap_or(0)))
}

/// doveconf refused the config: when this is Dovecot 2.4 and the file it
/// names holds a checkpassword or dict passdb/userdb (2.3's snippets, which
/// 2.4 no longer parses: "passdb { } is missing section name"), the
/// message and fix say that, not just "correct the config". `read` gives a
/// file's text (a parameter so tests need no files).
pub(crate) fn diagnose_config_error(
    version: Option<(u32, u32, u32)>,
    complaint: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<(String, String)> {
    let (a, b, c) = version?;
    if (a, b) < (2, 4) {
        return None;
    }
    // doveconf: "Error in configuration file PATH line N: ..."
    // (core@2.4.1:src/config/config-parser.c).
    let rest = complaint.split("configuration file ").nth(1)?;
    let file = PathBuf::from(rest.split(" line ").next()?.trim());
    let text = read(&file)?;
    let driver = text.lines().find_map(|l| {
        let (k, v) = l.split('#').next()?.split_once('=')?;
        let v = v.trim();
        (k.trim() == "driver" && (v == "checkpassword" || v == "dict")).then(|| v.to_string())
    })?;
    Some((
        format!(
            "Dovecot {a}.{b}.{c} cannot load {}: a {driver} passdb/userdb, which 2.4 removed ({complaint})",
            file.display()
        ),
        format!(
            "!include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext  (in place of !include {}; \
             copy mailtable-auth.lua to /etc/dovecot/ and systemctl enable --now dovecot-mailtable)",
            file.display()
        ),
    ))
}

/// How Dovecot reaches mailtable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `driver = checkpassword` running dovecot-mailtable.
    Checkpassword {
        helper: PathBuf,
        config: Option<PathBuf>,
    },
    /// `driver = dict` with a proxy socket.
    Dict {
        args: PathBuf,
        socket: Option<PathBuf>,
    },
    /// `driver = lua` with the shipped script.
    Lua {
        script: PathBuf,
        url: Option<String>,
        secret_file: Option<String>,
        socket_path: Option<String>,
    },
}

impl Mode {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Mode::Checkpassword { .. } => "checkpassword",
            Mode::Dict { .. } => "dict",
            Mode::Lua { .. } => "lua",
        }
    }
}

/// `proxy:[opts:]/path:name` -> `/path` (core@2.3.19.1:src/lib-dict/dict-client.c).
pub(crate) fn dict_socket(uri: &str) -> Option<PathBuf> {
    let rest = uri.trim().strip_prefix("proxy:")?;
    let start = rest.find('/')?;
    let path = &rest[start..];
    let end = path.rfind(':').unwrap_or(path.len());
    Some(PathBuf::from(&path[..end]))
}

/// The `config` table at the top of the Lua script: url, secret_file,
/// socket_path (what 2.3 uses, having no lua_settings).
pub(crate) fn lua_defaults(script: &str) -> (Option<String>, Option<String>, Option<String>) {
    let mut block = false;
    let (mut url, mut secret, mut socket) = (None, None, None);
    for line in script.lines() {
        let l = line.trim();
        if l.starts_with("local config = {") {
            block = true;
            continue;
        }
        if !block {
            continue;
        }
        if l.starts_with('}') {
            break;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_end_matches(',').trim();
        let val = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_string);
        match k.trim() {
            "url" => url = val,
            "secret_file" => secret = val,
            "socket_path" => socket = val,
            _ => {}
        }
    }
    (url, secret, socket)
}

/// The mailtable mode of a parsed config, if any passdb or userdb uses it.
pub(crate) fn mode(root: &Section) -> Option<Mode> {
    let dbs = root.all("passdb").chain(root.all("userdb"));
    for db in dbs {
        let driver = db
            .get("driver")
            .filter(|d| !d.is_empty())
            .unwrap_or(&db.label);
        let args = db.get("args").unwrap_or("");
        match driver {
            "checkpassword" if args.contains("dovecot-mailtable") => {
                let words: Vec<&str> = args.split_whitespace().collect();
                let config = words
                    .windows(2)
                    .find(|w| w[0] == "-c" || w[0] == "--config")
                    .map(|w| PathBuf::from(w[1]));
                return Some(Mode::Checkpassword {
                    helper: PathBuf::from(words.first().copied().unwrap_or("")),
                    config,
                });
            }
            "dict" => {
                let file = PathBuf::from(args.trim());
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let socket = text.lines().find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == "uri").then(|| dict_socket(v)).flatten()
                });
                return Some(Mode::Dict { args: file, socket });
            }
            "lua" => {
                let script = db
                    .get("lua_file")
                    .map(str::to_string)
                    .or_else(|| {
                        args.split_whitespace()
                            .find_map(|w| w.strip_prefix("file=").map(str::to_string))
                    })
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&script).unwrap_or_default();
                if !script.contains("mailtable") && !text.contains("dovecot-mailtable") {
                    continue;
                }
                let (mut url, mut secret_file, mut socket_path) = lua_defaults(&text);
                if let Some(s) = db.all("lua_settings").next() {
                    url = s.get("url").map(str::to_string).or(url);
                    secret_file = s.get("secret_file").map(str::to_string).or(secret_file);
                    socket_path = s.get("socket_path").map(str::to_string).or(socket_path);
                }
                return Some(Mode::Lua {
                    script: PathBuf::from(script),
                    url,
                    secret_file,
                    socket_path,
                });
            }
            _ => {}
        }
    }
    None
}

/// The credentials of the processes of a `service NAME` block `s` (None:
/// the block shows no user, so they run as root), with
/// `default_internal_user` from `root`.
pub(crate) fn service_creds(root: &Section, s: Option<&Section>) -> Option<Creds> {
    let internal = root
        .get("default_internal_user")
        .filter(|u| !u.is_empty())
        .unwrap_or("dovecot");
    let expand = |v: &str| -> String {
        match v {
            "$default_internal_user" | "$SET:default_internal_user" => internal.into(),
            "" => "root".into(),
            other => other.into(),
        }
    };
    let user = expand(s.and_then(|s| s.get("user")).unwrap_or(""));
    let (uid, primary) = unix::user_ids(&user)?;
    let gid = s
        .and_then(|s| s.get("group"))
        .filter(|g| !g.is_empty())
        .and_then(unix::group_id)
        .unwrap_or(primary);
    let mut groups = vec![gid];
    if let Some(extra) = s.and_then(|s| s.get("extra_groups")) {
        groups.extend(
            extra
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|g| !g.is_empty())
                .filter_map(unix::group_id),
        );
    }
    Some(Creds {
        user,
        uid,
        gid,
        groups,
    })
}

/// Which processes run the Lua script (and so read its token file):
/// (auth process, auth worker).
///
/// Dovecot 2.3 runs a Lua passdb/userdb in the auth worker unless its args
/// say `blocking=no` (`bool blocking = TRUE` in
/// core@2.3.19.1:src/auth/passdb-lua.c and userdb-lua.c). 2.4 has no
/// such argument and runs both in the auth worker as well: seen on 2.4.1
/// (Debian 13) from a script reading /proc/self, which showed
/// `auth -w` as uid 0 for passdb and userdb lookups, although `doveconf
/// -a` shows `passdb_use_worker = no`.
pub(crate) fn lua_processes(root: &Section, version: (u32, u32, u32)) -> (bool, bool) {
    let (mut auth, mut worker) = (false, false);
    for kind in ["passdb", "userdb"] {
        for db in root.all(kind) {
            let driver = db
                .get("driver")
                .filter(|d| !d.is_empty())
                .unwrap_or(&db.label);
            if driver != "lua" {
                continue;
            }
            let blocking_no = db
                .get("args")
                .unwrap_or("")
                .split_whitespace()
                .any(|w| w == "blocking=no");
            if (version.0, version.1) < (2, 4) && blocking_no {
                auth = true;
            } else {
                worker = true;
            }
        }
    }
    (auth, worker)
}

/// What the Dovecot checks found.
#[derive(Debug, Default)]
pub(crate) struct Dovecot {
    pub(crate) version: Option<(u32, u32, u32)>,
    pub(crate) mode: Option<Mode>,
    /// `service auth`: runs the checkpassword helper.
    pub(crate) auth: Option<Creds>,
    /// `service auth-worker`: runs Lua and dict lookups.
    pub(crate) worker: Option<Creds>,
    /// `-c CONF` for doveconf and doveadm, when given.
    pub(crate) conf_args: Vec<OsString>,
}

impl Dovecot {
    /// The checkpassword helper's process as a database reader.
    pub(crate) fn reader(&self, db_group: Option<u32>) -> Option<Reader> {
        let Some(Mode::Checkpassword { config, .. }) = &self.mode else {
            return None;
        };
        let g = super::database::daemons_group(db_group);
        Some(Reader {
            name: "dovecot",
            creds: self.auth.clone()?,
            config: config.clone(),
            group_fix: auth_group_fix(&g),
        })
    }
}

fn auth_group_fix(group: &str) -> String {
    format!("in dovecot.conf: service auth {{ extra_groups = {group} }}  (then restart dovecot)")
}

/// The auth process has the database's group (checkpassword mode).
pub(crate) fn check_auth_group(auth: &Creds, db_group: u32) -> Check {
    let g = unix::group_name(db_group);
    if auth.uid == 0 || auth.has_group(db_group) {
        Check::ok(
            "dovecot.auth-group",
            format!("service auth runs as {} with group {g}", auth.user),
        )
    } else if !unix::shareable_group(db_group) {
        // Never `extra_groups = root`: the database goes back to the
        // daemons' group instead.
        Check::problem(
            "dovecot.auth-group",
            format!(
                "the database belongs to group {g}, which service auth ({}) must not be \
                 given",
                auth.user
            ),
            "mailtable init --group mailtable  (gives the database back to the daemons' group; \
             with -c CONFIG for another config)",
        )
    } else {
        Check::problem(
            "dovecot.auth-group",
            format!(
                "service auth runs as {} without group {g}, which the database needs (Dovecot drops supplementary groups)",
                auth.user
            ),
            auth_group_fix(&g),
        )
    }
}

/// This Dovecot has the mode that is configured.
pub(crate) fn check_version(version: (u32, u32, u32), mode: &Mode) -> Check {
    let (a, b, c) = version;
    let shown = format!("{a}.{b}.{c}");
    match mode {
        Mode::Checkpassword { .. } | Mode::Dict { .. } if (a, b) >= (2, 4) => Check::problem(
            "dovecot.version",
            format!("Dovecot {shown} has no {} passdb/userdb (removed in 2.4)", mode.label()),
            "!include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext  (instead of the current auth include; run dovecot-mailtable serve)",
        ),
        Mode::Lua { .. } if (a, b, c) < (2, 3, 19) => Check::problem(
            "dovecot.version",
            format!("Dovecot {shown}: the Lua script needs dovecot.http.client (2.3.19 or later)"),
            "upgrade Dovecot, or include auth-mailtable-checkpassword.conf.ext instead",
        ),
        _ => Check::ok(
            "dovecot.version",
            format!("Dovecot {shown} supports the {} mode", mode.label()),
        ),
    }
}

/// The token file: readable by each process that runs the Lua script
/// (`readers`: what it is, who it runs as), by nobody else.
pub(crate) fn check_token(file: &Path, readers: &[(&str, &Creds)]) -> Check {
    let shown = file.display();
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) => {
            return Check::problem(
                "dovecot.token",
                format!("{shown}: {e}"),
                // As the package makes it: never readable by others, not
                // even between the write and the chmod, and in Dovecot's
                // group, which the auth processes and the package's serve
                // user (put in it by the postinst) both have.
                format!(
                    "(umask 027 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > \
                     {shown}) && chgrp dovecot {shown} && chmod 0640 {shown}"
                ),
            );
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Check::problem(
            "dovecot.token",
            format!("{shown} is mode {mode:04o}: every local user can read the token"),
            format!("chmod 0640 {shown}"),
        );
    }
    let cannot = readers
        .iter()
        .find(|(_, c)| !matches!(unix::path_access(file, c, Want::Read), Ok(true)));
    if let Some((what, c)) = cannot {
        return Check::problem(
            "dovecot.token",
            format!(
                "the {what} ({}), which needs the token, cannot read {shown}",
                c.user
            ),
            // Dovecot's group serves every reader at once (the auth
            // processes run as root or dovecot, the package's serve user
            // is in it); another reader's own group would shut the others
            // out.
            format!(
                "chgrp {} {shown} && chmod 0640 {shown}",
                match nix::unistd::Group::from_name("dovecot") {
                    Ok(Some(_)) => "dovecot".to_string(),
                    _ => unix::group_name(c.gid),
                }
            ),
        );
    }
    let who: Vec<String> = readers
        .iter()
        .map(|(what, c)| format!("the {what} ({})", c.user))
        .collect();
    Check::ok(
        "dovecot.token",
        format!(
            "{shown} ({mode:04o}, group {}) is readable by {} and no one else",
            unix::group_name(meta.gid()),
            who.join(" and ")
        ),
    )
}

/// Lua settings against serve's `[serve]` section.
pub(crate) fn check_lua_settings(
    mode: &Mode,
    config: &Config,
    version: (u32, u32, u32),
) -> Vec<Check> {
    let Mode::Lua {
        script,
        url,
        secret_file,
        socket_path,
    } = mode
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let serve = &config.serve;
    let where_ = if (version.0, version.1) >= (2, 4) {
        "in lua_settings of the passdb and userdb lua blocks:".to_string()
    } else {
        format!("in the config table of {}:", script.display())
    };
    let listen = serve.http_listen.trim();
    if listen.is_empty() {
        out.push(Check::problem(
            "dovecot.lua-url",
            "Dovecot uses the Lua script but mailtable.toml has no [serve] http_listen",
            "[serve] http_listen = \"unix:/run/mailtable/http.sock\"  (in mailtable.toml)",
        ));
    } else if let Some(sock) = listen.strip_prefix("unix:") {
        if socket_path.as_deref() == Some(sock) {
            out.push(Check::ok(
                "dovecot.lua-url",
                format!("socket_path {sock} is serve's http_listen"),
            ));
        } else {
            out.push(Check::problem(
                "dovecot.lua-url",
                format!("serve listens on {listen}, the script uses socket_path {socket_path:?}"),
                format!("{where_} socket_path = {sock}"),
            ));
        }
    } else {
        let want = format!("http://{listen}");
        let have = url.as_deref().unwrap_or("").trim_end_matches('/');
        if have == want {
            out.push(Check::ok(
                "dovecot.lua-url",
                format!("url {have} is serve's http_listen"),
            ));
        } else {
            out.push(Check::problem(
                "dovecot.lua-url",
                format!("serve listens on {listen}, the script asks {have:?}"),
                format!("{where_} url = {want}"),
            ));
        }
    }
    let serve_file = serve.http_secret_file.trim();
    match (secret_file.as_deref(), serve_file) {
        (Some(s), f) if !f.is_empty() && s != f => out.push(Check::problem(
            "dovecot.lua-secret",
            format!("the script reads the token from {s}, serve from {f}"),
            format!("{where_} secret_file = {f}"),
        )),
        (Some(s), _) => out.push(Check::ok(
            "dovecot.lua-secret",
            format!("the script and serve share the token file {s}"),
        )),
        (None, _) => out.push(Check::na(
            "dovecot.lua-secret",
            "the script has no secret_file (token inline)",
        )),
    }
    out
}

/// The dict socket: serve's, and writable by the auth worker.
pub(crate) fn check_dict(socket: Option<&Path>, config: &Config, worker: Option<&Creds>) -> Check {
    let serve = Path::new(config.serve.dict_socket.trim());
    let Some(socket) = socket else {
        return Check::problem(
            "dovecot.dict-socket",
            "the dict args file has no `uri = proxy:...` line",
            "uri = proxy:idle_msecs=30000:/run/mailtable/dict.sock:mailtable",
        );
    };
    if serve.as_os_str().is_empty() || socket != serve {
        return Check::problem(
            "dovecot.dict-socket",
            format!(
                "Dovecot uses {}, serve's dict_socket is {:?}",
                socket.display(),
                config.serve.dict_socket
            ),
            format!(
                "[serve] dict_socket = \"{}\"  (in mailtable.toml)",
                socket.display()
            ),
        );
    }
    match (
        worker,
        unix::path_access(socket, worker.map_or(&ROOT, |w| w), Want::Write),
    ) {
        (Some(w), Ok(false)) => Check::problem(
            "dovecot.dict-socket",
            format!(
                "the auth worker ({}) cannot write {}",
                w.user,
                socket.display()
            ),
            format!(
                "[serve] socket_group = \"{}\"  (in mailtable.toml)",
                unix::group_name(w.gid)
            ),
        ),
        _ => Check::ok(
            "dovecot.dict-socket",
            format!("{} is serve's dict_socket", socket.display()),
        ),
    }
}

static ROOT: Creds = Creds {
    user: String::new(),
    uid: 0,
    gid: 0,
    groups: Vec::new(),
};

/// The `service NAME` block: from the full dump when it is there (2.3),
/// else from `doveconf service/NAME` (2.4's dump leaves out the built-in
/// services its config does not mention; the filter prints them with
/// their defaults, in 2.3 as well).
fn service(
    root: &Section,
    name: &str,
    conf_args: &[OsString],
    timeout: Duration,
) -> Option<Section> {
    if let Some(s) = root.find("service", name) {
        return Some(s.clone());
    }
    let mut a = conf_args.to_vec();
    a.push(format!("service/{name}").into());
    match exec::run("doveconf", &a, timeout) {
        Ran::Exited {
            code: Some(0),
            stdout,
            ..
        } => parse(&stdout).find("service", name).cloned(),
        _ => None,
    }
}

pub(crate) fn run(
    args: &DoctorArgs,
    config: Option<&Config>,
    timeout: Duration,
    checks: &mut Vec<Check>,
) -> Dovecot {
    let mut found = Dovecot::default();
    if let Some(c) = &args.dovecot_conf {
        found.conf_args = vec!["-c".into(), c.as_os_str().to_os_string()];
    }
    let shown = match &args.dovecot_conf {
        Some(c) => format!("doveconf -c {}", c.display()),
        None => "doveconf".into(),
    };
    // -a: every setting, defaults included (2.3 prints that without it,
    // 2.4 only what differs from the defaults).
    let mut dump_args = vec![OsString::from("-a")];
    dump_args.extend(found.conf_args.iter().cloned());
    let dump = match exec::run("doveconf", &dump_args, timeout) {
        Ran::Missing => {
            checks.push(Check::na("dovecot.config", "Dovecot is not installed"));
            return found;
        }
        Ran::Exited {
            code: Some(0),
            stdout,
            ..
        } => stdout,
        r => {
            let complaint = r.complaint();
            let diagnosis = match &r {
                Ran::Exited { stdout, .. } => {
                    diagnose_config_error(version(stdout), &complaint, |p| {
                        std::fs::read_to_string(p).ok()
                    })
                }
                _ => None,
            };
            checks.push(match diagnosis {
                Some((message, fix)) => Check::problem("dovecot.config", message, fix),
                None => Check::problem(
                    "dovecot.config",
                    format!("{shown}: {complaint}"),
                    format!("correct the config until `{shown} -n` runs clean"),
                ),
            });
            return found;
        }
    };
    found.version = version(&dump);
    let root = parse(&dump);
    let v = found.version.unwrap_or((0, 0, 0));
    checks.push(Check::ok(
        "dovecot.config",
        format!("{shown} parses (Dovecot {}.{}.{})", v.0, v.1, v.2),
    ));
    found.auth = service_creds(
        &root,
        service(&root, "auth", &found.conf_args, timeout).as_ref(),
    );
    found.worker = service_creds(
        &root,
        service(&root, "auth-worker", &found.conf_args, timeout).as_ref(),
    );
    found.mode = mode(&root);
    let Some(mode) = found.mode.clone() else {
        checks.push(Check::na(
            "dovecot.mode",
            "no passdb or userdb uses mailtable",
        ));
        return found;
    };
    let detail = match &mode {
        Mode::Checkpassword { helper, .. } => format!("checkpassword ({})", helper.display()),
        Mode::Dict { args, .. } => format!("dict ({})", args.display()),
        Mode::Lua { script, .. } => format!("lua ({})", script.display()),
    };
    checks.push(Check::ok("dovecot.mode", detail));
    if let Some(v) = found.version {
        checks.push(check_version(v, &mode));
    }
    match &mode {
        Mode::Checkpassword { helper, .. } => {
            let ok = std::fs::metadata(helper)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            checks.push(if ok {
                Check::ok(
                    "dovecot.helper",
                    format!("{} is executable", helper.display()),
                )
            } else {
                Check::problem(
                    "dovecot.helper",
                    format!("{} is missing or not executable", helper.display()),
                    super::program_fix("dovecot-mailtable", helper),
                )
            });
            if let (Some(auth), Some(Ok(m))) = (
                &found.auth,
                config.map(|c| c.database_url()).and_then(|u| match u {
                    Ok(mailtable_core::store::DatabaseUrl::Sqlite(p)) => Some(std::fs::metadata(p)),
                    _ => None,
                }),
            ) {
                checks.push(check_auth_group(auth, m.gid()));
            }
        }
        Mode::Dict { socket, .. } => {
            if let Some(c) = config {
                checks.push(check_dict(socket.as_deref(), c, found.worker.as_ref()));
            }
        }
        Mode::Lua { secret_file, .. } => {
            if let Some(c) = config {
                checks.extend(check_lua_settings(&mode, c, v));
            }
            let (in_auth, in_worker) = lua_processes(&root, v);
            let mut readers = Vec::new();
            if let Some(a) = found.auth.as_ref().filter(|_| in_auth) {
                readers.push(("auth process", a));
            }
            if let Some(w) = found.worker.as_ref().filter(|_| in_worker) {
                readers.push(("auth worker", w));
            }
            // serve checks the token too: the package's user must read it,
            // or serve stops at start (exit 2).
            let serve = unix::login_creds("mailtable-serve");
            if let Some(c) = serve.as_ref().filter(|_| !readers.is_empty()) {
                readers.push(("serve", c));
            }
            if let Some(f) = secret_file.as_ref().filter(|_| !readers.is_empty()) {
                checks.push(check_token(Path::new(f), &readers));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    const DUMP_23: &str = "# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf\n\
# Pigeonhole version 0.5.19 (4eae2f79)\n\
default_internal_user = dovecot\n\
passdb {\n  args = file=/etc/dovecot/mailtable-auth.lua\n  driver = lua\n}\n\
service auth {\n  extra_groups = \n  group = \n  user = $default_internal_user\n\
  unix_listener auth-userdb {\n    mode = 0666\n  }\n}\n\
service auth-worker {\n  user = \n}\n\
userdb {\n  args = /usr/local/bin/dovecot-mailtable -c /etc/mail/mailtable.toml checkpassword\n  driver = checkpassword\n}\n";

    const DUMP_24: &str = "# 2.4.1 (abc): /etc/dovecot/dovecot.conf\n\
passdb lua {\n  lua_file = /etc/dovecot/mailtable-auth.lua\n  lua_settings {\n    url = http://127.0.0.1:9000\n    secret_file = /s\n  }\n}\n";

    #[test]
    fn parses_doveconf() {
        let root = parse(DUMP_23);
        assert_eq!(version(DUMP_23), Some((2, 3, 19)));
        assert_eq!(version(DUMP_24), Some((2, 4, 1)));
        assert_eq!(version("# 2.4.1-4 (7d8c0e5759): /x\n"), Some((2, 4, 1)));
        let auth = root.find("service", "auth").unwrap();
        assert_eq!(auth.get("user"), Some("$default_internal_user"));
        assert_eq!(auth.children[0].kind, "unix_listener");
        assert_eq!(root.all("passdb").count(), 1);
        let r24 = parse(DUMP_24);
        let p = r24.all("passdb").next().unwrap();
        assert_eq!(p.label, "lua");
        assert_eq!(
            p.all("lua_settings").next().unwrap().get("url"),
            Some("http://127.0.0.1:9000")
        );
    }

    #[test]
    fn finds_the_mode() {
        // The Lua passdb of DUMP_23 names a script that is not there and not
        // ours by name: skipped; the checkpassword userdb is found.
        let m = mode(&parse(&DUMP_23.replace("mailtable-auth.lua", "other.lua"))).unwrap();
        assert_eq!(
            m,
            Mode::Checkpassword {
                helper: "/usr/local/bin/dovecot-mailtable".into(),
                config: Some("/etc/mail/mailtable.toml".into()),
            }
        );
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("mailtable-auth.lua");
        std::fs::write(
            &script,
            "-- x\nlocal config = {\n  url = \"http://127.0.0.1:8787\",\n  secret_file = \"/etc/mailtable/dovecot-api.secret\",\n  secret = nil,\n}\n",
        )
        .unwrap();
        let dump = DUMP_23.replace(
            "/etc/dovecot/mailtable-auth.lua",
            &script.display().to_string(),
        );
        let Mode::Lua {
            url, secret_file, ..
        } = mode(&parse(&dump)).unwrap()
        else {
            panic!("not lua");
        };
        assert_eq!(url.as_deref(), Some("http://127.0.0.1:8787"));
        assert_eq!(
            secret_file.as_deref(),
            Some("/etc/mailtable/dovecot-api.secret")
        );
        // 2.4: lua_settings win over the script's defaults.
        let dump = DUMP_24.replace(
            "/etc/dovecot/mailtable-auth.lua",
            &script.display().to_string(),
        );
        let Mode::Lua {
            url, secret_file, ..
        } = mode(&parse(&dump)).unwrap()
        else {
            panic!("not lua");
        };
        assert_eq!(url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(secret_file.as_deref(), Some("/s"));

        let args = d.path().join("dict.conf.ext");
        std::fs::write(
            &args,
            "uri = proxy:idle_msecs=30000:/run/mailtable/dict.sock:mailtable\n",
        )
        .unwrap();
        let dump = format!(
            "# 2.3.19.1 (x): c\npassdb {{\n  driver = dict\n  args = {}\n}}\n",
            args.display()
        );
        assert_eq!(
            mode(&parse(&dump)),
            Some(Mode::Dict {
                args: args.clone(),
                socket: Some("/run/mailtable/dict.sock".into())
            })
        );
        assert_eq!(dict_socket("proxy:/a/b.sock:n"), Some("/a/b.sock".into()));
    }

    #[test]
    fn versions_and_modes() {
        let cp = Mode::Checkpassword {
            helper: "/x".into(),
            config: None,
        };
        assert_eq!(check_version((2, 3, 19), &cp).status, Status::Ok);
        let c = check_version((2, 4, 1), &cp);
        assert_eq!(c.status, Status::Problem);
        assert!(c.fix.unwrap().contains("auth-mailtable-lua-2.4.conf.ext"));
        let lua = Mode::Lua {
            script: "/s".into(),
            url: None,
            secret_file: None,
            socket_path: None,
        };
        assert_eq!(check_version((2, 3, 16), &lua).status, Status::Problem);
        assert_eq!(check_version((2, 4, 1), &lua).status, Status::Ok);
    }

    #[test]
    fn who_runs_the_lua_script() {
        // 2.3: the worker (blocking=yes is the default) unless blocking=no.
        let r23 = parse(DUMP_23);
        assert_eq!(lua_processes(&r23, (2, 3, 19)), (false, true));
        let r = parse(&DUMP_23.replace("mailtable-auth.lua\n", "mailtable-auth.lua blocking=no\n"));
        assert_eq!(lua_processes(&r, (2, 3, 19)), (true, false));
        // 2.4: the worker.
        let r24 = parse(DUMP_24);
        assert_eq!(lua_processes(&r24, (2, 4, 1)), (false, true));
        // 2.4's dump shows no service auth-worker: its user then comes from
        // the `service/auth-worker` filter; without a block it is root.
        assert!(r24.find("service", "auth-worker").is_none());
        assert_eq!(service_creds(&r24, None).unwrap().uid, 0);
        let filtered = parse("service auth-worker {\n  user = $SET:default_internal_user\n}\n");
        let worker = filtered.find("service", "auth-worker");
        // The setting names the user; `nobody` exists on every Debian
        // host, where the `dovecot` user exists only with Dovecot.
        let set = parse("default_internal_user = nobody\n");
        assert_eq!(service_creds(&set, worker).unwrap().user, "nobody");
        // Unset, it is Dovecot's default, `dovecot` (no creds without it).
        assert_eq!(
            service_creds(&r24, worker).map(|c| c.user),
            unix::user_ids("dovecot").map(|_| "dovecot".to_string())
        );
    }

    #[test]
    fn a_23_snippet_on_24() {
        let complaint = "exit 89: doveconf: Fatal: Error in configuration file \
                         /etc/dovecot/auth-mailtable-checkpassword.conf.ext line 6: \
                         passdb { } is missing section name";
        let snippet = "# c\npassdb {\n  driver = checkpassword\n  args = /usr/bin/dovecot-mailtable checkpassword\n}\n";
        let (m, fix) =
            diagnose_config_error(Some((2, 4, 1)), complaint, |_| Some(snippet.into())).unwrap();
        assert!(
            m.contains("checkpassword passdb/userdb, which 2.4 removed"),
            "{m}"
        );
        assert!(m.contains("Dovecot 2.4.1"), "{m}");
        assert!(fix.starts_with("!include /etc/dovecot/auth-mailtable-lua-2.4.conf.ext"));
        assert!(
            fix.contains("auth-mailtable-checkpassword.conf.ext"),
            "{fix}"
        );
        // The same file on 2.3 is not this problem; nor is another file on 2.4.
        assert!(
            diagnose_config_error(Some((2, 3, 19)), complaint, |_| Some(snippet.into())).is_none()
        );
        assert!(diagnose_config_error(Some((2, 4, 1)), complaint, |_| Some(
            "passdb {\n driver = passwd-file\n}\n".into()
        ))
        .is_none());
        assert!(
            diagnose_config_error(Some((2, 4, 1)), "exit 89: something else", |_| Some(
                snippet.into()
            ))
            .is_none()
        );
    }

    fn creds(uid: u32, gid: u32, groups: &[u32]) -> Creds {
        Creds {
            user: "dovecot".into(),
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn auth_group() {
        let c = check_auth_group(&creds(104, 107, &[107]), 995);
        assert_eq!(c.status, Status::Problem);
        assert!(c.fix.unwrap().contains("extra_groups"));
        assert_eq!(
            check_auth_group(&creds(104, 107, &[107, 995]), 995).status,
            Status::Ok
        );
    }

    #[test]
    fn token_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("api.secret");
        let root = creds(0, 0, &[]);
        let missing = check_token(&f, &[("auth worker", &root)]);
        assert_eq!(missing.status, Status::Problem);
        let fix = missing.fix.unwrap();
        assert!(fix.starts_with("(umask 027 && "), "{fix}");
        assert!(fix.contains("&& chgrp dovecot "), "{fix}");
        std::fs::write(&f, "t").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = check_token(&f, &[("auth worker", &root)]);
        assert_eq!(c.fix, Some(format!("chmod 0640 {}", f.display())));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let owner = std::fs::metadata(&f).unwrap().uid();
        let ours = creds(owner, 1, &[]);
        assert_eq!(
            check_token(&f, &[("auth process", &ours)]).status,
            Status::Ok
        );
        // Every reader must manage: root reads anything, the other does not.
        let other = creds(owner + 1, 65534, &[]);
        let c = check_token(&f, &[("auth worker", &root), ("auth process", &other)]);
        assert_eq!(c.status, Status::Problem, "{c:?}");
        assert!(c.message.contains("auth process"), "{c:?}");
        assert!(c.fix.unwrap().starts_with("chgrp "));
    }

    #[test]
    fn lua_settings_against_serve() {
        let mut config = Config::default();
        config.serve.http_listen = "127.0.0.1:8787".into();
        config.serve.http_secret_file = "/etc/mailtable/dovecot-api.secret".into();
        let lua = |url: &str| Mode::Lua {
            script: "/etc/dovecot/mailtable-auth.lua".into(),
            url: Some(url.into()),
            secret_file: Some("/etc/mailtable/dovecot-api.secret".into()),
            socket_path: None,
        };
        let c = check_lua_settings(&lua("http://127.0.0.1:8787"), &config, (2, 3, 19));
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        let c = check_lua_settings(&lua("http://127.0.0.1:9999"), &config, (2, 3, 19));
        assert_eq!(c[0].status, Status::Problem);
        assert_eq!(
            c[0].fix.as_deref(),
            Some("in the config table of /etc/dovecot/mailtable-auth.lua: url = http://127.0.0.1:8787")
        );
        config.serve.http_listen = String::new();
        let c = check_lua_settings(&lua("http://127.0.0.1:8787"), &config, (2, 4, 1));
        assert!(c[0].fix.as_ref().unwrap().contains("http_listen"));
    }
}

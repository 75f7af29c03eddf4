//! The commands. Each validates its input into core types first, then
//! changes the database inside one transaction, so a refused command leaves
//! the database exactly as it was.

use crate::args::{AliasCommand, Cli, Command, DomainCommand, ListArgs, UserCommand};
use crate::error::CliError;
use crate::secret_input;
use mailtable_core::exit::Exit;
use mailtable_core::resolve::Step;
use mailtable_core::store::{self, migrate, Access, DatabaseUrl, Delete, OpenOptions};
use mailtable_core::{
    delivery, password, Address, AddressPattern, Config, Destination, Domain, LocalPattern,
    Outcome, ResolveError, Resolver, Row, Store,
};
use serde_json::json;

/// Everything a command needs.
pub(crate) struct Ctx {
    pub(crate) config: Config,
    pub(crate) url: DatabaseUrl,
    pub(crate) resolver: Resolver,
}

impl Ctx {
    pub(crate) fn open(&self, access: Access) -> Result<Box<dyn Store>, CliError> {
        let opts = OpenOptions {
            access,
            timeout: self.config.timeout(),
        };
        Ok(store::open(&self.url, &opts)?)
    }

    /// Open for writing, at the latest schema (or explain how to get there).
    pub(crate) fn open_rw(&self) -> Result<Box<dyn Store>, CliError> {
        let mut s = self.open(Access::ReadWrite)?;
        match s.schema_state()? {
            store::SchemaState::Empty => Err(CliError::usage(format!(
                "{} has no users table; create it with `mailtable init`",
                self.url
            ))),
            store::SchemaState::Version(v) if v > migrate::LATEST => {
                Err(CliError::usage(format!(
                    "{} has schema version {v}, newer than this mailtable knows ({}); upgrade mailtable",
                    self.url,
                    migrate::LATEST
                )))
            }
            _ => Ok(s),
        }
    }

    fn dialect(&self) -> migrate::Dialect {
        match self.url {
            DatabaseUrl::Sqlite(_) => migrate::Dialect::Sqlite,
            DatabaseUrl::Postgres(_) => migrate::Dialect::Postgres,
        }
    }

    /// After a write: keep the side files shareable with the daemons.
    pub(crate) fn reshare(&self) {
        if let DatabaseUrl::Sqlite(path) = &self.url {
            let _ = store::sqlite::share_files(path, None);
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, CliError> {
    Config::locate(cli.config.as_deref()).map_err(|e| CliError::usage(e.to_string()))
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<Exit, CliError> {
    let config = load_config(&cli)?;
    let url_text = cli
        .database
        .clone()
        .unwrap_or_else(|| config.database.clone());
    let url: DatabaseUrl = url_text.parse().map_err(CliError::usage)?;
    let resolver = Resolver::new(config.delimiter().map_err(CliError::usage)?);
    let ctx = Ctx {
        config,
        url,
        resolver,
    };
    match cli.command {
        Command::Init(a) => init(&ctx, &a.group),
        Command::Migrate => migrate_cmd(&ctx),
        Command::User(u) => user(&ctx, u),
        Command::Alias(a) => alias(&ctx, a),
        Command::Domain(DomainCommand::List { json }) => domains(&ctx, json),
        Command::Resolve { address, json } => resolve(&ctx, &address, json),
        Command::Senders { address, json } => senders(&ctx, &address, json),
        Command::Import(a) => crate::import::run(&ctx, &a),
        Command::Hash(p) => {
            let pw = secret_input::read(p.password_stdin, "the hash")?;
            let h = password::hash(&pw, ctx.config.password_cost)
                .map_err(|e| CliError::usage(e.to_string()))?;
            println!("{}", h.stored());
            Ok(Exit::Ok)
        }
    }
}

fn group_id(name: &str) -> Result<Option<u32>, CliError> {
    let lookup = || {
        let c = std::ffi::CString::new(name).ok()?;
        // SAFETY: getgrnam returns NULL or a pointer to static storage that
        // stays valid until the next getgr* call; we copy the gid at once.
        let g = unsafe { libc::getgrnam(c.as_ptr()) };
        // SAFETY: checked for NULL just before reading.
        (!g.is_null()).then(|| unsafe { (*g).gr_gid })
    };
    if let Some(gid) = lookup() {
        return Ok(Some(gid));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("mailtable: group {name:?} does not exist and only root can create it; keeping the current group");
        return Ok(None);
    }
    let status = std::process::Command::new("groupadd")
        .args(["--system", name])
        .status()
        .map_err(|e| {
            CliError::usage(format!("cannot run groupadd to create group {name:?}: {e}"))
        })?;
    if !status.success() {
        return Err(CliError::usage(format!(
            "groupadd could not create group {name:?}"
        )));
    }
    lookup()
        .map(Some)
        .ok_or_else(|| CliError::usage(format!("group {name:?} still missing after groupadd")))
}

fn init(ctx: &Ctx, group: &str) -> Result<Exit, CliError> {
    let mut gid = None;
    if let DatabaseUrl::Sqlite(path) = &ctx.url {
        gid = group_id(group)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    CliError::usage(format!("cannot create directory {}: {e}", dir.display()))
                })?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
                if let Some(g) = gid {
                    let _ = std::os::unix::fs::chown(dir, None, Some(g));
                }
            }
        }
        if !path.exists() {
            // Create the file ourselves so it never exists with a wider mode.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(path)
                .map_err(|e| CliError::usage(format!("cannot create {}: {e}", path.display())))?;
        }
    }
    let mut s = ctx.open(Access::Create)?;
    let report = migrate::migrate(s.as_mut(), ctx.dialect(), true)?;
    drop(s);
    if let DatabaseUrl::Sqlite(path) = &ctx.url {
        store::sqlite::share_files(path, gid).map_err(|e| {
            CliError::usage(format!("cannot set the group of {}: {e}", path.display()))
        })?;
    }
    if report.applied.is_empty() {
        println!("{} is already at schema version {}", ctx.url, report.to);
    } else {
        println!("initialised {} (schema version {})", ctx.url, report.to);
    }
    if gid.is_some() {
        println!(
            "readable by group {group:?}: add the daemons' users to it, e.g. \
             `usermod -aG {group} opensmtpd` and `usermod -aG {group} dovecot`"
        );
    }
    Ok(Exit::Ok)
}

fn migrate_cmd(ctx: &Ctx) -> Result<Exit, CliError> {
    let mut s = ctx.open(Access::ReadWrite)?;
    let report = migrate::migrate(s.as_mut(), ctx.dialect(), false)?;
    drop(s);
    ctx.reshare();
    if report.applied.is_empty() {
        println!("{} is already at schema version {}", ctx.url, report.to);
    } else {
        println!(
            "migrated {} from schema version {} to {} ({})",
            ctx.url,
            report.from,
            report.to,
            report.applied.join(", ")
        );
    }
    Ok(Exit::Ok)
}

/// Run `f` in a transaction; roll back if it fails.
fn write<T>(
    ctx: &Ctx,
    f: impl FnOnce(&mut dyn Store) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let mut s = ctx.open_rw()?;
    s.begin()?;
    match f(s.as_mut()) {
        Ok(v) => {
            s.commit()?;
            drop(s);
            ctx.reshare();
            Ok(v)
        }
        Err(e) => {
            s.rollback();
            Err(e)
        }
    }
}

fn mailbox_address(text: &str) -> Result<Address, CliError> {
    Ok(Address::parse(text)?)
}

fn user(ctx: &Ctx, cmd: UserCommand) -> Result<Exit, CliError> {
    match cmd {
        UserCommand::Add { address, password } => {
            let addr = mailbox_address(&address)?;
            let pw = secret_input::read(password.password_stdin, &addr.to_string())?;
            let hash = password::hash(&pw, ctx.config.password_cost)
                .map_err(|e| CliError::usage(e.to_string()))?;
            write(ctx, |s| {
                let existing = s.exact(addr.local(), addr.domain().as_str())?;
                if existing.iter().any(Row::is_mailbox) {
                    return Err(CliError::usage(format!("{addr} already has a mailbox")));
                }
                if !existing.is_empty() {
                    eprintln!(
                        "mailtable: note: {addr} also has alias rows; mail goes to the mailbox and to them"
                    );
                }
                s.insert(&Row {
                    username: addr.local().into(),
                    domain: addr.domain().to_string(),
                    mailbox: addr.to_string(),
                    password: Some(hash),
                    active: true,
                    quota: None,
                })?;
                Ok(())
            })?;
            println!(
                "added mailbox {addr} (delivery user {})",
                delivery::encode(&addr)
            );
            Ok(Exit::Ok)
        }
        UserCommand::Passwd { address, password } => {
            let addr = mailbox_address(&address)?;
            let pw = secret_input::read(password.password_stdin, &addr.to_string())?;
            let hash = password::hash(&pw, ctx.config.password_cost)
                .map_err(|e| CliError::usage(e.to_string()))?;
            write(ctx, |s| {
                match s.set_password(addr.local(), addr.domain().as_str(), &hash)? {
                    0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
                    _ => Ok(()),
                }
            })?;
            println!("changed the password of {addr}");
            Ok(Exit::Ok)
        }
        UserCommand::Del { address } => {
            let addr = mailbox_address(&address)?;
            let still = write(ctx, |s| {
                match s.delete(addr.local(), addr.domain().as_str(), Delete::Mailbox)? {
                    0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
                    _ => Ok(s.targeting(&addr.to_string())?),
                }
            })?;
            println!("removed mailbox {addr}");
            for r in still.iter().filter(|r| r.address() != addr.to_string()) {
                eprintln!(
                    "mailtable: warning: {} still points to {addr}; remove it with `mailtable alias del {} {addr}`",
                    r.address(),
                    r.address()
                );
            }
            Ok(Exit::Ok)
        }
        UserCommand::Disable { address } => set_active(ctx, &address, false),
        UserCommand::Enable { address } => set_active(ctx, &address, true),
        UserCommand::List(a) => list_users(ctx, &a),
    }
}

/// `user disable` / `user enable`.
fn set_active(ctx: &Ctx, address: &str, enable: bool) -> Result<Exit, CliError> {
    let addr = mailbox_address(address)?;
    write(ctx, |s| {
        match s.set_active(addr.local(), addr.domain().as_str(), enable)? {
            0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
            _ => Ok(()),
        }
    })?;
    if enable {
        println!("enabled logins for {addr}");
    } else {
        println!("disabled logins for {addr} (mail is still accepted)");
    }
    Ok(Exit::Ok)
}

fn domain_filter(a: &ListArgs) -> Result<Option<String>, CliError> {
    a.domain
        .as_deref()
        .map(|d| Domain::parse(d).map(|d| d.to_string()))
        .transpose()
        .map_err(CliError::from)
}

fn list_users(ctx: &Ctx, a: &ListArgs) -> Result<Exit, CliError> {
    let domain = domain_filter(a)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    let rows: Vec<Row> = s
        .list(domain.as_deref())?
        .into_iter()
        .filter(Row::is_mailbox)
        .collect();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "address": r.address(),
                    "active": r.active,
                    "quota": r.quota,
                    "scheme": r.password.as_ref().map(|p| format!("{:?}", p.scheme())),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for r in &rows {
            let mut line = r.address();
            if !r.active {
                line.push_str("  (disabled)");
            }
            if let Some(q) = &r.quota {
                line.push_str(&format!("  quota={q}"));
            }
            println!("{line}");
        }
    }
    Ok(Exit::Ok)
}

/// Validate a target for `pattern`: an address, or, when the pattern has a
/// `%`, an address with one `%` that is replaced by what it matched.
fn parse_target(pattern: &AddressPattern, text: &str) -> Result<String, CliError> {
    let n = text.matches('%').count();
    if n == 0 {
        return Ok(Address::parse(text)?.to_string());
    }
    if !pattern.local.is_wildcard() {
        return Err(CliError::usage(format!(
            "invalid target {text:?}: % in a target needs a pattern with % on the left"
        )));
    }
    if n > 1 || !text.split('@').next().unwrap_or_default().contains('%') {
        return Err(CliError::usage(format!(
            "invalid target {text:?}: at most one %, in the local part"
        )));
    }
    // Check it is an address once the % is filled in.
    Address::parse(&text.replace('%', "x"))?;
    Ok(text.to_ascii_lowercase())
}

fn alias(ctx: &Ctx, cmd: AliasCommand) -> Result<Exit, CliError> {
    match cmd {
        AliasCommand::Add { pattern, targets } => {
            let p = AddressPattern::parse(&pattern)?;
            let targets = targets
                .iter()
                .map(|t| parse_target(&p, t))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(own) = p.as_address() {
                if targets.contains(&own.to_string()) {
                    return Err(CliError::usage(format!("alias {own} points to itself")));
                }
            }
            let resolver = &ctx.resolver;
            write(ctx, |s| {
                let username = p.local.to_string();
                let existing = s.exact(&username, p.domain.as_str())?;
                for t in &targets {
                    if existing.iter().any(|r| !r.is_mailbox() && &r.mailbox == t) {
                        return Err(CliError::usage(format!("{p} -> {t} already exists")));
                    }
                    s.insert(&Row {
                        username: username.clone(),
                        domain: p.domain.to_string(),
                        mailbox: t.clone(),
                        password: None,
                        active: true,
                        quota: None,
                    })?;
                }
                // Refuse what would make mail to the alias fail: loops and
                // targets in our domains that do not exist.
                if let Some(own) = p.as_address() {
                    check_resolves(resolver, s, &own)?;
                } else {
                    for t in targets.iter().filter(|t| !t.contains('%')) {
                        check_resolves(resolver, s, &Address::parse(t)?)?;
                    }
                }
                Ok(())
            })?;
            println!("added {p} -> {}", targets.join(", "));
            Ok(Exit::Ok)
        }
        AliasCommand::Del { pattern, targets } => {
            let p = AddressPattern::parse(&pattern)?;
            let targets = targets
                .iter()
                .map(|t| parse_target(&p, t))
                .collect::<Result<Vec<_>, _>>()?;
            let n = write(ctx, |s| {
                let what = if targets.is_empty() {
                    Delete::Alias(None)
                } else {
                    Delete::Alias(Some(&targets))
                };
                match s.delete(&p.local.to_string(), p.domain.as_str(), what)? {
                    0 => Err(CliError::not_found(format!(
                        "no alias {p} with those targets"
                    ))),
                    n => Ok(n),
                }
            })?;
            println!("removed {n} row(s) of {p}");
            Ok(Exit::Ok)
        }
        AliasCommand::List(a) => list_aliases(ctx, &a),
    }
}

fn check_resolves(r: &Resolver, s: &mut dyn Store, addr: &Address) -> Result<(), CliError> {
    match r.resolve(s, addr) {
        Ok(_) => Ok(()),
        Err(ResolveError::Store(e)) => Err(e.into()),
        Err(e) => Err(CliError::usage(format!(
            "refused, mail to {addr} would fail: {e}"
        ))),
    }
}

fn kind_of(r: &Row) -> &'static str {
    match LocalPattern::parse(&r.username, &r.address()) {
        Ok(LocalPattern::CatchAll) if r.mailbox.contains('%') => "domain-alias",
        Ok(LocalPattern::CatchAll) => "catch-all",
        Ok(LocalPattern::Wildcard { .. }) => "pattern",
        _ => "alias",
    }
}

fn list_aliases(ctx: &Ctx, a: &ListArgs) -> Result<Exit, CliError> {
    let domain = domain_filter(a)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    let rows: Vec<Row> = s
        .list(domain.as_deref())?
        .into_iter()
        .filter(|r| !r.is_mailbox())
        .collect();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| json!({"pattern": r.address(), "target": r.mailbox, "kind": kind_of(r)}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        for r in &rows {
            println!("{} -> {}  ({})", r.address(), r.mailbox, kind_of(r));
        }
    }
    Ok(Exit::Ok)
}

fn domains(ctx: &Ctx, json: bool) -> Result<Exit, CliError> {
    let mut s = ctx.open(Access::ReadOnly)?;
    let d = s.domains()?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&d).unwrap_or_else(|_| "[]".into())
        );
    } else {
        for d in d {
            println!("{d}");
        }
    }
    Ok(Exit::Ok)
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::TaggedExact => "exact rows for the tagged address",
        Step::Exact => "exact rows",
        Step::Pattern => "pattern",
        Step::CatchAll => "catch-all",
    }
}

fn resolve(ctx: &Ctx, address: &str, json: bool) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    let r = &ctx.resolver;
    let m = r.match_address(s.as_mut(), &addr)?;
    let outcome = r.resolve(s.as_mut(), &addr)?;
    let walk = r.smtpd_walk(s.as_mut(), &addr)?;
    let (result, dests) = match &outcome {
        Outcome::Found(d) => ("found", d.clone()),
        Outcome::NotFound => ("not-found", vec![]),
        Outcome::UnknownDomain => ("unknown-domain", vec![]),
    };
    if json {
        let v = json!({
            "address": addr.to_string(),
            "result": result,
            "step": m.as_ref().map(|m| m.step.number()),
            "matched": m.as_ref().and_then(|m| m.rows.first()).map(Row::address),
            "destinations": dests.iter().map(|d| d.address().to_string()).collect::<Vec<_>>(),
            "deliveries": dests.iter().map(|d| match d {
                Destination::Mailbox(a) => json!({"address": a.to_string(), "kind": "mailbox", "delivery_user": delivery::encode(a)}),
                Destination::External(a) => json!({"address": a.to_string(), "kind": "external"}),
            }).collect::<Vec<_>>(),
            "smtpd_walk": walk,
        });
        println!("{v}");
    } else {
        println!("{addr}");
        if let Some(m) = &m {
            let rows: Vec<String> = m
                .rows
                .iter()
                .map(|r| format!("{} -> {}", r.address(), r.mailbox))
                .collect();
            println!(
                "  step {}: {}: {}",
                m.step.number(),
                step_name(m.step),
                rows.join(", ")
            );
        }
        println!("  smtpd lookups:");
        for w in &walk {
            match &w.answer {
                Some(a) => println!("    {:<40} {}", w.key, a.join(", ")),
                None => println!("    {:<40} not found", w.key),
            }
        }
        match &outcome {
            Outcome::Found(d) => {
                println!("  result: found");
                for d in d {
                    println!("    -> {d}");
                }
            }
            Outcome::NotFound => println!(
                "  result: not found ({} is ours, smtpd rejects with 5xx)",
                addr.domain()
            ),
            Outcome::UnknownDomain => {
                println!("  result: unknown domain ({} is not ours)", addr.domain())
            }
        }
    }
    Ok(match outcome {
        Outcome::Found(_) => Exit::Ok,
        _ => Exit::NotFound,
    })
}

fn senders(ctx: &Ctx, address: &str, json: bool) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let mut s = ctx.open(Access::ReadOnly)?;
    if !s.has_domain(addr.domain().as_str())? {
        return Err(CliError::usage(format!(
            "domain {} of {addr} is not one of ours",
            addr.domain()
        )));
    }
    match ctx.resolver.senders(s.as_mut(), &addr)? {
        None => Err(CliError::not_found(format!("{addr} has no mailbox"))),
        Some(list) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
                );
            } else {
                for a in list {
                    println!("{a}");
                }
            }
            Ok(Exit::Ok)
        }
    }
}

//! `mailtable import`: bring an existing setup over, losslessly, with a
//! report (issue 8).
//!
//! Three layers, so that each can be tested where it is cheapest:
//!
//! 1. parsers ([`smtpd`], [`passwd_file`], [`sql`]) turn one source into a
//!    [`Parsed`]: logins, routes (where mail to a key goes), userinfo, and
//!    findings that name `file:line`. They are pure (text in, data out)
//!    except the SQL reader, which only reads.
//! 2. [`model`] combines the parsed sources into the rows mailtable will
//!    hold, decides what cannot be represented and why, finds conflicts
//!    inside the sources and with rows already present, and knows the
//!    SOURCE's own semantics, to compute for every address the source knew
//!    where the source delivered it.
//! 3. [`run`] does it in one transaction: the report first, then the rows,
//!    then the proof that `Resolver::resolve` on the database gives, for
//!    every such address, what the source gave. A malformed line, a conflict
//!    or a difference rolls everything back; `--dry-run` always does.
//!
//! The one decision a reader might question: entries that cannot be
//! represented (a pipe, a local alias without a domain, an entry without a
//! password) are reported and left out, not refused, because they are
//! outside what a virtual-user table holds and the rest must still come
//! over; anything that would change where an imported address delivers is
//! refused instead.

pub mod model;
pub mod passwd_file;
pub mod report;
pub mod smtpd;
pub mod sql;

use crate::args::ImportArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use mailtable_core::exit::Exit;
use mailtable_core::store::Access;
use mailtable_core::{Address, Domain, PasswordHash, Row};
use std::fmt;
use std::str::FromStr;

/// The formats `--from` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// OpenSMTPD virtual alias file.
    SmtpdAliases,
    /// OpenSMTPD userinfo file.
    SmtpdUserinfo,
    /// OpenSMTPD credentials file.
    SmtpdCredentials,
    /// opensmtpd-extras `table-passwd` file.
    SmtpdPasswd,
    /// Dovecot passwd-file.
    DovecotPasswd,
    /// Normalized `domains/users/aliases` SQL schema.
    Sql,
    /// Another mailtable (single-table) database.
    Mailtable,
}

impl Format {
    /// Every format, in the order of the docs.
    pub const ALL: [Format; 7] = [
        Format::SmtpdAliases,
        Format::SmtpdUserinfo,
        Format::SmtpdCredentials,
        Format::SmtpdPasswd,
        Format::DovecotPasswd,
        Format::Sql,
        Format::Mailtable,
    ];

    /// The `--from` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::SmtpdAliases => "smtpd-aliases",
            Format::SmtpdUserinfo => "smtpd-userinfo",
            Format::SmtpdCredentials => "smtpd-credentials",
            Format::SmtpdPasswd => "smtpd-passwd",
            Format::DovecotPasswd => "dovecot-passwd",
            Format::Sql => "sql",
            Format::Mailtable => "mailtable",
        }
    }

    /// Sources read from a database URL rather than a text file.
    fn is_database(self) -> bool {
        matches!(self, Format::Sql | Format::Mailtable)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!("unknown format {s:?}: use one of {}", names.join(", "))
            })
    }
}

/// Where in a source an entry came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum At {
    /// A line of a text file (1-based).
    Line(usize),
    /// A row of a table, by rowid.
    Row {
        /// The table.
        table: String,
        /// Its rowid.
        id: i64,
    },
    /// A row named by its key (a mailtable database).
    Key(String),
}

/// A source and a place in it; printed `file:line`, `db:table:rowid` or
/// `db:key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// The source as given on the command line (URLs with passwords
    /// redacted).
    pub source: String,
    /// The place.
    pub at: At,
}

impl Origin {
    /// Line `n` of `source`.
    pub fn line(source: &str, n: usize) -> Origin {
        Origin {
            source: source.to_string(),
            at: At::Line(n),
        }
    }

    /// Row `id` of `table` in `source`.
    pub fn row(source: &str, table: &str, id: i64) -> Origin {
        Origin {
            source: source.to_string(),
            at: At::Row {
                table: table.to_string(),
                id,
            },
        }
    }

    /// The row of `key` in `source`.
    pub fn key(source: &str, key: &str) -> Origin {
        Origin {
            source: source.to_string(),
            at: At::Key(key.to_string()),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            At::Line(n) => write!(f, "{}:{n}", self.source),
            At::Row { table, id } => write!(f, "{}:{table}:{id}", self.source),
            At::Key(k) => write!(f, "{}:{k}", self.source),
        }
    }
}

/// Something to tell about one entry: malformed, not imported, or a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where.
    pub at: Origin,
    /// The key, login or address concerned, if any.
    pub subject: Option<String>,
    /// Why (never a password hash).
    pub why: String,
}

impl Finding {
    /// A finding about a whole line.
    pub fn new(at: Origin, why: impl Into<String>) -> Finding {
        Finding {
            at,
            subject: None,
            why: why.into(),
        }
    }

    /// A finding about one key or login.
    pub fn about(at: Origin, subject: &str, why: impl Into<String>) -> Finding {
        Finding {
            at,
            subject: Some(subject.to_string()),
            why: why.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{}: {s}: {}", self.at, self.why),
            None => write!(f, "{}: {}", self.at, self.why),
        }
    }
}

/// A login name as the source spells it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoginName {
    /// `user@domain`.
    Address(Address),
    /// A name without a domain.
    Bare(String),
}

/// A login: a name and a hash (a mailbox in mailtable).
#[derive(Debug, Clone)]
pub struct Login {
    /// The name.
    pub name: LoginName,
    /// The hash, verbatim.
    pub hash: PasswordHash,
    /// False: login refused (inactive row, `nologin`).
    pub active: bool,
    /// Dovecot storage quota.
    pub quota: Option<String>,
    /// The source delivers mail to this login without a route saying so
    /// (Dovecot users, SQL users); smtpd credentials do not.
    pub implied_route: bool,
    /// Where.
    pub origin: Origin,
}

/// The left side of a route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKey {
    /// `user@domain`.
    Exact(Address),
    /// `@domain`.
    CatchAll(Domain),
    /// A key without a domain (`root`, or a domain line `example.org`).
    Bare(String),
    /// smtpd's global catch-all `@`.
    Global,
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteKey::Exact(a) => write!(f, "{a}"),
            RouteKey::CatchAll(d) => write!(f, "@{d}"),
            RouteKey::Bare(u) => f.write_str(u),
            RouteKey::Global => f.write_str("@"),
        }
    }
}

/// One target of a route, as the source gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address.
    Address(Address),
    /// A local (delivery) user name.
    LocalUser(String),
    /// `@new.org` on a catch-all: `user@old` goes to `user@new`.
    DomainAlias(Domain),
    /// A pipe, a file, an include, an error, an address mailtable refuses.
    Unrepresentable {
        /// The element as written.
        text: String,
        /// Why mailtable cannot hold it.
        why: String,
    },
}

/// Where mail to a key goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The key.
    pub key: RouteKey,
    /// Its targets (several fan out).
    pub targets: Vec<Target>,
    /// Where.
    pub origin: Origin,
}

/// uid, gid, home of a user, for the report.
#[derive(Debug, Clone)]
pub struct UserInfo {
    /// The user (delivery user name or login).
    pub user: String,
    /// uid.
    pub uid: Option<u32>,
    /// gid.
    pub gid: Option<u32>,
    /// Home directory.
    pub home: Option<String>,
    /// Where.
    pub origin: Origin,
}

/// One source, parsed.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Logins.
    pub logins: Vec<Login>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Domains the source declares (SQL `domains`), with whether active.
    pub domains: Vec<(Domain, bool, Origin)>,
    /// uid/gid/home facts.
    pub userinfo: Vec<UserInfo>,
    /// Rows of a mailtable database, taken as they are.
    pub rows: Vec<(Row, Origin)>,
    /// Entries that cannot be represented, with why.
    pub skipped: Vec<Finding>,
    /// Things worth knowing that change nothing.
    pub notes: Vec<Finding>,
    /// Lines the source's own software would refuse.
    pub malformed: Vec<Finding>,
    /// This source says where mail goes (alias tables, SQL): logins
    /// without a route of theirs are then not deliverable in the source.
    pub defines_routes: bool,
    /// Aliases, `@domain` included, are looked up before the mailboxes
    /// (Postfix's `virtual_alias_maps`): a catch-all then takes the mail of
    /// a mailbox that has no alias of its own.
    pub aliases_first: bool,
}

impl Parsed {
    fn absorb(&mut self, other: Parsed) {
        self.logins.extend(other.logins);
        self.routes.extend(other.routes);
        self.domains.extend(other.domains);
        self.userinfo.extend(other.userinfo);
        self.rows.extend(other.rows);
        self.skipped.extend(other.skipped);
        self.notes.extend(other.notes);
        self.malformed.extend(other.malformed);
        self.defines_routes |= other.defines_routes;
        self.aliases_first |= other.aliases_first;
    }
}

/// A SOURCE argument: `PATH` (format from `--from`) or `FORMAT:PATH`.
fn split_source(arg: &str, default: Option<Format>) -> Result<(Format, String), CliError> {
    if let Some((prefix, rest)) = arg.split_once(':') {
        if let Ok(f) = prefix.parse::<Format>() {
            if !rest.is_empty() && !std::path::Path::new(arg).exists() {
                return Ok((f, rest.to_string()));
            }
        }
    }
    match default {
        Some(f) => Ok((f, arg.to_string())),
        None => Err(CliError::usage(format!(
            "no format for source {arg:?}: give --from FORMAT, or write it FORMAT:{arg}"
        ))),
    }
}

/// Read and parse one source.
fn parse_source(format: Format, source: &str) -> Result<Parsed, CliError> {
    if format.is_database() {
        return match format {
            Format::Sql => sql::read_normalized(source),
            _ => sql::read_mailtable(source),
        };
    }
    let bytes =
        std::fs::read(source).map_err(|e| CliError::usage(format!("cannot read {source}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        CliError::usage(format!("{source}:{line}: not valid UTF-8"))
    })?;
    Ok(match format {
        Format::SmtpdAliases => smtpd::parse_aliases(source, &text),
        Format::SmtpdUserinfo => smtpd::parse_userinfo(source, &text),
        Format::SmtpdCredentials => smtpd::parse_credentials(source, &text),
        Format::SmtpdPasswd => smtpd::parse_passwd(source, &text),
        Format::DovecotPasswd => passwd_file::parse(source, &text),
        Format::Sql | Format::Mailtable => unreachable!("database formats return above"),
    })
}

/// `mailtable import`.
pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<Exit, CliError> {
    let default = args
        .from
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()
        .map_err(CliError::usage)?;
    let mut sources = Vec::new();
    for s in &args.sources {
        sources.push(split_source(s, default)?);
    }
    let formats: std::collections::BTreeSet<Format> = sources.iter().map(|(f, _)| *f).collect();
    if formats.contains(&Format::Mailtable) && formats.len() > 1 {
        return Err(CliError::usage(
            "a mailtable database is merged on its own: import it without other formats",
        ));
    }

    let mut parsed = Parsed::default();
    let mut names = Vec::new();
    for (format, source) in &sources {
        parsed.absorb(parse_source(*format, source)?);
        names.push(format!("{format}:{source}"));
    }

    let mut rep = report::Report::new(names);
    if !parsed.malformed.is_empty() {
        rep.malformed = parsed.malformed.iter().map(report::Item::from).collect();
        rep.status = report::Status::Refused;
        rep.print(args.json);
        let first = &parsed.malformed[0];
        return Err(CliError::usage(format!(
            "{first}; nothing was changed{}",
            more(parsed.malformed.len())
        )));
    }

    let mut store = if args.verify {
        ctx.open(Access::ReadOnly)?
    } else {
        let mut s = ctx.open_rw()?;
        s.begin()?;
        s
    };
    let outcome = (|| -> Result<Exit, CliError> {
        let (plan, mut semantics) = if formats.contains(&Format::Mailtable) {
            model::plan_rows(parsed, &ctx.resolver)?
        } else {
            model::plan(parsed, store.as_mut(), &ctx.config)?
        };
        let checked = model::check_database(&plan, store.as_mut())?;
        rep.fill(&plan, &checked);

        if !plan.conflicts.is_empty() || (!args.verify && !checked.conflicts.is_empty()) {
            rep.status = report::Status::Refused;
            rep.print(args.json);
            let first = plan
                .conflicts
                .first()
                .or(checked.conflicts.first())
                .map(|c| report::Item::from(c).to_string())
                .unwrap_or_default();
            let n = plan.conflicts.len() + checked.conflicts.len();
            return Err(CliError::usage(format!(
                "conflict: {first}; nothing was changed{}",
                more(n)
            )));
        }

        if !args.verify {
            for g in &checked.new {
                for r in &g.rows {
                    store.insert(r)?;
                }
            }
        }
        let diff = model::verify(&plan, semantics.as_mut(), &ctx.resolver, store.as_mut())?;
        let n_diff = diff.differences.len();
        rep.verification = Some(diff);

        if args.verify {
            rep.status = report::Status::Verified;
            rep.print(args.json);
            return if n_diff == 0 {
                Ok(Exit::Ok)
            } else {
                Err(CliError::not_found(format!(
                    "{n_diff} address(es) resolve differently from the source"
                )))
            };
        }
        if n_diff > 0 {
            store.rollback();
            rep.status = report::Status::Refused;
            rep.print(args.json);
            return Err(CliError::usage(format!(
                "{n_diff} address(es) would resolve differently from the source; nothing was changed"
            )));
        }
        if args.dry_run {
            store.rollback();
            rep.status = report::Status::DryRun;
        } else {
            store.commit()?;
            rep.status = report::Status::Imported;
        }
        rep.print(args.json);
        Ok(Exit::Ok)
    })();
    if outcome.is_err() && !args.verify {
        store.rollback();
    }
    drop(store);
    if outcome.is_ok() && !args.verify && !args.dry_run {
        ctx.reshare();
    }
    outcome
}

fn more(n: usize) -> String {
    if n > 1 {
        format!(" ({} more in the report)", n - 1)
    } else {
        String::new()
    }
}

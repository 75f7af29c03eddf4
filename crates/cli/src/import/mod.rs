//! `mailtable import`: bring an existing setup over, losslessly, with a
//! report (issue 8).
//!
//! Three layers, so that each can be tested where it is cheapest:
//!
//! 1. parsers ([`smtpd`], with [`makemap`] for its `db:` maps,
//!    [`passwd_file`], [`sql`], with [`mysqldump`] for a dump file's
//!    tables) turn one source into a [`Parsed`]: logins,
//!    routes (where mail to a key goes), userinfo, and findings that name
//!    `file:line`. They are pure (text in, data out) except the SQL
//!    reader and `makemap -U`, which only read.
//! 2. [`merge`] combines the parsed sources, [`plan`] turns them into the
//!    rows mailtable will hold and decides what cannot be represented and
//!    why ([`rows`] does it for other mailtable databases, whose rows come
//!    over as they are), [`check`] holds the plan against the rows already
//!    present, and [`source_walk`] knows the SOURCE's own semantics, to
//!    compute for every address the source knew where the source delivered
//!    it.
//! 3. [`run`] does it in one transaction: the report first, then the rows,
//!    then the proof ([`verify`]) that `Resolver::resolve` on the database
//!    gives, for every such address, what the source gave. A malformed
//!    line, a conflict or a difference rolls everything back; `--dry-run`
//!    always does.
//!
//! The one decision a reader might question: entries that cannot be
//! represented (a pipe, a local alias without a domain, an entry without a
//! password) are reported and left out, not refused, because they are
//! outside what a virtual-user table holds and the rest must still come
//! over; anything that would change where an imported address delivers is
//! refused instead.

pub mod check;
pub mod domain_files;
#[cfg(test)]
mod fuzz;
pub mod makemap;
pub mod merge;
pub mod mysqldump;
pub mod parsed;
pub mod passwd_file;
pub mod plan;
pub mod progress;
pub mod report;
pub mod row_index;
pub mod rows;
pub mod smtpd;
pub mod source_walk;
pub mod sql;
pub mod verify;

pub use parsed::{
    At, Conflict, Finding, Inactive, Login, LoginName, Origin, Parsed, Route, RouteKey, Target,
    UserInfo,
};

use crate::args::ImportArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use mailtable_core::exit::Exit;
use mailtable_core::store::Access;
use mailtable_core::Store;
use std::collections::BTreeSet;
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
    /// OpenSMTPD list of the domains a `match ... for domain <t>` accepts.
    SmtpdDomains,
    /// Dovecot passwd-file.
    DovecotPasswd,
    /// Normalized `domains/users/aliases` SQL schema, or the tables of
    /// PostfixAdmin, mailcow, iRedMail, the ISPmail or HowtoForge guides.
    Sql,
    /// The same tables in a MySQL/MariaDB dump file (`mysqldump`).
    SqlDump,
    /// Another mailtable (single-table) database.
    Mailtable,
}

impl Format {
    /// Every format, in the order of the docs.
    pub const ALL: [Format; 9] = [
        Format::SmtpdAliases,
        Format::SmtpdUserinfo,
        Format::SmtpdCredentials,
        Format::SmtpdPasswd,
        Format::SmtpdDomains,
        Format::DovecotPasswd,
        Format::Sql,
        Format::SqlDump,
        Format::Mailtable,
    ];

    /// The `--from` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::SmtpdAliases => "smtpd-aliases",
            Format::SmtpdUserinfo => "smtpd-userinfo",
            Format::SmtpdCredentials => "smtpd-credentials",
            Format::SmtpdPasswd => "smtpd-passwd",
            Format::SmtpdDomains => "smtpd-domains",
            Format::DovecotPasswd => "dovecot-passwd",
            Format::Sql => "sql",
            Format::SqlDump => "sql-dump",
            Format::Mailtable => "mailtable",
        }
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
fn parse_source(format: Format, source: &str, inactive: Inactive) -> Result<Parsed, CliError> {
    let parse: fn(&str, &str) -> Parsed = match format {
        Format::Sql => return sql::read_normalized(source, inactive),
        Format::SqlDump => return sql::read_dump(source, inactive),
        Format::Mailtable => return sql::read_mailtable(source),
        Format::SmtpdAliases => smtpd::parse_aliases,
        Format::SmtpdUserinfo => smtpd::parse_userinfo,
        Format::SmtpdCredentials => smtpd::parse_credentials,
        Format::SmtpdPasswd => smtpd::parse_passwd,
        Format::SmtpdDomains => smtpd::parse_domains,
        Format::DovecotPasswd => passwd_file::parse,
    };
    // A file whose name really holds `%d` is that file.
    if format == Format::DovecotPasswd && !std::path::Path::new(source).is_file() {
        if let Some(t) = domain_files::template(source).map_err(CliError::usage)? {
            return parse_domain_files(source, &t);
        }
        if let Some(v) = domain_files::other_variable(source) {
            return Err(CliError::usage(format!(
                "{source}: no such file, and {v} is no variable the import expands (the \
                 login's domain only: %d, %Ld, %{{domain}}, %{{user | domain}}); a path with \
                 the user in it names a file per user: give those files themselves"
            )));
        }
    }
    parse_file(format, source, &parse)
}

/// Every file of a passwd-file path with the domain in it
/// ([`domain_files`]), each read with its domain; one note says which.
fn parse_domain_files(source: &str, t: &domain_files::Template) -> Result<Parsed, CliError> {
    let dir = t.dir.display();
    let found = domain_files::expand(t)
        .map_err(|e| CliError::usage(format!("{source}: cannot list {dir}: {e}")))?;
    if found.files.is_empty() {
        return Err(CliError::usage(format!(
            "{source}: no file of a domain in {dir} (an entry named as the path says, whose \
             domain part is a domain)"
        )));
    }
    let mut parsed = Parsed::default();
    for (domain, file) in &found.files {
        let one = parse_file(
            Format::DovecotPasswd,
            &file.display().to_string(),
            &|s: &str, text: &str| passwd_file::parse_in_domain(s, text, domain),
        )?;
        parsed.absorb(one);
    }
    let domains: Vec<&str> = found.files.iter().map(|(d, _)| d.as_str()).collect();
    parsed.notes.push(Finding::new(
        Origin::whole(source),
        format!(
            "a passwd-file per domain: read {} file(s), of {}; a user name without a domain \
             is a user of its file's domain",
            found.files.len(),
            domains.join(", ")
        ),
    ));
    for (path, why) in found.left_out {
        parsed.notes.push(Finding::new(
            Origin::whole(&path.display().to_string()),
            format!("not read: {why}"),
        ));
    }
    Ok(parsed)
}

/// Read and parse one file of `format` with `parse`.
fn parse_file(
    format: Format,
    source: &str,
    parse: &dyn Fn(&str, &str) -> Parsed,
) -> Result<Parsed, CliError> {
    let bytes =
        std::fs::read(source).map_err(|e| CliError::usage(format!("cannot read {source}: {e}")))?;
    refuse_compressed(source, &bytes)?;
    let smtpd_table = matches!(
        format,
        Format::SmtpdAliases
            | Format::SmtpdUserinfo
            | Format::SmtpdCredentials
            | Format::SmtpdDomains
    );
    if let Some(kind) = makemap::berkeley_db(&bytes).filter(|_| smtpd_table) {
        let mut parsed = parse(source, &makemap::dump(source, kind)?);
        if parsed.is_empty() {
            // An empty map, or one makemap reads nothing from (cut short):
            // an empty source, refused or noted as such.
            return Ok(parsed);
        }
        parsed.notes.push(Finding::new(
            Origin::whole(source),
            format!(
                "a `db:` map (Berkeley DB, {}): read through `makemap -U`; a line number \
                 is that of its output",
                kind.name()
            ),
        ));
        return Ok(parsed);
    }
    let passwd = matches!(format, Format::SmtpdPasswd | Format::DovecotPasswd);
    let text = text_of(source, &bytes, passwd)?;
    // A byte order mark some editors write: neither smtpd nor Dovecot
    // strips it, so it is part of the first line to them (a first line
    // `# comment` is then a key, an entry's key one that never matched).
    // It is not what the admin wrote: read the file without it, and say so.
    let Some(text) = text.strip_prefix('\u{feff}') else {
        return Ok(parse(source, &text));
    };
    let mut parsed = parse(source, text);
    if parsed.is_empty() {
        // Nothing but the mark: an empty source, said as such.
        return Ok(parsed);
    }
    parsed.notes.push(Finding::new(
        Origin::line(source, 1),
        "the file starts with a UTF-8 byte order mark: read without it (smtpd and Dovecot \
         take it as part of the first line, so an entry there did not match in the source \
         and does from now on)",
    ));
    Ok(parsed)
}

/// A source that is a compressed file (a dump kept as `postfix.sql.gz`,
/// as backup scripts write it) is refused naming its compression and the
/// way to read it (through a pipe: the importer reads `/dev/stdin` like
/// any file), instead of as text that is not UTF-8. Known by the magic
/// numbers of gzip (RFC 1952), xz, zstd (RFC 8878), bzip2 and lz4.
fn refuse_compressed(source: &str, bytes: &[u8]) -> Result<(), CliError> {
    let tools: [(&[u8], &str, &str); 5] = [
        (b"\x04\x22\x4d\x18", "lz4", "lz4cat"),
        (b"\x1f\x8b", "gzip", "zcat"),
        (b"\xfd7zXZ\0", "xz", "xzcat"),
        (b"\x28\xb5\x2f\xfd", "zstd", "zstdcat"),
        (b"BZh", "bzip2", "bzcat"),
    ];
    // bzip2's `BZh` is followed by its block size, `1` to `9`: a text
    // file that starts with the letters `BZh` is no bzip2 file.
    let bzip2_size = |b: &[u8]| b.get(3).is_some_and(|c| (b'1'..=b'9').contains(c));
    match tools.iter().find(|(magic, name, _)| {
        bytes.starts_with(magic) && (*name != "bzip2" || bzip2_size(bytes))
    }) {
        Some((_, name, cat)) => Err(CliError::usage(format!(
            "{source} is compressed ({name}): give it uncompressed, e.g. `{cat} {source} | \
             mailtable import ... /dev/stdin` with the same format"
        ))),
        None => Ok(()),
    }
}

/// The text of a source file. A line that is not UTF-8 where its bytes
/// do not matter to the daemons, a comment or (in a passwd file) the
/// GECOS field, which smtpd and Dovecot skip, is read with U+FFFD in
/// their place: a Latin-1 comment or full name must not refuse a file.
/// Anywhere else it is an error naming the line (a key or a hash would
/// change).
fn text_of(source: &str, bytes: &[u8], passwd: bool) -> Result<String, CliError> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(bytes.len());
    for (n, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        if let Ok(text) = std::str::from_utf8(line) {
            out.push_str(text);
            continue;
        }
        let comment = line.trim_ascii_start().starts_with(b"#");
        let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        let only_gecos = passwd
            && fields.len() > 4
            && fields
                .iter()
                .enumerate()
                .all(|(i, f)| i == 4 || std::str::from_utf8(f).is_ok());
        if !comment && !only_gecos {
            return Err(CliError::usage(format!(
                "{source}:{}: not valid UTF-8",
                n + 1
            )));
        }
        out.push_str(&String::from_utf8_lossy(line));
    }
    Ok(out)
}

/// What an empty source of `format` looks like, for the message.
fn no_entries(format: Format) -> &'static str {
    match format {
        Format::Sql | Format::SqlDump => "no rows in its tables",
        Format::Mailtable => "no rows",
        _ => "empty, or only comments and blank lines",
    }
}

/// The SOURCE arguments with their formats.
fn sources(args: &ImportArgs) -> Result<Vec<(Format, String)>, CliError> {
    let default = args
        .from
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()
        .map_err(CliError::usage)?;
    let sources = args
        .sources
        .iter()
        .map(|s| split_source(s, default))
        .collect::<Result<Vec<_>, _>>()?;
    let formats: BTreeSet<Format> = sources.iter().map(|(f, _)| *f).collect();
    if formats.contains(&Format::Mailtable) && formats.len() > 1 {
        return Err(CliError::usage(
            "a mailtable database is merged on its own: import it without other formats",
        ));
    }
    Ok(sources)
}

/// How the report names a source: `format:source`, a PostgreSQL URL with
/// its password masked (the report goes to terminals, logs and tickets).
fn source_name(format: Format, source: &str) -> String {
    format!("{format}:{}", mailtable_core::store::url::redact(source))
}

/// `mailtable import`.
pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<Exit, CliError> {
    let sources = sources(args)?;
    let mut parsed = Parsed::default();
    let mut names = Vec::new();
    let mut empty = Vec::new();
    for (format, source) in &sources {
        let one = parse_source(*format, source, args.inactive)?;
        let name = source_name(*format, source);
        if one.is_empty() {
            // Not even its saying where mail goes comes over: an empty
            // alias table beside Dovecot's users is one to be filled in,
            // not one that refuses every address.
            empty.push((name.clone(), *format, source.as_str()));
        } else {
            parsed.absorb(one);
        }
        names.push(name);
    }
    // An empty source is most likely the wrong file, or an export that
    // failed: said, and when it is all there is, refused, rather than
    // reported as an import of nothing.
    if empty.len() == names.len() {
        let names: Vec<String> = empty
            .iter()
            .map(|(name, format, _)| format!("{name} ({})", no_entries(*format)))
            .collect();
        return Err(CliError::usage(format!(
            "no entries in {}: nothing to import; nothing was changed",
            names.join(", ")
        )));
    }
    for (_, format, source) in &empty {
        parsed.notes.push(Finding::new(
            Origin::whole(&mailtable_core::store::url::redact(source)),
            format!(
                "no entries ({}): nothing of it comes over",
                no_entries(*format)
            ),
        ));
    }

    let mut rep = report::Report::new(names);
    rep.inactive = args.inactive.name();
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

    // A signal during the write is acted on once the transaction is
    // rolled back or committed; `--verify` writes nothing.
    let from_mailtable = sources.iter().any(|(f, _)| *f == Format::Mailtable);
    let run = || in_transaction(ctx, args, parsed, from_mailtable, &mut rep);
    match args.verify {
        true => run(),
        false => crate::interrupt::guarded(run),
    }
}

/// [`import`] in the transaction it needs (none for `--verify`), rolled
/// back when it fails.
fn in_transaction(
    ctx: &Ctx,
    args: &ImportArgs,
    parsed: Parsed,
    from_mailtable: bool,
    rep: &mut report::Report,
) -> Result<Exit, CliError> {
    let mut store = if args.verify {
        ctx.open(Access::ReadOnly)?
    } else {
        let mut s = ctx.open_rw()?;
        s.begin()?;
        s
    };
    let outcome = import(ctx, args, parsed, from_mailtable, store.as_mut(), rep);
    if outcome.is_err() && !args.verify {
        store.rollback();
    }
    drop(store);
    if outcome.is_ok() && !args.verify && !args.dry_run {
        ctx.reshare();
    }
    outcome
}

/// Plan, check, write (unless `--verify`), prove; inside the transaction
/// `run` opened.
fn import(
    ctx: &Ctx,
    args: &ImportArgs,
    parsed: Parsed,
    from_mailtable: bool,
    store: &mut dyn Store,
    rep: &mut report::Report,
) -> Result<Exit, CliError> {
    let (mut plan, mut semantics) = if from_mailtable {
        rows::plan_rows(parsed, &ctx.resolver)
    } else {
        plan::plan(parsed, store, &ctx.config, &login_hints(args)?)?
    };
    let checked =
        check::check_database(&plan, store, &progress::bar("checking", plan.groups.len()))?;
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
        // The first rows of a domain make it ours: forwards that the
        // database's own aliases send to it must not break (as for the
        // commands that add rows one by one).
        let domains: Vec<mailtable_core::Domain> = checked
            .new_groups(&plan)
            .map(plan::Group::domain)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|d| mailtable_core::Domain::parse(d).ok())
            .collect();
        let arrival = crate::cmd::guard::Arrival::before(
            &ctx.resolver,
            store,
            &domains.iter().collect::<Vec<_>>(),
        )?;
        let bar = progress::bar("writing", checked.new.len());
        for g in checked.new_groups(&plan) {
            for r in g.rows() {
                store.insert(&r)?;
            }
            crate::interrupt::check()?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (broken, what) = arrival.breakage(&ctx.resolver, store)?;
        if !broken.is_empty() {
            rep.status = report::Status::Refused;
            rep.print(args.json);
            return Err(CliError::usage(format!(
                "{what}; nothing was changed (import the addresses they forward to too, or \
                 change those aliases first)"
            )));
        }
    }
    // The rows are written and counted: only the addresses to prove and
    // the source's semantics are needed from here on, so the planned rows
    // (a million for a big source) are freed before the proof.
    let left_behind = left_behind(&plan);
    let known = std::mem::take(&mut plan.known);
    // As smtpd asks them: a key mailtable cannot store (`100%@d`, a local
    // part past 64 bytes) is still an address a catch-all may now take,
    // whose mail then reaches another mailbox (redirected, not lost).
    let lost: Vec<mailtable_core::Address> = plan
        .lost
        .iter()
        .filter_map(|a| mailtable_core::Address::parse_key(a).ok())
        .collect();
    drop(checked);
    drop(plan);
    let mut diff = verify::verify(
        &known,
        semantics.as_mut(),
        &ctx.resolver,
        store,
        &progress::bar("verifying", known.len()),
    )?;
    drop(known);
    let (redirected, own) = verify::delivered_after(&lost, &ctx.resolver, store)?;
    diff.redirected = redirected;
    let n_diff = diff.differences.len();
    // Mail the source delivered that smtpd would defer from now on (a
    // Postfix alias longer than smtpd's alias buffer): mail left behind.
    let deferred: Vec<String> = diff
        .failing
        .iter()
        .filter(|f| f.source_delivered)
        .map(|f| f.address.clone())
        .collect();
    // They do receive mail: the redirected elsewhere (said so on the first
    // line, listed with where it goes), the others in their own mailbox.
    let delivered: BTreeSet<String> = diff
        .redirected
        .iter()
        .map(|d| d.address.clone())
        .chain(own.iter().map(ToString::to_string))
        .collect();
    rep.undeliverable.retain(|a| !delivered.contains(a));
    rep.verification = Some(diff);
    finish(args, store, rep, n_diff, (left_behind, deferred))
}

/// `--login-domain` and `--map`, checked.
fn login_hints(args: &ImportArgs) -> Result<merge::LoginHints, CliError> {
    let domain = args
        .login_domain
        .as_deref()
        .map(|d| {
            mailtable_core::Domain::parse(d)
                .map_err(|e| CliError::usage(format!("--login-domain {d}: {e}")))
        })
        .transpose()?;
    let mut map = std::collections::BTreeMap::new();
    for m in &args.map {
        let Some((login, addr)) = m.split_once('=') else {
            return Err(CliError::usage(format!(
                "--map {m}: write LOGIN=ADDRESS (a login without a domain, the address it becomes)"
            )));
        };
        let addr = mailtable_core::Address::parse(addr)
            .map_err(|e| CliError::usage(format!("--map {m}: {e}")))?;
        // smtpd lower-cases the keys of its tables (table(5)).
        let login = login.trim().to_ascii_lowercase();
        if login.is_empty() {
            return Err(CliError::usage(format!("--map {m}: the login is empty")));
        }
        if let Some(before) = map.get(&login).filter(|b| **b != addr) {
            return Err(CliError::usage(format!(
                "--map {login}: given twice, as {before} and as {addr}"
            )));
        }
        map.insert(login, addr);
    }
    Ok(merge::LoginHints { domain, map })
}

/// Why the import would leave the source's mail undeliverable in a way
/// that must not pass for success: entries were not imported, and either
/// nothing at all comes over or a login or mailbox of the source does not
/// (its mail would bounce from now on). `None` when it is fine.
struct LeftBehind {
    /// What is left behind.
    what: String,
    /// Nothing at all comes over: `--partial` has no rest to import.
    nothing: bool,
}

/// The [`LeftBehind`] of a plan, `None` when nothing is.
fn left_behind(plan: &plan::Plan) -> Option<LeftBehind> {
    if plan.skipped.is_empty() {
        return None;
    }
    let nothing = plan.groups.is_empty();
    let what = if nothing {
        "nothing would be imported".to_string()
    } else if !plan.lost_mailboxes.is_empty() {
        format!(
            "{} login(s) or mailbox(es) of the sources would not come over ({})",
            plan.lost_mailboxes.len(),
            plan.lost_mailboxes.join(", ")
        )
    } else {
        return None;
    };
    Some(LeftBehind { what, nothing })
}

/// The refusal of an import [`left_behind`] stops, with the addresses that
/// would not receive mail as the report's first line counts them (after
/// the check: an address a catch-all now takes, or that reaches its own
/// mailbox, still receives mail).
fn left_behind_message(what: String, undeliverable: &[String]) -> String {
    match undeliverable {
        // Every entry bounced in the source already, or still receives
        // mail: nothing is lost, but an import that leaves a login behind
        // or writes nothing must not pass for one that did not.
        [] => format!("{what}, though no address of the sources loses its mail"),
        keys => format!(
            "{} of the sources would not receive mail and {what}",
            report::lost_keys(keys)
        ),
    }
}

/// The end of a run that got past the conflicts: print the report, and
/// commit or roll back.
fn finish(
    args: &ImportArgs,
    store: &mut dyn Store,
    rep: &mut report::Report,
    n_diff: usize,
    (left_behind, deferred): (Option<LeftBehind>, Vec<String>),
) -> Result<Exit, CliError> {
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
    if !deferred.is_empty() && !args.partial {
        store.rollback();
        rep.status = report::Status::Refused;
        rep.print(args.json);
        return Err(CliError::usage(format!(
            "{} address(es) the source delivered would have their mail deferred by smtpd from \
             now on ({}): an answer longer than smtpd takes; split the alias into shorter ones \
             (see failing in the report); nothing was changed (--partial imports anyway)",
            deferred.len(),
            report::first_few(deferred.iter())
        )));
    }
    if let Some(left) = left_behind.filter(|l| !args.partial || l.nothing) {
        let why = left_behind_message(left.what, &rep.undeliverable);
        store.rollback();
        rep.status = report::Status::Refused;
        rep.print(args.json);
        let rest = match left.nothing {
            true => "there is no rest for --partial to import",
            false => "--partial imports the rest",
        };
        return Err(CliError::usage(format!(
            "{why}; nothing was changed (see the report; {rest})"
        )));
    }
    if args.dry_run {
        store.rollback();
        rep.status = report::Status::DryRun;
    } else {
        crate::interrupt::check()?;
        store.commit()?;
        crate::output::changed();
        rep.status = report::Status::Imported;
    }
    rep.print(args.json);
    Ok(Exit::Ok)
}

fn more(n: usize) -> String {
    if n > 1 {
        format!(" ({} more in the report)", n - 1)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latin-1 where smtpd and Dovecot skip the bytes (a comment, a passwd
    /// file's full name) is read; anywhere else it refuses, naming the line.
    #[test]
    fn bytes_that_are_not_utf8_only_where_nobody_reads_them() {
        let comment = b"# Kommentar f\xfcr m\na@example.org b@example.org\n";
        assert!(text_of("v", comment, false)
            .unwrap()
            .contains("a@example.org b@example.org"));
        let gecos = b"a@example.org:{PLAIN}x:5000:5000:J\xfcrgen:/home/a::\n";
        let text = text_of("p", gecos, true).unwrap();
        assert!(
            text.starts_with("a@example.org:{PLAIN}x:5000:5000:J\u{fffd}rgen:"),
            "{text}"
        );
        let key = b"# fine\nj\xfcrgen@example.org x@example.org\n";
        assert_eq!(
            text_of("v", key, false).unwrap_err().to_string(),
            "v:2: not valid UTF-8"
        );
        let hash = b"a@example.org:{PLAIN}p\xe4ss:5000:5000:J\xfcrgen:/h::\n";
        assert!(text_of("p", hash, true).is_err());
        assert!(
            text_of("v", gecos, false).is_err(),
            "GECOS only in a passwd file"
        );
    }

    #[test]
    fn a_compressed_source_is_named_as_such() {
        for (bytes, says) in [
            (
                &b"\x1f\x8b\x08\0"[..],
                "compressed (gzip): give it uncompressed, e.g. `zcat d.sql",
            ),
            (b"\xfd7zXZ\0\0", "(xz)"),
            (b"\x28\xb5\x2f\xfd\0", "(zstd)"),
            (b"BZh91AY", "(bzip2)"),
        ] {
            let e = refuse_compressed("d.sql", bytes).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(refuse_compressed("d.sql", b"-- MySQL dump").is_ok());
        assert!(refuse_compressed("d.sql", b"").is_ok());
        assert!(refuse_compressed("d.sql", b"\x1f").is_ok());
        assert!(refuse_compressed("d.sql", b"BZhao@example.org  x\n").is_ok());
    }

    #[test]
    fn the_report_never_names_a_source_with_its_password() {
        assert_eq!(
            source_name(Format::Sql, "postgresql://pfa:s3?cr@t@db1/postfix"),
            "sql:postgresql://pfa:***@db1/postfix"
        );
        assert_eq!(
            source_name(Format::SmtpdAliases, "/etc/mail/virtuals"),
            "smtpd-aliases:/etc/mail/virtuals"
        );
    }
}

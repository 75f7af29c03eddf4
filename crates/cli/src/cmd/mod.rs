//! The commands, one file per group: [`db`] (`init`, `migrate`), [`user`]
//! (mailboxes and `hash`; [`bulk`] for `user add --from-file`), [`alias`], [`domain`], [`resolve`] (`resolve` and
//! `senders`, the read-only questions about one address); [`listing`] writes
//! the list commands' output as the rows come; `import` has its own module
//! tree. Here only the dispatch.
//!
//! Each command validates its input into core types first, then changes
//! the database inside one transaction ([`Ctx::write`]), so a refused
//! command leaves the database exactly as it was.

mod alias;
mod bulk;
mod db;
mod domain;
pub(crate) mod guard;
mod listing;
mod resolve;
mod user;

use crate::args::{Cli, Command, DomainCommand};
use crate::ctx::Ctx;
use crate::error::CliError;
use mailtable_core::exit::Exit;

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<Exit, CliError> {
    // Before the context: doctor reports a config that does not load.
    if let Command::Doctor(a) = &cli.command {
        return crate::doctor::run(cli.config.as_deref(), cli.database.as_deref(), a);
    }
    let ctx = Ctx::from_cli(&cli)?;
    match cli.command {
        Command::Init(a) => db::init(&ctx, &a.group),
        Command::Migrate => db::migrate(&ctx),
        Command::User(u) => user::run(&ctx, u),
        Command::Hash(p) => user::hash(&ctx, &p),
        Command::Alias(a) => alias::run(&ctx, a),
        Command::Domain(DomainCommand::List { json }) => domain::list(&ctx, json),
        Command::Domain(DomainCommand::Del { domain, force }) => domain::del(&ctx, &domain, force),
        Command::Resolve { address, json } => resolve::resolve(&ctx, &address, json),
        Command::Senders { address, json } => resolve::senders(&ctx, &address, json),
        Command::Import(a) => crate::import::run(&ctx, &a),
        Command::Doctor(a) => {
            crate::doctor::run(cli.config.as_deref(), cli.database.as_deref(), &a)
        }
    }
}

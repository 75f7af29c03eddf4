//! `mailtable user ...` (mailboxes: rows with a password) and `mailtable
//! hash`.
//!
//! The one decision a reader might question: removing a mailbox leaves the
//! aliases that point to it in place and warns about each one, instead of
//! deleting them too; an alias may also fan out to other targets, and which
//! rows to drop is the admin's call.

use crate::args::{ListArgs, PasswordInput, UserCommand};
use crate::ctx::Ctx;
use crate::error::CliError;
use crate::secret_input;
use mailtable_core::exit::Exit;
use mailtable_core::password::{self, PasswordHash};
use mailtable_core::store::{Access, Delete};
use mailtable_core::{delivery, Address, Row};
use serde_json::json;

/// `mailtable user ...`.
pub(super) fn run(ctx: &Ctx, cmd: UserCommand) -> Result<Exit, CliError> {
    match cmd {
        UserCommand::Add { address, password } => add(ctx, &address, &password),
        UserCommand::Passwd { address, password } => passwd(ctx, &address, &password),
        UserCommand::Del { address } => del(ctx, &address),
        UserCommand::Disable { address } => set_active(ctx, &address, false),
        UserCommand::Enable { address } => set_active(ctx, &address, true),
        UserCommand::List(a) => list(ctx, &a),
    }
}

/// `mailtable hash`: a hash for hand-written SQL, with the configured cost.
pub(super) fn hash(ctx: &Ctx, input: &PasswordInput) -> Result<Exit, CliError> {
    let h = new_hash(ctx, input, "the hash")?;
    println!("{}", h.stored());
    Ok(Exit::Ok)
}

fn new_hash(ctx: &Ctx, input: &PasswordInput, what: &str) -> Result<PasswordHash, CliError> {
    let pw = secret_input::read(input.password_stdin, what)?;
    password::hash(&pw, ctx.config.password_cost).map_err(|e| CliError::usage(e.to_string()))
}

fn add(ctx: &Ctx, address: &str, input: &PasswordInput) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let hash = new_hash(ctx, input, &addr.to_string())?;
    ctx.write(|s| {
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

fn passwd(ctx: &Ctx, address: &str, input: &PasswordInput) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let hash = new_hash(ctx, input, &addr.to_string())?;
    ctx.write(
        |s| match s.set_password(addr.local(), addr.domain().as_str(), &hash)? {
            0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
            _ => Ok(()),
        },
    )?;
    println!("changed the password of {addr}");
    Ok(Exit::Ok)
}

fn del(ctx: &Ctx, address: &str) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    let still =
        ctx.write(
            |s| match s.delete(addr.local(), addr.domain().as_str(), Delete::Mailbox)? {
                0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
                _ => Ok(s.targeting(&addr.to_string())?),
            },
        )?;
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

/// `user disable` / `user enable`.
fn set_active(ctx: &Ctx, address: &str, enable: bool) -> Result<Exit, CliError> {
    let addr = Address::parse(address)?;
    ctx.write(
        |s| match s.set_active(addr.local(), addr.domain().as_str(), enable)? {
            0 => Err(CliError::not_found(format!("{addr} has no mailbox"))),
            _ => Ok(()),
        },
    )?;
    if enable {
        println!("enabled logins for {addr}");
    } else {
        println!("disabled logins for {addr} (mail is still accepted)");
    }
    Ok(Exit::Ok)
}

fn list(ctx: &Ctx, a: &ListArgs) -> Result<Exit, CliError> {
    let domain = super::domain::filter(a)?;
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

//! `mailtable domain list`, and the `--domain` filter of the other list
//! commands. mailtable has no domain table: a domain is ours because some
//! row has it, so listing domains is a query over `users`.

use crate::args::ListArgs;
use crate::ctx::Ctx;
use crate::error::CliError;
use mailtable_core::exit::Exit;
use mailtable_core::store::Access;
use mailtable_core::Domain;

/// `mailtable domain list`.
pub(super) fn list(ctx: &Ctx, json: bool) -> Result<Exit, CliError> {
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

/// The `--domain` of a list command, in the stored form (lower case,
/// IDNA ASCII), so `--domain Bücher.example` finds `xn--bcher-kva.example`.
pub(super) fn filter(a: &ListArgs) -> Result<Option<String>, CliError> {
    a.domain
        .as_deref()
        .map(|d| Domain::parse(d).map(|d| d.to_string()))
        .transpose()
        .map_err(CliError::from)
}

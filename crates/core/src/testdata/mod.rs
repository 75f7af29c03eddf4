//! Test data shared by every test of the resolution algorithm: ONE table of
//! rows and cases ([`resolution`]) and ONE runner ([`check`]) that the core's
//! unit tests run on the in-memory store and the contract suite runs on
//! SQLite and on PostgreSQL. The answers must not depend on where the rows
//! live; a second copy of the table per backend would drift from this one.
//! Beside them, [`mutate`]: the random edits of the fuzz tests that run on
//! the stable toolchain.
//!
//! Why a cargo feature (`testdata`) and not an always-compiled
//! `#[doc(hidden)] pub mod`: the fixture and its runner are test code. Behind
//! a feature they are compiled only into the core's own unit tests
//! (`cfg(test)`) and into packages that ask for it, as the contract suite
//! does through its `[dev-dependencies]`; the daemons never carry them, and
//! nothing here becomes part of the crate's API by accident. Cargo's feature
//! resolver (version 2) keeps a dev-dependency's features out of ordinary
//! builds of the binaries.

pub mod check;
pub mod mutate;
pub mod resolution;

use crate::password::PasswordHash;
use crate::row::Row;

/// A bcrypt-shaped hash for mailbox rows of the fixture. Nothing verifies
/// it: a password only makes a row a mailbox.
pub const HASH: &str = "$2b$04$abcdefghijklmnopqrstuu";

/// A mailbox row: `username@domain`, delivering to itself.
pub fn mailbox(username: &str, domain: &str) -> Row {
    Row {
        username: username.into(),
        domain: domain.into(),
        mailbox: format!("{username}@{domain}"),
        password: Some(PasswordHash::new(HASH)),
        active: true,
        quota: None,
    }
}

/// An alias row (password NULL): `username@domain` -> `target`.
pub fn alias(username: &str, domain: &str, target: &str) -> Row {
    Row {
        username: username.into(),
        domain: domain.into(),
        mailbox: target.into(),
        password: None,
        active: true,
        quota: None,
    }
}

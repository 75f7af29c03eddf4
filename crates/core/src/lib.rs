//! mailtable-core: the model every mailtable binary shares.
//!
//! One table, `users(username, domain, mailbox, password)`, holds mailboxes
//! (rows with a password), aliases (rows without), wildcard patterns and
//! catch-alls (`%` in `username`). This crate turns it into answers:
//!
//! - [`accounts`]: the account policy: logins, verdicts, user info;
//! - [`address`]: parsing and normal form of addresses, domains, patterns;
//! - [`cache`]: the daemons' answer cache, checked against the data's
//!   version before every answer, with stale-if-error for outages;
//! - [`resolve`]: THE resolution algorithm, and the per-key answers that make
//!   smtpd's own lookup walk yield the same result;
//! - [`delivery`]: `hugo@barrera.io` <-> `hugo_barrera.io`;
//! - [`password`]: hashes, verification, the never-printing [`Secret`];
//! - [`config`]: the one TOML file;
//! - [`row`]: a row of the table and its [`RowKind`];
//! - [`store`]: the `Store` trait with its SQLite and PostgreSQL backends;
//! - [`exit`]: exit codes;
//! - [`logging`]: the stderr logger of the binaries;
//! - `testdata` (feature `testdata`, off by default): the resolution table
//!   that the unit tests and the contract suite run on every store.
//!
//! Policy lives here, above the storage backends, so that every daemon and
//! every backend agree about every address.

#![deny(missing_docs)]

pub mod accounts;
pub mod address;
pub mod cache;
pub mod config;
pub mod delivery;
pub mod exit;
pub mod logging;
pub mod password;
pub mod resolve;
pub mod row;
pub mod store;
#[cfg(any(test, feature = "testdata"))]
pub mod testdata;

pub use accounts::{Account, Accounts, Refusal, Verdict};
pub use address::{Address, AddressError, AddressPattern, Domain, LocalPattern};
pub use config::Config;
pub use password::{PasswordHash, Secret};
pub use resolve::{Destination, Outcome, Reach, ResolveError, Resolver};
pub use row::{Row, RowKind};
pub use store::{Store, StoreError};

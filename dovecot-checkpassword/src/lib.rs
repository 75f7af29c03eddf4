//! Dovecot side of mailtable: the protocols `dovecot-mailtable` speaks and
//! the backend that answers them from the mailtable store.
//!
//! Dovecot 2.3 can ask an external program in two ways that 2.4 removed:
//! the checkpassword interface ([`checkpassword`]: fd 3 in, fd 4 out, exit
//! code) and the dict proxy protocol behind `passdb/userdb { driver = dict }`
//! ([`dict`]). For 2.4 (and 2.3 too) the repository ships a Lua
//! passdb/userdb script, `lua/mailtable-auth.lua`, that calls the small HTTP
//! API in [`http`]. Reference: shared/reference/dovecot-auth-protocols.md.
//!
//! The protocol modules are pure or generic over `Read`/`Write` and know
//! nothing of the database: they reach it through the traits
//! [`DictBackend`] and [`ApiBackend`], which [`backend`] implements over
//! the mailtable store. That keeps the wire formats testable on literal
//! bytes and the policy (what Dovecot is told about a user) in one file.
//! [`serve`] is the daemon around the dict and HTTP servers, on a tokio
//! runtime, [`pool`] its store and hashing pools. Cleartext passwords only ever travel in
//! [`Secret`].

pub mod backend;
pub mod checkpassword;
pub mod dict;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod pool;
pub mod secret;
pub mod serve;
pub mod stop;
pub mod tabescape;

pub use backend::{Backend, Directory};
pub use checkpassword::{CheckpasswordRequest, Mode, Outcome};
pub use dict::{DictBackend, DictSession, Lookup};
pub use http::{Account, ApiBackend, LookupResult, VerifyResult};
pub use secret::Secret;

//! Dovecot side of mailtable: the protocols `dovecot-mailtable` speaks,
//! without any database.
//!
//! Dovecot 2.3 can ask an external program in two ways that 2.4 removed:
//! the checkpassword interface ([`checkpassword`]: fd 3 in, fd 4 out, exit
//! code) and the dict proxy protocol behind `passdb/userdb { driver = dict }`
//! ([`dict`]). For 2.4 (and 2.3 too) the repository ships a Lua
//! passdb/userdb script, `lua/mailtable-auth.lua`, that calls the small HTTP
//! API in [`http`]. Reference: shared/reference/dovecot-auth-protocols.md.
//!
//! Every module here is pure or generic over `Read`/`Write`: the binary
//! supplies the sockets and a backend over the mailtable store through the
//! traits [`DictBackend`] and [`ApiBackend`]. That keeps the wire formats
//! testable on literal bytes and keeps this crate free of the database
//! layer. Cleartext passwords only ever travel in [`Secret`].

pub mod checkpassword;
pub mod dict;
pub mod http;
pub mod secret;
pub mod tabescape;

pub use checkpassword::{CheckpasswordRequest, Mode, Outcome};
pub use dict::{DictBackend, DictSession, Lookup};
pub use http::{Account, ApiBackend, LookupResult, VerifyResult};
pub use secret::Secret;

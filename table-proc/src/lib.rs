//! `table-mailtable`: the OpenSMTPD table backend of mailtable, as a library
//! that knows both wire protocols and nothing about the database.
//!
//! smtpd execs `table-mailtable` once per `table` line and talks to it over
//! a socket on fd 0: the binary imsg protocol v2 up to OpenSMTPD 7.5
//! ([`imsg`]), the line protocol 0.1 from 7.6 on ([`text`]). There is no
//! negotiation, so [`serve()`] tells them apart by the first bytes (`config|`
//! or an OPEN header) and hands every request, in one protocol-neutral
//! shape ([`Request`], answered by an [`Answer`]), to a [`Handler`]. The
//! binary supplies the handler that asks the database; tests supply fakes.
//!
//! The protocol modules are pure `parse_*`/`write_*` functions on literal
//! lines and bytes; only [`serve()`] does I/O. The rules that keep smtpd alive
//! (answer every request exactly once, never a malformed reply, never exit
//! before EOF, drop bytes injected behind a request) are documented in
//! `serve.rs`. Protocol details and sources:
//! `reference/opensmtpd-table-protocol.md` of the project's shared notes.

pub mod answer;
pub mod channel;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod imsg;
pub mod proto;
mod serve;
pub mod signals;
pub mod syslog;
pub mod text;

pub use proto::{Answer, Op, ProtoError, Request, Service};
pub use serve::{serve, serve_with_probe, Handler, MAX_LINE};

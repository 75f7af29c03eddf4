//! The Dovecot dict proxy protocol, server side, read-only.
//!
//! Dovecot's `proxy` dict client (2.3.17+ speaks protocol 3, 2.4 speaks 4)
//! connects to a UNIX socket, sends `H<major>⇥<minor>⇥<value_type>⇥⇥<name>`
//! and then LF-terminated commands; every field is tab-escaped
//! ([`crate::tabescape`]). Dovecot 2.3's `passdb`/`userdb { driver = dict }`
//! uses it for `L`ookups of `shared/passdb/<user>` and `shared/userdb/<user>`
//! and an `I`terate over `shared/userdb/` for `doveadm user '*'`
//! (reference: dovecot-auth-protocols.md §2, §3).
//!
//! Two files with one job each:
//! - [`proto`]: [`parse_command`] turns one line into a [`Command`],
//!   [`write_reply`] turns a [`Reply`] into bytes; pure;
//! - [`session`]: [`DictSession`], the per-connection state machine that
//!   ties them to a [`DictBackend`], and [`serve_connection`], which drives
//!   it over any async byte stream with the 64 KiB line cap, the backend
//!   calls off the runtime's worker threads.
//!
//! Decisions a reader would otherwise question:
//! - **`H` gets no reply.** Dovecot's server does not answer the handshake
//!   and its client takes any line as the answer to the *next* command
//!   (VERIFIED on 2.3.19.1, §2.4 "Pitfall").
//! - **Unknown major version, a command before `H`, a second `H`, an unknown
//!   command letter or an empty line close the connection**, exactly as
//!   Dovecot's own server does (core@2.4.1:src/dict/dict-connection.c
//!   `dict_connection_handshake_args`, src/dict/dict-commands.c
//!   `dict_command_input`). After such a line we cannot know whether the
//!   client waits for a reply, so any answer could desynchronise its FIFO of
//!   pending commands; closing makes it reconnect and retry once.
//! - **A malformed `L`, `I`, `C` or `D` gets an `F` reply** and the
//!   connection goes on: the client waits for exactly one reply (one reply
//!   plus terminator for `I`), so the FIFO stays in step. A malformed
//!   transaction command without a reply (`B S U A T V R`) is logged and
//!   ignored.
//! - **Read-only.** `B S U A T V R` are accepted and ignored; no transaction
//!   state is kept, so a connection's memory does not grow with them.
//!   `C<id>` is answered `F<id>⇥mailtable dict is read-only` and `D<id>`
//!   (2.3 async commit) `AF<id>⇥…`, the shape of Dovecot's own failed
//!   commit (core@2.4.1:src/dict/dict-commands.c `cmd_commit_finish`).
//!   Writers such as quota-clone then log a failed commit; auth never writes.
//! - **Lines over 64 KiB close the connection** (Dovecot's server sets the
//!   same `input_max_size`, core@2.3.19.1:src/dict/dict-connection.c; its
//!   client never sends more, `DICT_CLIENT_MAX_LINE_LENGTH` in
//!   src/lib-dict/dict-client.h). The cut line may have been a lookup that
//!   is owed a reply, and what follows the cut cannot be trusted as a
//!   command boundary, so no reply is attempted.
//! - **Replies are written in request order** without the optional `*<n>` /
//!   `+<n>` async ids and without timing fields; both are optional for the
//!   client (§2.5, §2.6).
//!
//! Checked by hand against Dovecot 2.3.19.1 with
//! `conf/dovecot-dict-auth-mailtable.conf.ext` and a stub backend: `doveadm auth test`
//! (ok, mismatch, unknown, `F` as temp_fail), `doveadm auth lookup`,
//! `doveadm user` (found, unknown), `doveadm user '*'` (iterate) and
//! CRAM-MD5.

pub mod proto;
pub mod session;

pub use proto::{
    parse_command, write_reply, Command, CommitResult, DictError, Lookup, Reply,
    ITERATE_FLAG_NO_VALUE, ITERATE_FLAG_SORT_BY_KEY, ITERATE_FLAG_SORT_BY_VALUE, MAX_LINE_LENGTH,
    READ_ONLY_ERROR, SUPPORTED_MAJOR_VERSIONS,
};
pub use session::{read_line, serve_connection, DictBackend, DictSession, LineRead, IDLE_TIMEOUT};

//! The small HTTP/1.1 API that `lua/mailtable-auth.lua` calls from Dovecot.
//!
//! Dovecot 2.4 dropped checkpassword and the dict passdb/userdb; its Lua
//! passdb/userdb can still make HTTP requests through `dovecot.http.client`
//! (core@2.4.1:src/lib-lua/dlua-dovecot-http.c), and so can 2.3.19.1. This
//! module is the server end, in two files with one job each:
//!
//! - [`api`]: the API itself, pure: token check, routing, body parsing, and
//!   rendering a backend's answer into status and body;
//! - [`server`]: the HTTP around it, on hyper: the head checks that must
//!   come before `100 Continue`, limits, keep-alive, one connection.
//!
//! The decision a reader would question: HTTP at all, for a helper on the
//! same host. Dovecot 2.4 left a Lua script no other way out that needs no
//! extra Lua modules; see the text format below.
//!
//! # The API
//!
//! Every request is `POST` with `Authorization: Bearer <secret>` (compared
//! in constant time; wrong or missing: 401) and its fields (`user`, and
//! `password` for a verify) either in headers or in the body.
//!
//! The header form is what the Lua script sends: `Mailtable-User` and
//! `Mailtable-Password` ([`USER_HEADER`], [`PASSWORD_HEADER`]), values
//! percent-encoded (`%XX` for every byte outside visible ASCII and for `%`;
//! `S3cret pass` is `S3cret%20pass`), no body (`Content-Length: 0`), all
//! within the head limit [`MAX_HEAD`]. A request with a payload costs a
//! round trip on Dovecot 2.3, whose Lua `set_payload` always makes the
//! HTTP client send `Expect: 100-continue` and wait for `100 Continue`
//! (core@2.3.19.1:src/lib-lua/dlua-dovecot-http.c,
//! src/lib-http/http-client-request.c); one without goes out in one write,
//! on 2.3 and 2.4 alike (2.4.1's `set_payload` waits only when its third
//! argument is `true`, core@2.4.1:src/lib-lua/dlua-dovecot-http.c).
//! Headers, not the query string: Dovecot writes the URL into its error and
//! debug messages, while its HTTP client logs no header value.
//!
//! The body form, which older scripts send for everything and the current
//! one for fields too long for the head, has at most [`MAX_BODY`] bytes in
//! one of two formats, chosen by `Content-Type`:
//!
//! - `application/json`: `{"user": "...", "password": "..."}`;
//! - anything else, meant for `text/plain`: TAB-separated `key=value`
//!   fields with tab-escaped values ([`crate::tabescape`]), an optional
//!   final LF: `user=alice@example.org⇥password=secret`. This is the
//!   format the Lua script uses for a body: Dovecot's Lua has no JSON library (the
//!   2.4.1 HTTP client test needs an external `require 'json'`,
//!   core@2.4.1:src/lib-lua/test-lua-http-client.lua), while splitting on
//!   TAB and undoing five escapes is a few lines of Lua. Passwords are
//!   arbitrary bytes in this format; JSON needs UTF-8.
//!
//! | endpoint | fields | 200 | 403 | 404 | 503 |
//! |---|---|---|---|---|---|
//! | `POST /passdb/verify` | `user`, `password` | password correct | wrong password | unknown user | temporary failure |
//! | `POST /passdb/lookup` | `user` | found, fields include `password={SCHEME}hash` | — | unknown user | temporary failure |
//! | `POST /userdb/lookup` | `user` | found: `uid`, `gid`, `home`, `quota_rule`, … | — | unknown user | temporary failure |
//! | `POST /userdb/iterate` | none (any is a 400) | every user a userdb lookup finds | — | — | temporary failure |
//!
//! The response has the format the request's `Content-Type` names (text
//! without one, as in the header form). Its first item is a result token
//! (`ok`, `mismatch`, `unknown`, `tempfail` or `error`), so a 404 from a
//! wrong URL (`error`) can never be taken for "unknown user" and bounce
//! mail; the Lua script requires token *and* status to agree.
//!
//! - text: `ok⇥user=alice@example.org⇥uid=5000⇥gid=5000⇥home=/var/vmail/…\n`,
//!   `mismatch\n`, `unknown\n`, `tempfail⇥error=<text>\n`,
//!   `error⇥error=<text>\n`; the iteration's `ok\n` is followed by one
//!   tab-escaped canonical name a line (`ok\nalice@example.org\n…`);
//! - JSON: `{"result":"ok","user":"alice@example.org","fields":{"uid":"5000",…}}`,
//!   `{"result":"unknown"}`, `{"result":"tempfail","error":"…"}`, …; the
//!   iteration's `{"result":"ok","users":["alice@example.org",…]}`.
//!
//! The iteration is `doveadm user '*'` and every `doveadm -A` command: the
//! script's `auth_userdb_iterate` (Dovecot wants the whole list as one Lua
//! table, core@2.3.19.1 and core@2.4.1: src/auth/db-lua.c). It reads every
//! row, as the dict's iteration does, under the timeout of whole-table
//! reads, and is never answered from the cache; the script's
//! `timeout_msecs` bounds it on Dovecot's side.
//!
//! `user` is the canonical name (DESIGN: `hugo_barrera.io` comes back as
//! `hugo@barrera.io`); field values are strings. Other statuses: 400 bad
//! request or body, 401, 404 unknown endpoint, 405 not POST, 411 chunked
//! body, 413 body too large (all with an `error` body), and hyper's own
//! bare 400 or 431 for a request it cannot parse or a head over the limits.
//! Header-form faults (a missing, repeated or badly encoded field header, or
//! fields in headers and a body) are 400 too; their error text names the
//! header, never its value.
//!
//! Checked by hand against Dovecot 2.3.19.1 (Debian 12, dovecot-auth-lua)
//! with the shipped script and a stub backend: `doveadm auth test` (ok,
//! mismatch, unknown, tempfail), `doveadm auth lookup`, `doveadm user`,
//! CRAM-MD5 through `/passdb/lookup`, LMTP RCPT 250/550/451, API down and
//! wrong token (451, never 550), 20 parallel logins over keep-alive.

pub mod api;
pub mod server;

pub use api::{
    dispatch, dispatch_in_place, error_response, parse_body, parse_header_fields, route, Account,
    ApiBackend, ApiConfig, ApiRequest, Endpoint, FieldHeader, Format, HttpError, LookupResult,
    Response, VerifyResult, MAX_BODY, PASSWORD_HEADER, USER_HEADER,
};
pub use server::{serve_connection, HEADER_TIMEOUT, MAX_HEAD, MAX_HEADERS};

/// Where the shipped config puts the API; the Lua script's default
/// `socket_path` points here.
pub const DEFAULT_LISTEN: &str = "unix:/run/mailtable/http.sock";

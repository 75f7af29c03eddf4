//! The HTTP around [`super::api`]: one connection served by hyper, the
//! request head checked before the body is read, the limits, and the
//! response head.
//!
//! The decision a reader would question: the body is read by hand, late,
//! instead of letting the service take a whole request. hyper sends
//! `HTTP/1.1 100 Continue` the first time the body is polled
//! (hyper 1.x `src/proto/h1/conn.rs`, `Writing::Continue`), so everything
//! that can refuse a request (token, path, method, framing, size) runs on
//! the head alone; only then is the body polled.
//!
//! # HTTP handled
//!
//! - `Expect: 100-continue`: Dovecot 2.3 sends it with every payload
//!   (`http_client_request_set_payload(..., TRUE)` in
//!   core@2.3.19.1:src/lib-lua/dlua-dovecot-http.c; VERIFIED §5.1), 2.4 only
//!   when the script passes `true` as the third argument of `set_payload`.
//!   A request with `Expect` that is refused gets `Connection: close`,
//!   since the client may or may not send the body after all (RFC 9110
//!   §10.1.1); without `Expect` the announced body is read, dropped, and
//!   the connection kept.
//! - Keep-alive: HTTP/1.1 connections persist unless `Connection: close`;
//!   HTTP/1.0 ones only with `Connection: keep-alive` (hyper then answers
//!   in HTTP/1.0 with `Connection: keep-alive`). Pipelined requests are
//!   answered in order. A client that half-closes after its request still
//!   gets the answer.
//! - Bodies by `Content-Length` only. `Transfer-Encoding: chunked` gets 411
//!   with the connection closed. Dovecot never sends chunked: its Lua
//!   payload is a fixed string with a known size.
//! - Request targets in origin form (`/passdb/verify`) and absolute form
//!   (`http://127.0.0.1:8787/passdb/verify`), the latter because Dovecot
//!   2.4's client sends it when told to reach the server through
//!   `proxy_socket_path`, its only way onto a UNIX socket
//!   (core@2.4.1:src/lib-http/http-client-request.c,
//!   `http_client_request_do_submit`); hyper's `Uri::path` is the path of
//!   both. The query string is ignored.
//! - Limits: a head of at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`]
//!   fields (hyper answers 431 beyond), complete within
//!   [`HEADER_TIMEOUT`] of the connection opening or of the previous
//!   response (hyper closes the connection then, without an answer). The
//!   same deadline ends idle keep-alive connections: hyper starts it as
//!   soon as it waits for a head.
//! - Garbage never panics: hyper answers what it cannot parse with a bare
//!   400 and closes; an EOF mid-request just ends the connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::api::{
    dispatch, error_response, parse_body, reason, route, ApiBackend, ApiConfig, Format, HttpError,
    Response,
};
use crate::secret::Secret;
use crate::stop::stopped;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 32;
/// Deadline for a whole request head, and for the next one on a kept-alive
/// connection. A few seconds: Dovecot writes a head in one go.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server needs from a request head. Not `PartialEq`: it holds
/// the `Authorization` value.
#[derive(Debug)]
struct Head {
    /// Method, e.g. `POST`.
    method: String,
    /// Path of the target, query and absolute-form authority dropped.
    path: String,
    /// Body length announced (0 when absent); `None` for chunked.
    content_length: Option<u64>,
    /// `Transfer-Encoding` present: `Some(true)` when it ends in chunked.
    chunked: Option<bool>,
    /// `Expect: 100-continue` from an HTTP/1.1 client.
    expect_continue: bool,
    /// Whether the connection may serve another request after this one.
    keep_alive: bool,
    /// The `Authorization` header value, kept secret.
    authorization: Option<Secret>,
    /// Body format from `Content-Type`.
    format: Format,
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl Head {
    fn of<B: Body>(req: &Request<B>) -> Head {
        let headers = req.headers();
        let http11 = req.version() == Version::HTTP_11;
        let close = has_token(headers, header::CONNECTION, "close");
        let keep_alive = !close && (http11 || has_token(headers, header::CONNECTION, "keep-alive"));
        let chunked = headers
            .contains_key(header::TRANSFER_ENCODING)
            .then(|| has_token(headers, header::TRANSFER_ENCODING, "chunked"));
        Head {
            method: req.method().as_str().to_owned(),
            path: req.uri().path().to_owned(),
            content_length: req.body().size_hint().exact(),
            chunked,
            // An HTTP/1.0 client cannot understand 100 (RFC 9110 §10.1.1).
            expect_continue: http11 && has_token(headers, header::EXPECT, "100-continue"),
            keep_alive,
            authorization: headers
                .get(header::AUTHORIZATION)
                .map(|v| Secret::new(v.as_bytes())),
            format: headers
                .get(header::CONTENT_TYPE)
                .map_or(Format::Text, |v| Format::from_content_type(v.as_bytes())),
        }
    }

    /// A framing problem that ends the request before routing: the body's
    /// end is unknown or it is too large to read.
    fn framing_error(&self, max_body: usize) -> Option<HttpError> {
        match (self.chunked, self.content_length) {
            (Some(true), _) => Some(HttpError::Chunked),
            (Some(false), _) => Some(HttpError::TransferEncoding),
            (None, Some(n)) if n > max_body as u64 => Some(HttpError::BodyTooLarge(max_body)),
            (None, None) => Some(HttpError::Chunked),
            (None, Some(_)) => None,
        }
    }
}

/// Reads the whole body, at most `max` bytes. Polling it is what sends
/// `100 Continue` to a client that asked for it.
async fn read_body(body: Incoming, max: usize) -> io::Result<Bytes> {
    Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(io::Error::other)
}

/// Answers one request. An `Err` (the body ended early, the client went
/// away) makes hyper drop the connection without a response: there is no
/// one left to read it.
async fn answer<B>(
    req: Request<Incoming>,
    api: Arc<ApiConfig>,
    backend: B,
) -> io::Result<HttpResponse>
where
    B: ApiBackend + Send + 'static,
{
    let head = Head::of(&req);
    let body = req.into_body();
    if let Some(e) = head.framing_error(api.max_body) {
        tracing::warn!("api: {} {}: {e}", head.method, head.path);
        return Ok(to_hyper(&error_response(&e, head.format, true)));
    }
    let routed = route(&head.method, &head.path, head.authorization.as_ref(), &api);
    let endpoint = match routed {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::warn!("api: {} {}: {e}", head.method, head.path);
            // The client may hold the body back (it asked to continue), or
            // send it anyway; only a body announced without Expect can be
            // skipped safely.
            let skip = !head.expect_continue && head.keep_alive;
            if skip {
                read_body(body, api.max_body).await?;
            }
            return Ok(to_hyper(&error_response(&e, head.format, !skip)));
        }
    };
    let bytes = read_body(body, api.max_body).await?;
    let format = head.format;
    let mut response = match parse_body(endpoint, format, &bytes) {
        Ok(request) => tokio::task::spawn_blocking(move || {
            let mut backend = backend;
            dispatch(endpoint, &request, &mut backend, format)
        })
        .await
        .map_err(io::Error::other)?,
        Err(e) => {
            tracing::warn!("api: {}: {e}", head.path);
            error_response(&e, format, false)
        }
    };
    wipe(bytes);
    response.close |= !head.keep_alive;
    Ok(to_hyper(&response))
}

/// The body held a cleartext password: zero it when the bytes are ours
/// alone. When they still share hyper's read buffer they are out of reach
/// (the same best effort as [`Secret`]'s).
fn wipe(bytes: Bytes) {
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.fill(0);
    }
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// The hyper response for `r`: `Content-Type`, `Content-Length`, the
/// status's extra fields, `Connection: close` when the connection ends
/// (hyper closes after writing a response that carries it), and the RFC
/// 9110 reason phrase.
fn to_hyper(r: &Response) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(r.body.clone())));
    *response.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.format.content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    for (name, value) in r.extra_headers() {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if r.close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let phrase = reason(r.status);
    if phrase != "Unknown" {
        response
            .extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(phrase.as_bytes()));
    }
    response
}

/// Serves one connection until the client closes it, a response closes
/// it, the header deadline passes, or `stop` turns true (then a request
/// being answered still gets its response, and an idle connection ends at
/// once).
pub async fn serve_connection<I, B>(
    io: I,
    api: Arc<ApiConfig>,
    header_timeout: Duration,
    backend: B,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: ApiBackend + Clone + Send + 'static,
{
    let service = service_fn(move |req| answer(req, Arc::clone(&api), backend.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .title_case_headers(true)
        .half_close(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    ended.map_err(io::Error::other)
}

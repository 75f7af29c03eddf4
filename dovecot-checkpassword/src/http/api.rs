//! The API of `lua/mailtable-auth.lua`, without the HTTP: who may call
//! (the bearer token), which endpoint a path names, how a request body
//! becomes an [`ApiRequest`], and how a backend's answer becomes a status
//! and a body ([`Response`]). Everything here is a pure function over bytes
//! and strings, tested on literal bodies; the hyper glue that feeds it is
//! [`super::server`].
//!
//! The decision a reader would question: every response body, refusals
//! included, starts with a result token (`ok`, `mismatch`, `unknown`,
//! `tempfail`, `error`), although the status already says most of it. A
//! 404 from a wrong URL (`error`) must never be taken for "unknown user"
//! and bounce mail; the Lua script requires token *and* status to agree.

use serde::Deserialize;

use crate::secret::Secret;
use crate::tabescape;
use mailtable_core::logging::{left_out_note, Throttle};

/// Largest request body accepted: the longest user name and password
/// Dovecot's auth protocol carries (one line of at most 16 KiB,
/// AUTH_CLIENT_MAX_LINE_LENGTH in core@2.3.19.1:src/lib-auth/
/// auth-client-interface.h, the SASL response in base64 on it: some 12 KiB
/// of password), each byte tab-escaped into at most two, with room to
/// spare. A longer one would be refused as too large, which the Lua script
/// must report as a temporary failure, where it is a wrong password.
pub const MAX_BODY: usize = 32 * 1024;

/// Header carrying the user name in the header form of a request (see
/// [`parse_header_fields`]).
pub const USER_HEADER: &str = "mailtable-user";
/// Header carrying the password in the header form of a request.
pub const PASSWORD_HEADER: &str = "mailtable-password";

/// A found user: the canonical name and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Canonical user name (`alice@example.org`).
    pub user: String,
    /// passdb: extra fields (`userdb_uid`, …; `password={SCHEME}hash` for a
    /// lookup). userdb: `uid`, `gid`, `home`, `quota_rule`, ….
    pub fields: Vec<(String, String)>,
}

/// The answer to a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyResult {
    /// Password correct.
    Ok(Account),
    /// Wrong password.
    Mismatch,
    /// No such user.
    Unknown,
    /// Database trouble; the text is logged by Dovecot.
    TempFail(String),
}

/// The answer to a passdb or userdb lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// Found.
    Found(Account),
    /// No such user.
    Unknown,
    /// Database trouble; the text is logged by Dovecot.
    TempFail(String),
}

/// What the API needs from the database. Implemented by the binary over
/// the mailtable store; found, not found, mismatch and error stay distinct.
pub trait ApiBackend {
    /// Checks `password` for `user` (login with a plaintext mechanism).
    fn passdb_verify(&mut self, user: &str, password: &Secret) -> VerifyResult;
    /// passdb lookup without a password (`doveadm auth lookup`, proxying,
    /// non-plaintext mechanisms): the fields must carry
    /// `password={SCHEME}hash`, or Dovecot treats the user as having no
    /// password (see `lua/mailtable-auth.lua`).
    fn passdb_lookup(&mut self, user: &str) -> LookupResult;
    /// userdb lookup (LMTP, `doveadm user`, after login).
    fn userdb_lookup(&mut self, user: &str) -> LookupResult;
    /// Every user a userdb lookup finds, by canonical name: Dovecot's user
    /// iteration (`doveadm user '*'`, `doveadm -A`). An `Err` is a
    /// temporary failure, its text logged by Dovecot: never an empty or
    /// partial list, which doveadm would take for all the users there are.
    fn userdb_iterate(&mut self) -> Result<Vec<String>, String>;
    /// The answer of [`ApiBackend::passdb_lookup`] or
    /// [`ApiBackend::userdb_lookup`] (by `endpoint`) when it can be given
    /// without waiting on the database (a cached answer known to be
    /// fresh); `None`: the method is called on a thread that may wait.
    /// Default: `None`.
    fn lookup_in_place(&mut self, endpoint: Endpoint, user: &str) -> Option<LookupResult> {
        let _ = (endpoint, user);
        None
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The bearer token callers must present. An empty secret matches no
    /// request: the API fails closed.
    pub secret: Secret,
    /// Body size cap; at most [`MAX_BODY`] is sensible.
    pub max_body: usize,
}

impl ApiConfig {
    /// Settings with `secret` and the default body cap.
    pub fn new(secret: Secret) -> Self {
        ApiConfig {
            secret,
            max_body: MAX_BODY,
        }
    }
}

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /passdb/verify`.
    PassdbVerify,
    /// `POST /passdb/lookup`.
    PassdbLookup,
    /// `POST /userdb/lookup`.
    UserdbLookup,
    /// `POST /userdb/iterate`: every user, without fields (the script's
    /// `auth_userdb_iterate`).
    UserdbIterate,
}

impl Endpoint {
    /// The endpoint served at `path`.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/passdb/verify" => Some(Endpoint::PassdbVerify),
            "/passdb/lookup" => Some(Endpoint::PassdbLookup),
            "/userdb/lookup" => Some(Endpoint::UserdbLookup),
            "/userdb/iterate" => Some(Endpoint::UserdbIterate),
            _ => None,
        }
    }
}

/// Body and response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TAB-separated `key=value`, tab-escaped.
    Text,
    /// JSON.
    Json,
}

impl Format {
    /// The format a `Content-Type` value asks for: JSON for
    /// `application/json` (parameters and case ignored), text otherwise.
    pub fn from_content_type(value: &[u8]) -> Format {
        let media = value.split(|&b| b == b';').next().unwrap_or_default();
        if media.trim_ascii().eq_ignore_ascii_case(b"application/json") {
            Format::Json
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Why a request is refused. [`HttpError::status`] gives the status code.
///
/// Requests hyper itself cannot parse (bad request line or header, bad or
/// conflicting `Content-Length`, a head over the limits) never reach this
/// module: hyper answers them with a bare 400 or 431 and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// `Transfer-Encoding: chunked`.
    #[error("chunked request bodies are not supported, send Content-Length")]
    Chunked,
    /// Another transfer coding.
    #[error("unsupported transfer coding")]
    TransferEncoding,
    /// Body larger than the cap.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// Missing or wrong bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Unknown path.
    #[error("no such endpoint")]
    NoEndpoint,
    /// Not `POST`.
    #[error("method not allowed, use POST")]
    MethodNotAllowed,
    /// The body does not hold what the endpoint needs.
    #[error("bad request body: {0}")]
    BadBody(String),
    /// The header form's fields are malformed. The text names the header
    /// and the fault, never the value (a password).
    #[error("bad request header: {0}")]
    BadHeader(String),
}

impl HttpError {
    /// The response status for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::TransferEncoding | HttpError::BadBody(_) | HttpError::BadHeader(_) => 400,
            HttpError::Unauthorized => 401,
            HttpError::NoEndpoint => 404,
            HttpError::MethodNotAllowed => 405,
            HttpError::Chunked => 411,
            HttpError::BodyTooLarge(_) => 413,
        }
    }
}

/// Checks the bearer token, the path and the method.
///
/// The token is checked first, so a caller without it learns nothing about
/// which paths exist. `path` is the path of the request target without the
/// query; for the absolute form (`http://127.0.0.1:8787/passdb/verify`)
/// the caller has already dropped scheme and authority.
pub fn route(
    method: &str,
    path: &str,
    authorization: Option<&Secret>,
    config: &ApiConfig,
) -> Result<Endpoint, HttpError> {
    if !authorized(authorization, &config.secret) {
        return Err(HttpError::Unauthorized);
    }
    let endpoint = Endpoint::from_path(path).ok_or(HttpError::NoEndpoint)?;
    if method != "POST" {
        return Err(HttpError::MethodNotAllowed);
    }
    Ok(endpoint)
}

/// Whether `header` is `Bearer <secret>` (scheme case-insensitive, RFC 9110
/// §11.1), compared in constant time. An empty configured secret never
/// matches.
fn authorized(header: Option<&Secret>, secret: &Secret) -> bool {
    let Some(header) = header else {
        return false;
    };
    if secret.is_empty() {
        return false;
    }
    let value = header.expose().trim_ascii();
    let Some((scheme, token)) = value
        .iter()
        .position(|&b| b == b' ')
        .map(|i| (&value[..i], value[i + 1..].trim_ascii()))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer") && secret.ct_eq(token)
}

/// A decoded request body.
#[derive(Debug)]
pub struct ApiRequest {
    /// The user name.
    pub user: String,
    /// The password, for `/passdb/verify`.
    pub password: Option<Secret>,
}

/// The JSON body. Not `Debug`: it holds the cleartext password until it is
/// moved into a [`Secret`].
#[derive(Deserialize)]
struct JsonBody {
    user: String,
    #[serde(default)]
    password: Option<String>,
}

/// Decodes `body` for `endpoint`. Unknown fields are ignored (room for
/// later additions); a verify without `password`, an empty `user` or a
/// repeated field is a bad request.
pub fn parse_body(
    endpoint: Endpoint,
    format: Format,
    body: &[u8],
) -> Result<ApiRequest, HttpError> {
    let (user, password) = match format {
        Format::Json => {
            let parsed: JsonBody = serde_json::from_slice(body).map_err(json_error)?;
            (parsed.user, parsed.password.map(Secret::from))
        }
        Format::Text => parse_text_body(body)?,
    };
    if user.is_empty() {
        return Err(HttpError::BadBody("empty user".into()));
    }
    let password = match endpoint {
        Endpoint::PassdbVerify => {
            Some(password.ok_or_else(|| HttpError::BadBody("missing password".into()))?)
        }
        // A lookup never needs the password; drop it rather than carry it.
        Endpoint::PassdbLookup | Endpoint::UserdbLookup | Endpoint::UserdbIterate => None,
    };
    Ok(ApiRequest { user, password })
}

/// A JSON body's fault, without serde's text: a type error quotes the
/// value (`invalid type: integer `987654321``), and the value may be the
/// password. Where and what kind, which is enough to fix the client.
fn json_error(e: serde_json::Error) -> HttpError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "want an object with the string fields user (and password)",
        Category::Syntax => "syntax error",
        Category::Eof => "unexpected end",
        Category::Io => "unreadable",
    };
    HttpError::BadBody(format!(
        "invalid JSON at line {}, column {}: {what}",
        e.line(),
        e.column()
    ))
}

fn parse_text_body(body: &[u8]) -> Result<(String, Option<Secret>), HttpError> {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let mut user = None;
    let mut password = None;
    for item in body.split(|&b| b == b'\t') {
        if item.is_empty() {
            continue;
        }
        let eq = item
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| HttpError::BadBody("field without '='".into()))?;
        let (key, value) = (&item[..eq], &item[eq + 1..]);
        let slot_is_empty = match key {
            b"user" => user.is_none(),
            b"password" => password.is_none(),
            _ => continue,
        };
        if !slot_is_empty {
            return Err(HttpError::BadBody(format!(
                "repeated field {}",
                String::from_utf8_lossy(key)
            )));
        }
        let value = tabescape::unescape(value);
        if key == b"user" {
            user = Some(user_name(value));
        } else {
            password = Some(Secret::new(value));
        }
    }
    let user = user.ok_or_else(|| HttpError::BadBody("missing user".into()))?;
    Ok((user, password))
}

/// A user name as sent. One that is not UTF-8 (a Latin-1 login, with
/// Dovecot's `auth_username_chars` empty) is nobody's: read with U+FFFD
/// for its bad bytes, which no address holds, it is looked up and found
/// unknown (404, or a dummy check and 403 for a password check), as
/// checkpassword and the dict answer it, not refused as a bad request
/// (which the Lua script must take for a temporary failure).
fn user_name(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The value of a header-form field header, as the server found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldHeader<'a> {
    /// Not sent.
    Absent,
    /// Sent once, with these bytes.
    Once(&'a [u8]),
    /// Sent more than once: ambiguous, refused.
    Repeated,
}

/// Decodes the header form of a request: the fields in the
/// [`USER_HEADER`] and [`PASSWORD_HEADER`] headers, percent-encoded
/// (`%XX` for every byte outside visible ASCII, and for `%` itself), and
/// no body.
///
/// This form exists because Dovecot 2.3's Lua `set_payload` always asks
/// its HTTP client to wait for `100 Continue` before the body
/// (core@2.3.19.1:src/lib-lua/dlua-dovecot-http.c), while a request
/// without a payload goes out in one write with `Content-Length: 0` and no
/// `Expect` (core@2.3.19.1:src/lib-http/http-client-request.c,
/// `http_client_request_send_real`). Headers rather than the query: a URL
/// shows up in Dovecot's error and debug messages, a header value does not.
///
/// The value must be visible ASCII only, so a password survives hyper's
/// trimming of surrounding white space and cannot carry a control byte; a
/// `%` must start two hex digits. Error texts name the header, never its
/// value. The same rules as [`parse_body`] follow: an empty user is
/// refused, verify needs a password, a lookup drops one.
pub fn parse_header_fields(
    endpoint: Endpoint,
    user: FieldHeader<'_>,
    password: FieldHeader<'_>,
) -> Result<ApiRequest, HttpError> {
    let user = match decode_field(USER_HEADER, user)? {
        Some(u) => user_name(u),
        None => return Err(HttpError::BadHeader(format!("missing {USER_HEADER}"))),
    };
    if user.is_empty() {
        return Err(HttpError::BadHeader("empty user".into()));
    }
    let password = decode_field(PASSWORD_HEADER, password)?.map(Secret::new);
    let password = match endpoint {
        Endpoint::PassdbVerify => Some(
            password.ok_or_else(|| HttpError::BadHeader(format!("missing {PASSWORD_HEADER}")))?,
        ),
        Endpoint::PassdbLookup | Endpoint::UserdbLookup | Endpoint::UserdbIterate => None,
    };
    Ok(ApiRequest { user, password })
}

/// The request of `endpoint`, from the body or the field headers, as the
/// request carries it ([`parse_body`], [`parse_header_fields`]). Fields in
/// both places are refused rather than one picked. The iteration takes no
/// fields at all: any is a client's mistake, refused.
pub fn parse_request(
    endpoint: Endpoint,
    format: Format,
    body: &[u8],
    user: FieldHeader<'_>,
    password: FieldHeader<'_>,
) -> Result<ApiRequest, HttpError> {
    let absent = |h: &FieldHeader<'_>| matches!(h, FieldHeader::Absent);
    let header_form = !absent(&user) || !absent(&password);
    match (endpoint, header_form, body.is_empty()) {
        (Endpoint::UserdbIterate, false, true) => Ok(ApiRequest {
            user: String::new(),
            password: None,
        }),
        (Endpoint::UserdbIterate, _, _) => {
            Err(HttpError::BadBody("/userdb/iterate takes no fields".into()))
        }
        (_, false, _) => parse_body(endpoint, format, body),
        (_, true, true) => parse_header_fields(endpoint, user, password),
        (_, true, false) => Err(HttpError::BadHeader(
            "fields in both headers and body".into(),
        )),
    }
}

/// Percent-decodes one field header (`None` when absent).
fn decode_field(name: &str, value: FieldHeader<'_>) -> Result<Option<Vec<u8>>, HttpError> {
    let value = match value {
        FieldHeader::Absent => return Ok(None),
        FieldHeader::Repeated => return Err(HttpError::BadHeader(format!("repeated {name}"))),
        FieldHeader::Once(v) => v,
    };
    let bad = || HttpError::BadHeader(format!("{name} is not percent-encoded"));
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => {
                let mut hex = || bytes.next().and_then(|&h| (h as char).to_digit(16));
                let (hi, lo) = (hex().ok_or_else(bad)?, hex().ok_or_else(bad)?);
                // Two hex digits: at most 0xff.
                out.push((hi * 16 + lo) as u8);
            }
            b'!'..=b'~' => out.push(b),
            _ => return Err(bad()),
        }
    }
    Ok(Some(out))
}

/// Runs `request` against the backend and renders the answer.
pub fn dispatch(
    endpoint: Endpoint,
    request: &ApiRequest,
    backend: &mut impl ApiBackend,
    format: Format,
) -> Response {
    let user = request.user.as_str();
    let answer = match (endpoint, &request.password) {
        (Endpoint::PassdbVerify, Some(password)) => match backend.passdb_verify(user, password) {
            VerifyResult::Ok(a) => Answer::Ok(a),
            VerifyResult::Mismatch => Answer::Mismatch,
            VerifyResult::Unknown => Answer::Unknown,
            VerifyResult::TempFail(e) => Answer::TempFail(e),
        },
        // parse_body guarantees a password for verify; should it ever be
        // missing, that is a bad request, never a login.
        (Endpoint::PassdbVerify, None) => {
            return error_response(
                &HttpError::BadBody("missing password".into()),
                format,
                false,
            )
        }
        (Endpoint::PassdbLookup, _) => backend.passdb_lookup(user).into(),
        (Endpoint::UserdbLookup, _) => backend.userdb_lookup(user).into(),
        (Endpoint::UserdbIterate, _) => match backend.userdb_iterate() {
            Ok(users) => Answer::List(users),
            Err(e) => Answer::TempFail(e),
        },
    };
    logged(endpoint, user, answer).render(format)
}

/// [`dispatch`] for a lookup the backend can answer without waiting on the
/// database ([`ApiBackend::lookup_in_place`]), the same response; `None`
/// when it cannot (and always for a password check): the caller then
/// runs [`dispatch`] where waiting is allowed. The iteration is never
/// cached: it always waits.
pub fn dispatch_in_place(
    endpoint: Endpoint,
    request: &ApiRequest,
    backend: &mut impl ApiBackend,
    format: Format,
) -> Option<Response> {
    if matches!(endpoint, Endpoint::PassdbVerify | Endpoint::UserdbIterate) {
        return None;
    }
    let user = request.user.as_str();
    let answer = backend.lookup_in_place(endpoint, user)?.into();
    Some(logged(endpoint, user, answer).render(format))
}

/// Failed API requests, logged at most once a second.
static FAILURES: Throttle = Throttle::new();

/// `answer`, after logging it: a temporary failure as an error (at most
/// one line a second), the rest for debugging.
fn logged(endpoint: Endpoint, user: &str, answer: Answer) -> Answer {
    if let Answer::TempFail(e) = &answer {
        match FAILURES.admit(std::time::Instant::now()) {
            Some(n) => {
                tracing::error!(
                    "api: {endpoint:?} for {user:?} failed: {e}{}",
                    left_out_note(n)
                )
            }
            None => tracing::debug!("api: {endpoint:?} for {user:?} failed: {e}"),
        }
    } else if let Answer::List(users) = &answer {
        tracing::debug!("api: {endpoint:?}: ok, {} users", users.len());
    } else {
        tracing::debug!("api: {endpoint:?} for {user:?}: {}", answer.token());
    }
    answer
}

/// The API's answers, for rendering.
enum Answer {
    Ok(Account),
    /// The iteration's users.
    List(Vec<String>),
    Mismatch,
    Unknown,
    TempFail(String),
}

impl From<LookupResult> for Answer {
    fn from(r: LookupResult) -> Self {
        match r {
            LookupResult::Found(a) => Answer::Ok(a),
            LookupResult::Unknown => Answer::Unknown,
            LookupResult::TempFail(e) => Answer::TempFail(e),
        }
    }
}

impl Answer {
    fn token(&self) -> &'static str {
        match self {
            Answer::Ok(_) | Answer::List(_) => "ok",
            Answer::Mismatch => "mismatch",
            Answer::Unknown => "unknown",
            Answer::TempFail(_) => "tempfail",
        }
    }

    fn status(&self) -> u16 {
        match self {
            Answer::Ok(_) | Answer::List(_) => 200,
            Answer::Mismatch => 403,
            Answer::Unknown => 404,
            Answer::TempFail(_) => 503,
        }
    }

    fn render(&self, format: Format) -> Response {
        let token = self.token();
        let body = match (format, self) {
            (Format::Text, Answer::Ok(account)) => {
                let mut out = token.as_bytes().to_vec();
                tabescape::push_field(&mut out, "user", account.user.as_bytes());
                for (k, v) in usable_fields(account) {
                    tabescape::push_field(&mut out, k, v.as_bytes());
                }
                out.push(b'\n');
                out
            }
            // The token on a line of its own, then one tab-escaped name a
            // line: the names come from the database, an escape keeps
            // any byte from ending a line early.
            (Format::Text, Answer::List(users)) => {
                let mut out = format!("{token}\n").into_bytes();
                for user in users {
                    tabescape::escape_into(&mut out, user.as_bytes());
                    out.push(b'\n');
                }
                out
            }
            (Format::Text, Answer::TempFail(e)) => text_error(token, e),
            (Format::Text, _) => format!("{token}\n").into_bytes(),
            (Format::Json, Answer::Ok(account)) => {
                let fields: serde_json::Map<String, serde_json::Value> = usable_fields(account)
                    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v.as_str())))
                    .collect();
                json_bytes(serde_json::json!({
                    "result": token,
                    "user": account.user,
                    "fields": fields,
                }))
            }
            (Format::Json, Answer::List(users)) => {
                json_bytes(serde_json::json!({ "result": token, "users": users }))
            }
            (Format::Json, Answer::TempFail(e)) => {
                json_bytes(serde_json::json!({ "result": token, "error": e }))
            }
            (Format::Json, _) => json_bytes(serde_json::json!({ "result": token })),
        };
        Response::new(self.status(), format, body)
    }
}

/// Fields safe to send: keys Dovecot can parse (see
/// [`tabescape::is_valid_key`]), and never a second `user`, which would
/// contradict the canonical name.
fn usable_fields(account: &Account) -> impl Iterator<Item = (&str, &String)> {
    account.fields.iter().filter_map(|(k, v)| {
        if k != "user" && tabescape::is_valid_key(k) {
            Some((k.as_str(), v))
        } else {
            tracing::warn!("api: dropping field {k:?} of {:?}", account.user);
            None
        }
    })
}

fn text_error(token: &str, error: &str) -> Vec<u8> {
    let mut out = token.as_bytes().to_vec();
    tabescape::push_field(&mut out, "error", error.as_bytes());
    out.push(b'\n');
    out
}

fn json_bytes(value: serde_json::Value) -> Vec<u8> {
    let mut out = value.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// A response about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body format (sets `Content-Type`).
    pub format: Format,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Whether to send `Connection: close` and close afterwards.
    pub close: bool,
}

impl Response {
    /// A response that keeps the connection open.
    pub fn new(status: u16, format: Format, body: Vec<u8>) -> Self {
        Response {
            status,
            format,
            body,
            close: false,
        }
    }
}

/// The response for a refused request, in the request's format.
pub fn error_response(error: &HttpError, format: Format, close: bool) -> Response {
    let message = error.to_string();
    let body = match format {
        Format::Text => text_error("error", &message),
        Format::Json => json_bytes(serde_json::json!({ "result": "error", "error": message })),
    };
    Response {
        status: error.status(),
        format,
        body,
        close,
    }
}

/// The reason phrase of `status` (RFC 9110 §15 names; 413 is "Content
/// Too Large" there, "Payload Too Large" in older RFCs).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

impl Response {
    /// Header fields the status calls for besides `Content-Type` and
    /// `Content-Length`: `Cache-Control` always (a password check must
    /// never be replayed from a cache), the challenge of a 401 (RFC 9110
    /// §11.6.1) and the `Allow` of a 405 (§15.5.6).
    pub fn extra_headers(&self) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![("Cache-Control", "no-store")];
        match self.status {
            401 => headers.push(("WWW-Authenticate", "Bearer")),
            405 => headers.push(("Allow", "POST")),
            _ => {}
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cret-token";

    // ---- route

    fn routed(
        method: &str,
        path: &str,
        auth: Option<&str>,
        secret: &str,
    ) -> Result<Endpoint, HttpError> {
        let auth = auth.map(Secret::new);
        route(
            method,
            path,
            auth.as_ref(),
            &ApiConfig::new(Secret::new(secret)),
        )
    }

    #[test]
    fn route_checks_token_then_path_then_method() {
        assert_eq!(
            routed(
                "POST",
                "/userdb/lookup",
                Some("bearer  s3cret-token "),
                SECRET
            ),
            Ok(Endpoint::UserdbLookup)
        );
        assert_eq!(
            routed("POST", "/userdb/lookup", None, SECRET),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed("POST", "/nope", Some("Bearer wrong"), SECRET),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed("POST", "/userdb/lookup", Some("Basic s3cret-token"), SECRET),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed("POST", "/nope", Some("Bearer s3cret-token"), SECRET),
            Err(HttpError::NoEndpoint)
        );
        assert_eq!(
            routed("GET", "/passdb/lookup", Some("Bearer s3cret-token"), SECRET),
            Err(HttpError::MethodNotAllowed)
        );
    }

    #[test]
    fn empty_secret_fails_closed() {
        assert_eq!(
            routed("POST", "/userdb/lookup", Some("Bearer "), ""),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            routed("POST", "/userdb/lookup", Some("Bearer"), ""),
            Err(HttpError::Unauthorized)
        );
    }

    #[test]
    fn endpoints_by_path() {
        assert_eq!(
            Endpoint::from_path("/passdb/verify"),
            Some(Endpoint::PassdbVerify)
        );
        assert_eq!(
            Endpoint::from_path("/passdb/lookup"),
            Some(Endpoint::PassdbLookup)
        );
        assert_eq!(
            Endpoint::from_path("/userdb/lookup"),
            Some(Endpoint::UserdbLookup)
        );
        assert_eq!(
            Endpoint::from_path("/userdb/iterate"),
            Some(Endpoint::UserdbIterate)
        );
        assert_eq!(Endpoint::from_path("/passdb/iterate"), None);
        assert_eq!(Endpoint::from_path("/a://b"), None);
        assert_eq!(Endpoint::from_path("/"), None);
    }

    #[test]
    fn content_type_picks_format() {
        assert_eq!(
            Format::from_content_type(b"Application/JSON; charset=utf-8"),
            Format::Json
        );
        assert_eq!(Format::from_content_type(b"text/plain"), Format::Text);
        assert_eq!(Format::from_content_type(b""), Format::Text);
    }

    // ---- parse_body

    #[test]
    fn text_body_is_unescaped() {
        let r = parse_body(
            Endpoint::PassdbVerify,
            Format::Text,
            b"user=alice@example.org\tpassword=p\x01tw\x01nd\xff\n",
        )
        .expect("valid body");
        assert_eq!(r.user, "alice@example.org");
        assert_eq!(
            r.password.as_ref().map(|p| p.expose().to_vec()),
            Some(b"p\tw\nd\xff".to_vec())
        );
    }

    #[test]
    fn json_body() {
        let r = parse_body(
            Endpoint::PassdbVerify,
            Format::Json,
            br#"{"user":"alice@example.org","password":"pw","service":"imap"}"#,
        )
        .expect("valid body");
        assert_eq!(r.user, "alice@example.org");
        assert_eq!(
            r.password.as_ref().map(|p| p.expose().to_vec()),
            Some(b"pw".to_vec())
        );
        let r = parse_body(Endpoint::UserdbLookup, Format::Json, br#"{"user":"bob"}"#)
            .expect("valid body");
        assert!(r.password.is_none());
    }

    /// The 400's text and serve's log line come from the error: a JSON
    /// password of the wrong type must not be in it.
    #[test]
    fn a_json_error_never_quotes_a_value() {
        for body in [
            &br#"{"user":"alice@example.org","password":987654321}"#[..],
            br#"{"user":"alice@example.org","password":["987654321"]}"#,
            br#"{"user":987654321,"password":"987654321"}"#,
            br#"{"user":"alice@example.org","password":"987654321""#,
        ] {
            let e = parse_body(Endpoint::PassdbVerify, Format::Json, body)
                .map(|_| ())
                .expect_err("refused")
                .to_string();
            assert!(!e.contains("987654321"), "{e}");
            assert!(
                e.starts_with("bad request body: invalid JSON at line 1, column "),
                "{e}"
            );
        }
    }

    #[test]
    fn lookups_drop_a_password() {
        let r = parse_body(Endpoint::PassdbLookup, Format::Text, b"user=a\tpassword=x")
            .expect("valid body");
        assert!(r.password.is_none());
    }

    /// A user name that is not UTF-8 is nobody's: it reaches the lookup,
    /// which finds it unknown, in both forms of a request.
    #[test]
    fn a_user_name_not_utf8_is_looked_up() {
        let r = parse_header_fields(Endpoint::UserdbLookup, Once(b"j%FCrgen@x.org"), Absent)
            .expect("looked up");
        assert_eq!(r.user, "j\u{fffd}rgen@x.org");
        let r = parse_body(
            Endpoint::UserdbLookup,
            Format::Text,
            b"user=j\xfcrgen@x.org",
        )
        .expect("looked up");
        assert_eq!(r.user, "j\u{fffd}rgen@x.org");
        // U+FFFD is in no address, in the local part or the domain.
        for name in [&r.user[..], "jurgen@b\u{fffd}.org", "j\u{fffd}rgen_x.org"] {
            assert!(
                mailtable_core::delivery::parse_login(name).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_bodies() {
        for (endpoint, format, body) in [
            (Endpoint::PassdbVerify, Format::Text, &b"user=alice"[..]),
            (Endpoint::UserdbLookup, Format::Text, b"password=x"),
            (Endpoint::UserdbLookup, Format::Text, b"user="),
            (Endpoint::UserdbLookup, Format::Text, b"user=a\tuser=b"),
            (Endpoint::UserdbLookup, Format::Text, b"user"),
            (Endpoint::UserdbLookup, Format::Text, b""),
            (Endpoint::UserdbLookup, Format::Json, b"{"),
            (Endpoint::UserdbLookup, Format::Json, br#"{"user":1}"#),
            (Endpoint::PassdbVerify, Format::Json, br#"{"user":"a"}"#),
        ] {
            assert!(
                matches!(
                    parse_body(endpoint, format, body),
                    Err(HttpError::BadBody(_))
                ),
                "{body:?}"
            );
        }
    }

    // ---- parse_header_fields

    use FieldHeader::{Absent, Once, Repeated};

    #[test]
    fn header_fields_are_percent_decoded() {
        // What lua/mailtable-auth.lua sends for a password with a space,
        // a TAB, a '%', a non-ASCII and a control byte.
        let r = parse_header_fields(
            Endpoint::PassdbVerify,
            Once(b"alice@example.org"),
            Once(b"S3cret%20p%09a%25s%C3%A9%01,;=\\"),
        )
        .expect("valid fields");
        assert_eq!(r.user, "alice@example.org");
        assert_eq!(
            r.password.as_ref().map(|p| p.expose().to_vec()),
            Some(b"S3cret p\ta%s\xc3\xa9\x01,;=\\".to_vec())
        );
        let r = parse_header_fields(Endpoint::UserdbLookup, Once(b"hugo%5Fbarrera.io"), Absent)
            .expect("valid fields");
        assert_eq!(r.user, "hugo_barrera.io");
        assert!(r.password.is_none());
        // A lookup never keeps a password it was sent.
        let r = parse_header_fields(Endpoint::PassdbLookup, Once(b"a"), Once(b"x"))
            .expect("valid fields");
        assert!(r.password.is_none());
        // An empty password is a password (the backend says mismatch).
        let r = parse_header_fields(Endpoint::PassdbVerify, Once(b"a"), Once(b""))
            .expect("valid fields");
        assert_eq!(r.password.map(|p| p.expose().len()), Some(0));
    }

    #[test]
    fn bad_header_fields_never_echo_the_value() {
        for (endpoint, user, password) in [
            (Endpoint::PassdbVerify, Once(&b"alice"[..]), Absent),
            (Endpoint::UserdbLookup, Absent, Once(b"hunter2")),
            (Endpoint::UserdbLookup, Once(b""), Absent),
            (Endpoint::UserdbLookup, Repeated, Absent),
            (Endpoint::PassdbVerify, Once(b"a"), Repeated),
            (Endpoint::PassdbVerify, Once(b"a"), Once(b"hunter2%")),
            (Endpoint::PassdbVerify, Once(b"a"), Once(b"hunter2%4")),
            (Endpoint::PassdbVerify, Once(b"a"), Once(b"hunter2%g0")),
            (Endpoint::PassdbVerify, Once(b"a"), Once(b"hunter 2")),
            (Endpoint::PassdbVerify, Once(b"a"), Once(b"hunter2\t")),
            (Endpoint::PassdbVerify, Once(b"a"), Once(b"hunter2\xe9")),
        ] {
            let e = parse_header_fields(endpoint, user, password)
                .expect_err("malformed fields are refused");
            assert!(matches!(e, HttpError::BadHeader(_)), "{e:?}");
            assert_eq!(e.status(), 400);
            let text = e.to_string();
            assert!(!text.contains("hunter"), "{text}");
        }
    }

    // ---- dispatch and rendering

    #[test]
    fn error_bodies_carry_the_error_token() {
        let r = error_response(&HttpError::Unauthorized, Format::Json, true);
        assert_eq!((r.status, r.close), (401, true));
        assert_eq!(
            r.body,
            b"{\"error\":\"missing or wrong bearer token\",\"result\":\"error\"}\n".to_vec()
        );
        assert!(r.extra_headers().contains(&("WWW-Authenticate", "Bearer")));
        let r = error_response(&HttpError::NoEndpoint, Format::Text, false);
        assert_eq!(r.body, b"error\terror=no such endpoint\n".to_vec());
        assert_eq!(reason(413), "Content Too Large");
    }

    /// A lookup answered in place is rendered as the lookup proper is, in
    /// both formats; a password check never is, nor a lookup the backend
    /// declines to answer in place.
    #[test]
    fn lookups_answered_in_place_get_the_same_response() {
        /// Knows `bob` (userdb) and nobody in passdb; declines passdb
        /// lookups in place (and would answer anything else, a password
        /// check too, with its userdb answer); counts the calls of the
        /// lookups proper.
        struct Cached(usize);
        impl ApiBackend for Cached {
            fn passdb_verify(&mut self, _: &str, _: &Secret) -> VerifyResult {
                self.0 += 1;
                VerifyResult::Unknown
            }
            fn passdb_lookup(&mut self, _: &str) -> LookupResult {
                self.0 += 1;
                LookupResult::Unknown
            }
            fn userdb_lookup(&mut self, user: &str) -> LookupResult {
                self.0 += 1;
                match user {
                    "bob" => LookupResult::Found(Account {
                        user: user.into(),
                        fields: vec![("home".into(), "/h".into())],
                    }),
                    _ => LookupResult::Unknown,
                }
            }
            fn userdb_iterate(&mut self) -> Result<Vec<String>, String> {
                self.0 += 1;
                Ok(vec!["bob".into()])
            }
            fn lookup_in_place(&mut self, e: Endpoint, user: &str) -> Option<LookupResult> {
                let answer = match e {
                    Endpoint::PassdbLookup => return None,
                    _ => self.userdb_lookup(user),
                };
                self.0 -= 1;
                Some(answer)
            }
        }
        let request = |user: &str, password: Option<&str>| ApiRequest {
            user: user.into(),
            password: password.map(Secret::new),
        };
        for format in [Format::Text, Format::Json] {
            for user in ["bob", "nobody"] {
                let r = request(user, None);
                let mut b = Cached(0);
                let in_place = dispatch_in_place(Endpoint::UserdbLookup, &r, &mut b, format);
                assert_eq!(b.0, 0, "no lookup proper");
                let proper = dispatch(Endpoint::UserdbLookup, &r, &mut b, format);
                assert_eq!(in_place, Some(proper), "{user} {format:?}");
            }
            let mut b = Cached(0);
            let r = request("bob", None);
            assert_eq!(
                dispatch_in_place(Endpoint::PassdbLookup, &r, &mut b, format),
                None
            );
            let r = request("bob", Some("pw"));
            assert_eq!(
                dispatch_in_place(Endpoint::PassdbVerify, &r, &mut b, format),
                None
            );
            let r = request("", None);
            assert_eq!(
                dispatch_in_place(Endpoint::UserdbIterate, &r, &mut b, format),
                None
            );
            assert_eq!(b.0, 0);
        }
    }

    /// The iteration's answer: the token on its own line, then one name a
    /// line, each tab-escaped (a name holding a line end cannot split
    /// into two users); JSON a list; a failure the tempfail of every
    /// endpoint.
    #[test]
    fn the_iteration_is_rendered_a_name_a_line() {
        struct List(Result<Vec<String>, String>);
        impl ApiBackend for List {
            fn passdb_verify(&mut self, _: &str, _: &Secret) -> VerifyResult {
                VerifyResult::Unknown
            }
            fn passdb_lookup(&mut self, _: &str) -> LookupResult {
                LookupResult::Unknown
            }
            fn userdb_lookup(&mut self, _: &str) -> LookupResult {
                LookupResult::Unknown
            }
            fn userdb_iterate(&mut self) -> Result<Vec<String>, String> {
                self.0.clone()
            }
        }
        let request = parse_request(
            Endpoint::UserdbIterate,
            Format::Text,
            b"",
            FieldHeader::Absent,
            FieldHeader::Absent,
        )
        .expect("no fields needed");
        let users = vec!["a@x.org".to_string(), "b\nc@x.org".to_string()];
        let mut b = List(Ok(users.clone()));
        let r = dispatch(Endpoint::UserdbIterate, &request, &mut b, Format::Text);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ok\na@x.org\nb\x01nc@x.org\n");
        let r = dispatch(Endpoint::UserdbIterate, &request, &mut b, Format::Json);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(v, serde_json::json!({ "result": "ok", "users": users }));
        let mut b = List(Ok(Vec::new()));
        let r = dispatch(Endpoint::UserdbIterate, &request, &mut b, Format::Text);
        assert_eq!((r.status, r.body), (200, b"ok\n".to_vec()));
        let mut b = List(Err("database down".into()));
        let r = dispatch(Endpoint::UserdbIterate, &request, &mut b, Format::Text);
        assert_eq!(
            (r.status, r.body),
            (503, b"tempfail\terror=database down\n".to_vec())
        );
    }

    /// Which fields a request reads, by endpoint and form: the iteration
    /// none (any is refused), the others from headers or a body, never
    /// both.
    #[test]
    fn requests_take_their_fields_from_one_place() {
        let once = |v: &'static [u8]| FieldHeader::Once(v);
        let absent = || FieldHeader::Absent;
        let r = parse_request(
            Endpoint::UserdbLookup,
            Format::Text,
            b"",
            once(b"bob"),
            absent(),
        )
        .expect("header form");
        assert_eq!(r.user, "bob");
        let r = parse_request(
            Endpoint::UserdbLookup,
            Format::Text,
            b"user=bob",
            absent(),
            absent(),
        )
        .expect("body form");
        assert_eq!(r.user, "bob");
        let e = parse_request(
            Endpoint::UserdbLookup,
            Format::Text,
            b"user=bob",
            once(b"bob"),
            absent(),
        )
        .expect_err("both forms");
        assert_eq!(
            e,
            HttpError::BadHeader("fields in both headers and body".into())
        );
        assert!(matches!(
            parse_request(
                Endpoint::UserdbLookup,
                Format::Text,
                b"",
                absent(),
                absent()
            ),
            Err(HttpError::BadBody(_))
        ));
        for (body, user, password) in [
            (&b"user=bob"[..], absent(), absent()),
            (&b""[..], once(b"bob"), absent()),
            (&b""[..], absent(), once(b"pw")),
        ] {
            let e = parse_request(Endpoint::UserdbIterate, Format::Text, body, user, password)
                .expect_err("the iteration takes no fields");
            assert_eq!(
                e,
                HttpError::BadBody("/userdb/iterate takes no fields".into())
            );
        }
    }

    #[test]
    fn invalid_field_names_are_dropped() {
        struct Odd;
        impl ApiBackend for Odd {
            fn passdb_verify(&mut self, _: &str, _: &Secret) -> VerifyResult {
                VerifyResult::Unknown
            }
            fn passdb_lookup(&mut self, _: &str) -> LookupResult {
                LookupResult::Unknown
            }
            fn userdb_iterate(&mut self) -> Result<Vec<String>, String> {
                Err("not asked".into())
            }
            fn userdb_lookup(&mut self, user: &str) -> LookupResult {
                LookupResult::Found(Account {
                    user: user.into(),
                    fields: vec![
                        ("a=b".into(), "x".into()),
                        ("user".into(), "someone-else".into()),
                        ("home".into(), "/h\t1".into()),
                    ],
                })
            }
        }
        let request = ApiRequest {
            user: "bob".into(),
            password: None,
        };
        let r = dispatch(Endpoint::UserdbLookup, &request, &mut Odd, Format::Text);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ok\tuser=bob\thome=/h\x01t1\n".to_vec());
    }
}

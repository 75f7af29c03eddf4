//! Fuzzes the request side of `dovecot-mailtable serve`'s HTTP API: the
//! router and the body parser never panic; a request is routed only with
//! the right bearer token, `POST` and a known path; a parsed body has a
//! user, a password exactly for `/passdb/verify`, and written back in the
//! same format parses to the same request.
//!
//! Input: one selector byte (bit 0: method, bits 1-2: endpoint, bit 3:
//! format), then `PATH AUTHORIZATION-VALUE\n`, then the body.

#![no_main]

use dovecot_mailtable::http::{parse_body, route, ApiConfig, ApiRequest, Endpoint, Format};
use dovecot_mailtable::{tabescape, Secret};
use libfuzzer_sys::fuzz_target;

const TOKEN: &[u8] = b"tok";

fn check_route(method: &str, path: &str, auth: &[u8], config: &ApiConfig) {
    let header = Secret::new(auth.to_vec());
    let routed = route(method, path, Some(&header), config);
    let value = auth.trim_ascii();
    let good_token = value.len() > 7
        && value[..7].eq_ignore_ascii_case(b"bearer ")
        && value[7..].trim_ascii() == TOKEN;
    match routed {
        Ok(endpoint) => {
            assert!(good_token, "routed with {auth:?}");
            assert_eq!(method, "POST");
            assert_eq!(Endpoint::from_path(path), Some(endpoint));
        }
        Err(_) => assert!(
            !good_token || method != "POST" || Endpoint::from_path(path).is_none(),
            "{method} {path} refused with the right token"
        ),
    }
    // Without a header, never routed.
    assert!(route(method, path, None, config).is_err());
}

fn same(a: &ApiRequest, b: &ApiRequest) -> bool {
    a.user == b.user
        && a.password.as_ref().map(Secret::expose) == b.password.as_ref().map(Secret::expose)
}

fn write_back(req: &ApiRequest, format: Format) -> Option<Vec<u8>> {
    match format {
        Format::Text => {
            let mut out = b"user=".to_vec();
            tabescape::escape_into(&mut out, req.user.as_bytes());
            if let Some(pw) = &req.password {
                out.extend_from_slice(b"\tpassword=");
                tabescape::escape_into(&mut out, pw.expose());
            }
            Some(out)
        }
        Format::Json => {
            // JSON strings hold UTF-8 only; a text password need not be.
            let password = match &req.password {
                Some(pw) => Some(std::str::from_utf8(pw.expose()).ok()?),
                None => None,
            };
            let value = serde_json::json!({ "user": req.user, "password": password });
            Some(serde_json::to_vec(&value).expect("serialisable"))
        }
    }
}

fn check_body(endpoint: Endpoint, format: Format, body: &[u8]) {
    let Ok(req) = parse_body(endpoint, format, body) else {
        return;
    };
    assert!(!req.user.is_empty());
    assert_eq!(req.password.is_some(), endpoint == Endpoint::PassdbVerify);
    for f in [Format::Text, Format::Json] {
        if let Some(again) = write_back(&req, f) {
            let parsed = parse_body(endpoint, f, &again).expect("a written-back body parses");
            assert!(same(&req, &parsed), "{f:?} round trip changed the request");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = if selector & 1 == 0 { "POST" } else { "GET" };
    let endpoint = match (selector >> 1) & 3 {
        0 => Endpoint::PassdbVerify,
        1 => Endpoint::PassdbLookup,
        _ => Endpoint::UserdbLookup,
    };
    let format = if selector & 8 == 0 {
        Format::Text
    } else {
        Format::Json
    };
    let (head, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let (path, auth) = match head.iter().position(|&b| b == b' ') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, &[][..]),
    };
    let config = ApiConfig::new(Secret::new(TOKEN));
    check_route(method, &String::from_utf8_lossy(path), auth, &config);
    check_body(endpoint, format, body);
    check_body(endpoint, format, rest);
});

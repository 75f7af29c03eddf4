//! The fuzz properties of `dovecot-mailtable serve`'s parsers, shared by
//! the nightly fuzz targets (`fuzz/fuzz_targets/dict_proto.rs`,
//! `http_api.rs`) and by the unit tests below, which run them on the
//! stable toolchain in every `cargo test` over the fuzz seeds and
//! mutations of them (`mailtable_core::testdata::mutate`). Compiled for
//! tests and with the feature `fuzzing` (the fuzz crate's), never into the
//! binary.
//!
//! [`dict`]: the line parser never panics; a parsed lookup or iteration
//! written back as a command line parses to the same command; every reply
//! written for what was parsed is exactly one LF-terminated line whose
//! fields unescape to the values that went in.
//!
//! [`http`]: the router and the body parser never panic; a request is
//! routed only with the right bearer token, `POST` and a known path; a
//! parsed body has a user, a password exactly for `/passdb/verify`, and
//! written back in the same format parses to the same request. Input: one
//! selector byte (bit 0: method, bits 1-2: endpoint, bit 3: format), then
//! `PATH AUTHORIZATION-VALUE\n`, then the body.

use crate::dict::{parse_command, write_reply, Command, CommitResult, Lookup, Reply};
use crate::http::{parse_body, route, ApiConfig, ApiRequest, Endpoint, Format};
use crate::{tabescape, Secret};

/// The one line `reply` writes, without its LF; asserts it is one line.
fn one_line(reply: &Reply<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_reply(reply, &mut out);
    let line = out.strip_suffix(b"\n").expect("LF-terminated reply");
    assert!(!line.contains(&b'\n'), "{out:?}");
    line.to_vec()
}

fn check_value_reply(letter: u8, reply: &Reply<'_>, value: &str) {
    let line = one_line(reply);
    assert_eq!(line.first(), Some(&letter));
    assert!(!line[1..].contains(&b'\t'), "{line:?}");
    assert_eq!(tabescape::unescape(&line[1..]), value.as_bytes());
}

fn check_line(line: &[u8]) {
    let Ok(cmd) = parse_command(line) else {
        return;
    };
    match &cmd {
        Command::Lookup { key, user } => {
            // Written back, the command parses to itself.
            let mut again = vec![b'L'];
            tabescape::escape_into(&mut again, key.as_bytes());
            again.push(b'\t');
            tabescape::escape_into(&mut again, user.as_bytes());
            assert_eq!(parse_command(&again), Ok(cmd.clone()));
            let found = Lookup::Found(key.clone());
            check_value_reply(b'O', &Reply::Lookup(&found), key);
            let failed = Lookup::Failed(user.clone());
            check_value_reply(b'F', &Reply::Lookup(&failed), user);
            assert_eq!(one_line(&Reply::Lookup(&Lookup::NotFound)), b"N");
        }
        Command::Iterate {
            flags,
            max_rows,
            path,
            user,
        } => {
            let again = format!("I{flags}\t{max_rows}\t");
            let mut again = again.into_bytes();
            tabescape::escape_into(&mut again, path.as_bytes());
            again.push(b'\t');
            tabescape::escape_into(&mut again, user.as_bytes());
            assert_eq!(parse_command(&again), Ok(cmd.clone()));
            for value in [Some(user.as_str()), None] {
                let row = one_line(&Reply::IterateRow { key: path, value });
                assert_eq!(row.first(), Some(&b'O'));
                let fields: Vec<&[u8]> = row[1..].split(|&b| b == b'\t').collect();
                assert_eq!(fields.len(), 2, "{row:?}");
                assert_eq!(tabescape::unescape(fields[0]), path.as_bytes());
                assert_eq!(
                    tabescape::unescape(fields[1]),
                    value.unwrap_or("").as_bytes()
                );
            }
            assert_eq!(one_line(&Reply::IterateEnd), b"");
            check_value_reply(b'F', &Reply::IterateFailed(path), path);
        }
        Command::Commit { id } | Command::CommitAsync { id } => {
            let async_commit = matches!(cmd, Command::CommitAsync { .. });
            let error = String::from_utf8_lossy(line).into_owned();
            for result in [
                CommitResult::Ok,
                CommitResult::NotFound,
                CommitResult::Failed(&error),
                CommitResult::WriteUncertain(&error),
            ] {
                let reply = one_line(&Reply::Commit {
                    id: *id,
                    async_commit,
                    result,
                });
                let reply = if async_commit {
                    reply
                        .strip_prefix(b"A")
                        .expect("async replies start with A")
                        .to_vec()
                } else {
                    reply
                };
                let fields: Vec<&[u8]> = reply[1..].split(|&b| b == b'\t').collect();
                assert_eq!(fields[0], id.to_string().as_bytes(), "{reply:?}");
                assert!(fields.len() <= 2, "{reply:?}");
            }
        }
        _ => {}
    }
}

/// The dict protocol's properties on one input (a line, and each of its lines).
pub fn dict(data: &[u8]) {
    check_line(data);
    for line in data.split(|&b| b == b'\n') {
        check_line(line);
    }
}

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

/// The HTTP API's properties on one input (see the module's docs).
pub fn http(data: &[u8]) {
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
}

#[cfg(test)]
mod tests {
    use mailtable_core::testdata::mutate::{fuzz_iterations, fuzz_seeds, replay};

    #[test]
    fn dict_properties_hold_on_mutated_seeds() {
        let tokens: &[&[u8]] = &[
            b"\t",
            b"\n",
            b"\x01",
            b"\x010",
            b"\x01t",
            b"\x01n",
            b"\x01r",
            b"\x01x",
            b"L",
            b"I",
            b"C",
            b"c",
            b"B",
            b"H",
            b"shared/passdb/",
            b"shared/userdb/",
            b"\0",
            b"\xff",
        ];
        replay(
            "dict protocol",
            &fuzz_seeds("dict_proto"),
            tokens,
            fuzz_iterations(),
            super::dict,
        );
    }

    #[test]
    fn http_properties_hold_on_mutated_seeds() {
        let tokens: &[&[u8]] = &[
            b"\n",
            b" ",
            b"\t",
            b"/passdb/verify",
            b"/passdb/lookup",
            b"/userdb/lookup",
            b"Bearer tok",
            b"bearer  tok ",
            b"user=",
            b"password=",
            b"\x01",
            b"{",
            b"}",
            b"\"",
            b"\\u0000",
            b"\\ud800",
            b"null",
            b":",
            b",",
            b"\xff",
        ];
        replay(
            "HTTP API",
            &fuzz_seeds("http_api"),
            tokens,
            fuzz_iterations(),
            super::http,
        );
    }
}

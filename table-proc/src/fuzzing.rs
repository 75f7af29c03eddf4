//! The fuzz properties of both protocols, shared by the nightly fuzz
//! targets (`fuzz/fuzz_targets/table_text.rs`, `table_imsg.rs`) and by the
//! unit tests below, which run them on the stable toolchain in every
//! `cargo test` over the fuzz seeds and mutations of them
//! (`mailtable_core::testdata::mutate`). Compiled for tests and with the
//! feature `fuzzing` (the fuzz crate's), never into the binary.
//!
//! [`text`]: the parsers never panic, a parsed request written back and
//! parsed again is the same request, every reply written for it is one
//! well-formed line, and the serving loop fed arbitrary lines only ever
//! writes well-formed replies, at most one per line.
//!
//! [`imsg`]: framing never panics and never claims more bytes than it was
//! given, a parsed request written back parses to the same message, and the
//! serving loop fed arbitrary bytes only ever writes replies that smtpd's
//! `table_proc.c` accepts.

use crate::imsg::{self as imsg_proto, Message};
use crate::{serve, text as text_proto, Answer, Handler, Op, Request, Service};

/// Answers with values and reasons taken from the key, so the writers see
/// every kind of bad value (empty, CR, LF, NUL, long).
struct TextEcho;

impl Handler for TextEcho {
    fn services(&self) -> Vec<Service> {
        Vec::new()
    }

    fn update(&mut self) -> Result<(), String> {
        Err("update\nfailed\r|x".into())
    }

    fn check(&mut self, _: Service, key: &str) -> Answer {
        text_answer(key)
    }

    fn lookup(&mut self, _: Service, key: &str) -> Answer {
        text_answer(key)
    }

    fn fetch(&mut self, _: Service) -> Answer {
        Answer::Found(String::new())
    }
}

fn text_answer(key: &str) -> Answer {
    // No panics here: libfuzzer-sys aborts on any panic, caught or not
    // (serve's catch_unwind is covered by the unit tests).
    match key.len() % 3 {
        0 => Answer::Found(key.to_owned()),
        1 => Answer::NotFound,
        _ => Answer::Error(key.to_owned()),
    }
}

/// One reply line as smtpd's `table_proc.c` would accept it.
fn assert_reply_line(line: &str) {
    assert!(!line.contains(['\r', '\0']), "{line:?}");
    let (op, rest) = line.split_once("-result|").expect("op-result prefix");
    let op: Op = op.parse().expect("known op");
    let (id, result) = rest.split_once('|').expect("id field");
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic() && b != b'|'));
    let ok = match op {
        Op::Update => result == "ok" || result.starts_with("error"),
        Op::Check => result == "found" || result == "not-found" || result.starts_with("error"),
        Op::Lookup | Op::Fetch => {
            result == "not-found"
                || result.starts_with("error")
                || result.strip_prefix("found|").is_some_and(|v| !v.is_empty())
        }
    };
    assert!(ok, "{line:?}");
}

fn check_replies(req: &Request) {
    for answer in [
        Answer::Found(req.key.clone()),
        Answer::Found("v".into()),
        Answer::NotFound,
        Answer::Error(req.key.clone()),
    ] {
        let mut out = Vec::new();
        text_proto::write_reply(&mut out, req.op, &req.id, &answer)
            .expect("parsed ids are echoable");
        let out = String::from_utf8(out).expect("replies are utf-8");
        let line = out.strip_suffix('\n').expect("one terminated line");
        assert!(!line.contains('\n'));
        assert_reply_line(line);
    }
}

/// The text protocol's properties on one input (lines of requests).
pub fn text(data: &[u8]) {
    // Seeds are newline-terminated lines; the parsers take a line without it.
    let one = data.strip_suffix(b"\n").unwrap_or(data);
    let plain = text_proto::Session::default();
    // A table whose name holds `|` (smtpd.conf allows it).
    let piped = text_proto::Session {
        table: "my|t".to_owned(),
        ..text_proto::Session::default()
    };
    for session in [&plain, &piped] {
        let from_bytes = text_proto::parse_request_bytes(one, session);
        if let Ok(line) = std::str::from_utf8(one) {
            let _ = text_proto::parse_config_line(line);
            let parsed = text_proto::parse_request_in(line, session);
            assert_eq!(parsed, from_bytes);
            if let Ok(req) = parsed {
                let name = if session.table.is_empty() {
                    "t"
                } else {
                    &session.table
                };
                let mut out = Vec::new();
                text_proto::write_request(&mut out, name, "1795313212.429891", &req)
                    .expect("parsed requests are writable");
                let again = std::str::from_utf8(&out).expect("utf-8 in, utf-8 out");
                let again = again.strip_suffix('\n').expect("terminated");
                assert_eq!(
                    text_proto::parse_request_in(again, session),
                    Ok(req.clone())
                );
                check_replies(&req);
            }
        }
        if let Ok(req) = from_bytes {
            check_replies(&req);
        }
    }

    // The loop. smtpd writes one line per request; grouping 2 or 3 lines per
    // read (chosen by the input length) drives the injected-bytes path too.
    let per_read = 1 + data.len() % 3;
    let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let mut input: Vec<Vec<u8>> = vec![b"config|tablename|t\nconfig|ready\n".to_vec()];
    input.extend(lines.chunks(per_read).map(<[&[u8]]>::concat));
    let lines = lines.len();
    let mut output = Vec::new();
    let reader = Chunks(input.iter().map(Vec::as_slice), &[]);
    serve(reader, &mut output, &mut TextEcho).expect("in-memory I/O");
    let output = String::from_utf8(output).expect("replies are utf-8");
    assert!(output.ends_with('\n'));
    let replies: Vec<&str> = output
        .lines()
        .skip_while(|l| l.starts_with("register|"))
        .collect();
    assert!(
        replies.len() <= lines,
        "{} replies to {lines} lines",
        replies.len()
    );
    for reply in replies {
        assert_reply_line(reply);
    }
}

/// A reader handing out one slice per `read` (the rest of a slice longer
/// than the buffer comes with the next `read`).
struct Chunks<'a, I: Iterator<Item = &'a [u8]>>(I, &'a [u8]);

impl<'a, I: Iterator<Item = &'a [u8]>> std::io::Read for Chunks<'a, I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            self.1 = self.0.next().unwrap_or_default();
        }
        let n = self.1.len().min(buf.len());
        buf[..n].copy_from_slice(&self.1[..n]);
        self.1 = &self.1[n..];
        Ok(n)
    }
}

/// Answers with values taken from the key: empty, with NUL or LF, longer
/// than an imsg can carry.
struct ImsgEcho;

impl Handler for ImsgEcho {
    fn services(&self) -> Vec<Service> {
        Vec::new()
    }

    fn update(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn check(&mut self, _: Service, key: &str) -> Answer {
        imsg_answer(key)
    }

    fn lookup(&mut self, _: Service, key: &str) -> Answer {
        imsg_answer(key)
    }

    fn fetch(&mut self, _: Service) -> Answer {
        Answer::Found("x".repeat(20_000))
    }
}

fn imsg_answer(key: &str) -> Answer {
    // No panics here: libfuzzer-sys aborts on any panic, caught or not
    // (serve's catch_unwind is covered by its unit tests).
    match key.len() % 4 {
        0 => Answer::Found(key.to_owned()),
        1 => Answer::NotFound,
        2 => Answer::Error(key.to_owned()),
        _ => Answer::Found(key.repeat(40)),
    }
}

/// The imsg protocol's properties on one input (bytes of messages).
pub fn imsg(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((message, consumed))) = imsg_proto::parse_message(rest) {
        assert!(consumed >= imsg_proto::HEADER_LEN && consumed <= rest.len());
        if !matches!(message, Message::Invalid { .. }) {
            let mut out = Vec::new();
            if imsg_proto::write_request(&mut out, &message).is_ok() {
                let (again, n) = imsg_proto::parse_message(&out)
                    .expect("written messages frame")
                    .expect("written messages are complete");
                assert_eq!(n, out.len());
                assert_eq!(again, message);
            }
        }
        rest = &rest[consumed..];
    }

    let mut output = Vec::new();
    serve(data, &mut output, &mut ImsgEcho).expect("in-memory I/O");
    if data.starts_with(b"config|") {
        return;
    }
    let mut out = &output[..];
    while !out.is_empty() {
        assert!(out.len() >= imsg_proto::HEADER_LEN);
        assert_eq!(&out[..4], &0u32.to_ne_bytes());
        let len = usize::from(u16::from_ne_bytes([out[4], out[5]]));
        assert!((imsg_proto::HEADER_LEN..=imsg_proto::MAX_MESSAGE).contains(&len));
        assert!(len <= out.len());
        let payload = &out[imsg_proto::HEADER_LEN..len];
        match payload.len() {
            0 | 4 => {}
            _ => {
                assert_eq!(&payload[..4], &1i32.to_ne_bytes());
                assert!(payload.len() > 5, "empty value");
                assert_eq!(payload.last(), Some(&0));
                assert!(!payload[4..payload.len() - 1].contains(&0));
            }
        }
        if payload.len() == 4 {
            let r = i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
            assert!((-1..=1).contains(&r));
        }
        out = &out[len..];
    }
}

#[cfg(test)]
mod tests {
    use mailtable_core::testdata::mutate::{fuzz_iterations, fuzz_seeds, replay};

    #[test]
    fn text_properties_hold_on_mutated_seeds() {
        let tokens: &[&[u8]] = &[
            b"|",
            b"\n",
            b"\r",
            b"\0",
            b"\r\n",
            b"table|0.1|",
            b"lookup|",
            b"check|",
            b"fetch|",
            b"update|",
            b"config|",
            b"config|ready\n",
            b"alias|",
            b"auth|",
            b"credentials|",
            b"1795313212.429891|",
            b"0123456789abcdef|",
            b"\xff",
            b"\xc3",
        ];
        replay(
            "text protocol",
            &fuzz_seeds("table_text"),
            tokens,
            fuzz_iterations(),
            super::text,
        );
    }

    #[test]
    fn imsg_properties_hold_on_mutated_seeds() {
        let tokens: &[&[u8]] = &[
            &[0, 0, 0, 0],
            &[1, 0, 0, 0],
            &[16, 0],
            &[0xff, 0xff],
            &[0],
            b"\0\0\0\0\0\0\0\0",
            b"alias",
            b"config|",
        ];
        replay(
            "imsg protocol",
            &fuzz_seeds("table_imsg"),
            tokens,
            fuzz_iterations(),
            super::imsg,
        );
    }
}

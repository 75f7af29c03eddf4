//! Fuzzes the text protocol 0.1: the parsers never panic, a parsed request
//! written back and parsed again is the same request, every reply written for
//! it is one well-formed line, and the serving loop fed arbitrary lines only
//! ever writes well-formed replies, at most one per line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use table_mailtable::{serve, text, Answer, Handler, Op, Request, Service};

/// Answers with values and reasons taken from the key, so the writers see
/// every kind of bad value (empty, CR, LF, NUL, long).
struct Echo;

impl Handler for Echo {
    fn services(&self) -> Vec<Service> {
        Vec::new()
    }

    fn update(&mut self) -> Result<(), String> {
        Err("update\nfailed\r|x".into())
    }

    fn check(&mut self, _: Service, key: &str) -> Answer {
        answer_for(key)
    }

    fn lookup(&mut self, _: Service, key: &str) -> Answer {
        answer_for(key)
    }

    fn fetch(&mut self, _: Service) -> Answer {
        Answer::Found(String::new())
    }
}

fn answer_for(key: &str) -> Answer {
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
        text::write_reply(&mut out, req.op, &req.id, &answer).expect("parsed ids are echoable");
        let out = String::from_utf8(out).expect("replies are utf-8");
        let line = out.strip_suffix('\n').expect("one terminated line");
        assert!(!line.contains('\n'));
        assert_reply_line(line);
    }
}

fuzz_target!(|data: &[u8]| {
    // Seeds are newline-terminated lines; the parsers take a line without it.
    let one = data.strip_suffix(b"\n").unwrap_or(data);
    let from_bytes = text::parse_request_bytes(one);
    if let Ok(line) = std::str::from_utf8(one) {
        let _ = text::parse_config_line(line);
        let parsed = text::parse_request(line);
        assert_eq!(parsed, from_bytes);
        if let Ok(req) = parsed {
            let mut out = Vec::new();
            text::write_request(&mut out, "t", "1795313212.429891", &req)
                .expect("parsed requests are writable");
            let again = std::str::from_utf8(&out).expect("utf-8 in, utf-8 out");
            let again = again.strip_suffix('\n').expect("terminated");
            assert_eq!(text::parse_request(again), Ok(req.clone()));
            check_replies(&req);
        }
    }
    if let Ok(req) = from_bytes {
        check_replies(&req);
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
    serve(reader, &mut output, &mut Echo).expect("in-memory I/O");
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
});

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

//! Fuzzes the imsg protocol v2: framing never panics and never claims more
//! bytes than it was given, a parsed request written back parses to the same
//! message, and the serving loop fed arbitrary bytes only ever writes replies
//! that smtpd's `table_proc.c` accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use table_mailtable::imsg::{self, Message};
use table_mailtable::{serve, Answer, Handler, Service};

/// Answers with values taken from the key: empty, with NUL or LF, longer
/// than an imsg can carry.
struct Echo;

impl Handler for Echo {
    fn services(&self) -> Vec<Service> {
        Vec::new()
    }

    fn update(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn check(&mut self, _: Service, key: &str) -> Answer {
        answer_for(key)
    }

    fn lookup(&mut self, _: Service, key: &str) -> Answer {
        answer_for(key)
    }

    fn fetch(&mut self, _: Service) -> Answer {
        Answer::Found("x".repeat(20_000))
    }
}

fn answer_for(key: &str) -> Answer {
    // No panics here: libfuzzer-sys aborts on any panic, caught or not
    // (serve's catch_unwind is covered by the unit tests).
    match key.len() % 4 {
        0 => Answer::Found(key.to_owned()),
        1 => Answer::NotFound,
        2 => Answer::Error(key.to_owned()),
        _ => Answer::Found(key.repeat(40)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((message, consumed))) = imsg::parse_message(rest) {
        assert!(consumed >= imsg::HEADER_LEN && consumed <= rest.len());
        if !matches!(message, Message::Invalid { .. }) {
            let mut out = Vec::new();
            if imsg::write_request(&mut out, &message).is_ok() {
                let (again, n) = imsg::parse_message(&out)
                    .expect("written messages frame")
                    .expect("written messages are complete");
                assert_eq!(n, out.len());
                assert_eq!(again, message);
            }
        }
        rest = &rest[consumed..];
    }

    let mut output = Vec::new();
    serve(data, &mut output, &mut Echo).expect("in-memory I/O");
    if data.starts_with(b"config|") {
        return;
    }
    let mut out = &output[..];
    while !out.is_empty() {
        assert!(out.len() >= imsg::HEADER_LEN);
        assert_eq!(&out[..4], &0u32.to_ne_bytes());
        let len = usize::from(u16::from_ne_bytes([out[4], out[5]]));
        assert!((imsg::HEADER_LEN..=imsg::MAX_MESSAGE).contains(&len));
        assert!(len <= out.len());
        let payload = &out[imsg::HEADER_LEN..len];
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
});

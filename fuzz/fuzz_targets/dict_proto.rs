//! Fuzzes the dict proxy protocol of `dovecot-mailtable serve`: the line
//! parser never panics; a parsed lookup or iteration written back as a
//! command line parses to the same command; every reply written for what
//! was parsed is exactly one LF-terminated line whose fields unescape to
//! the values that went in.

#![no_main]

use dovecot_mailtable::dict::{parse_command, write_reply, Command, CommitResult, Lookup, Reply};
use dovecot_mailtable::tabescape;
use libfuzzer_sys::fuzz_target;

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

fn check(line: &[u8]) {
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

fuzz_target!(|data: &[u8]| {
    check(data);
    for line in data.split(|&b| b == b'\n') {
        check(line);
    }
});

//! The benchmark's floor (not a product): the smallest smtpd table there
//! is. It speaks both protocols (text 0.1 when the first bytes are
//! `config|`, imsg v2 otherwise) on fd 0 and answers `not-found` to every
//! check, lookup and fetch, so a run against it measures the socket, the
//! protocol and the driver alone. See `tests/bench/run.sh`.
//!
//! ```sh
//! cargo build --release -p table-mailtable --example echo_table
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::FromRawFd;

fn main() -> io::Result<()> {
    // SAFETY: fd 0 is the socket smtpd (or the benchmark driver) gave us;
    // nothing else in this process uses it.
    let sock = unsafe { File::from_raw_fd(0) };
    let mut out = sock.try_clone()?;
    let mut input = BufReader::with_capacity(16 * 1024, sock);
    if input.fill_buf()?.starts_with(b"config|") {
        let mut line = String::new();
        while input.read_line(&mut line)? > 0 {
            let l = line.trim_end_matches('\n');
            if l == "config|ready" {
                out.write_all(b"register|alias\nregister|ready\n")?;
            } else if let Some(rest) = l.strip_prefix("table|") {
                // 0.1|ts|name|op|service|id|key  or  0.1|ts|name|update|id
                let f: Vec<&str> = rest.splitn(7, '|').collect();
                let reply = match (f.get(3), f.get(4), f.get(5)) {
                    (Some(&"update"), Some(id), _) => format!("update-result|{id}|ok\n"),
                    (Some(op), Some(_), Some(id)) => format!("{op}-result|{id}|not-found\n"),
                    _ => String::new(),
                };
                out.write_all(reply.as_bytes())?;
            }
            line.clear();
        }
        return Ok(());
    }
    let mut head = [0u8; 16];
    let mut payload = vec![0u8; 16 * 1024];
    loop {
        if input.read_exact(&mut head).is_err() {
            return Ok(()); // EOF
        }
        let ty = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        let len = usize::from(u16::from_ne_bytes([head[4], head[5]]));
        input.read_exact(&mut payload[..len.saturating_sub(16)])?;
        // Reply: type 0 (PROC_TABLE_OK); OPEN gets no payload, UPDATE r = 1,
        // CHECK/LOOKUP/FETCH r = 0 (not found).
        let r: Option<i32> = match ty {
            2 => None,
            4 => Some(1),
            _ => Some(0),
        };
        let mut msg = Vec::with_capacity(20);
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&(if r.is_some() { 20u16 } else { 16 }).to_ne_bytes());
        msg.extend_from_slice(&[0u8; 6]);
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        if let Some(r) = r {
            msg.extend_from_slice(&r.to_ne_bytes());
        }
        out.write_all(&msg)?;
    }
}

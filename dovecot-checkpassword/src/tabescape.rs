//! Dovecot's tab-escaping, byte for byte.
//!
//! Every Dovecot line protocol this crate speaks (the dict proxy protocol,
//! the checkpassword fd-4 reply, the text form of the HTTP API) separates
//! fields with TAB and escapes each field so it contains no NUL, TAB, CR or
//! LF. The escape byte is 0x01 (core@2.3.19.1:src/lib/strescape.c,
//! `str_append_tabescaped_n` and `str_append_tabunescaped`):
//!
//! | byte | escaped |
//! |------|---------|
//! | NUL  | `\x01 0` |
//! | 0x01 | `\x01 1` |
//! | TAB  | `\x01 t` |
//! | CR   | `\x01 r` |
//! | LF   | `\x01 n` |
//!
//! Unescaping maps 0x01 followed by any other byte to that byte, and drops
//! a lone 0x01 at the very end, exactly as Dovecot does. Everything works on
//! bytes, not `str`: a password may be any byte string, and a protocol line
//! is split on TAB *before* any field is unescaped.

/// Appends `src` to `dest`, tab-escaped.
pub fn escape_into(dest: &mut Vec<u8>, src: &[u8]) {
    for &b in src {
        let esc = match b {
            0x00 => b'0',
            0x01 => b'1',
            b'\t' => b't',
            b'\r' => b'r',
            b'\n' => b'n',
            _ => {
                dest.push(b);
                continue;
            }
        };
        dest.push(0x01);
        dest.push(esc);
    }
}

/// Returns `src` tab-escaped.
pub fn escape(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    escape_into(&mut out, src);
    out
}

/// Returns `src` with Dovecot's tab-escaping undone.
///
/// Never fails: an unknown escape yields the escaped byte itself, and a
/// trailing lone 0x01 is dropped (core@2.3.19.1:src/lib/strescape.c,
/// `str_append_tabunescaped`).
pub fn unescape(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let mut it = src.iter();
    while let Some(&b) = it.next() {
        if b != 0x01 {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'0') => out.push(0x00),
            Some(b'1') => out.push(0x01),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Splits a line on TAB and unescapes every element, like Dovecot's
/// `t_strsplit_tabescaped` (core@2.3.19.1:src/lib/strescape.c).
///
/// An empty line gives one empty element, as in Dovecot.
pub fn split(line: &[u8]) -> Vec<Vec<u8>> {
    line.split(|&b| b == b'\t').map(unescape).collect()
}

/// Appends `key=value` (value tab-escaped) to `dest`, preceded by a TAB
/// unless `dest` is empty.
///
/// The caller guarantees that `key` is a valid field name (see
/// [`is_valid_key`]); the value may hold any bytes.
pub fn push_field(dest: &mut Vec<u8>, key: &str, value: &[u8]) {
    if !dest.is_empty() {
        dest.push(b'\t');
    }
    dest.extend_from_slice(key.as_bytes());
    dest.push(b'=');
    escape_into(dest, value);
}

/// Whether `key` can name a `key=value` field in a TAB-separated reply:
/// non-empty, and free of `=`, TAB, CR, LF, NUL and 0x01.
///
/// Dovecot splits such a field at its first `=` and ignores keys with
/// control characters (core@2.3.21.1:src/auth/db-lua.c warns
/// `Field key cannot contain <CR>, <LF> or <TAB>`); a key that breaks these
/// rules would silently become a different field.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key
            .bytes()
            .any(|b| matches!(b, b'=' | b'\t' | b'\r' | b'\n' | 0x00 | 0x01))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_byte() {
        assert_eq!(
            escape(b"a\x00b\x01c\td\re\nf"),
            b"a\x010b\x011c\x01td\x01re\x01nf".to_vec()
        );
    }

    #[test]
    fn plain_bytes_pass_through() {
        assert_eq!(escape(b"{\"uid\":1000}"), b"{\"uid\":1000}".to_vec());
        assert_eq!(unescape(b"{\"uid\":1000}"), b"{\"uid\":1000}".to_vec());
        assert_eq!(escape(b""), b"".to_vec());
    }

    #[test]
    fn unescape_reverses_escape() {
        let raw = b"\x00\x01\t\r\n\x01t plain \xff".to_vec();
        assert_eq!(unescape(&escape(&raw)), raw);
    }

    #[test]
    fn unknown_escape_yields_the_byte() {
        assert_eq!(unescape(b"a\x01xb"), b"axb".to_vec());
        assert_eq!(unescape(b"\x01\x01"), b"\x01".to_vec());
    }

    #[test]
    fn trailing_lone_escape_is_dropped() {
        assert_eq!(unescape(b"abc\x01"), b"abc".to_vec());
    }

    #[test]
    fn split_unescapes_each_element_after_splitting() {
        assert_eq!(
            split(b"Lshared/passdb/a\x01tb\talice"),
            vec![b"Lshared/passdb/a\tb".to_vec(), b"alice".to_vec()]
        );
        assert_eq!(split(b""), vec![Vec::<u8>::new()]);
        assert_eq!(
            split(b"H3\t2\t0\t\tauthdict"),
            vec![
                b"H3".to_vec(),
                b"2".to_vec(),
                b"0".to_vec(),
                b"".to_vec(),
                b"authdict".to_vec()
            ]
        );
    }

    #[test]
    fn push_field_separates_with_tab_and_escapes_value() {
        let mut out = Vec::new();
        push_field(&mut out, "user", b"alice@example.org");
        push_field(&mut out, "userdb_home", b"/var/vmail/a\tb");
        assert_eq!(
            out,
            b"user=alice@example.org\tuserdb_home=/var/vmail/a\x01tb".to_vec()
        );
    }

    #[test]
    fn key_validity() {
        assert!(is_valid_key("userdb_quota_rule"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("a=b"));
        assert!(!is_valid_key("a\tb"));
        assert!(!is_valid_key("a\nb"));
        assert!(!is_valid_key("a\x01b"));
    }
}

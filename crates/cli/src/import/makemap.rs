//! smtpd tables kept as `db:` files: the Berkeley DB maps `makemap`
//! builds from a text file (`table aliases db:/etc/mail/aliases.db`). The
//! text they were made from is often gone or out of date, so the map is
//! read as smtpd reads it, through `makemap -U`, which prints every entry
//! as `key<TAB>value` (makemap(8)): the text form the smtpd parsers take.
//!
//! The file is recognised by its magic number, not its name: Berkeley DB
//! keeps it at offset 12 of the first page (the metadata page of DB 2 and
//! later, as Debian's makemap writes through libdb 5.3) or at offset 0
//! (DB 1.85, as OpenBSD's libc writes), in the byte order of the machine
//! that made it: 0x061561 for a hash map (makemap's default), 0x053162
//! for a btree (`makemap -d btree`).

use crate::error::CliError;
use std::process::Command;

/// The two map formats `makemap -d` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// `-d hash`, makemap's default.
    Hash,
    /// `-d btree`.
    Btree,
}

impl DbKind {
    /// The name `makemap -d` takes.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Hash => "hash",
            DbKind::Btree => "btree",
        }
    }
}

const HASH_MAGIC: u32 = 0x0006_1561;
const BTREE_MAGIC: u32 = 0x0005_3162;

/// What kind of Berkeley DB map `bytes` is, if it is one.
pub fn berkeley_db(bytes: &[u8]) -> Option<DbKind> {
    [12, 0].into_iter().find_map(|at| {
        let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        [u32::from_le_bytes(word), u32::from_be_bytes(word)]
            .into_iter()
            .find_map(|m| match m {
                HASH_MAGIC => Some(DbKind::Hash),
                BTREE_MAGIC => Some(DbKind::Btree),
                _ => None,
            })
    })
}

/// `makemap -U`'s output as the text of a table file: each line
/// `key<TAB>value`, except that the value `<set>` is left out, which
/// makemap stores for every key of a `-t set` map (a list, such as the
/// domains of `match ... for domain`) and prints back (seen with
/// OpenSMTPD 6.8's makemap; smtpd looks only at the keys of such a map).
pub fn text_of_dump(dump: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    for line in dump.lines() {
        out.push_str(line.strip_suffix("\t<set>").unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The entries of the map `source` of `kind`, as text, read by
/// `makemap -U` (from the PATH: it is installed with smtpd).
pub fn dump(source: &str, kind: DbKind) -> Result<String, CliError> {
    let how = format!("makemap -U -d {} -- {source}", kind.name());
    let fix = "or import the text file the map was made from";
    let out = Command::new("makemap")
        // `--`: a path that starts with `-` is a path, not an option.
        .args(["-U", "-d", kind.name(), "--", source])
        .output()
        .map_err(|e| {
            CliError::usage(format!(
                "{source} is a Berkeley DB map ({} format, made by makemap); reading it needs \
                 `{how}`, which could not run ({e}): install OpenSMTPD's makemap, {fix}",
                kind.name()
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(CliError::usage(format!(
            "{source} is a Berkeley DB map ({} format) that `{how}` cannot read ({}): a map \
             another system's libdb made is read by that system's makemap; {fix}",
            kind.name(),
            err.trim()
        )));
    }
    let text = String::from_utf8(out.stdout).map_err(|_| {
        CliError::usage(format!("{source}: `{how}` printed text that is not UTF-8"))
    })?;
    Ok(text_of_dump(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first bytes of maps made by makemap: Debian's (libdb 5.3,
    /// little-endian metadata page) for hash and btree, DB 1.85 at offset
    /// 0 in either byte order; text and short files are no map.
    #[test]
    fn maps_are_known_by_their_magic() {
        let debian_hash = b"\0\0\0\0\x01\0\0\0\0\0\0\0\x61\x15\x06\0\x09\0\0\0";
        let debian_btree = b"\0\0\0\0\x01\0\0\0\0\0\0\0\x62\x31\x05\0\x09\0\0\0";
        assert_eq!(berkeley_db(debian_hash), Some(DbKind::Hash));
        assert_eq!(berkeley_db(debian_btree), Some(DbKind::Btree));
        assert_eq!(berkeley_db(b"\0\x06\x15\x61rest"), Some(DbKind::Hash));
        assert_eq!(berkeley_db(b"\x62\x31\x05\0rest"), Some(DbKind::Btree));
        assert_eq!(berkeley_db(b"alice@example.org  alice\n"), None);
        assert_eq!(berkeley_db(b"\x61\x15"), None);
        assert_eq!(berkeley_db(b""), None);
    }

    #[test]
    fn a_set_maps_keys_lose_their_placeholder_value() {
        assert_eq!(
            text_of_dump("example.org\t<set>\nexample.com\t<set>\n"),
            "example.org\nexample.com\n"
        );
        assert_eq!(
            text_of_dump("sales@example.org\talice@example.org, b@example.org\n"),
            "sales@example.org\talice@example.org, b@example.org\n"
        );
        // Only a value that is `<set>` and nothing else.
        assert_eq!(text_of_dump("k\ta <set>\n"), "k\ta <set>\n");
    }
}

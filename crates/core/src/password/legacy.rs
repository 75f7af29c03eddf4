//! The hash formats an older host brings along: Dovecot's digest schemes
//! (`{PLAIN}`, `{SHA512}`, `{SSHA512}`, `{PLAIN-MD5}`, ...) and MD5-crypt
//! (`$1$`, PostfixAdmin's long-time default). mailtable checks them itself,
//! because checkpassword and the Lua endpoint verify passwords in mailtable,
//! not in Dovecot: without this, every user of such a host failed to log in
//! after an import.
//!
//! Semantics follow Dovecot's (core `src/lib-auth/password-scheme.c`):
//! - a scheme name may end in `.b64`, `.base64` or `.hex`, the encoding of
//!   the stored digest (`password_scheme_lookup`);
//! - without one, a scheme with a fixed digest length guesses: a value twice
//!   that length is hex (falling back to base64 when it is not hex), any
//!   other is base64 (`password_decode`), and the decoded length must be the
//!   digest's;
//! - salted schemes store `digest || salt` and need at least one byte of
//!   salt (`ssha_verify`, `smd5_verify`);
//! - `{MD5}` is MD5-crypt over a `$1$` string, PLAIN-MD5 otherwise
//!   (`md5_verify`).
//!
//! MD5-crypt is Poul-Henning Kamp's algorithm, as in glibc, libxcrypt and
//! Dovecot's `password-scheme-md5crypt.c`: what smtpd's crypt(3) checks too.

use base64::Engine;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};

/// A Dovecot digest scheme mailtable checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Digest {
    /// `{PLAIN}`, `{CLEAR}`, `{CLEARTEXT}`: the password itself.
    Plain,
    /// `{PLAIN-MD5}`, `{LDAP-MD5}`, `{MD5}` over anything but `$1$`.
    Md5,
    /// `{SHA}`, `{SHA1}`.
    Sha1,
    /// `{SHA256}`.
    Sha256,
    /// `{SHA512}`.
    Sha512,
    /// `{SMD5}`: MD5 of password and salt, then the salt.
    Smd5,
    /// `{SSHA}`: SHA-1 likewise.
    Ssha,
    /// `{SSHA256}`.
    Ssha256,
    /// `{SSHA512}`.
    Ssha512,
}

/// How the digest is written after the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// As is (the cleartext schemes).
    Raw,
    /// Standard base64.
    Base64,
    /// Hexadecimal, either case.
    Hex,
}

impl Digest {
    /// The scheme of an upper-cased `{PREFIX}`, with the encoding its value
    /// is in and whether the prefix named that encoding. `None` for any
    /// other prefix, an unknown `.encoding` included (Dovecot then knows no
    /// such scheme either).
    fn of_prefix(prefix: &str) -> Option<(Digest, Encoding, bool)> {
        let (name, suffix) = match prefix.split_once('.') {
            Some((name, suffix)) => (name, Some(suffix)),
            None => (prefix, None),
        };
        let (digest, default) = match name {
            "PLAIN" | "CLEAR" | "CLEARTEXT" => (Digest::Plain, Encoding::Raw),
            "PLAIN-MD5" | "MD5" => (Digest::Md5, Encoding::Hex),
            "LDAP-MD5" => (Digest::Md5, Encoding::Base64),
            "SHA" | "SHA1" => (Digest::Sha1, Encoding::Base64),
            "SHA256" => (Digest::Sha256, Encoding::Base64),
            "SHA512" => (Digest::Sha512, Encoding::Base64),
            "SMD5" => (Digest::Smd5, Encoding::Base64),
            "SSHA" => (Digest::Ssha, Encoding::Base64),
            "SSHA256" => (Digest::Ssha256, Encoding::Base64),
            "SSHA512" => (Digest::Ssha512, Encoding::Base64),
            _ => return None,
        };
        match suffix {
            None => Some((digest, default, false)),
            Some("B64" | "BASE64") => Some((digest, Encoding::Base64, true)),
            Some("HEX") => Some((digest, Encoding::Hex, true)),
            Some(_) => None,
        }
    }

    /// The length of the stored digest, 0 where it varies (cleartext,
    /// salted).
    fn raw_len(self) -> usize {
        match self {
            Digest::Md5 => 16,
            Digest::Sha1 => 20,
            Digest::Sha256 => 32,
            Digest::Sha512 => 64,
            Digest::Plain | Digest::Smd5 | Digest::Ssha | Digest::Ssha256 | Digest::Ssha512 => 0,
        }
    }

    /// The hash of the concatenated `parts` (cleartext: the parts).
    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<H: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut h = H::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            Digest::Plain => parts.concat(),
            Digest::Md5 | Digest::Smd5 => run::<Md5>(parts),
            Digest::Sha1 | Digest::Ssha => run::<Sha1>(parts),
            Digest::Sha256 | Digest::Ssha256 => run::<Sha256>(parts),
            Digest::Sha512 | Digest::Ssha512 => run::<Sha512>(parts),
        }
    }

    /// The length of the hash in front of a salted value's salt.
    fn salted_len(self) -> Option<usize> {
        match self {
            Digest::Smd5 => Some(16),
            Digest::Ssha => Some(20),
            Digest::Ssha256 => Some(32),
            Digest::Ssha512 => Some(64),
            _ => None,
        }
    }
}

/// The digest scheme of `prefix` over `value`, if mailtable checks it.
/// `{MD5}` over a `$1$` string is MD5-crypt, not a digest.
pub(super) fn digest_scheme(prefix: &str, value: &str) -> Option<Digest> {
    if prefix == "MD5" && value.starts_with("$1$") {
        return None;
    }
    Digest::of_prefix(prefix).map(|(d, _, _)| d)
}

/// The stored bytes of a digest value, or `None` when Dovecot would refuse
/// the value as malformed (not decodable, wrong length, a salted value
/// without salt).
fn decode(prefix: &str, value: &str) -> Option<(Digest, Vec<u8>)> {
    let (digest, encoding, named) = Digest::of_prefix(prefix)?;
    let raw_len = digest.raw_len();
    // hex_to_binary and base64_decode of Dovecot's lib: hex digits of
    // either case and nothing else (from_str_radix alone takes a `+`);
    // base64 with or without padding, the unused bits of the last
    // character not checked.
    let hex = |s: &str| -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect()
    };
    let base64 = |s: &str| {
        base64::engine::general_purpose::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        )
        .decode(s)
        .ok()
    };
    let bytes = match encoding {
        Encoding::Raw => value.as_bytes().to_vec(),
        // A fixed length and no encoding named: Dovecot guesses.
        _ if raw_len != 0 && !named => match value.len() == raw_len * 2 {
            true => hex(value).or_else(|| base64(value))?,
            false => base64(value)?,
        },
        Encoding::Hex => hex(value)?,
        Encoding::Base64 => base64(value)?,
    };
    // An empty cleartext would let the empty password in: a stored
    // password is never empty (no hash mailtable writes is). Nor can one
    // hold a byte Dovecot refuses in every login's password (^A, tab, a
    // line break, NUL: password_has_illegal_chars in
    // src/auth/auth-request.c): it could never match there, and a `\r`
    // left by a Windows CSV made the dict mode fail while the others said
    // "wrong password". Malformed, so every mode says the same.
    let fits = match digest.salted_len() {
        Some(n) => bytes.len() > n,
        None if digest == Digest::Plain => {
            !bytes.is_empty()
                && !bytes
                    .iter()
                    .any(|b| [0, 1, b'\t', b'\n', b'\r'].contains(b))
        }
        None => bytes.len() == raw_len,
    };
    fits.then_some((digest, bytes))
}

/// Whether `value` after `prefix` is a digest value Dovecot would check.
pub(super) fn digest_well_formed(prefix: &str, value: &str) -> bool {
    decode(prefix, value).is_some()
}

/// Check `password` against a digest value; `None` when it is malformed.
/// The comparison takes the same time wherever the bytes differ.
pub(super) fn digest_verify(prefix: &str, value: &str, password: &[u8]) -> Option<bool> {
    let (digest, stored) = decode(prefix, value)?;
    let computed = match digest.salted_len() {
        Some(n) => {
            let (hash, salt) = stored.split_at(n);
            return Some(super::constant_time_eq(
                &digest.hash(&[password, salt]),
                hash,
            ));
        }
        None => digest.hash(&[password]),
    };
    Some(super::constant_time_eq(&computed, &stored))
}

/// crypt(3)'s base64 alphabet, least significant digit first.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `$1$salt$hash`: a salt of 1 to 8 characters other than `$`, `:` and
/// control bytes (the algorithm reads at most 8, so a longer one would
/// never match its own output), and 22 characters of crypt's base64.
pub(super) fn md5_crypt_well_formed(c: &str) -> bool {
    let Some((salt, hash)) = c.strip_prefix("$1$").and_then(|r| r.split_once('$')) else {
        return false;
    };
    (1..=8).contains(&salt.len())
        && salt.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && hash.len() == 22
        && hash.bytes().all(|b| ITOA64.contains(&b))
}

/// MD5-crypt of `password` with the salt of `c` (a well-formed `$1$`
/// string), compared with `c`; `None` when `c` is malformed.
pub(super) fn md5_crypt_verify(c: &str, password: &[u8]) -> Option<bool> {
    if !md5_crypt_well_formed(c) {
        return None;
    }
    let salt = c.get(3..)?.split('$').next()?;
    let computed = md5_crypt(password, salt.as_bytes());
    Some(super::constant_time_eq(computed.as_bytes(), c.as_bytes()))
}

/// `$1$salt$hash` of `password` (salt of at most 8 bytes).
pub(super) fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(b"$1$");
    ctx.update(salt);
    for chunk in std::iter::repeat_n(&alt[..], password.len().div_ceil(16))
        .enumerate()
        .map(|(i, a)| &a[..(password.len() - i * 16).min(16)])
    {
        ctx.update(chunk);
    }
    // The odd part of the algorithm: a NUL byte for each 1 bit of the
    // length, the password's first byte for each 0 bit.
    let mut n = password.len();
    while n != 0 {
        match n & 1 {
            1 => ctx.update([0u8]),
            _ => ctx.update(&password[..1]),
        }
        n >>= 1;
    }
    let mut fin = ctx.finalize();
    for i in 0..1000 {
        let mut c = Md5::new();
        match i & 1 {
            1 => c.update(password),
            _ => c.update(fin),
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(password);
        }
        match i & 1 {
            1 => c.update(fin),
            _ => c.update(password),
        }
        fin = c.finalize();
    }

    let mut out = String::with_capacity(3 + salt.len() + 1 + 22);
    out.push_str("$1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values made by Dovecot 2.3's `doveadm pw -s SCHEME -p PASSWORD` and
    /// OpenSSL's `openssl passwd -1`, checked with the right password and a
    /// wrong one.
    #[test]
    fn digests_check_as_dovecot_checks_them() {
        const PW: &str = "pässwörd 1";
        let cases: &[(&str, &str)] = &[
            ("PLAIN", PW),
            ("CLEAR", PW),
            ("CLEARTEXT", PW),
            ("PLAIN.B64", "cMOkc3N3w7ZyZCAx"),
            ("SHA", "/Hrn08gEogcgvDjo5YNQSGibZVE="),
            ("SHA1", "/Hrn08gEogcgvDjo5YNQSGibZVE="),
            ("SHA256", "UODX5JZHe18JVwv9yvMbAoeS719Y7fwn28vMuM/OHRU="),
            // Without padding: Dovecot's decoder does not need it.
            ("SHA256", "UODX5JZHe18JVwv9yvMbAoeS719Y7fwn28vMuM/OHRU"),
            // Twice the digest's length, no encoding named: hex.
            (
                "SHA256",
                "50e0d7e496477b5f09570bfdcaf31b028792ef5f58edfc27dbcbccb8cfce1d15",
            ),
            (
                "SHA256.HEX",
                "50E0D7E496477B5F09570BFDCAF31B028792EF5F58EDFC27DBCBCCB8CFCE1D15",
            ),
            (
                "SHA512",
                "MGrCWX/OaIyw5xBZ0RrM2vwe1YHoo2MD/NKt2+vkfLiudEOMnHxXTsVXCSooO5eehIdUJFylnTmr3TTyK23wMw==",
            ),
            ("SSHA", "ndm3doeTW+++lWhsrO4wac/Q6QZU9NHn"),
            ("SSHA256", "qt+yL9vl36gxeMxe27g8OBgieU4slFCVZ6uqry8DaQW73Zq4"),
            (
                "SSHA512",
                "M8AgWyPjdKo8Cp+VUlYW1Y2mwA/5jXhqZymqmlm2FjgQmPbq1nxLDPfEwqYeSEj8R2e4AijSTO0PgVSYDvHprYiFTrI=",
            ),
            (
                "SSHA512.HEX",
                "5ff0bf2f2fe9cdab15c0cdd521f3e62c7d49c5c1dcb729be1f41b2702d84db51f3d3a46b907f4e6b2b4d95e3b4915d453a935e66d1dd7e03a99c2144f6bd9d59eb01f5bc",
            ),
            ("SMD5", "jwy60WsYSVmkIHABWxn7zMUcShQ="),
            ("PLAIN-MD5", "ce74b892da441b00f4b61523872bc6b4"),
            ("MD5", "ce74b892da441b00f4b61523872bc6b4"),
            // Not twice the length: base64.
            ("PLAIN-MD5", "znS4ktpEGwD0thUjhyvGtA=="),
            ("LDAP-MD5", "znS4ktpEGwD0thUjhyvGtA=="),
            // Unused bits set in the last character: Dovecot reads it.
            ("LDAP-MD5", "znS4ktpEGwD0thUjhyvGtB=="),
        ];
        for (prefix, value) in cases {
            let what = format!("{{{prefix}}}{value}");
            assert!(digest_scheme(prefix, value).is_some(), "{what}");
            assert!(digest_well_formed(prefix, value), "{what}");
            assert_eq!(
                digest_verify(prefix, value, PW.as_bytes()),
                Some(true),
                "{what}"
            );
            assert_eq!(
                digest_verify(prefix, value, b"p\xc3\xa4ssw\xc3\xb6rd 2"),
                Some(false),
                "{what}"
            );
            assert_eq!(digest_verify(prefix, value, b""), Some(false), "{what}");
        }
    }

    /// What Dovecot refuses as malformed is malformed here: never a
    /// mismatch, which would read as a wrong password.
    #[test]
    fn malformed_digests_are_not_mismatches() {
        for (prefix, value) in [
            ("SHA256", "UODX5JZHe18JVwv9yvMbAoeS719Y7fwn28vMuM/OHR"),
            ("SHA256", "not base64!"),
            ("SHA256.HEX", "50e0"),
            ("SHA256.HEX", "zz"),
            (
                "SHA256.B64",
                "50e0d7e496477b5f09570bfdcaf31b028792ef5f58edfc27dbcbccb8cfce1d15",
            ),
            ("SSHA", "/Hrn08gEogcgvDjo5YNQSGibZVE="),
            ("SSHA512", ""),
            ("PLAIN-MD5", "ce74b892da441b00f4b61523872bc6b"),
            // `+f` parses as a number, but is no hex.
            ("PLAIN-MD5.HEX", "+e74b892da441b00f4b61523872bc6b4"),
            // No cleartext at all: never the empty password.
            ("PLAIN", ""),
            ("PLAIN.B64", ""),
        ] {
            assert!(!digest_well_formed(prefix, value), "{{{prefix}}}{value}");
            assert_eq!(
                digest_verify(prefix, value, b"x"),
                None,
                "{{{prefix}}}{value}"
            );
        }
        for prefix in ["SHA256.B32", "SSHA1", "PLAIN-TRUNC", "CRYPT", "PBKDF2"] {
            assert!(digest_scheme(prefix, "x").is_none(), "{prefix}");
        }
        // {MD5} over `$1$` is MD5-crypt.
        assert!(digest_scheme("MD5", "$1$ab$rn6aQS/o7141mj179E/zA.").is_none());
    }

    /// `openssl passwd -1` and `doveadm pw -s MD5-CRYPT`.
    #[test]
    fn md5_crypt_as_crypt3_makes_it() {
        for (c, pw) in [
            ("$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/", "password"),
            ("$1$ab$rn6aQS/o7141mj179E/zA.", ""),
            (
                "$1$12345678$88H/abZcsXB7Bc5oPiB7M.",
                "a much longer password than sixteen bytes, really",
            ),
            ("$1$DE0jlCeH$j71Z/7CMuZ9VUVFrtRmtV1", "pässwörd 1"),
        ] {
            assert!(md5_crypt_well_formed(c), "{c}");
            assert_eq!(md5_crypt_verify(c, pw.as_bytes()), Some(true), "{c}");
            assert_eq!(md5_crypt_verify(c, b"password2"), Some(false), "{c}");
        }
        for bad in [
            "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK",
            "$1$$qjXMvbEw8oaL.CzflDtaK/",
            "$1$saltsalt9$qjXMvbEw8oaL.CzflDtaK/",
            "$1$salt:$qjXMvbEw8oaL.CzflDtaK/",
            "$1$saltsalt$qjXMvbEw8oaL.CzflDta!/",
            "$1$saltsalt",
        ] {
            assert!(!md5_crypt_well_formed(bad), "{bad}");
            assert_eq!(md5_crypt_verify(bad, b"password"), None, "{bad}");
        }
    }
}

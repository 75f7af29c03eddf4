//! [`Secret`]: a byte string that never prints.
//!
//! Cleartext passwords (from fd 3 or an HTTP body) and the HTTP API's
//! shared secret live in this type from the moment they are parsed. Its
//! `Debug` prints `<redacted>` in every build, so a password cannot reach a
//! log line or an error message by accident (style rule 8). The bytes are
//! not UTF-8-checked: Dovecot passes passwords as opaque bytes.
//!
//! The buffer is overwritten with zeros when dropped (`zeroize`, whose
//! writes the optimiser cannot remove). That is best effort (earlier
//! copies made by the allocator or the kernel are out of reach), but it
//! keeps the one copy we own from lingering. Comparisons use `subtle`.

use std::fmt;

/// A secret byte string: a cleartext password or an API token.
///
/// Deliberately not `PartialEq`: comparisons go through [`Secret::ct_eq`].
#[derive(Clone, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret bytes, for the one place that needs them (a hash check,
    /// a constant-time comparison).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `other` in time that depends only on the lengths, not
    /// on where the bytes differ, so a caller probing a token cannot learn
    /// its prefix from response times. The length itself is not hidden.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        ct_eq(&self.0, other)
    }
}

/// Constant-time byte comparison (for equal lengths); see [`Secret::ct_eq`].
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    // subtle's ct_eq answers false at once for different lengths.
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s.into_bytes())
    }
}

impl From<Vec<u8>> for Secret {
    fn from(v: Vec<u8>) -> Self {
        Secret(v)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
    }

    #[test]
    fn constant_time_compare() {
        let s = Secret::new("token");
        assert!(s.ct_eq(b"token"));
        assert!(!s.ct_eq(b"tokem"));
        assert!(!s.ct_eq(b"toke"));
        assert!(!s.ct_eq(b""));
        assert!(Secret::new("").ct_eq(b""));
    }

    #[test]
    fn holds_arbitrary_bytes() {
        let s = Secret::new(vec![0xff, 0x00, b'a']);
        assert_eq!(s.expose(), &[0xff, 0x00, b'a']);
    }
}

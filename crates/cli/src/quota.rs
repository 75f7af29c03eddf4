//! The quota an admin types (`user add --quota`, `user quota`, the bulk
//! file), checked strictly and stored in one canonical form that both
//! Dovecot generations read the same way; and the form an import stores a
//! size it read as bytes in ([`of_bytes`]).
//!
//! The one decision a reader might question: a bare byte count is stored
//! with a `B` unit. The row's quota reaches Dovecot 2.3 as
//! `quota_rule=*:storage=<quota>`, and there a number without a unit counts
//! kilobytes (`storage` is "quota limit in kilobytes"; the units are b, k,
//! M, G, T: Dovecot's quota configuration documentation, and
//! `quota_rule_parse_limits` in core's src/plugins/quota/quota-util.c),
//! while Dovecot 2.4's size settings read bytes. `1048576B` means the same
//! to both. Anything else Dovecot might accept (percentages, `+100M`,
//! `2GiB`) is refused here: a per-user limit is a plain size, and a value
//! mailtable cannot read back plainly is one an admin cannot check.

use crate::error::CliError;

/// The largest limit Dovecot keeps (an `int64_t` of bytes).
const MAX_BYTES: u128 = i64::MAX as u128;

/// `Some(canonical)` for a size, `None` for `none` (no quota).
pub(crate) fn parse(text: &str) -> Result<Option<String>, CliError> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = |why: &str| {
        CliError::usage(format!(
            "invalid quota {text:?}: {why} (a size such as 500M, 2G, 1T, a byte count, or none)"
        ))
    };
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a number"));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad("unknown unit")),
    };
    let n: u128 = digits.parse().map_err(|_| bad("too large"))?;
    if n == 0 {
        return Err(bad("0 means unlimited to Dovecot; say none"));
    }
    if n.checked_shl(shift).is_none_or(|b| b > MAX_BYTES) || digits.len() > 20 {
        return Err(bad("too large"));
    }
    let unit = match unit.to_ascii_uppercase().as_str() {
        "" => "B".to_string(),
        u => u.to_string(),
    };
    // Without leading zeros, so equal sizes are stored alike.
    Ok(Some(format!("{n}{unit}")))
}

/// A quota of `n` bytes as an import stores it, in the largest whole unit
/// (`2147483648` -> `2G`, `1536` -> `1536B`); `None` for 0 or less (no
/// limit), so that the sources of an import agree however each wrote one
/// size (PostfixAdmin's bytes, a passwd-file's `2048M`).
pub(crate) fn of_bytes(n: i64) -> Option<String> {
    if n <= 0 {
        return None;
    }
    for (unit, size) in [
        ("T", 1i64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if n % size == 0 {
            return Some(format!("{}{unit}", n / size));
        }
    }
    Some(format!("{n}B"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_are_stored_in_one_form() {
        for (given, stored) in [
            ("500M", "500M"),
            ("500m", "500M"),
            ("2G", "2G"),
            ("1T", "1T"),
            ("100k", "100K"),
            ("1048576", "1048576B"),
            ("1048576b", "1048576B"),
            ("007G", "7G"),
        ] {
            assert_eq!(parse(given).unwrap().as_deref(), Some(stored), "{given}");
        }
        assert_eq!(parse("none").unwrap(), None);
        assert_eq!(parse("NONE").unwrap(), None);
    }

    #[test]
    fn anything_else_is_refused_naming_the_input() {
        for bad in [
            "", "G", "2 G", "2GB", "2GiB", "-1G", "+100M", "10%", "1.5G", "0", "0M", "2P",
            "9999999T", "2G\t", "１G",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}

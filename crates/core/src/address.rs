//! Mail addresses and domains: parsing, normalisation, limits, subaddress tags.
//!
//! Everything that enters mailtable as an address (a CLI argument, a key from
//! smtpd, a Dovecot login) becomes an [`Address`] here, once, and nothing deeper
//! takes a raw string. Normal form: the local part lower-cased, the domain in
//! IDNA ASCII form (punycode), lower-case. smtpd lower-cases every key it sends
//! (`table_lookup` in OpenSMTPD `usr.sbin/smtpd/table.c`) and Dovecot's default
//! `auth_username_format` is `%Lu`, so storing lower-case makes every daemon
//! agree about an address.
//!
//! The accepted local-part alphabet is deliberately narrower than RFC 5321:
//! `%` is mailtable's wildcard, `:` separates `address:hash` in smtpd's
//! credentials value, `,` and quotes are list syntax in smtpd's alias values
//! (`expand_line` in `usr.sbin/smtpd/expand.c`), and `|` starts a pipe there.
//! An address using them could not be served safely, so it is refused with a
//! clear error instead.

use std::fmt;

/// RFC 5321 §4.5.3.1.1: at most 64 octets in a local part.
pub const MAX_LOCAL_LEN: usize = 64;
/// RFC 1035 §2.3.4 / RFC 5321 §4.5.3.1.2: at most 253 octets in a domain name
/// written without its trailing dot.
pub const MAX_DOMAIN_LEN: usize = 253;
/// RFC 5321 §4.5.3.1.3 (path of 256 octets including the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;
/// The longest local part smtpd takes in an address (`SMTPD_MAXLOCALPARTSIZE`
/// in `usr.sbin/smtpd/smtpd.h`, 6.8 and 7.6: 255 and the NUL): what a lookup
/// key may hold ([`Address::parse_key`]).
pub const SMTPD_MAX_LOCAL_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;

/// Why a string is not an address, a domain or a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `@`, or nothing on one side of it.
    #[error("invalid address {0:?}: expected local@domain")]
    Shape(String),
    /// Too long as a whole or in one part.
    #[error("invalid address {input:?}: {what} is longer than {max} bytes")]
    TooLong {
        /// The offending input.
        input: String,
        /// Which part is too long.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A character mailtable cannot store or serve.
    #[error("invalid address {input:?}: character {ch:?} is not allowed in the local part")]
    LocalChar {
        /// The offending input.
        input: String,
        /// The first bad character.
        ch: char,
    },
    /// Leading, trailing or doubled dots.
    #[error("invalid address {0:?}: the local part has a leading, trailing or doubled dot")]
    Dots(String),
    /// Not a valid host name, before or after IDNA conversion.
    #[error("invalid domain {input:?}: {why}")]
    Domain {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A wildcard pattern with more than one `%`.
    #[error("invalid pattern {0:?}: at most one % is allowed")]
    TwoWildcards(String),
    /// A `%` where only a concrete address is allowed.
    #[error("invalid address {0:?}: % is a wildcard, not allowed here")]
    Wildcard(String),
}

impl AddressError {
    /// What is wrong, without the input: for messages about text that may
    /// be a secret (a password typed into the wrong field of a file).
    pub fn reason(&self) -> String {
        match self {
            AddressError::Shape(_) => "expected local@domain".into(),
            AddressError::TooLong { what, max, .. } => format!("{what} is longer than {max} bytes"),
            AddressError::LocalChar { .. } => {
                "a character that is not allowed in the local part".into()
            }
            AddressError::Dots(_) => "the local part has a leading, trailing or doubled dot".into(),
            AddressError::Domain { why, .. } => format!("invalid domain: {why}"),
            AddressError::TwoWildcards(_) => "at most one % is allowed".into(),
            AddressError::Wildcard(_) => "% is a wildcard, not allowed here".into(),
        }
    }
}

/// A domain in normal form: lower-case IDNA ASCII, no trailing dot.
///
/// Shared, not copied, when cloned: every [`Address`] holds its domain, and
/// a big import (`mailtable import`) clones a million addresses of a
/// hundred domains into its maps, which then share one string per parse.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(std::sync::Arc<str>);

impl Domain {
    /// Parse and normalise a domain (`Exämple.ORG` becomes `xn--exmple-cua.org`).
    pub fn parse(input: &str) -> Result<Domain, AddressError> {
        let err = |why| AddressError::Domain {
            input: input.to_string(),
            why,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let ascii = if input.is_ascii() {
            input.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(input).map_err(|_| err("not a valid internationalised name"))?
        };
        let ascii = ascii.strip_suffix('.').unwrap_or(&ascii).to_string();
        // An `xn--` label is an internationalised name already encoded: it
        // must decode (RFC 5891 section 5.4), and takes the form encoding
        // its name gives, so that one domain has one spelling however it
        // was written (`xn--zz` decodes to nothing; `xn--ab` is no name).
        let ascii = match ascii.split('.').any(|l| l.starts_with("xn--")) {
            true => idna::domain_to_ascii(&ascii)
                .ok()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| err("an xn-- label is not a valid internationalised name"))?,
            false => ascii,
        };
        if ascii.is_empty() {
            return Err(err("empty"));
        }
        if ascii.len() > MAX_DOMAIN_LEN {
            return Err(err("longer than 253 bytes"));
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(err("empty label"));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(err("a label is longer than 63 bytes"));
            }
            // Host names: letters, digits, hyphen (RFC 952/1123). No `_`, which
            // is what makes delivery user names decodable at their last `_`.
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err("only letters, digits, '-' and '.' are allowed"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("a label starts or ends with '-'"));
            }
        }
        Ok(Domain(ascii.into()))
    }

    /// The normal form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normal form, shared with this domain rather than copied: for
    /// holders of many rows of one domain.
    pub fn shared(&self) -> std::sync::Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters allowed in a local part besides ASCII letters and digits.
const LOCAL_SPECIALS: &[u8] = b"!#$&'*+-/=?^_`{}~.";

/// Which local parts [`check_local`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// What may be stored: at most 64 bytes of [`LOCAL_SPECIALS`].
    Stored,
    /// The same, and `%`, the wildcard of a row.
    Pattern,
    /// What smtpd may ask about: its own alphabet (`MAILADDR_ALLOWED` in
    /// `usr.sbin/smtpd/smtpd.h` adds `%` and `|`), up to its 255 bytes.
    Key,
}

fn check_local(input: &str, local: &str, rules: Local) -> Result<(), AddressError> {
    let max = match rules {
        Local::Key => SMTPD_MAX_LOCAL_LEN,
        Local::Stored | Local::Pattern => MAX_LOCAL_LEN,
    };
    if local.len() > max {
        return Err(AddressError::TooLong {
            input: input.to_string(),
            what: "the local part",
            max,
        });
    }
    for ch in local.chars() {
        let ok = ch.is_ascii_alphanumeric()
            || (ch.is_ascii() && LOCAL_SPECIALS.contains(&(ch as u8)))
            || (rules != Local::Stored && ch == '%')
            || (rules == Local::Key && ch == '|');
        if !ok {
            if ch == '%' {
                return Err(AddressError::Wildcard(input.to_string()));
            }
            return Err(AddressError::LocalChar {
                input: input.to_string(),
                ch,
            });
        }
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::Dots(input.to_string()));
    }
    Ok(())
}

/// Split `local@domain` at the last `@` and validate both halves.
fn split(input: &str, rules: Local) -> Result<(String, Domain), AddressError> {
    let (local, domain) = input
        .rsplit_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty())
        .ok_or_else(|| AddressError::Shape(input.to_string()))?;
    let local = local.to_ascii_lowercase();
    check_local(input, &local, rules)?;
    let domain = Domain::parse(domain)?;
    if rules != Local::Key && local.len() + 1 + domain.as_str().len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            input: input.to_string(),
            what: "the address",
            max: MAX_ADDRESS_LEN,
        });
    }
    Ok((local, domain))
}

/// A concrete mail address in normal form. Never contains `%`, except a
/// lookup key's ([`Address::parse_key`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// Shared, as the domain is: an import holds an address in several
    /// sets at once (logins, keys, the addresses to verify), a million of
    /// each for a big source, and a clone is a reference count.
    local: std::sync::Arc<str>,
    domain: Domain,
}

impl Address {
    /// Parse and normalise `local@domain`.
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        let (local, domain) = split(input, Local::Stored)?;
        Ok(Address {
            local: local.into(),
            domain,
        })
    }

    /// Parse and normalise an address smtpd asks about, in smtpd's own
    /// limits, wider than what may be stored: a local part of up to 255
    /// bytes, with `%` and `|`. No row has such an address, but a pattern
    /// or a catch-all may take it: VERP and SRS return paths
    /// (`list-bounces-<recipient>@`) run past 64 bytes, and a key refused
    /// here would skip the pattern meant for it (smtpd then bounces the
    /// mail or hands it to the catch-all). A capture too long or with a
    /// character a target cannot hold makes no target
    /// ([`crate::resolve::Resolver::targets`]).
    pub fn parse_key(input: &str) -> Result<Address, AddressError> {
        let (local, domain) = split(input, Local::Key)?;
        Ok(Address {
            local: local.into(),
            domain,
        })
    }

    /// Build from parts already in normal form (used for rows read back from
    /// the database, which are re-validated).
    pub fn from_parts(local: &str, domain: &str) -> Result<Address, AddressError> {
        Address::parse(&format!("{local}@{domain}"))
    }

    /// The local part, lower-case, tag included.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The local part, shared with this address rather than copied.
    pub fn local_shared(&self) -> std::sync::Arc<str> {
        self.local.clone()
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Split the local part at the first `delimiter`: `hugo+news` gives
    /// `("hugo", Some("news"))`. A local part that starts with the delimiter
    /// has no tag (`+hugo` stays whole). smtpd cuts there too, leaving an
    /// empty user, but the keys that gives it are the domain's catch-all
    /// (or none), which the resolution of `+hugo` reaches anyway
    /// ([`crate::resolve::Resolver::smtpd_keys`] lists them).
    pub fn split_tag(&self, delimiter: char) -> (&str, Option<&str>) {
        match self.local.find(delimiter) {
            Some(i) if i > 0 => (
                &self.local[..i],
                Some(&self.local[i + delimiter.len_utf8()..]),
            ),
            _ => (&self.local, None),
        }
    }

    /// The same address without its tag.
    pub fn without_tag(&self, delimiter: char) -> Address {
        let (base, _) = self.split_tag(delimiter);
        Address {
            local: base.into(),
            domain: self.domain.clone(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// The left-hand side of a row: a concrete local part, a pattern with one `%`,
/// or the catch-all `%`.
///
/// `_` is a literal character: the article's SQL `LIKE` treated it as a
/// one-character wildcard, so `john_doe@x` also matched `johnXdoe@x`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LocalPattern {
    /// `hugo`: exactly this local part.
    Exact(String),
    /// `sales-%`, `%-bounces`, `a%b`: the `%` matches any run of characters,
    /// possibly empty, as in SQL `LIKE`.
    Wildcard {
        /// Text before the `%`.
        prefix: String,
        /// Text after the `%`.
        suffix: String,
    },
    /// `%`: the catch-all, matching at least one character.
    CatchAll,
}

impl LocalPattern {
    /// Parse a stored or typed username column.
    pub fn parse(local: &str, whole_input: &str) -> Result<LocalPattern, AddressError> {
        let local = local.to_ascii_lowercase();
        match local.matches('%').count() {
            0 => {
                check_local(whole_input, &local, Local::Stored)?;
                Ok(LocalPattern::Exact(local))
            }
            1 if local == "%" => Ok(LocalPattern::CatchAll),
            1 => {
                check_local(whole_input, &local, Local::Pattern)?;
                let (prefix, suffix) = local.split_once('%').unwrap_or((&local, ""));
                Ok(LocalPattern::Wildcard {
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                })
            }
            _ => Err(AddressError::TwoWildcards(whole_input.to_string())),
        }
    }

    /// What `%` matched in `local`, or `None` when it does not match.
    /// For an exact pattern the capture is empty.
    pub fn capture<'a>(&self, local: &'a str) -> Option<&'a str> {
        match self {
            LocalPattern::Exact(l) => (l == local).then_some(""),
            LocalPattern::CatchAll => (!local.is_empty()).then_some(local),
            LocalPattern::Wildcard { prefix, suffix } => {
                if local.len() < prefix.len() + suffix.len() {
                    return None;
                }
                let mid = local.strip_prefix(prefix.as_str())?;
                mid.strip_suffix(suffix.as_str())
            }
        }
    }

    /// Length of the literal text: the specificity used to rank patterns.
    pub fn literal_len(&self) -> usize {
        match self {
            LocalPattern::Exact(l) => l.len(),
            LocalPattern::Wildcard { prefix, suffix } => prefix.len() + suffix.len(),
            LocalPattern::CatchAll => 0,
        }
    }

    /// True for patterns with a `%` (including the catch-all).
    pub fn is_wildcard(&self) -> bool {
        !matches!(self, LocalPattern::Exact(_))
    }
}

impl fmt::Display for LocalPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalPattern::Exact(l) => f.write_str(l),
            LocalPattern::Wildcard { prefix, suffix } => write!(f, "{prefix}%{suffix}"),
            LocalPattern::CatchAll => f.write_str("%"),
        }
    }
}

/// A row's address side: pattern + domain (`sales-%@example.org`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressPattern {
    /// The local-part pattern.
    pub local: LocalPattern,
    /// The domain.
    pub domain: Domain,
}

impl AddressPattern {
    /// Parse `a@d`, `%@d`, `sales-%@d`; `@d` is accepted as the catch-all
    /// (smtpd's own spelling of a domain catch-all).
    pub fn parse(input: &str) -> Result<AddressPattern, AddressError> {
        if let Some(domain) = input.strip_prefix('@') {
            return Ok(AddressPattern {
                local: LocalPattern::CatchAll,
                domain: Domain::parse(domain)?,
            });
        }
        let (local, domain) = split(input, Local::Pattern)?;
        Ok(AddressPattern {
            local: LocalPattern::parse(&local, input)?,
            domain,
        })
    }

    /// The concrete address, for exact patterns.
    pub fn as_address(&self) -> Option<Address> {
        match &self.local {
            LocalPattern::Exact(l) => Some(Address {
                local: l.as_str().into(),
                domain: self.domain.clone(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for AddressPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xn_labels_must_decode() {
        for bad in [
            "a@xn--zz.org",
            "a@xn--.org",
            "a@mail.xn--a.org",
            "a@xn--ab-.org",
        ] {
            let e = Address::parse(bad).unwrap_err().to_string();
            assert!(e.contains("xn--"), "{bad}: {e}");
        }
        let good = Address::parse("a@Mail.XN--Exmple-CUA.org.").unwrap();
        assert_eq!(good.domain().as_str(), "mail.xn--exmple-cua.org");
        assert_eq!(
            Domain::parse("xn--exmple-cua.org").unwrap(),
            Domain::parse("exämple.org").unwrap()
        );
    }

    #[test]
    fn lower_cases_and_punycodes() {
        let a = Address::parse("Hugo@Barrera.IO").unwrap();
        assert_eq!(a.to_string(), "hugo@barrera.io");
        let a = Address::parse("Jürgen@Exämple.ORG").unwrap_err();
        assert!(matches!(a, AddressError::LocalChar { ch: 'ü', .. }));
        let a = Address::parse("juergen@Exämple.ORG").unwrap();
        assert_eq!(a.domain().as_str(), "xn--exmple-cua.org");
        assert_eq!(
            Address::parse("a@xn--exmple-cua.org").unwrap().domain(),
            a.domain()
        );
    }

    #[test]
    fn refuses_bad_shapes() {
        for bad in [
            "",
            "hugo",
            "@barrera.io",
            "hugo@",
            "a b@c.d",
            "a,b@c.d",
            "a:b@c.d",
            "a|b@c.d",
            "a\"b@c.d",
            ".a@c.d",
            "a.@c.d",
            "a..b@c.d",
            "a@-c.d",
            "a@c_d.org",
            "a@c..d",
            "a%b@c.d",
            "a\n@c.d",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn length_limits() {
        let l64 = "a".repeat(64);
        assert!(Address::parse(&format!("{l64}@x.org")).is_ok());
        let l65 = "a".repeat(65);
        assert!(matches!(
            Address::parse(&format!("{l65}@x.org")),
            Err(AddressError::TooLong { .. })
        ));
        let label = "b".repeat(63);
        let dom = format!("{label}.{label}.{label}.{label}");
        assert!(dom.len() > 253);
        assert!(Address::parse(&format!("a@{dom}")).is_err());
        let long_label = "c".repeat(64);
        assert!(Domain::parse(&format!("{long_label}.org")).is_err());
    }

    /// A domain name of `n` bytes: labels of 50 bytes and a last one of 1
    /// to 51.
    fn domain_of_len(n: usize) -> String {
        let mut d = String::new();
        while n - d.len() > 51 {
            d.push_str(&"b".repeat(50));
            d.push('.');
        }
        d.push_str(&"c".repeat(n - d.len()));
        assert_eq!(d.len(), n);
        d
    }

    /// Every limit is inclusive: the longest legal label, domain and
    /// address are accepted (a real address may be exactly that long), one
    /// byte more is refused, and with the error that names the limit.
    #[test]
    fn length_limits_are_inclusive() {
        let label = "b".repeat(MAX_LABEL_LEN);
        assert!(Domain::parse(&format!("{label}.org")).is_ok());
        assert!(matches!(
            Domain::parse(&format!("{label}b.org")),
            Err(AddressError::Domain { why, .. }) if why.contains("label")
        ));

        let d = domain_of_len(MAX_DOMAIN_LEN);
        assert_eq!(Domain::parse(&d).unwrap().as_str(), d);
        assert_eq!(Domain::parse(&format!("{d}.")).unwrap().as_str(), d);
        assert!(matches!(
            Domain::parse(&domain_of_len(MAX_DOMAIN_LEN + 1)),
            Err(AddressError::Domain { why, .. }) if why.contains("253")
        ));

        let local = "a".repeat(MAX_LOCAL_LEN);
        let fits = MAX_ADDRESS_LEN - MAX_LOCAL_LEN - 1;
        let a = format!("{local}@{}", domain_of_len(fits));
        assert_eq!(a.len(), MAX_ADDRESS_LEN);
        assert_eq!(Address::parse(&a).unwrap().to_string(), a);
        assert!(matches!(
            Address::parse(&format!("{local}@{}", domain_of_len(fits + 1))),
            Err(AddressError::TooLong {
                what: "the address",
                max: MAX_ADDRESS_LEN,
                ..
            })
        ));
    }

    #[test]
    fn tags() {
        let a = Address::parse("hugo+news@barrera.io").unwrap();
        assert_eq!(a.split_tag('+'), ("hugo", Some("news")));
        assert_eq!(a.without_tag('+').to_string(), "hugo@barrera.io");
        let b = Address::parse("+hugo@barrera.io").unwrap();
        assert_eq!(b.split_tag('+'), ("+hugo", None));
        let c = Address::parse("a+b+c@x.org").unwrap();
        assert_eq!(c.split_tag('+'), ("a", Some("b+c")));
        let d = Address::parse("a-b@x.org").unwrap();
        assert_eq!(d.split_tag('-'), ("a", Some("b")));
    }

    #[test]
    fn patterns() {
        let p = AddressPattern::parse("sales-%@Example.org").unwrap();
        assert_eq!(p.to_string(), "sales-%@example.org");
        assert_eq!(p.local.capture("sales-eu"), Some("eu"));
        assert_eq!(p.local.capture("sales-"), Some(""));
        assert_eq!(p.local.capture("sale"), None);
        assert_eq!(p.local.literal_len(), 6);
        let c = AddressPattern::parse("@example.org").unwrap();
        assert_eq!(c.local, LocalPattern::CatchAll);
        assert_eq!(c.local.capture(""), None);
        assert_eq!(c.local.capture("x"), Some("x"));
        let m = AddressPattern::parse("a%z@x.org").unwrap();
        assert_eq!(m.local.capture("az"), Some(""));
        assert_eq!(m.local.capture("abcz"), Some("bc"));
        assert_eq!(m.local.capture("z"), None);
        assert!(matches!(
            AddressPattern::parse("a%b%@x.org"),
            Err(AddressError::TwoWildcards(_))
        ));
        // `_` is literal, unlike SQL LIKE.
        let u = AddressPattern::parse("john_doe@x.org").unwrap();
        assert_eq!(u.local.capture("johnxdoe"), None);
        assert_eq!(u.local.capture("john_doe"), Some(""));
    }

    /// `%` matches the empty run too, also between a long prefix and a
    /// long suffix: the local part need only be as long as the literal
    /// text, and one byte less is no match.
    #[test]
    fn wildcard_matches_the_empty_run_between_prefix_and_suffix() {
        let p = LocalPattern::parse("ab%cde", "ab%cde@x.org").unwrap();
        assert_eq!(p.capture("abcde"), Some(""));
        assert_eq!(p.capture("abXcde"), Some("X"));
        assert_eq!(p.capture("abde"), None);
        assert_eq!(p.capture("bcde"), None);
    }

    /// Only an exact local part is no wildcard, and only it names one
    /// concrete address (the CLI's own-address checks and the importer
    /// rely on both).
    #[test]
    fn exact_patterns_are_addresses_wildcards_are_not() {
        let exact = AddressPattern::parse("Hugo@Barrera.io").unwrap();
        assert!(!exact.local.is_wildcard());
        assert_eq!(
            exact.as_address(),
            Some(Address::parse("hugo@barrera.io").unwrap())
        );
        for w in ["sales-%@barrera.io", "%@barrera.io", "@barrera.io"] {
            let p = AddressPattern::parse(w).unwrap();
            assert!(p.local.is_wildcard(), "{w}");
            assert_eq!(p.as_address(), None, "{w}");
        }
    }
}

//! Delivery user names: how a mailbox address travels through smtpd.
//!
//! smtpd hands virtual mail to a *local user name*, which cannot contain `@`
//! (the `username` node grammar of `usr.sbin/smtpd/to.c` is
//! `[A-Za-z0-9_.+-]`). The article this project grew from writes
//! `hugo@barrera.io` as `hugo_barrera.io`. Decoding splits at the LAST `_`:
//! host names contain no `_` ([`crate::Domain::parse`] refuses it), so
//! `john_doe@x.org` becomes `john_doe_x.org` and comes back intact. The
//! article's `replace(mailbox, '_', '@')` would turn it into `john@doe@x.org`.

use crate::address::{Address, AddressError};

/// `hugo@barrera.io` -> `hugo_barrera.io`.
pub fn encode(address: &Address) -> String {
    format!("{}_{}", address.local(), address.domain())
}

/// `hugo_barrera.io` -> `hugo@barrera.io`, splitting at the last `_`.
pub fn decode(name: &str) -> Result<Address, AddressError> {
    let (local, domain) = name
        .rsplit_once('_')
        .ok_or_else(|| AddressError::Shape(name.to_string()))?;
    Address::from_parts(local, domain)
}

/// Accept either login form Dovecot may see: `hugo@barrera.io` (IMAP login)
/// or `hugo_barrera.io` (LMTP delivery from smtpd).
pub fn parse_login(name: &str) -> Result<Address, AddressError> {
    if name.contains('@') {
        Address::parse(name)
    } else {
        decode(name)
    }
}

/// The mailbox a delivery user name with a realm appended names
/// (`hugo_barrera.io@barrera.io`: Dovecot's `auth_default_realm` at work),
/// or `None` when `name` is not of that shape.
pub fn with_realm_appended(name: &str) -> Option<Address> {
    let (delivery_name, _realm) = name.rsplit_once('@')?;
    decode(delivery_name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_underscores_in_the_local_part() {
        for a in ["hugo@barrera.io", "john_doe@example.com", "a_b_c@x-y.org"] {
            let addr = Address::parse(a).unwrap();
            let name = encode(&addr);
            assert!(!name.contains('@'));
            assert_eq!(decode(&name).unwrap(), addr, "{name}");
        }
        assert_eq!(
            encode(&Address::parse("john_doe@example.com").unwrap()),
            "john_doe_example.com"
        );
    }

    #[test]
    fn login_forms() {
        let a = parse_login("Hugo@Barrera.io").unwrap();
        let b = parse_login("hugo_barrera.io").unwrap();
        assert_eq!(a, b);
        assert!(parse_login("hugo").is_err());
        assert!(parse_login("hugo_").is_err());
        assert!(parse_login("_barrera.io").is_err());
    }

    #[test]
    fn a_realm_appended_to_a_delivery_name_is_seen_through() {
        let hugo = Address::parse("hugo@barrera.io").unwrap();
        for name in ["hugo_barrera.io@barrera.io", "hugo_barrera.io@other.org"] {
            assert_eq!(with_realm_appended(name), Some(hugo.clone()), "{name}");
        }
        for name in [
            "hugo@barrera.io",
            "hugo_barrera.io",
            "hugo_@x.org",
            "_x.org@x.org",
        ] {
            assert_eq!(with_realm_appended(name), None, "{name}");
        }
    }
}

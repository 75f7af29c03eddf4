//! The resolution table of DESIGN.md, over rows inserted through the Store
//! of each backend: the answers must not depend on where the rows live.
//! (The same table runs on the in-memory store in
//! `crates/core/src/resolve.rs`.)

use mailtable_core::store::Access;
use mailtable_core::{delivery, password, Address, Destination, Outcome, ResolveError, Resolver};
use mailtable_core::{Row, Secret, Store};
use mailtable_tests::{alias, insert_all, mailbox};

/// The article's data plus every case of the resolution table, in the same
/// order as the unit tests' fixture.
fn fixture() -> Vec<Row> {
    vec![
        mailbox("hugo", "barrera.io"),
        alias("%", "barrera.io", "hugo@barrera.io"),
        alias("contact", "example.com", "hugo@barrera.io"),
        mailbox("alice", "example.org"),
        mailbox("bob", "example.org"),
        mailbox("john_doe", "example.com"),
        alias("team", "example.org", "alice@example.org"),
        alias("team", "example.org", "bob@example.org"),
        alias("team", "example.org", "carol@elsewhere.net"),
        alias("sales-%", "example.org", "bob@example.org"),
        alias("sales-eu-%", "example.org", "alice@example.org"),
        alias("%-bounces", "example.org", "bob@example.org"),
        alias("info", "example.org", "team@example.org"),
        alias("all", "example.org", "info@example.org"),
        alias("%", "old.org", "%@example.org"),
        alias("loop1", "example.org", "loop2@example.org"),
        alias("loop2", "example.org", "loop1@example.org"),
        alias("half", "example.org", "half2@example.org"),
        alias("half2", "example.org", "half@example.org"),
        alias("half2", "example.org", "bob@example.org"),
        alias("bob+lists", "example.org", "alice@example.org"),
        alias("dangling", "example.org", "nobody@example.org"),
        alias("juergen", "xn--exmple-cua.org", "alice@example.org"),
    ]
}

/// A database with the fixture, opened read-only as the daemons open it.
fn seeded(db: &mailtable_tests::TestDb) -> Box<dyn Store> {
    let mut w = db.init();
    insert_all(w.as_mut(), &fixture());
    db.open(Access::ReadOnly)
}

fn mb(a: &str) -> Destination {
    Destination::Mailbox(Address::parse(a).unwrap())
}

fn ext(a: &str) -> Destination {
    Destination::External(Address::parse(a).unwrap())
}

fn resolve(s: &mut dyn Store, a: &str) -> Result<Outcome, ResolveError> {
    Resolver::default().resolve(s, &Address::parse(a).unwrap())
}

backend_test!(resolution_table, |db| {
    let mut s = seeded(&db);
    let found = Outcome::Found;
    let team = || {
        vec![
            mb("alice@example.org"),
            mb("bob@example.org"),
            ext("carol@elsewhere.net"),
        ]
    };
    let table: Vec<(&str, Outcome)> = vec![
        // The article's data.
        ("hugo@barrera.io", found(vec![mb("hugo@barrera.io")])),
        ("random@barrera.io", found(vec![mb("hugo@barrera.io")])),
        ("contact@example.com", found(vec![mb("hugo@barrera.io")])),
        // Upper-case input.
        ("Hugo@Barrera.IO", found(vec![mb("hugo@barrera.io")])),
        // Tag precedence: the mailbox beats the catch-all.
        ("hugo+news@barrera.io", found(vec![mb("hugo@barrera.io")])),
        // `_` is literal; the delivery name round-trips (below).
        (
            "john_doe@example.com",
            found(vec![mb("john_doe@example.com")]),
        ),
        // Fan-out, in row order, with an external target.
        ("team@example.org", found(team())),
        // Chains.
        ("all@example.org", found(team())),
        // Pattern specificity: sales-eu-% beats sales-%.
        (
            "sales-eu-de@example.org",
            found(vec![mb("alice@example.org")]),
        ),
        ("sales-us@example.org", found(vec![mb("bob@example.org")])),
        (
            "list-bounces@example.org",
            found(vec![mb("bob@example.org")]),
        ),
        // Domain alias: `%` substituted.
        ("alice@old.org", found(vec![mb("alice@example.org")])),
        ("bob+x@old.org", found(vec![mb("bob@example.org")])),
        // A tagged exact row wins over the mailbox (step 1).
        (
            "bob+lists@example.org",
            found(vec![mb("alice@example.org")]),
        ),
        ("bob+other@example.org", found(vec![mb("bob@example.org")])),
        // A cycle with an exit keeps the exit.
        ("half@example.org", found(vec![mb("bob@example.org")])),
        // IDN input, stored as punycode.
        ("JUERGEN@EXÄMPLE.ORG", found(vec![mb("alice@example.org")])),
        (
            "juergen@xn--exmple-cua.org",
            found(vec![mb("alice@example.org")]),
        ),
        // Not found, and not ours.
        ("nobody@example.org", Outcome::NotFound),
        ("hugo@nowhere.net", Outcome::UnknownDomain),
    ];
    for (addr, want) in table {
        assert_eq!(resolve(s.as_mut(), addr).unwrap(), want, "{addr}");
    }
});

backend_test!(cycles_and_dangling_aliases_are_errors_not_bounces, |db| {
    let mut s = seeded(&db);
    let e = resolve(s.as_mut(), "loop1@example.org");
    assert!(matches!(e, Err(ResolveError::Loop(_))), "{e:?}");
    let e = resolve(s.as_mut(), "dangling@example.org");
    assert!(matches!(e, Err(ResolveError::Dangling { .. })), "{e:?}");
});

backend_test!(smtpd_walk_agrees_with_resolution, |db| {
    let mut s = seeded(&db);
    let r = Resolver::default();
    for a in [
        "hugo@barrera.io",
        "random@barrera.io",
        "hugo+news@barrera.io",
        "x+y@barrera.io",
        "contact@example.com",
        "team@example.org",
        "all@example.org",
        "sales-eu-de@example.org",
        "sales-us@example.org",
        "list-bounces@example.org",
        "alice@old.org",
        "bob+x@old.org",
        "bob+lists@example.org",
        "bob+other@example.org",
        "nobody@example.org",
        "hugo@nowhere.net",
        "john_doe@example.com",
        "half@example.org",
        "juergen@xn--exmple-cua.org",
    ] {
        let addr = Address::parse(a).unwrap();
        let walk = r.smtpd_walk(s.as_mut(), &addr).unwrap();
        let got = walk.iter().find_map(|w| w.answer.clone());
        let want = match r.resolve(s.as_mut(), &addr).unwrap() {
            Outcome::Found(d) => Some(d.iter().map(Destination::wire).collect::<Vec<_>>()),
            _ => None,
        };
        assert_eq!(got, want, "{a}: {walk:?}");
    }
});

backend_test!(per_key_answers_for_smtpd, |db| {
    let mut s = seeded(&db);
    let r = Resolver::default();
    let mut ans = |k: &str| {
        r.alias_for_key(s.as_mut(), k).unwrap().map(|d| {
            d.iter()
                .map(Destination::wire)
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    assert_eq!(ans("hugo@barrera.io").as_deref(), Some("hugo_barrera.io"));
    assert_eq!(ans("hugo+news@barrera.io"), None);
    assert_eq!(ans("@barrera.io").as_deref(), Some("hugo_barrera.io"));
    assert_eq!(ans("random@barrera.io"), None, "the catch-all is for @dom");
    assert_eq!(ans("alice@old.org").as_deref(), Some("alice_example.org"));
    assert_eq!(ans("@old.org"), None);
    assert_eq!(ans("hugo"), None);
    assert_eq!(ans("@"), None);
    assert_eq!(
        ans("team@example.org").as_deref(),
        Some("alice_example.org, bob_example.org, carol@elsewhere.net")
    );
    assert_eq!(
        ans("john_doe@example.com").as_deref(),
        Some("john_doe_example.com")
    );
});

backend_test!(john_doe_round_trips_through_the_delivery_user_name, |db| {
    let mut s = seeded(&db);
    let r = Resolver::default();
    let Outcome::Found(d) = resolve(s.as_mut(), "john_doe@example.com").unwrap() else {
        panic!("john_doe@example.com not found");
    };
    let user = d[0].wire();
    assert_eq!(user, "john_doe_example.com");
    // smtpd hands the delivery user name back (userinfo, LMTP login).
    let back = delivery::decode(&user).unwrap();
    assert_eq!(back.to_string(), "john_doe@example.com");
    let row = r.mailbox(s.as_mut(), &back).unwrap().expect("mailbox row");
    assert_eq!(row.address(), "john_doe@example.com");
    // The article's `replace('_', '@')` would have looked up john@doe_example.com.
    let wrong = Address::parse("john@doe_example.com");
    assert!(wrong.is_err() || r.mailbox(s.as_mut(), &wrong.unwrap()).unwrap().is_none());
});

backend_test!(senders_are_the_addresses_that_reach_the_user, |db| {
    let mut s = seeded(&db);
    let r = Resolver::default();
    let hugo = Address::parse("hugo@barrera.io").unwrap();
    assert_eq!(
        r.senders(s.as_mut(), &hugo).unwrap().unwrap(),
        ["hugo@barrera.io", "@barrera.io", "contact@example.com"]
    );
    let alice = Address::parse("alice@example.org").unwrap();
    let got = r.senders(s.as_mut(), &alice).unwrap().unwrap();
    for want in [
        "alice@example.org",
        "team@example.org",
        "info@example.org",
        "all@example.org",
        "alice@old.org",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
    let team = Address::parse("team@example.org").unwrap();
    assert_eq!(r.senders(s.as_mut(), &team).unwrap(), None);
});

backend_test!(stored_hashes_verify_after_the_round_trip, |db| {
    let mut w = db.init();
    let pw = Secret::new("correct horse");
    let mut row = mailbox("hugo", "barrera.io");
    row.password = Some(password::hash(&pw, 4).unwrap());
    insert_all(w.as_mut(), &[row]);
    let mut s = db.open(Access::ReadOnly);
    let r = Resolver::default();
    let got = r
        .mailbox(s.as_mut(), &Address::parse("HUGO@barrera.io").unwrap())
        .unwrap()
        .expect("mailbox row");
    let hash = got.password.expect("hash");
    assert!(hash.verify(&pw).unwrap());
    assert!(!hash.verify(&Secret::new("wrong")).unwrap());
});

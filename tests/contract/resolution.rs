//! The resolution table of DESIGN.md over rows inserted through the Store
//! of each backend: the answers must not depend on where the rows live.
//! The table itself (rows, cases, per-key answers, senders) and its runner
//! live in `mailtable_core::testdata`, so the in-memory store of the core's
//! unit tests, SQLite and PostgreSQL all answer the very same table.

use mailtable_core::store::Access;
use mailtable_core::testdata::{check, resolution};
use mailtable_core::{delivery, password, Address, Outcome, Resolver};
use mailtable_core::{Secret, Store};
use mailtable_tests::{insert_all, mailbox};

/// A database with the fixture, opened read-only as the daemons open it.
fn seeded(db: &mailtable_tests::TestDb) -> Box<dyn Store> {
    let mut w = db.init();
    insert_all(w.as_mut(), &resolution::rows());
    db.open(Access::ReadOnly)
}

// Every case through `resolve` and through smtpd's walk, every per-key
// answer, every senders list.
backend_test!(resolution_table, |db| {
    let mut s = seeded(&db);
    check::assert_resolution_table(s.as_mut());
});

backend_test!(john_doe_round_trips_through_the_delivery_user_name, |db| {
    let mut s = seeded(&db);
    let r = Resolver::default();
    let addr = Address::parse("john_doe@example.com").unwrap();
    let Outcome::Found(d) = r.resolve(s.as_mut(), &addr).unwrap() else {
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

//! How long a failed login takes, for a known user with a wrong password and
//! for an unknown user, on the paths that check a password: Dovecot's
//! (`Accounts::verify`, which checkpassword, dict and HTTP use) and smtpd's
//! `credentials` (the table's answer, then the check of the handed-on hash
//! that smtpd's crypt(3) makes, done here with mailtable's own verifier).
//!
//! Two databases: `$2b$10$` hashes with `password_cost = 5`, and `$6$`
//! hashes (5000 rounds, crypt(3)'s default). Each figure is the median of
//! `ROUNDS` tries, in milliseconds. "before" is what the previous code did
//! for an unknown user: a bcrypt check of `password_cost` on the Dovecot
//! paths, and on smtpd's path a not-found answer, i.e. the lookup alone.
//!
//! Prints figures only: timing assertions belong to no unit test.

use std::time::Instant;

use mailtable_core::accounts::Accounts;
use mailtable_core::password::{self, PasswordHash, Secret};
use mailtable_core::store::memory::MemStore;
use mailtable_core::Config;
use table_mailtable::answer::Tables;
use table_mailtable::{Answer, Handler, Service};

const ROUNDS: usize = 21;
const PW: &str = "correct horse";

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[ROUNDS / 2]
}

fn store(hash: &str) -> MemStore {
    let mut s = MemStore::default();
    for u in ["a", "b", "c"] {
        s = s.with(u, "example.org", &format!("{u}@example.org"), Some(hash));
    }
    s
}

/// smtpd's path: the table's answer, then crypt(3)'s check of the hash.
fn smtpd(t: &mut Tables, user: &str) {
    match t.lookup(Service::Credentials, user) {
        Answer::Found(v) => {
            let hash = v.split_once(':').map(|(_, h)| h).unwrap_or_default();
            let _ = PasswordHash::new(hash).verify(&Secret::new("wrong"));
        }
        Answer::NotFound => {}
        Answer::Error(e) => panic!("{user}: {e}"),
    }
}

fn run(name: &str, hash: &str, password_cost: u32) {
    let config = Config::parse(&format!(
        "uid = 2000\ngid = 2000\nhome = \"/v/%d/%n\"\npassword_cost = {password_cost}"
    ))
    .expect("valid config");
    let s = store(hash);
    let accounts = Accounts::new(&config);
    let verify = |user: &str| {
        let mut s = s.clone();
        median_ms(|| {
            let _ = accounts.verify(&mut s, user, b"wrong");
        })
    };
    let known = verify("a@example.org");
    let unknown = verify("nobody@example.org");
    let old_dummy = password::hash(&Secret::new("x"), password_cost).expect("hashing works");
    let before = median_ms(|| {
        let _ = old_dummy.verify(&Secret::new("wrong"));
    }) + median_ms(|| {
        let _ = accounts.find(&mut s.clone(), "nobody@example.org");
    });
    println!(
        "{name}: Dovecot paths: known user, wrong password {known:.2} ms; unknown user \
         before {before:.2} ms, after {unknown:.2} ms (after/known {:.2})",
        unknown / known
    );
    let mut t = Tables::with_store(config.clone(), Box::new(s.clone()));
    let known = median_ms(|| smtpd(&mut t, "a@example.org"));
    let unknown = median_ms(|| smtpd(&mut t, "nobody@example.org"));
    let mut lookup_only = Tables::with_store(config, Box::new(s.clone()));
    let before = median_ms(|| {
        let _ = lookup_only.lookup(Service::Credentials, "nobody@example.org");
    });
    println!(
        "{name}: smtpd credentials + crypt: known user, wrong password {known:.2} ms; unknown \
         user before {before:.2} ms, after {unknown:.2} ms (after/known {:.2})",
        unknown / known
    );
}

fn main() {
    let b10 = password::hash(&Secret::new(PW), 10).expect("hashing works");
    let sha512 =
        sha_crypt::sha512_simple(PW, &sha_crypt::Sha512Params::default()).expect("hashing works");
    run("$2b$10$, password_cost 5", b10.stored(), 5);
    run("$6$ (5000 rounds), password_cost 5", &sha512, 5);
}

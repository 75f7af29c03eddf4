//! One account policy, every protocol: the same login cases fed through
//! smtpd's `auth` and `credentials` answers (table-mailtable), Dovecot's
//! checkpassword, dict and HTTP answers (dovecot-mailtable), and the core
//! policy itself, with one expected verdict per case.
//!
//! Each protocol can say less than the policy knows: smtpd's `auth` has
//! only found / not found / error, checkpassword's verify exit code 1 is
//! both "wrong password" and "no such user". So each answer is mapped to
//! the set of verdicts it can stand for, and the case's verdict must be in
//! it. A hash that is handed on (`credentials` to smtpd, a passdb lookup to
//! Dovecot) is checked here with the tried password, standing in for the
//! daemon's own check.
//!
//! The verdict differs between verifiers only where a verifier lacks the
//! scheme, and the table says so in its own column: smtpd's crypt(3) has no
//! Argon2, and mailtable itself does not check yescrypt (`$y$`).
//!
//! The same paths, plus every userdb entry point and the dict iteration,
//! then run over a store that fails one call at a time
//! (`mailtable_core::store::failing`): a database error must be a temporary
//! failure on every path, whatever call of the lookup it hits.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, SaltString};
use dovecot_mailtable::backend::{checkpassword_answer, Backend, Directory};
use dovecot_mailtable::http::Endpoint;
use dovecot_mailtable::pool::StorePool;
use dovecot_mailtable::{
    ApiBackend, CheckpasswordRequest, DictBackend, Lookup, LookupResult, Mode, Outcome, Secret,
    VerifyResult,
};
use mailtable_core::accounts::{Accounts, Verdict};
use mailtable_core::password::{self, PasswordHash, Scheme};
use mailtable_core::store::failing::FailingStore;
use mailtable_core::store::memory::MemStore;
use mailtable_core::{Config, Store};
use table_mailtable::answer::Tables;
use table_mailtable::{Answer, Handler, Service};

/// The right password of every case (lower case: smtpd lower-cases the
/// `auth` key, OpenSMTPD #1268).
const PW: &str = "correct horse";
const WRONG: &str = "battery staple";

/// The verdict classes every protocol can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    Ok,
    Mismatch,
    Unknown,
    /// Refused whatever the password: a disabled mailbox, a locked hash.
    Disabled,
    TempFail,
}

/// One login case: a row (or none) and the verdict with the right
/// password, per verifier: mailtable itself, smtpd's crypt(3), Dovecot.
struct Case {
    name: &'static str,
    hash: Option<String>,
    active: bool,
    here: V,
    smtpd: V,
    dovecot: V,
}

fn config() -> Config {
    Config::parse("uid = 2000\ngid = 2001\nhome = \"/var/vmail/%d/%n\"\npassword_cost = 4")
        .expect("valid test config")
}

fn cases() -> Vec<Case> {
    let bcrypt = password::hash(&password::Secret::new(PW), 4)
        .expect("bcrypt works")
        .stored()
        .to_string();
    let sha512 = sha_crypt::sha512_simple(
        PW,
        &sha_crypt::Sha512Params::new(1000).expect("valid rounds"),
    )
    .expect("sha512 works");
    let sha256 = sha_crypt::sha256_simple(
        PW,
        &sha_crypt::Sha256Params::new(1000).expect("valid rounds"),
    )
    .expect("sha256 works");
    let salt = SaltString::encode_b64(b"mailtable-salt").expect("valid salt");
    // Small parameters: the verdict does not depend on them, the test time
    // does.
    let params = argon2::Params::new(1024, 1, 1, None).expect("valid argon2 parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(PW.as_bytes(), &salt)
        .expect("argon2 works")
        .to_string();
    let y2y = bcrypt.replacen("$2b$", "$2y$", 1);
    let case = |name, hash: Option<String>, all: V| Case {
        name,
        hash,
        active: true,
        here: all,
        smtpd: all,
        dovecot: all,
    };
    let mut out = vec![
        case("bcrypt", Some(bcrypt.clone()), V::Ok),
        case("bcrypt2y", Some(y2y), V::Ok),
        case("blfcrypt", Some(format!("{{BLF-CRYPT}}{bcrypt}")), V::Ok),
        case("sha512", Some(sha512.clone()), V::Ok),
        case(
            "sha512prefixed",
            Some(format!("{{SHA512-CRYPT}}{sha512}")),
            V::Ok,
        ),
        case("sha256", Some(sha256), V::Ok),
        case("nohash", None, V::Unknown),
        case("empty", Some(String::new()), V::TempFail),
        case(
            "ssha",
            Some("{SSHA512}c2VjcmV0c2FsdA==".into()),
            V::TempFail,
        ),
        case("garbage", Some("not a hash".into()), V::TempFail),
        case("badbcrypt", Some("$2b$04$tooshort".into()), V::TempFail),
        case(
            "badcost",
            Some(bcrypt.replacen("$04$", "$99$", 1)),
            V::TempFail,
        ),
        case("badsha512", Some("$6$salt$tooshort".into()), V::TempFail),
        case(
            "badsha512salt",
            Some(format!(
                "$6$sält{}",
                &sha512[sha512.rfind('$').unwrap_or(0)..]
            )),
            V::TempFail,
        ),
        case(
            "badsha256",
            Some("$5$rounds=x$salt$abc".into()),
            V::TempFail,
        ),
        case(
            "badargon",
            Some("$argon2id$v=19$garbage".into()),
            V::TempFail,
        ),
        Case {
            name: "argon",
            hash: Some(argon.clone()),
            active: true,
            here: V::Ok,
            smtpd: V::TempFail,
            dovecot: V::Ok,
        },
        Case {
            name: "argonprefixed",
            hash: Some(format!("{{ARGON2ID}}{argon}")),
            active: true,
            here: V::Ok,
            smtpd: V::TempFail,
            dovecot: V::Ok,
        },
        Case {
            name: "disabled",
            hash: Some(bcrypt.clone()),
            active: false,
            here: V::Disabled,
            smtpd: V::Disabled,
            dovecot: V::Disabled,
        },
        // Locked entries (passwd(5)): refused like a disabled mailbox, on
        // every path, never a temporary failure.
        case("locked", Some(format!("!{bcrypt}")), V::Disabled),
        case("lockedsha", Some(format!("!{sha512}")), V::Disabled),
        case("star", Some("*".into()), V::Disabled),
        case("bang", Some("!".into()), V::Disabled),
        case(
            "lockedprefixed",
            Some(format!("{{BLF-CRYPT}}!{bcrypt}")),
            V::Disabled,
        ),
    ];
    // No row at all.
    out.push(Case {
        name: "nobody",
        hash: None,
        active: true,
        here: V::Unknown,
        smtpd: V::Unknown,
        dovecot: V::Unknown,
    });
    out
}

fn address(c: &Case) -> String {
    format!("{}@example.org", c.name)
}

fn store(cases: &[Case]) -> MemStore {
    let mut s = MemStore::default();
    for c in cases.iter().filter(|c| c.name != "nobody") {
        s = match &c.hash {
            Some(h) => s.with(c.name, "example.org", &address(c), Some(h)),
            // An alias of the same name: never a login.
            None => s.with(c.name, "example.org", "bcrypt@example.org", None),
        };
        if let Some(r) = s.rows.last_mut() {
            r.active = c.active;
        }
    }
    s
}

/// With the wrong password, a verdict that was Ok becomes Mismatch; every
/// other verdict stays (unknown, disabled and broken rows do not depend on
/// the password).
fn with_wrong_password(v: V) -> V {
    if v == V::Ok {
        V::Mismatch
    } else {
        v
    }
}

/// The verdict of a handed-on hash, checked with `pw` as the daemon would.
fn handed_on(hash: &str, pw: &str) -> V {
    match PasswordHash::new(hash).verify(&password::Secret::new(pw)) {
        Ok(true) => V::Ok,
        Ok(false) => V::Mismatch,
        Err(_) => V::TempFail,
    }
}

fn core_verdict(store: &mut dyn Store, user: &str, pw: &str) -> Vec<V> {
    vec![
        match Accounts::new(&config()).verify(store, user, pw.as_bytes()) {
            Ok(Verdict::Ok(_)) => V::Ok,
            Ok(Verdict::Mismatch) => V::Mismatch,
            Ok(Verdict::Unknown) => V::Unknown,
            Ok(Verdict::Refused(..)) => V::Disabled,
            Ok(Verdict::CannotVerify(_)) | Err(_) => V::TempFail,
        },
    ]
}

/// A store the protocol paths can take: cloned per request by the pooled
/// backend, as [`MemStore`] and [`FailingStore`] over it are.
trait TestStore: Store + Clone + Sync + 'static {}
impl<S: Store + Clone + Sync + 'static> TestStore for S {}

fn table<S: TestStore>(store: S) -> Tables {
    Tables::with_store(config(), Box::new(store))
}

fn smtpd_auth<S: TestStore>(store: S, user: &str, pw: &str) -> Vec<V> {
    match table(store).check(Service::Auth, &format!("{user}:{pw}")) {
        Answer::Found(_) => vec![V::Ok],
        Answer::NotFound => vec![V::Mismatch, V::Unknown, V::Disabled],
        Answer::Error(_) => vec![V::TempFail],
    }
}

/// An unknown or disabled login gets a dummy hash that smtpd checks like a
/// real one (equal time) and that matches no password: to smtpd it is a
/// mismatch, so a mismatch stands for all three.
fn smtpd_credentials<S: TestStore>(store: S, user: &str, pw: &str) -> Vec<V> {
    match table(store).lookup(Service::Credentials, user) {
        Answer::Found(v) => {
            let hash = v
                .strip_prefix(&format!("{user}:"))
                .expect("credentials are user:hash");
            assert!(!hash.is_empty() && !hash.contains(['\n', '\r']), "{v}");
            match handed_on(hash, pw) {
                V::Mismatch => vec![V::Mismatch, V::Unknown, V::Disabled],
                v => vec![v],
            }
        }
        // Not-found would answer at once: it stands for no verdict.
        Answer::NotFound => vec![],
        Answer::Error(_) => vec![V::TempFail],
    }
}

fn backend<S: TestStore>(store: S) -> Backend {
    let pool = StorePool::new(
        Box::new(move || Ok(Box::new(store.clone()) as Box<dyn Store>)),
        0,
    );
    Backend::new(Arc::new(Directory::new(config())), Arc::new(pool), None)
}

fn checkpassword<S: TestStore>(mut store: S, mode: Mode, user: &str, pw: &str) -> Vec<V> {
    let request = CheckpasswordRequest {
        user: user.into(),
        password: Secret::new(pw),
    };
    let (outcome, fields) =
        checkpassword_answer(&Directory::new(config()), &mut store, &mode, &request);
    let hash = fields.iter().find(|(k, _)| k == "password").map(|(_, v)| v);
    let refused = fields.iter().any(|(k, v)| k == "nologin" && v == "y");
    match (mode, outcome, hash) {
        (Mode::Verify, Outcome::Success, _) => vec![V::Ok],
        (Mode::Verify, Outcome::Mismatch, _) => vec![V::Mismatch, V::Unknown, V::Disabled],
        (_, Outcome::Success, _) if refused => vec![V::Disabled],
        (_, Outcome::Success, Some(h)) => vec![handed_on(h, pw)],
        (_, Outcome::Success, None) => vec![V::Disabled],
        (_, Outcome::Unknown, _) => vec![V::Unknown],
        (_, Outcome::TempFail, _) => vec![V::TempFail],
        (mode, outcome, _) => panic!("{mode:?} answered {outcome:?}"),
    }
}

fn http_verify<S: TestStore>(store: S, user: &str, pw: &str) -> Vec<V> {
    match backend(store).passdb_verify(user, &Secret::new(pw)) {
        VerifyResult::Ok(_) => vec![V::Ok],
        VerifyResult::Mismatch => vec![V::Mismatch, V::Disabled],
        VerifyResult::Unknown => vec![V::Unknown],
        VerifyResult::TempFail(_) => vec![V::TempFail],
    }
}

fn lookup_verdict(r: LookupResult, pw: &str) -> Vec<V> {
    match r {
        // Dovecot refuses an answer with nologin, whatever the password.
        LookupResult::Found(a) if a.fields.iter().any(|(k, v)| k == "nologin" && v == "y") => {
            vec![V::Disabled]
        }
        LookupResult::Found(a) => match a.fields.iter().find(|(k, _)| k == "password") {
            Some((_, h)) => vec![handed_on(h, pw)],
            None => vec![V::Disabled],
        },
        LookupResult::Unknown => vec![V::Unknown],
        LookupResult::TempFail(_) => vec![V::TempFail],
    }
}

fn http_lookup<S: TestStore>(store: S, user: &str, pw: &str) -> Vec<V> {
    lookup_verdict(backend(store).passdb_lookup(user), pw)
}

fn dict_lookup<S: TestStore>(store: S, user: &str, pw: &str) -> Vec<V> {
    let key = format!("shared/passdb/{user}");
    match DictBackend::lookup(&mut backend(store), &key, "") {
        Lookup::Found(json) => {
            let v: serde_json::Value = serde_json::from_str(&json).expect("dict value is JSON");
            match v["password"].as_str() {
                _ if v["nologin"] == "y" => vec![V::Disabled],
                Some(h) => vec![handed_on(h, pw)],
                None => vec![V::Disabled],
            }
        }
        Lookup::NotFound => vec![V::Unknown],
        Lookup::Failed(_) => vec![V::TempFail],
    }
}

/// A userdb answer: found (`Ok`), unknown, or a temporary failure.
fn userdb_verdict(r: LookupResult) -> Vec<V> {
    match r {
        LookupResult::Found(_) => vec![V::Ok],
        LookupResult::Unknown => vec![V::Unknown],
        LookupResult::TempFail(_) => vec![V::TempFail],
    }
}

fn checkpassword_userdb<S: TestStore>(mut store: S, user: &str) -> Vec<V> {
    let request = CheckpasswordRequest {
        user: user.into(),
        password: Secret::new(""),
    };
    let dir = Directory::new(config());
    match checkpassword_answer(&dir, &mut store, &Mode::UserdbLookup, &request).0 {
        Outcome::Success => vec![V::Ok],
        Outcome::Unknown => vec![V::Unknown],
        Outcome::TempFail => vec![V::TempFail],
        other => panic!("userdb lookup answered {other:?}"),
    }
}

fn http_userdb<S: TestStore>(store: S, user: &str) -> Vec<V> {
    userdb_verdict(backend(store).userdb_lookup(user))
}

fn dict_userdb<S: TestStore>(store: S, user: &str) -> Vec<V> {
    let key = format!("shared/userdb/{user}");
    match DictBackend::lookup(&mut backend(store), &key, "") {
        Lookup::Found(_) => vec![V::Ok],
        Lookup::NotFound => vec![V::Unknown],
        Lookup::Failed(_) => vec![V::TempFail],
    }
}

/// Runs `run` once for each of the `calls` store calls of a good run, with
/// that call failing; every answer that is neither a temporary failure nor,
/// when the failed call was the change check, the good run's answer goes
/// to `bad`. A failed change check only skips the answer cache: the
/// lookup's own calls then decide. Returns the number of runs.
fn each_call_failing(
    s: &MemStore,
    calls: usize,
    good: &[V],
    label: &str,
    bad: &mut Vec<String>,
    run: impl Fn(FailingStore<MemStore>) -> Vec<V>,
) -> usize {
    for n in 1..=calls {
        let failing = FailingStore::failing_at(s.clone(), n);
        let got = run(failing.clone());
        assert!(failing.has_failed(), "{label}: call {n} never made");
        let checked = failing.failed_call() == Some("change_token") && got == good;
        if got != [V::TempFail] && !checked {
            bad.push(format!("{label}, call {n} failing: {got:?}"));
        }
    }
    calls
}

/// Every Dovecot entry point (and smtpd's login services), for every login
/// case, both login forms and both passwords: with each store call of the
/// lookup failing in turn ([`FailingStore`]), the answer is a temporary
/// failure, never ok, mismatch, unknown or "disabled" (DESIGN.md, "Failure
/// semantics"; issue 12, point 4). Dovecot's `serve` opens a store per
/// request from its pool: the clones share the failing call.
#[test]
fn a_failing_store_call_is_always_a_temporary_failure() {
    type Path = fn(FailingStore<MemStore>, &str, &str) -> Vec<V>;
    let paths: [(&str, Path); 13] = [
        ("core verify", |mut s, u, p| core_verdict(&mut s, u, p)),
        ("smtpd auth", smtpd_auth),
        ("smtpd credentials", smtpd_credentials),
        ("checkpassword verify", |s, u, p| {
            checkpassword(s, Mode::Verify, u, p)
        }),
        ("checkpassword passdb lookup", |s, u, p| {
            checkpassword(s, Mode::PassdbLookup, u, p)
        }),
        ("checkpassword credentials lookup", |s, u, p| {
            let mode = Mode::CredentialsLookup {
                scheme: "CRAM-MD5".into(),
            };
            checkpassword(s, mode, u, p)
        }),
        ("checkpassword userdb lookup", |s, u, _| {
            checkpassword_userdb(s, u)
        }),
        ("http verify", http_verify),
        ("http passdb lookup", http_lookup),
        ("http userdb lookup", |s, u, _| http_userdb(s, u)),
        ("dict passdb lookup", dict_lookup),
        ("dict userdb lookup", |s, u, _| dict_userdb(s, u)),
        ("dict iterate", |s, _, _| {
            match DictBackend::iterate(&mut backend(s), "shared/userdb/") {
                Ok(_) => vec![V::Ok],
                Err(_) => vec![V::TempFail],
            }
        }),
    ];
    let cases = cases();
    let s = store(&cases);
    let mut bad = Vec::new();
    let mut runs = 0;
    for c in &cases {
        for user in [address(c), format!("{}_example.org", c.name)] {
            for pw in [PW, WRONG] {
                for (path, run) in paths {
                    let counting = FailingStore::counting(s.clone());
                    let good = run(counting.clone(), &user, pw);
                    let label = format!("{path} {user}");
                    runs += each_call_failing(&s, counting.calls(), &good, &label, &mut bad, |f| {
                        run(f, &user, pw)
                    });
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {runs}:\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
    assert!(
        runs >= cases.len() * 2 * 2 * paths.len(),
        "only {runs} runs"
    );
}

/// A dict lookup asked twice (see below): the verdict of the pair, and
/// whether the second was answered in place.
fn dict_twice(b: &mut Backend, key: &str, pw: &str) -> (Vec<V>, bool) {
    let verdict = |l: Lookup| match l {
        Lookup::Found(json) => {
            let v: serde_json::Value = serde_json::from_str(&json).expect("dict value is JSON");
            match (v["password"].as_str(), v["home"].as_str()) {
                (Some(h), _) => vec![handed_on(h, pw)],
                (None, Some(_)) => vec![V::Ok],
                (None, None) => vec![V::Disabled],
            }
        }
        Lookup::NotFound => vec![V::Unknown],
        Lookup::Failed(_) => vec![V::TempFail],
    };
    let first = DictBackend::lookup(b, key, "");
    let (second, answered) = match DictBackend::lookup_in_place(b, key, "") {
        Some(l) => {
            assert_eq!(l, first, "{key}: in place, the answer just given");
            (l, true)
        }
        None => (DictBackend::lookup(b, key, ""), false),
    };
    match first {
        Lookup::Failed(_) => (vec![V::TempFail], answered),
        _ => (verdict(second), answered),
    }
}

/// An HTTP API lookup asked twice, as [`dict_twice`].
fn http_twice(b: &mut Backend, endpoint: Endpoint, user: &str, pw: &str) -> (Vec<V>, bool) {
    let proper = |b: &mut Backend| match endpoint {
        Endpoint::UserdbLookup => b.userdb_lookup(user),
        _ => b.passdb_lookup(user),
    };
    let verdict = |r: LookupResult| match endpoint {
        Endpoint::UserdbLookup => userdb_verdict(r),
        _ => lookup_verdict(r, pw),
    };
    let first = proper(b);
    let (second, answered) = match ApiBackend::lookup_in_place(b, endpoint, user) {
        Some(r) => {
            assert_eq!(r, first, "{user}: in place, the answer just given");
            (r, true)
        }
        None => (proper(b), false),
    };
    match first {
        LookupResult::TempFail(_) => (vec![V::TempFail], answered),
        _ => (verdict(second), answered),
    }
}

/// serve keeps a store between requests and answers a lookup whose cached
/// answer is fresh on its async worker ([`DictBackend::lookup_in_place`],
/// [`ApiBackend::lookup_in_place`]). Each lookup here is asked twice, as
/// repeated traffic asks it: the lookup proper, then in place (the lookup
/// proper again when that declines). With each store call of the pair
/// failing in turn, the pair's answer (the first if it failed, else the
/// second) is a temporary failure, or, for a failed change check, the
/// good run's answer: an in-place answer is never another, and is always
/// the answer the first lookup just gave. Every good run answers the
/// second time in place (or the test would prove nothing), also where the
/// answer is a temporary failure the policy gives (an uncheckable hash).
#[test]
fn a_failing_store_call_in_a_repeated_lookup_is_never_another_answer() {
    type Twice = fn(&mut Backend, &str, &str) -> (Vec<V>, bool);
    let paths: [(&str, Twice); 4] = [
        ("dict passdb", |b, u, pw| {
            dict_twice(b, &format!("shared/passdb/{u}"), pw)
        }),
        ("dict userdb", |b, u, pw| {
            dict_twice(b, &format!("shared/userdb/{u}"), pw)
        }),
        ("http passdb", |b, u, pw| {
            http_twice(b, Endpoint::PassdbLookup, u, pw)
        }),
        ("http userdb", |b, u, pw| {
            http_twice(b, Endpoint::UserdbLookup, u, pw)
        }),
    ];
    let pooled = |store: FailingStore<MemStore>| {
        let pool = StorePool::new(
            Box::new(move || Ok(Box::new(store.clone()) as Box<dyn Store>)),
            1,
        );
        Backend::new(Arc::new(Directory::new(config())), Arc::new(pool), None)
    };
    let cases = cases();
    let mut s = store(&cases);
    s.versioned = true;
    let mut bad = Vec::new();
    let (mut runs, mut in_place) = (0, 0);
    for c in &cases {
        for user in [address(c), format!("{}_example.org", c.name)] {
            for pw in [PW, WRONG] {
                for (path, run) in paths {
                    let counting = FailingStore::counting(s.clone());
                    let (good, answered) = run(&mut pooled(counting.clone()), &user, pw);
                    // Every answer of a store that worked is cached, also
                    // an uncheckable hash's temporary failure.
                    assert!(answered, "{path} {user}: not answered in place");
                    in_place += usize::from(answered);
                    let label = format!("{path} {user}");
                    runs += each_call_failing(&s, counting.calls(), &good, &label, &mut bad, |f| {
                        run(&mut pooled(f), &user, pw).0
                    });
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {runs}:\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
    let good_runs = cases.len() * 2 * 2 * paths.len();
    assert_eq!(in_place, good_runs);
    assert!(runs >= good_runs * 2, "only {runs} runs");
}

#[test]
fn every_protocol_gives_the_policy_verdict() {
    let cases = cases();
    let s = store(&cases);
    let mut checked = 0;
    for c in &cases {
        // Both login forms: the address and the delivery user name.
        let login_names = [address(c), format!("{}_example.org", c.name)];
        for user in &login_names {
            for pw in [PW, WRONG] {
                let expect = |v: V| if pw == PW { v } else { with_wrong_password(v) };
                let paths: [(&str, V, Vec<V>); 8] = [
                    (
                        "core",
                        expect(c.here),
                        core_verdict(&mut s.clone(), user, pw),
                    ),
                    (
                        "smtpd auth",
                        expect(c.here),
                        smtpd_auth(s.clone(), user, pw),
                    ),
                    (
                        "smtpd credentials",
                        expect(c.smtpd),
                        smtpd_credentials(s.clone(), user, pw),
                    ),
                    (
                        "checkpassword verify",
                        expect(c.here),
                        checkpassword(s.clone(), Mode::Verify, user, pw),
                    ),
                    (
                        "checkpassword passdb lookup",
                        expect(c.dovecot),
                        checkpassword(s.clone(), Mode::PassdbLookup, user, pw),
                    ),
                    (
                        "http verify",
                        expect(c.here),
                        http_verify(s.clone(), user, pw),
                    ),
                    (
                        "http passdb lookup",
                        expect(c.dovecot),
                        http_lookup(s.clone(), user, pw),
                    ),
                    (
                        "dict passdb lookup",
                        expect(c.dovecot),
                        dict_lookup(s.clone(), user, pw),
                    ),
                ];
                for (path, want, got) in paths {
                    assert!(
                        got.contains(&want),
                        "{}: {path} with the {} password: policy says {want:?}, answer means {got:?}",
                        c.name,
                        if pw == PW { "right" } else { "wrong" },
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, cases.len() * 2 * 2 * 8);
}

#[test]
fn the_cases_cover_every_scheme() {
    let schemes: Vec<Scheme> = cases()
        .iter()
        .filter_map(|c| c.hash.as_deref())
        .map(|h| PasswordHash::new(h).scheme())
        .collect();
    for s in [
        Scheme::Bcrypt,
        Scheme::Sha512Crypt,
        Scheme::Sha256Crypt,
        Scheme::Argon2,
        Scheme::Unknown,
    ] {
        assert!(schemes.contains(&s), "{s:?}");
    }
}

//! Fuzzes the request side of `dovecot-mailtable serve`'s HTTP API; the
//! properties are `dovecot_mailtable::fuzzing::http`
//! (dovecot-checkpassword/src/fuzzing.rs), which the unit tests also run
//! on the stable toolchain over these seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dovecot_mailtable::fuzzing::http(data));

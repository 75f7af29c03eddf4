//! Fuzzes the dict proxy protocol of `dovecot-mailtable serve`; the
//! properties are `dovecot_mailtable::fuzzing::dict`
//! (dovecot-checkpassword/src/fuzzing.rs), which the unit tests also run
//! on the stable toolchain over these seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dovecot_mailtable::fuzzing::dict(data));

//! Fuzzes the text protocol 0.1; the properties are
//! `table_mailtable::fuzzing::text` (table-proc/src/fuzzing.rs), which the
//! unit tests also run on the stable toolchain over these seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| table_mailtable::fuzzing::text(data));

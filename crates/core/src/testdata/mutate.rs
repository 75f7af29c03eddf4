//! Random edits of test inputs, for the fuzz tests that run on the stable
//! toolchain in every `cargo test`: the properties of the nightly fuzz
//! targets (`fuzz/`) over their seeds and mutations of them, and the
//! import's readers over their fixtures. libFuzzer finds more in an hour;
//! these keep every change of a parser fuzzed a little, in CI.
//!
//! The inputs are a pure function of the iteration number (a fixed
//! xorshift seed), so a failure names its iteration, shows its input, and
//! comes back on the next run.

use std::panic::{self, AssertUnwindSafe};

/// xorshift64*: small, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    /// The generator of iteration `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.bits() % n as u64) as usize
    }
}

/// What [`mutate`] may do.
pub struct Edits<'a> {
    /// Pieces of the format's syntax, inserted whole: a random byte rarely
    /// makes a separator, a quote or a header appear where it matters.
    pub tokens: &'a [&'a [u8]],
    /// Other inputs, whose ranges are spliced in.
    pub others: &'a [&'a [u8]],
    /// At most this many edits (at least one is made).
    pub most: usize,
    /// Whether an edit may truncate the input.
    pub cut: bool,
}

/// `input` changed by one to `how.most` random edits: a byte replaced, a
/// token inserted, a range removed, repeated elsewhere or spliced in from
/// another input, and (if `how.cut`) the input truncated. At most 64 KiB
/// come out.
pub fn mutate(rng: &mut Rng, input: &[u8], how: &Edits<'_>) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(how.most.max(1)) {
        let at = rng.below(b.len() + 1);
        match rng.below(if how.cut { 7 } else { 6 }) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.bits() as u8;
            }
            1 | 2 if !how.tokens.is_empty() => {
                let t = how.tokens[rng.below(how.tokens.len())];
                b.splice(at..at, t.iter().copied());
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(b.len());
                b.drain(at..end);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, piece);
            }
            5 if !how.others.is_empty() => {
                let other = how.others[rng.below(how.others.len())];
                let from = rng.below(other.len() + 1);
                let end = (from + 1 + rng.below(120)).min(other.len());
                b.splice(at..at, other[from..end].iter().copied());
            }
            6 => b.truncate(at),
            _ => b.insert(at, rng.bits() as u8),
        }
    }
    b.truncate(1 << 16);
    b
}

/// The committed seeds of the nightly fuzz target `target`
/// (`fuzz/seeds/TARGET/*` of this repository), in name order.
pub fn fuzz_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a seed file's directory entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// Inputs per fuzz target in the stable tests: `MAILTABLE_FUZZ_ITERATIONS`,
/// default 20,000 (a few seconds each).
pub fn fuzz_iterations() -> u64 {
    iterations("MAILTABLE_FUZZ_ITERATIONS", 20_000)
}

/// The number in the environment variable `var`, or `default`.
pub fn iterations(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `check` on `input`; if it panics, fails the test naming `what`,
/// the iteration and the input.
pub fn no_panic(what: &str, i: u64, input: &[u8], check: impl FnOnce()) {
    if panic::catch_unwind(AssertUnwindSafe(check)).is_err() {
        panic!(
            "{what} failed at iteration {i} on {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// `check` on every seed, then on `n` mutations of them (other seeds
/// spliced in, `tokens` inserted).
pub fn replay(what: &str, seeds: &[Vec<u8>], tokens: &[&[u8]], n: u64, check: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{what}: no seeds");
    let others: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    for (i, seed) in seeds.iter().enumerate() {
        no_panic(what, i as u64, seed, || check(seed));
    }
    let how = Edits {
        tokens,
        others: &others,
        most: 8,
        cut: true,
    };
    for i in 0..n {
        let mut rng = Rng::new(i);
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, &how);
        no_panic(what, i, &input, || check(&input));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_iteration_gives_the_same_input() {
        let how = Edits {
            tokens: &[b"|", b"\n"],
            others: &[b"other"],
            most: 8,
            cut: true,
        };
        let a = mutate(&mut Rng::new(7), b"lookup|x", &how);
        let b = mutate(&mut Rng::new(7), b"lookup|x", &how);
        assert_eq!(a, b);
        let changed = (0..100)
            .filter(|i| mutate(&mut Rng::new(*i), b"lookup|x", &how) != b"lookup|x")
            .count();
        assert!(changed > 80, "only {changed} of 100 inputs changed");
    }

    #[test]
    #[should_panic(expected = "failed at iteration")]
    fn a_panicking_check_names_its_input() {
        replay("demo", &[b"ab".to_vec()], &[], 10, |d| assert!(d.len() < 3));
    }
}

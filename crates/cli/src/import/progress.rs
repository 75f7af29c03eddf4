//! A progress bar for big imports: the database check, the writes and the
//! resolution proof each walk every entry once, which takes minutes for a
//! million addresses. Drawn on stderr with indicatif, and only when stderr
//! is a terminal: scripts, pipes, `--json` consumers and tests see nothing
//! of it. `tests/import.rs` runs one import with stderr on a
//! pseudo-terminal (the bar of every phase is drawn) and one with stderr a
//! pipe (nothing is).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Below this many steps a phase ends before a bar would be worth drawing.
const MIN_STEPS: usize = 1000;

/// A bar for `len` steps of the phase `what`; hidden when stderr is not a
/// terminal or the phase is short.
pub fn bar(what: &str, len: usize) -> ProgressBar {
    if len < MIN_STEPS || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:<9} [{bar:40}] {human_pos}/{human_len} {per_sec} {eta}")
    {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(what.to_string());
    b
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_off_a_terminal_and_for_short_phases() {
        // Test runs capture stderr: never a terminal here.
        assert!(super::bar("checking", 1_000_000).is_hidden());
        assert!(super::bar("checking", 10).is_hidden());
    }
}

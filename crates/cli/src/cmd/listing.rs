//! The output of the list commands, written as the rows are read
//! ([`mailtable_core::Store::scan`]): a line per item, or one JSON array on
//! one line, byte for byte what printing a collected list gave, with the
//! command's memory bounded whatever the table's size (a million rows took
//! 350 MB collected first). A database error in the middle leaves what was
//! written (a JSON array then unclosed) and the command's exit code says
//! it failed; collected first, nothing was printed.
//!
//! Buffered: one `write` per buffer, not per line (stdout flushes at each
//! line feed otherwise). A failed write (a full disk) is kept and handed
//! to [`crate::output`] at the end; the rest of the output is dropped. A reader that went away
//! ends the command by SIGPIPE (see `main`).

use crate::error::CliError;
use mailtable_core::exit::Exit;
use std::io::{self, BufWriter, Stdout, Write};

/// One list command's output.
pub(super) struct Listing {
    json: bool,
    /// Items written so far (JSON: whether to open the array or add a
    /// comma).
    items: usize,
    out: BufWriter<Stdout>,
    failed: Option<io::Error>,
}

impl Listing {
    /// Text lines, or a JSON array when `json`.
    pub(super) fn new(json: bool) -> Listing {
        Listing {
            json,
            items: 0,
            out: BufWriter::new(io::stdout()),
            failed: None,
        }
    }

    /// One item: `line` as text, or `value` in the JSON array (only the
    /// one the mode asks for is made).
    pub(super) fn item(
        &mut self,
        line: impl FnOnce() -> String,
        value: impl FnOnce() -> serde_json::Value,
    ) {
        if self.failed.is_some() {
            return;
        }
        let written = if self.json {
            let sep = if self.items == 0 { "[" } else { "," };
            write!(self.out, "{sep}{}", value())
        } else {
            writeln!(self.out, "{}", line())
        };
        self.items += 1;
        if let Err(e) = written {
            self.failed = Some(e);
        }
    }

    /// Close the JSON array (`[]` when empty) and flush.
    pub(super) fn finish(mut self) -> Result<Exit, CliError> {
        if self.failed.is_none() && self.json {
            let end = if self.items == 0 { "[]" } else { "]" };
            if let Err(e) = writeln!(self.out, "{end}") {
                self.failed = Some(e);
            }
        }
        let flushed = self.out.flush();
        if let Err(e) = self.failed.take().map_or(flushed, Err) {
            // Said as every command's failed output is, once it ends.
            crate::output::failed(e);
        }
        Ok(Exit::Ok)
    }
}

//! What the Debian package is built from, made from the code itself so it
//! cannot drift: the `mailtable(8)` man page and the bash, zsh and fish
//! completions of the admin CLI (from its clap definitions), and the list of
//! config keys that `mailtable.toml(5)` must document (from the serde
//! definitions in `mailtable_core::config`).
//!
//! The CLI's `Cli` lives in a binary crate, so it cannot be imported; its
//! file `crates/cli/src/args.rs` is compiled in here with `#[path]`. That
//! file depends only on clap and std, which is the contract this relies on:
//! the parser structs, nothing else. `dovecot-mailtable`'s parser is private
//! to its `main.rs`, so its page is hand-written and checked against its
//! `--help` by `dovecot-checkpassword/tests/manpage.rs`.

#[allow(dead_code)] // the fields are read by the CLI, not by the generator
#[path = "../../crates/cli/src/args.rs"]
mod args;

use clap::{Command, CommandFactory};
use std::io::{self, Write};

/// The CLI package's manifest: `#[command(about)]` in args.rs takes the
/// description of the crate that compiles it, which here is this one.
const CLI_MANIFEST: &str = include_str!("../../crates/cli/Cargo.toml");

/// The `description` of the CLI package, as `mailtable --help` shows it.
fn cli_description() -> Option<&'static str> {
    CLI_MANIFEST
        .lines()
        .find_map(|l| l.strip_prefix("description = \""))
        .and_then(|rest| rest.strip_suffix('"'))
}

/// The admin CLI's clap command tree, exactly as `mailtable` parses it.
pub fn cli_command() -> Command {
    let mut cmd = args::Cli::command();
    if let Some(about) = cli_description() {
        cmd = cmd.about(about);
    }
    cmd.build();
    cmd
}

/// Every subcommand path of the CLI, depth first, e.g. `["user", "add"]`
/// (the `help` subcommands clap adds are left out).
pub fn subcommand_paths(cmd: &Command) -> Vec<Vec<String>> {
    fn walk(cmd: &Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, &[], &mut out);
    out
}

/// Escape text for roff: backslashes, hyphens that are meant literally, and
/// a leading `.` or `'` that roff would read as a request.
fn roff(text: &str) -> String {
    let mut s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

/// `ADDRESS [--password-stdin]`-style usage of one (sub)command, built from
/// its arguments (clap's own usage string names the binary only).
fn usage(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for arg in cmd.get_arguments() {
        if arg.is_global_set() || arg.is_hide_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let names = arg.get_value_names().map(|v| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let multiple = matches!(arg.get_num_args(), Some(r) if r.max_values() > 1);
        let text = if let Some(long) = arg.get_long() {
            let value = if arg.get_action().takes_values() {
                format!(" {}", names.unwrap_or_else(|| id.to_uppercase()))
            } else {
                String::new()
            };
            format!("--{long}{value}")
        } else {
            let name = names.unwrap_or_else(|| id.to_uppercase());
            if multiple {
                format!("{name}...")
            } else {
                name
            }
        };
        parts.push(if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    parts.join(" ")
}

/// The COMMANDS section: one `.SS` per subcommand, with its usage, help and
/// options, so every command of the CLI is on the one page.
fn render_commands(cmd: &Command, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, ".SH COMMANDS")?;
    for path in subcommand_paths(cmd) {
        let mut sub = cmd;
        for name in &path {
            match sub.find_subcommand(name) {
                Some(s) => sub = s,
                None => return Err(io::Error::other(format!("no subcommand {name}"))),
            }
        }
        let u = usage(sub);
        writeln!(
            out,
            ".SS \"{}{}{}\"",
            roff(&path.join(" ")),
            if u.is_empty() { "" } else { " " },
            roff(&u)
        )?;
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            writeln!(out, "{}", roff(&about.to_string()))?;
        }
        for arg in sub.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_global_set() || arg.is_hide_set() || id == "help" || id == "version" {
                continue;
            }
            let name = match arg.get_long() {
                Some(l) => format!("--{l}"),
                None => arg
                    .get_value_names()
                    .and_then(|v| v.first().map(|n| n.to_string()))
                    .unwrap_or_else(|| id.to_uppercase()),
            };
            writeln!(out, ".TP\n\\fB{}\\fR", roff(&name))?;
            if let Some(h) = arg.get_long_help().or(arg.get_help()) {
                writeln!(out, "{}", roff(&h.to_string()))?;
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() && arg.get_action().takes_values() {
                writeln!(out, "[default: {}]", roff(&defaults.join(", ")))?;
            }
        }
        if let Some(after) = sub.get_after_long_help().or(sub.get_after_help()) {
            writeln!(out, ".PP")?;
            for line in after.to_string().lines() {
                writeln!(out, "{}\n.br", roff(line))?;
            }
        }
    }
    Ok(())
}

/// The hand-written tail of `mailtable(8)`: exit status, files, environment.
const MAILTABLE_8_TAIL: &str = r#".SH EXIT STATUS
The same for every command:
.TP
.B 0
success
.TP
.B 1
not found (\fBresolve\fR, \fBsenders\fR, or removing or changing what is not there)
.TP
.B 2
usage error or bad input (also a database without the users table: run
\fBmailtable init\fR), or a refusal (\fB\-\-force\fR needed); nothing was changed
.TP
.B 75
temporary failure (database locked, unreachable, timed out; for \fBresolve\fR,
mail to the address fails: a loop, a dangling target); nothing was changed
.SH FILES
.TP
.I /etc/mail/mailtable.toml
the configuration, read by all three programs; see \fBmailtable.toml\fR(5)
.TP
.I /var/lib/mailtable/mail.db
the default SQLite database, created by \fBmailtable init\fR readable by the
group \fBmailtable\fR only (it holds password hashes)
.SH ENVIRONMENT
.TP
.B MAILTABLE_LOG
log filter (\fBwarn\fR by default; \fBdebug\fR shows every lookup, never a password)
.SH NOTES
Passwords are never taken from the command line: they are read from a
terminal without echo, or from the first line of standard input with
\fB\-\-password\-stdin\fR.
.SH SEE ALSO
\fBmailtable.toml\fR(5), \fBtable\-mailtable\fR(8), \fBdovecot\-mailtable\fR(8),
\fBsmtpd.conf\fR(5), \fI/usr/share/doc/mailtable/README.md\fR
"#;

/// Write `mailtable(8)`: clap_mangen's title, name, synopsis, description
/// and global options, then every subcommand, then the hand-written tail.
pub fn render_mailtable_8(out: &mut dyn Write) -> io::Result<()> {
    let cmd = cli_command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Manager's Manual")
        .source(format!("mailtable {}", env!("CARGO_PKG_VERSION")));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    render_commands(&cmd, out)?;
    out.write_all(MAILTABLE_8_TAIL.as_bytes())
}

/// The shells completions are made for, with the file name each expects
/// (bash-completion loads `completions/NAME`; zsh `_NAME`; fish `NAME.fish`).
pub const SHELLS: [(clap_complete::Shell, &str); 3] = [
    (clap_complete::Shell::Bash, "mailtable.bash"),
    (clap_complete::Shell::Zsh, "_mailtable"),
    (clap_complete::Shell::Fish, "mailtable.fish"),
];

/// Write the completion script of `shell` for `mailtable`.
pub fn render_completion(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = cli_command();
    clap_complete::generate(shell, &mut cmd, "mailtable", out);
}

/// A serde `Deserializer` that only records the field names a derived
/// `Deserialize` asks for (`deserialize_struct` is handed them), then stops.
struct FieldNames(Vec<&'static str>);

/// The error that stops [`FieldNames`] once it has the names.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}
impl std::error::Error for Stop {}
impl serde::de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> serde::Deserializer<'de> for &mut FieldNames {
    type Error = Stop;
    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(fields);
        Err(Stop)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The field names of a `#[derive(Deserialize)]` struct.
fn fields_of<T: for<'de> serde::Deserialize<'de>>() -> Vec<&'static str> {
    let mut names = FieldNames(Vec::new());
    // The result is always Err(Stop): only the recorded names matter.
    let _ = T::deserialize(&mut names);
    names.0
}

/// Every key `mailtable.toml` accepts, as written in the file: top-level
/// keys bare, section keys as `section.key` (`serve.workers`). Sections
/// themselves (`table`, `serve`) are listed too.
pub fn config_keys() -> Vec<String> {
    use mailtable_core::config::{ServeConfig, TableConfig};
    let mut keys: Vec<String> = fields_of::<mailtable_core::Config>()
        .into_iter()
        .map(String::from)
        .collect();
    keys.extend(
        fields_of::<TableConfig>()
            .into_iter()
            .map(|k| format!("table.{k}")),
    );
    keys.extend(
        fields_of::<ServeConfig>()
            .into_iter()
            .map(|k| format!("serve.{k}")),
    );
    keys
}

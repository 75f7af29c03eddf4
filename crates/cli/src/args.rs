//! The command-line surface, exactly as documented (scripts rely on it).
//! Passwords are never taken from the command line: they come from a
//! terminal prompt without echo, or from stdin with `--password-stdin`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// mailtable: one database of virtual mail users for OpenSMTPD and Dovecot.
#[derive(Debug, Parser)]
#[command(name = "mailtable", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 not found, 2 usage or bad input, 75 temporary failure."
)]
pub struct Cli {
    /// Config file [default: /etc/mail/mailtable.toml if it exists]
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL, overriding the config (sqlite:///path or postgresql://...)
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database and its schema (idempotent)
    Init(InitArgs),
    /// Upgrade an existing users table in place, keeping every row
    Migrate,
    /// Mailboxes: addresses that log in and store mail
    #[command(subcommand)]
    User(UserCommand),
    /// Aliases, patterns and catch-alls
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Domains that have rows
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Where mail to ADDRESS goes, step by step
    Resolve {
        /// Recipient address
        address: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// What an authenticated user may send as
    Senders {
        /// The user's login: an address, or its delivery user name (local_domain), as smtpd may see either
        address: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print a bcrypt hash of a password, for hand-written SQL
    Hash(PasswordInput),
    /// Bring users and aliases over from another setup, with a report
    Import(ImportArgs),
    /// Check the installation (database, smtpd, Dovecot, serve) and say how to fix it
    Doctor(DoctorArgs),
}

/// `import` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Formats: smtpd-aliases, smtpd-userinfo, smtpd-credentials, smtpd-passwd, \
smtpd-domains, dovecot-passwd, sql (a SQLite path or URL, or a postgresql:// URL), sql-dump \
(the same tables in a MySQL/MariaDB dump file), mailtable (another mailtable database).
Give one format for all sources with --from, or per source as FORMAT:SOURCE, e.g.
  mailtable import --from smtpd-aliases /etc/mail/virtuals smtpd-credentials:/etc/mail/credentials
All or nothing: malformed lines, conflicts with the sources or with rows present, and
addresses that would resolve differently change nothing (exit 2); so does an import that
leaves a login or mailbox of the sources behind, or writes nothing while entries were not
imported, unless --partial (which cannot import a rest when nothing comes over); and an
import whose sources hold no entry at all (exit 2).
With --verify, nothing is written and differences exit 1.
See docs/import.md.")]
pub struct ImportArgs {
    /// Format of the sources that do not name one
    #[arg(long = "from", value_name = "FORMAT")]
    pub from: Option<String>,
    /// Files, or database URLs for sql and mailtable; FORMAT:SOURCE sets the format of one
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Report and check everything, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Write nothing; check that every address the sources knew resolves as they did
    #[arg(long)]
    pub verify: bool,
    /// Qualify logins without a domain that the sources do not place (login@DOMAIN)
    #[arg(long, value_name = "DOMAIN")]
    pub login_domain: Option<String>,
    /// The address of one login without a domain (repeatable)
    #[arg(long = "map", value_name = "LOGIN=ADDRESS")]
    pub map: Vec<String>,
    /// Import even when a login or mailbox of the sources does not come over
    #[arg(long)]
    pub partial: bool,
    /// Inactive SQL mailboxes and domains: reject (not imported, their mail refused as in the
    /// source) or disabled (imported disabled: login refused, mail accepted)
    #[arg(long, value_enum, value_name = "HOW", default_value = "reject")]
    pub inactive: Inactive,
}

/// What becomes of the inactive mailboxes and domains of an SQL source
/// (`--inactive`).
///
/// PostfixAdmin's Postfix maps select only `active = '1'` rows
/// (PostfixAdmin `DOCUMENTS/POSTFIX_CONF.txt`: the domain, mailbox and alias
/// queries), so the source refused mail to an inactive mailbox and to every
/// address of an inactive domain; its Dovecot queries refuse their logins
/// too (`DOCUMENTS/DOVECOT.txt`). mailtable has no "known but refused"
/// row, so matching the source means leaving them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Inactive {
    /// Not imported: their mail is refused after the import as it was
    /// before (the default).
    #[default]
    Reject,
    /// Imported as disabled mailboxes: login refused, mail accepted (which
    /// the source did not do).
    Disabled,
}

impl Inactive {
    /// The `--inactive` value.
    pub fn name(self) -> &'static str {
        match self {
            Inactive::Reject => "reject",
            Inactive::Disabled => "disabled",
        }
    }
}

/// `init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Group that may read the database (add smtpd's and Dovecot's users to
    /// it); created as a system group, with a note, when root runs `init`
    /// and the host lacks it
    #[arg(long, default_value = "mailtable")]
    pub group: String,
}

/// Where a password comes from.
#[derive(Debug, Args)]
pub struct PasswordInput {
    /// Read the password from the first line of stdin
    #[arg(long)]
    pub password_stdin: bool,
}

/// `user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a mailbox (prompts for the password without echo), or many from a file of hashes
    #[command(after_help = "\
--from-file reads lines `address<TAB>hash` or `address<TAB>quota<TAB>hash` (`-` is stdin;
blank lines and lines starting with # are skipped). Hashes only: a line whose hash mailtable
does not recognise (cleartext, say) is refused with its line number. All or nothing.")]
    Add {
        /// The address
        #[arg(required_unless_present = "from_file")]
        address: Option<String>,
        #[command(flatten)]
        password: PasswordInput,
        /// Storage quota: a size such as 500M, 2G, 1T, or a byte count
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Add every mailbox listed in FILE (`-`: stdin) instead
        #[arg(long, value_name = "FILE", conflicts_with_all = ["address", "password_stdin", "quota"])]
        from_file: Option<PathBuf>,
        /// Add it even if its domain becomes one of ours and mail that aliases sent to that domain's own servers would then fail or be refused
        #[arg(long)]
        force: bool,
    },
    /// Change a mailbox's password
    Passwd {
        /// The address
        address: String,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Set a mailbox's storage quota (500M, 2G, 1T, a byte count), or `none` to clear it
    Quota {
        /// The address
        address: String,
        /// The quota, or `none`
        #[arg(value_name = "SIZE|none")]
        quota: String,
    },
    /// Rename a mailbox, keeping its hash, quota and state; aliases follow it
    Rename {
        /// The current address
        old: String,
        /// The new address
        new: String,
        /// Leave OLD as an alias to NEW, so mail to OLD still arrives
        #[arg(long)]
        keep_alias: bool,
        /// Rename it even if NEW's domain becomes one of ours and mail that aliases sent to that domain's own servers would then fail or be refused
        #[arg(long)]
        force: bool,
    },
    /// Remove a mailbox (refused while aliases would be left pointing at nothing, unless --force)
    Del {
        /// The address
        address: String,
        /// Remove it even if aliases would be left pointing at nothing, or mail through them would fail or be relayed off this host (the domain's last row gone)
        #[arg(long)]
        force: bool,
    },
    /// Refuse logins; mail is still accepted and delivered
    Disable {
        /// The address
        address: String,
    },
    /// Allow logins again
    Enable {
        /// The address
        address: String,
    },
    /// List mailboxes
    List(ListArgs),
}

/// `alias ...`
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Add an alias: a@d, %@d (catch-all; @d also accepted), sales-%@d, %@old with target %@new
    Add {
        /// Address or pattern
        pattern: String,
        /// One or more targets, as separate arguments or comma-separated
        #[arg(required = true)]
        targets: Vec<String>,
        /// Add it even if its domain becomes one of ours and mail that aliases sent to that domain's own servers would then fail or be refused
        #[arg(long)]
        force: bool,
    },
    /// Remove an alias, or only some of its targets (refused while other aliases would be left pointing at nothing, unless --force)
    Del {
        /// Address or pattern
        pattern: String,
        /// Targets to remove, as separate arguments or comma-separated (default: all)
        targets: Vec<String>,
        /// Remove it even if other aliases point to it, or mail through them would loop or be relayed off this host (the domain's last row gone)
        #[arg(long)]
        force: bool,
    },
    /// List aliases, patterns and catch-alls
    List(AliasListArgs),
}

/// `alias list` options.
#[derive(Debug, Args)]
pub struct AliasListArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Only the rows through which mail reaches ADDRESS (directly or via other aliases)
    #[arg(long, value_name = "ADDRESS")]
    pub to: Option<String>,
}

/// `domain ...`
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// List domains with their numbers of mailboxes, aliases and catch-alls
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove every row of a domain (refused without --force; prints the count)
    Del {
        /// The domain
        domain: String,
        /// Really remove them
        #[arg(long)]
        force: bool,
    },
}

/// Options of the list commands.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this domain
    #[arg(long)]
    pub domain: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// Where smtpd runs `table-NAME` programs from on Debian (its
/// PATH_LIBEXEC, `fork_proc_backend` in usr.sbin/smtpd/smtpd.c).
pub const DOCTOR_DEFAULT_LIBEXEC: &str = "/usr/libexec/opensmtpd";

/// `doctor` options: where the daemons' configs are when they are not at
/// the packages' default paths.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// smtpd's config [default: /etc/smtpd.conf, else /etc/mail/smtpd.conf]
    #[arg(long, value_name = "FILE")]
    pub smtpd_conf: Option<PathBuf>,
    /// Where smtpd runs `table-NAME` programs from (its PATH_LIBEXEC)
    #[arg(long, value_name = "DIR", default_value = DOCTOR_DEFAULT_LIBEXEC)]
    pub smtpd_libexec: PathBuf,
    /// Dovecot's config, given to doveconf and doveadm as `-c FILE` [default: theirs]
    #[arg(long, value_name = "FILE")]
    pub dovecot_conf: Option<PathBuf>,
    /// Mailbox for the end-to-end lookups [default: the first active mailbox]
    #[arg(long, value_name = "ADDRESS")]
    pub address: Option<String>,
    /// Seconds any one external command or probe may take
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
}

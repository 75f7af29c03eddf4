//! What every command shares: the loaded config, the database URL, the
//! resolver built from the config, and how to open the store for a given
//! access mode. Commands and `import` both take a [`Ctx`]; it lives in its
//! own module so that neither has to reach into the other for it.
//!
//! The one decision a reader might question: writes go through
//! [`Ctx::write`], which opens the store at the latest schema, runs the whole
//! command in one transaction and restores the SQLite file's mode after the
//! commit, so a refused command leaves the database exactly as it was and the
//! daemons (other users in the database's group) can still read it.

use crate::args::Cli;
use crate::error::CliError;
use mailtable_core::store::{self, migrate, Access, DatabaseUrl, OpenOptions, SchemaState};
use mailtable_core::{Config, Resolver, Store};

/// Everything a command needs.
pub(crate) struct Ctx {
    /// The config file's settings (or the built-in defaults).
    pub(crate) config: Config,
    /// The database, from `--database` or the config.
    pub(crate) url: DatabaseUrl,
    /// The resolution algorithm with the configured tag delimiter.
    pub(crate) resolver: Resolver,
}

impl Ctx {
    /// Load the config (`-c`, else the default path if it exists, else the
    /// built-in defaults) and apply `--database`.
    pub(crate) fn from_cli(cli: &Cli) -> Result<Ctx, CliError> {
        let config = load_config(cli)?;
        let url_text = cli
            .database
            .clone()
            .unwrap_or_else(|| config.database.clone());
        let url: DatabaseUrl = url_text.parse().map_err(CliError::usage)?;
        let resolver = Resolver::new(config.delimiter().map_err(CliError::usage)?);
        Ok(Ctx {
            config,
            url,
            resolver,
        })
    }

    /// Open the store as it is, whatever its schema.
    ///
    /// A SQLite file that is not there at all is a usage error (exit 2), as
    /// an empty one is: at the prompt it is a typo in `--database` or the
    /// config, or a database never made, and a script that retries on 75
    /// would retry it for ever. The daemons treat the same absence as a
    /// temporary failure (a restore in progress); so does the CLI when the
    /// file goes away after this check.
    pub(crate) fn open(&self, access: Access) -> Result<Box<dyn Store>, CliError> {
        if let DatabaseUrl::Sqlite(path) = &self.url {
            let missing =
                std::fs::metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if missing && access != Access::Create {
                return Err(CliError::usage(format!(
                    "no database at {}: create it with `mailtable init`, or name the right \
                     one with `database` in the config or `--database`",
                    path.display()
                )));
            }
        }
        let opts = OpenOptions {
            access,
            timeout: self.config.timeout(),
        };
        Ok(store::open(&self.url, &opts)?)
    }

    /// Open for a check made before a write (the mailbox is new, the
    /// mailbox exists), so that nothing is asked of the admin (a password)
    /// for a command that would be refused anyway.
    ///
    /// With write access although it only reads: a SQLite file a writer
    /// left a hot journal in (it died inside a transaction) cannot be read
    /// until the journal is rolled back, which SQLite does at the first
    /// read of a connection that may write (<https://sqlite.org/lockingv3.html>,
    /// "hot journals"). Opened read-only, the check would fail on it and
    /// the write that clears it would never run, although the error itself
    /// tells the admin to run a write as root.
    pub(crate) fn open_before_write(&self) -> Result<Box<dyn Store>, CliError> {
        self.open(Access::ReadWrite)
    }

    /// Open for writing, at the latest schema (or explain how to get there).
    pub(crate) fn open_rw(&self) -> Result<Box<dyn Store>, CliError> {
        let mut s = self.open(Access::ReadWrite)?;
        match s.schema_state()? {
            SchemaState::Empty => Err(CliError::usage(format!(
                "{} has no users table; create it with `mailtable init`",
                self.url
            ))),
            SchemaState::Version(v) if v > migrate::LATEST => Err(CliError::usage(format!(
                "{} has schema version {v}, newer than this mailtable knows ({}); upgrade mailtable",
                self.url,
                migrate::LATEST
            ))),
            _ => Ok(s),
        }
    }

    /// Run `f` in one transaction on the store opened for writing; roll
    /// back if it fails, or if Ctrl-C or SIGTERM came meanwhile
    /// ([`crate::interrupt`]).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        crate::interrupt::guarded(|| self.write_once(f))
    }

    /// [`Ctx::write`] without the signal handling around it.
    fn write_once<T>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        let mut s = self.open_rw()?;
        s.begin()?;
        match f(s.as_mut()).and_then(|v| crate::interrupt::check().map(|()| v)) {
            Ok(v) => {
                s.commit()?;
                crate::output::changed();
                drop(s);
                self.reshare();
                Ok(v)
            }
            Err(e) => {
                s.rollback();
                Err(e)
            }
        }
    }

    /// The SQL dialect of the migrations for this database.
    pub(crate) fn dialect(&self) -> migrate::Dialect {
        match self.url {
            DatabaseUrl::Sqlite(_) => migrate::Dialect::Sqlite,
            DatabaseUrl::Postgres(_) => migrate::Dialect::Postgres,
        }
    }

    /// After a write: keep the file readable by the daemons' group. Best
    /// effort: the write itself succeeded, and `init` reports a failure to
    /// set the group where it matters.
    pub(crate) fn reshare(&self) {
        if let DatabaseUrl::Sqlite(path) = &self.url {
            let _ = store::sqlite::share_files(path, None);
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, CliError> {
    Config::locate(cli.config.as_deref()).map_err(|e| CliError::usage(e.to_string()))
}

//! Schema migrations: the SQL files of `schema/<dialect>/`, embedded at build
//! time, applied in order, one transaction per step.
//!
//! Version 0 is the article's hand-made table: step 1 adopts it with
//! `CREATE ... IF NOT EXISTS`, keeping every row. A database newer than the
//! last step this binary knows is refused before anything is touched.

use super::{SchemaState, Store, StoreError};

/// SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `schema/sqlite/`.
    Sqlite,
    /// `schema/postgres/`.
    Postgres,
}

/// One migration step.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The number in the file name.
    pub version: u32,
    /// The file name, for messages.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

macro_rules! step {
    ($v:expr, $dir:literal, $name:literal) => {
        Step {
            version: $v,
            name: $name,
            sql: include_str!(concat!("../../../../schema/", $dir, "/", $name)),
        }
    };
}

/// The SQLite steps.
pub const SQLITE: &[Step] = &[
    step!(1, "sqlite", "0001_users.sql"),
    step!(2, "sqlite", "0002_active_quota.sql"),
    step!(3, "sqlite", "0003_change_counter.sql"),
    step!(4, "sqlite", "0004_stamp_any_search_path.sql"),
    step!(5, "sqlite", "0005_stamp_as_owner.sql"),
];

/// The PostgreSQL steps (same numbers, same intent).
pub const POSTGRES: &[Step] = &[
    step!(1, "postgres", "0001_users.sql"),
    step!(2, "postgres", "0002_active_quota.sql"),
    step!(3, "postgres", "0003_change_counter.sql"),
    step!(4, "postgres", "0004_stamp_any_search_path.sql"),
    step!(5, "postgres", "0005_stamp_as_owner.sql"),
];

/// The newest schema version this binary knows.
pub const LATEST: u32 = 5;

/// The steps of a dialect.
pub fn steps(dialect: Dialect) -> &'static [Step] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Version before.
    pub from: u32,
    /// Version after.
    pub to: u32,
    /// Steps applied, by file name.
    pub applied: Vec<&'static str>,
}

/// Bring the schema to [`LATEST`]. With `create` false, a database without a
/// `users` table is refused (that is `init`'s job).
pub fn migrate(
    store: &mut dyn Store,
    dialect: Dialect,
    create: bool,
) -> Result<Report, StoreError> {
    let from = match store.schema_state()? {
        SchemaState::Empty if !create => {
            return Err(StoreError::Schema(
                "the database has no users table; create one with `mailtable init`".into(),
            ))
        }
        SchemaState::Empty | SchemaState::Unversioned => 0,
        SchemaState::VersionUnreadable => {
            return Err(StoreError::Schema(
                "this role may not read mailtable_schema (permission denied): run migrate as \
                 the role that owns the tables"
                    .into(),
            ))
        }
        SchemaState::Version(v) if v > LATEST => {
            return Err(StoreError::Schema(format!(
                "the database has schema version {v}, newer than this mailtable knows \
                 ({LATEST}); refusing to touch it, upgrade mailtable"
            )))
        }
        SchemaState::Version(v) => v,
    };
    let mut applied = Vec::new();
    for step in steps(dialect).iter().filter(|s| s.version > from) {
        store
            .apply_migration(step.version, step.sql)
            .map_err(|e| match e {
                // Refused by the server for this role (PostgreSQL's 42501,
                // "must be owner of ..."): no retry helps, unlike an
                // outage, so not a temporary failure.
                StoreError::Unavailable(m) if m.contains("SQLSTATE 42501") => {
                    StoreError::Schema(format!(
                        "migration {} failed: {m} (run migrate as the role that owns the \
                         tables)",
                        step.name
                    ))
                }
                StoreError::Unavailable(m) => StoreError::Unavailable(m),
                other => StoreError::Schema(format!("migration {} failed: {other}", step.name)),
            })?;
        applied.push(step.name);
    }
    Ok(Report {
        from,
        to: LATEST.max(from),
        applied,
    })
}

/// Whether the database is at the latest version (for commands that need
/// the optional columns).
pub fn is_current(store: &mut dyn Store) -> Result<bool, StoreError> {
    Ok(store.schema_state()? == SchemaState::Version(LATEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_have_the_same_steps() {
        let a: Vec<u32> = SQLITE.iter().map(|s| s.version).collect();
        let b: Vec<u32> = POSTGRES.iter().map(|s| s.version).collect();
        assert_eq!(a, b);
        assert_eq!(a.last().copied(), Some(LATEST));
        for (s, p) in SQLITE.iter().zip(POSTGRES) {
            assert_eq!(s.name, p.name);
        }
        assert!(a.windows(2).all(|w| w[1] == w[0] + 1));
    }
}

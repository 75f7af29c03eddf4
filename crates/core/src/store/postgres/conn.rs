//! One live connection (the client, the task that drives its socket, its
//! prepared statements) and [`Conn`], one call's view of it, on which every
//! statement runs under a client-side deadline.
//!
//! Why a deadline here when the server has `statement_timeout`: the server
//! can only time out a statement it is running. A server that accepted the
//! connection and then stopped answering (a stopped process, a stuck disk,
//! a black-holed network) never sends that error, and tokio-postgres has
//! no per-call timeout of its own (its `Config::connect_timeout` covers
//! connecting only; docs.rs `tokio_postgres::Config`), so every call is
//! wrapped in `tokio::time::timeout`.

use super::error::Failure;
use super::sql::Columns;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// A live connection and what belongs to it.
pub(super) struct Open {
    pub(super) client: Client,
    /// Drives the socket; runs whenever the runtime runs (during calls).
    pub(super) driver: JoinHandle<()>,
    pub(super) columns: Columns,
    /// Prepared statements of this connection, by query key.
    pub(super) statements: HashMap<&'static str, Statement>,
}

/// Run `fut` on `rt`, bounded by `limit`.
pub(super) fn block<T>(
    rt: &Runtime,
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Failure> {
    match rt.block_on(async { tokio::time::timeout(limit, fut).await }) {
        Ok(r) => r.map_err(Failure::Pg),
        Err(_) => Err(Failure::Timeout(what)),
    }
}

/// One call's view of the connection.
pub(super) struct Conn<'a> {
    pub(super) rt: &'a Runtime,
    pub(super) open: &'a mut Open,
    pub(super) limit: Duration,
}

impl Conn<'_> {
    /// The prepared statement for `key`, preparing `sql(columns)` the first
    /// time on this connection.
    pub(super) fn statement(
        &mut self,
        key: &'static str,
        sql: impl FnOnce(Columns) -> String,
    ) -> Result<Statement, Failure> {
        if let Some(s) = self.open.statements.get(key) {
            return Ok(s.clone());
        }
        let text = sql(self.open.columns);
        let s = block(
            self.rt,
            self.limit,
            "preparing a statement",
            self.open.client.prepare(&text),
        )?;
        self.open.statements.insert(key, s.clone());
        Ok(s)
    }

    pub(super) fn query(
        &mut self,
        key: &'static str,
        sql: impl FnOnce(Columns) -> String,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        let s = self.statement(key, sql)?;
        block(
            self.rt,
            self.limit,
            "running a query",
            self.open.client.query(&s, params),
        )
    }

    /// A query that is not kept (SQL made at run time, e.g. the importer's
    /// reads of another application's tables).
    pub(super) fn query_once(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        block(
            self.rt,
            self.limit,
            "running a query",
            self.open.client.query(sql, params),
        )
    }

    /// [`Conn::query`], handing each row to `each` as it arrives instead of
    /// collecting them: the client holds one row at a time. Each wait for
    /// more rows is bounded by the call's limit.
    pub(super) fn query_each(
        &mut self,
        key: &'static str,
        sql: impl FnOnce(Columns) -> String,
        params: &[&(dyn ToSql + Sync)],
        each: &mut dyn FnMut(&tokio_postgres::Row) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        use futures_core::Stream;
        let s = self.statement(key, sql)?;
        let stream = block(
            self.rt,
            self.limit,
            "running a query",
            self.open.client.query_raw(&s, params.iter().copied()),
        )?;
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx));
            let row = block(self.rt, self.limit, "reading rows", async {
                next.await.transpose()
            })?;
            match row {
                Some(row) => each(&row)?,
                None => return Ok(()),
            }
        }
    }

    /// A fixed statement: the SQL is its own key.
    pub(super) fn query_static(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, Failure> {
        self.query(sql, |_| sql.to_string(), params)
    }

    pub(super) fn execute_static(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Failure> {
        let s = self.statement(sql, |_| sql.to_string())?;
        block(
            self.rt,
            self.limit,
            "running a statement",
            self.open.client.execute(&s, params),
        )
    }

    /// A statement that is not kept (migrations: the tables it names may
    /// not exist after a rollback).
    pub(super) fn execute_once(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Failure> {
        block(
            self.rt,
            self.limit,
            "running a statement",
            self.open.client.execute(sql, params),
        )
    }

    pub(super) fn batch(&mut self, sql: &str) -> Result<(), Failure> {
        block(
            self.rt,
            self.limit,
            "running a statement",
            self.open.client.batch_execute(sql),
        )
    }
}

//! The connection lifecycle: connect (behind the back-off), close, make
//! sure a connection is there, and run a read or a write on it with the
//! failure rules below.
//!
//! - Any error drops the connection; the next call reconnects lazily.
//! - A read that fails because a connection opened earlier turned out
//!   dead (`pg_terminate_backend`, a server restart, an idle timeout) is
//!   retried once on a fresh connection: idle connections die routinely,
//!   and that must not turn a delivery into a temporary failure.
//! - Writes are never retried (the first attempt may have committed);
//!   `begin` is, as a read: a failed `BEGIN` leaves nothing behind.
//! - A transaction whose connection was lost stays failed until
//!   `rollback`. The decision a reader would question, since reconnecting
//!   looks kinder: a `COMMIT` on a new connection would report success for
//!   a change that was never made (a transaction lives and dies with its
//!   session; PostgreSQL manual, "Transactions").

use super::backoff;
use super::conn::{block, Conn, Open};
use super::error::{message, tx_lost, Failure};
use super::sql::{Columns, COLUMNS_SQL};
use super::PostgresStore;
use crate::store::{Access, StoreError, LOCKED_WAIT};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::config::LoadBalanceHosts;

/// Added to the configured timeout for the client-side deadline, so that the
/// server's own `statement_timeout` (a clean error) normally fires first.
pub(super) const GRACE: Duration = Duration::from_millis(250);
/// How long closing a connection may wait for the goodbye to be sent.
const CLOSE_WAIT: Duration = Duration::from_millis(100);

/// A number below `n` that differs from call to call, to start a
/// `load_balance_hosts=random` URL at (no need for more randomness than
/// spreading connections).
fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % n as u64) as usize
}

/// Transaction state (`begin` .. `commit`/`rollback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tx {
    None,
    Open,
    /// The connection died inside the transaction: nothing was committed.
    Lost,
}

/// [`PostgresStore::backoff_key`]'s text (the password only as a digest,
/// and only in memory).
fn backoff_key(shown: &str, writer: bool, password: Option<&[u8]>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    password.hash(&mut h);
    let access = if writer { "rw" } else { "ro" };
    format!("{shown}#{access}#{:016x}", h.finish())
}

impl PostgresStore {
    pub(super) fn writer(&self) -> bool {
        self.access != Access::ReadOnly
    }

    /// The back-off's key: the URL as shown, the access, and a digest of
    /// the password, which the shown URL hides. Without it, a config whose
    /// wrong password was corrected (`smtpctl update table` reads it
    /// again) would wait out the old one's failures: the same key while
    /// the old store kept failing under traffic.
    fn backoff_key(&self) -> String {
        backoff_key(&self.shown, self.writer(), self.config.get_password())
    }

    /// Close the connection, if any, sending the server a goodbye.
    pub(super) fn close(&mut self) {
        if let Some(open) = self.open.take() {
            let Open {
                client, mut driver, ..
            } = open;
            // Without a client the driver sends Terminate and finishes.
            drop(client);
            let done = self
                .rt
                .block_on(async { tokio::time::timeout(CLOSE_WAIT, &mut driver).await })
                .is_ok();
            if !done {
                driver.abort();
                let _ = self.rt.block_on(driver);
            }
        }
    }

    /// Connect now, unless a recent attempt failed (back-off).
    pub(super) fn connect(&mut self) -> Result<(), StoreError> {
        self.close();
        let key = self.backoff_key();
        backoff::claim(&key, Instant::now()).map_err(StoreError::Unavailable)?;
        match self.try_connect() {
            Ok(open) => {
                if backoff::succeeded(&key) {
                    tracing::info!(database = %self.shown, "database reachable again");
                }
                self.open = Some(open);
                Ok(())
            }
            Err(err) => {
                // The caller reports the error (the daemons log each failed
                // lookup, the CLI prints it); here only for debugging.
                tracing::debug!(database = %self.shown, "{err}");
                backoff::failed(&key, Instant::now(), message(&err));
                Err(err)
            }
        }
    }

    /// A connection to the first host that takes one, in the URL's order
    /// (from a random one with `load_balance_hosts=random`), each tried
    /// within the timeout; when none does, what each said.
    fn try_connect(&self) -> Result<Open, StoreError> {
        let n = self.hosts.len();
        let first = match self.config.get_load_balance_hosts() {
            LoadBalanceHosts::Random if n > 1 => random_below(n),
            _ => 0,
        };
        let mut failed = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let (label, config) = &self.hosts[i];
            match self.try_host(config) {
                Ok(open) => return Ok(open),
                Err(f) => failed.push((label, self.connect_error(f))),
            }
        }
        Err(match failed.len() {
            0 | 1 => failed
                .pop()
                .map(|(_, e)| e)
                .unwrap_or_else(|| StoreError::Unavailable("no host to connect to".into())),
            _ => {
                // Each host's own error, as libpq lists them, under the
                // one heading they all share.
                let heading = match self.writer() {
                    true => format!("no writable primary reachable at {}", self.shown),
                    false => format!("cannot connect to {}", self.shown),
                };
                let each: Vec<String> = failed
                    .iter()
                    .map(|(label, e)| {
                        let text = message(e);
                        let own = text
                            .strip_prefix(heading.as_str())
                            .and_then(|t| t.strip_prefix(": "))
                            .unwrap_or(text);
                        format!("{label}: {own}")
                    })
                    .collect();
                StoreError::Unavailable(format!("{heading}: {}", each.join("; ")))
            }
        })
    }

    /// A connection to the one host of `config`, ready for lookups.
    fn try_host(&self, config: &tokio_postgres::Config) -> Result<Open, Failure> {
        let (client, connection) = block(
            &self.rt,
            self.timeout + GRACE,
            "connecting",
            config.connect(self.tls.clone()),
        )?;
        let driver = self.rt.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {e}");
            }
        });
        let mut open = Open {
            client,
            driver,
            columns: Columns::default(),
            statements: HashMap::new(),
        };
        let mut conn = Conn {
            rt: &self.rt,
            open: &mut open,
            limit: self.timeout + GRACE,
        };
        // A failure here drops `open`; its driver ends with the runtime's
        // next run, closing the socket.
        // A reader's session is read-only from here on (PostgreSQL manual,
        // "Client Connection Defaults"), set once the host is chosen: as a
        // startup option it would make every server look read-only to the
        // `target_session_attrs` check.
        if !self.writer() {
            conn.batch("SET default_transaction_read_only = on")?;
        }
        if self.locked {
            conn.batch(&format!(
                "SET lock_timeout = {}",
                LOCKED_WAIT.min(self.timeout).as_millis().max(1)
            ))?;
        }
        for r in conn.query_static(COLUMNS_SQL, &[])? {
            match r.try_get::<_, String>(0)?.as_str() {
                "active" => open.columns.active = true,
                "quota" => open.columns.quota = true,
                _ => {}
            }
        }
        Ok(open)
    }

    /// A read of `users` got through: lock waits are the configured
    /// timeout's again (the short wait of [`LOCKED_WAIT`] was set on this
    /// connection when it was made). One `RESET` after each lock, none
    /// otherwise; a connection that cannot take it is dropped.
    pub(super) fn got_through(&mut self) {
        if !self.locked {
            return;
        }
        self.locked = false;
        if self
            .run(self.timeout, &mut |c| c.batch("RESET lock_timeout"))
            .is_err()
        {
            self.close();
        }
    }

    /// Make sure there is a connection. `Ok(true)`: one from before was
    /// reused; `Ok(false)`: a new one was made.
    pub(super) fn ensure(&mut self) -> Result<bool, StoreError> {
        if self.tx == Tx::Lost {
            return Err(tx_lost());
        }
        if let Some(open) = &self.open {
            if !open.client.is_closed() {
                return Ok(true);
            }
            self.close();
        }
        if self.tx == Tx::Open {
            self.tx = Tx::Lost;
            return Err(tx_lost());
        }
        self.connect()?;
        Ok(false)
    }

    /// Map a failure of a call bounded by `bound` (the configured timeout,
    /// or [`BULK_TIMEOUT`](crate::store::BULK_TIMEOUT) for whole-table
    /// work), drop the connection, and remember a lost transaction.
    pub(super) fn fail(&mut self, f: Failure, bound: Duration) -> StoreError {
        let err = self.call_error(&f, bound);
        if f.waited_out() {
            self.locked = true;
        }
        if matches!(f, Failure::Timeout(_)) {
            // No answer at all: a hung server or network, not a slow query
            // (that is the server's statement_timeout, a clean error). Back
            // off, so the caller's immediate reconnect (table-mailtable
            // reopens after every error) cannot make smtpd wait a second
            // full timeout.
            backoff::failed(&self.backoff_key(), Instant::now(), message(&err));
        }
        self.close();
        if self.tx == Tx::Open {
            self.tx = Tx::Lost;
        }
        err
    }

    fn run<T>(
        &mut self,
        timeout: Duration,
        f: &mut impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let Some(open) = self.open.as_mut() else {
            return Err(Failure::NotConnected);
        };
        let mut conn = Conn {
            rt: &self.rt,
            open,
            limit: timeout + GRACE,
        };
        f(&mut conn)
    }

    /// Run a read; retried once on a fresh connection when a connection
    /// made earlier turns out to be dead (outside transactions only).
    pub(super) fn read<T>(
        &mut self,
        f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.read_within(self.timeout, f)
    }

    /// [`PostgresStore::read`] with each call bounded by `timeout` on the
    /// client side instead of the configured timeout (the server's
    /// `statement_timeout` is the caller's to raise, see `bulk`).
    pub(super) fn read_within<T>(
        &mut self,
        timeout: Duration,
        f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        if let Some(why) = &self.failed_in_lookup {
            return Err(StoreError::Unavailable(why.clone()));
        }
        let result = self.read_once_or_twice(timeout, f);
        if let Err(StoreError::Unavailable(why)) = &result {
            if self.in_lookup {
                self.failed_in_lookup = Some(why.clone());
            }
        }
        result
    }

    fn read_once_or_twice<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let reused = self.ensure()?;
        match self.run(timeout, &mut f) {
            Ok(v) => Ok(v),
            Err(failure) => {
                let retry = reused && self.tx == Tx::None && failure.connection_lost();
                let err = self.fail(failure, timeout);
                if !retry {
                    return Err(err);
                }
                tracing::info!(database = %self.shown, "{err}; reconnecting");
                self.ensure()?;
                self.run(timeout, &mut f).map_err(|e| self.fail(e, timeout))
            }
        }
    }

    /// Run a write: never retried (the first attempt may have committed).
    pub(super) fn write<T>(
        &mut self,
        f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.write_within(self.timeout, f)
    }

    /// [`PostgresStore::write`] with each call bounded by `timeout` on the
    /// client side (see [`PostgresStore::read_within`]).
    pub(super) fn write_within<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&mut Conn<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.ensure()?;
        self.run(timeout, &mut f).map_err(|e| self.fail(e, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_key;

    /// A corrected password is another back-off: the old one's failures
    /// do not hold the new config back.
    #[test]
    fn the_backoff_key_tells_passwords_apart() {
        let url = "postgresql://reader:***@127.0.0.1/mail";
        let wrong = backoff_key(url, false, Some(b"Wr0ng"));
        assert_ne!(wrong, backoff_key(url, false, Some(b"right")));
        assert_ne!(wrong, backoff_key(url, false, None));
        assert_ne!(wrong, backoff_key(url, true, Some(b"Wr0ng")));
        assert_eq!(wrong, backoff_key(url, false, Some(b"Wr0ng")));
        assert!(!wrong.contains("Wr0ng"));
    }
}

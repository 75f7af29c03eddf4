//! The two pools behind `dovecot-mailtable serve`: database handles and
//! password-hashing threads.
//!
//! - [`StorePool`] lends a [`Store`] to one request at a time. A SQLite
//!   connection is not `Sync`, so it cannot be shared between the blocking
//!   threads that run requests, but opening one per connection would be
//!   wasteful: Dovecot's dict client opens a new connection for every
//!   single lookup (reference §2.1, VERIFIED). A store that reported an error is dropped
//!   instead of returned, so the next request opens a fresh one: when the
//!   database comes back, lookups work again without a restart.
//! - [`HashPool`] runs password checks on a fixed number of threads fed by a
//!   bounded queue. A bcrypt check costs tens of milliseconds by design; on
//!   the pool, a burst of logins waits for a hashing thread while userdb
//!   lookups (LMTP deliveries) and dict replies go on in their own
//!   blocking threads. When the queue is full, the submitting thread waits
//!   (a blocking thread, never a runtime worker): back-pressure, never
//!   unbounded memory.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use mailtable_core::{Store, StoreError};

/// Opens a new store; called when no idle one is available.
pub type Opener = dyn Fn() -> Result<Box<dyn Store>, StoreError> + Send + Sync;

/// Idle stores, opened on demand and reused.
pub struct StorePool {
    open: Box<Opener>,
    idle: Mutex<Vec<Box<dyn Store>>>,
    max_idle: usize,
}

impl StorePool {
    /// A pool that opens stores with `open` and keeps at most `max_idle` of
    /// them between requests.
    pub fn new(open: Box<Opener>, max_idle: usize) -> StorePool {
        StorePool {
            open,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// Runs `f` with a store. On error the store is dropped, not kept, so
    /// the next call reopens the database.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A poisoned lock only means another thread panicked while holding
        // the list; the list itself is still a list of valid stores.
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut store = match taken {
            Some(s) => s,
            None => (self.open)()?,
        };
        let result = f(store.as_mut());
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.max_idle {
                idle.push(store);
            }
        }
        result
    }

    /// How many stores are idle (for tests).
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The pool's threads are gone (shutdown, or a panic in every one).
    #[error("password hashing pool is not running")]
    Stopped,
}

/// A fixed set of threads running jobs from a bounded queue.
pub struct HashPool {
    queue: SyncSender<Job>,
}

impl HashPool {
    /// Starts `threads` threads (at least one) with room for `queue` waiting
    /// jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<HashPool> {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("hash-{i}"))
                .spawn(move || worker(&rx))?;
        }
        Ok(HashPool { queue: tx })
    }

    /// Runs `job` on a pool thread and waits for its result. Blocks while
    /// the queue is full.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (done_tx, done_rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone away; nothing to do then.
            let _ = done_tx.send(job());
        });
        self.queue.send(job).map_err(|_| PoolError::Stopped)?;
        done_rx.recv().map_err(|_| PoolError::Stopped)
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only while taking a job, not while running it.
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::store::memory::MemStore;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    fn pool(broken: Arc<AtomicBool>, opened: Arc<AtomicUsize>) -> StorePool {
        StorePool::new(
            Box::new(move || {
                opened.fetch_add(1, Ordering::SeqCst);
                let mut s = MemStore::default().with("a", "x.org", "a@x.org", Some("h"));
                s.broken = broken.load(Ordering::SeqCst);
                Ok(Box::new(s) as Box<dyn Store>)
            }),
            2,
        )
    }

    #[test]
    fn stores_are_reused_and_dropped_after_errors() {
        let broken = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let p = pool(Arc::clone(&broken), Arc::clone(&opened));
        for _ in 0..3 {
            let rows = p.with(|s| s.exact("a", "x.org")).expect("store works");
            assert_eq!(rows.len(), 1);
        }
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert_eq!(p.idle_count(), 1);

        // An outage: the idle store is dropped after its error...
        broken.store(true, Ordering::SeqCst);
        let _ = p.with(|s| {
            s.exact("a", "x.org")?;
            Err::<(), _>(StoreError::Unavailable("gone".into()))
        });
        assert_eq!(p.idle_count(), 0);
        assert!(p.with(|s| s.exact("a", "x.org")).is_err());
        // ...and a new one serves once the database is back.
        broken.store(false, Ordering::SeqCst);
        assert!(p.with(|s| s.exact("a", "x.org")).is_ok());
    }

    #[test]
    fn open_failure_is_a_store_error() {
        let p = StorePool::new(
            Box::new(|| Err(StoreError::Unavailable("no database".into()))),
            2,
        );
        assert!(matches!(
            p.with(|s| s.exact("a", "x.org")),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn hash_pool_runs_jobs_in_parallel() {
        let pool = Arc::new(HashPool::new(4, 8).expect("threads start"));
        let start = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    pool.run(move || {
                        thread::sleep(Duration::from_millis(200));
                        i * 2
                    })
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect();
        assert_eq!(results, vec![Ok(0), Ok(2), Ok(4), Ok(6)]);
        // Four 200 ms jobs on four threads: well under the 800 ms of a
        // serial run.
        assert!(start.elapsed() < Duration::from_millis(700));
    }
}

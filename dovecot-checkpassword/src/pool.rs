//! The two pools behind `dovecot-mailtable serve`: database handles and
//! password-hashing threads.
//!
//! - [`StorePool`] lends a [`Store`] to one request at a time, with at
//!   most a fixed number of stores open at once. A SQLite
//!   connection is not `Sync`, so it cannot be shared between the blocking
//!   threads that run requests, but opening one per connection would be
//!   wasteful: Dovecot's dict client opens a new connection for every
//!   single lookup (reference §2.1, VERIFIED). A store whose database was
//!   unavailable goes back to the pool: each backend recovers by itself
//!   (SQLite reopens a file that changed or a connection it dropped,
//!   PostgreSQL reconnects behind its back-off), and a SQLite store kept
//!   through a lock checks for changes without waiting on it, so answers
//!   from the cache come at once while a writer holds the lock. A store
//!   that reported any other error is dropped instead, so the next request
//!   opens a fresh one.
//! - [`HashPool`] runs password checks on a fixed number of threads fed by a
//!   bounded queue. A bcrypt check costs tens of milliseconds by design; on
//!   the pool, a burst of logins waits for a hashing thread while userdb
//!   lookups (LMTP deliveries) and dict replies go on in their own
//!   blocking threads. When the queue is full, the submitting thread waits
//!   (a blocking thread, never a runtime worker): back-pressure, never
//!   unbounded memory.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use mailtable_core::store::ChangeToken;
use mailtable_core::{Store, StoreError};

/// Opens a new store; called when no idle one is available.
pub type Opener = dyn Fn() -> Result<Box<dyn Store>, StoreError> + Send + Sync;

/// The database's change token read without a store
/// ([`mailtable_core::store::sqlite::peek_change_token`]): `None` when it
/// cannot tell.
pub type Peek = dyn Fn() -> Option<ChangeToken> + Send + Sync;

/// Database handles, opened on demand, reused, and never more than a fixed
/// number at once (lent or idle): 256 concurrent requests must not become
/// 256 PostgreSQL backends. A request that finds them all lent waits for
/// one to come back, for a bounded time, and then fails as a temporary
/// error (the lookup answers "try again later", never "no").
pub struct StorePool {
    open: Box<Opener>,
    peek: Option<Box<Peek>>,
    state: Mutex<PoolState>,
    returned: Condvar,
    max_idle: usize,
    max_open: usize,
    wait: Duration,
}

struct PoolState {
    idle: Vec<Box<dyn Store>>,
    /// Stores in existence: idle ones, lent ones and ones being opened.
    open: usize,
    /// Requests waiting for a store to come back: a store that comes back
    /// wakes one only when there is one (a wake-up is a system call, on
    /// every request otherwise).
    waiting: usize,
}

impl StorePool {
    /// A pool that opens stores with `open` and keeps at most `max_idle` of
    /// them between requests, with no cap on stores in use; see
    /// [`StorePool::limit`].
    pub fn new(open: Box<Opener>, max_idle: usize) -> StorePool {
        StorePool {
            open,
            peek: None,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
            }),
            returned: Condvar::new(),
            max_idle,
            max_open: usize::MAX,
            wait: Duration::ZERO,
        }
    }

    /// Caps the stores open at once (idle or lent) at `max_open` (at least
    /// one); a request that finds them all lent waits up to `wait`.
    #[must_use]
    pub fn limit(mut self, max_open: usize, wait: Duration) -> StorePool {
        self.max_open = max_open.max(1);
        self.wait = wait;
        self
    }

    /// Sets how to read the change token without a store: for a database
    /// whose stores may all be waiting on a writer's lock (SQLite), so that
    /// answers already cached are told fresh meanwhile.
    #[must_use]
    pub fn peek(mut self, peek: Box<Peek>) -> StorePool {
        self.peek = Some(peek);
        self
    }

    /// The change token read without a store, if this pool can.
    pub fn peek_token(&self) -> Option<ChangeToken> {
        self.peek.as_ref().and_then(|peek| peek())
    }

    /// Whether a store is idle now (the pool not locked by another thread
    /// and its idle list not empty): [`StorePool::with`] would then not
    /// open one.
    pub fn has_idle(&self) -> bool {
        try_lock(&self.state).is_some_and(|s| !s.idle.is_empty())
    }

    // A poisoned lock only means another thread panicked while holding
    // it; the state is updated in single statements and stays valid.
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle store, or the right to open one, waiting up to `wait`.
    fn take(&self) -> Result<Option<Box<dyn Store>>, StoreError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        loop {
            if let Some(store) = state.idle.pop() {
                return Ok(Some(store));
            }
            if state.open < self.max_open {
                state.open += 1;
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Unavailable(format!(
                    "all {} database connections busy for {:?}",
                    self.max_open, self.wait
                )));
            }
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    /// Gives a slot back: `store` goes to the idle list, or, when `None`
    /// (an error, a failed open), the slot is freed for a fresh open.
    fn give_back(&self, store: Option<Box<dyn Store>>) {
        let mut state = self.lock();
        let dropped = match store {
            Some(s) if state.idle.len() < self.max_idle => {
                state.idle.push(s);
                None
            }
            other => {
                state.open = state.open.saturating_sub(1);
                other
            }
        };
        self.release(state);
        // Closing a connection may take a round trip: not under the lock.
        drop(dropped);
    }

    /// Unlocks `state` after a store came back, waking one request that
    /// waits for it, if any.
    fn release(&self, state: MutexGuard<'_, PoolState>) {
        let wake = state.waiting > 0;
        drop(state);
        if wake {
            self.returned.notify_one();
        }
    }

    /// Runs `f` with a store, as one lookup ([`Store::begin_lookup`]: the
    /// change check and the queries of one request read the same file). A
    /// store whose database was unavailable is kept (it recovers by
    /// itself); after another error it is dropped, so the next call opens
    /// a fresh one.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        /// Frees the slot even if `f` or the opener panics.
        struct Lent<'a> {
            pool: &'a StorePool,
            store: Option<Box<dyn Store>>,
        }
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                self.pool.give_back(self.store.take());
            }
        }
        let taken = self.take()?;
        let mut lent = Lent {
            pool: self,
            store: None,
        };
        let mut store = match taken {
            Some(s) => s,
            None => (self.open)()?,
        };
        store.begin_lookup();
        let result = f(store.as_mut());
        store.end_lookup();
        if matches!(result, Ok(_) | Err(StoreError::Unavailable(_))) {
            lent.store = Some(store);
        }
        result
    }

    /// Runs `f` with an idle store, as one lookup, if one is idle now (and
    /// the pool not locked by another thread); `None` at once otherwise.
    /// For callers that must not wait (a worker of the async runtime
    /// answering from the cache): it never waits for a store, never opens
    /// one, and never drops one, whatever `f` does, because closing a
    /// PostgreSQL connection is a round trip, and one run on the runtime
    /// panics (see the `Drop` below). A store that failed in `f` goes back
    /// too; the next [`StorePool::with`] meets its failure again and drops
    /// it there.
    pub fn try_idle<T>(&self, f: impl FnOnce(&mut dyn Store) -> Option<T>) -> Option<T> {
        /// Returns the store to the idle list even if `f` panics.
        struct Borrowed<'a> {
            pool: &'a StorePool,
            store: Option<Box<dyn Store>>,
        }
        impl Drop for Borrowed<'_> {
            fn drop(&mut self) {
                if let Some(mut store) = self.store.take() {
                    // Here, so that the lookup ends also when `f` panics:
                    // an idle SQLite store must hold no read lock.
                    store.end_lookup();
                    // Maybe one past `max_idle`, if another store came
                    // back meanwhile; the stores open stay within
                    // `max_open`, which is what bounds connections.
                    let mut state = self.pool.lock();
                    state.idle.push(store);
                    self.pool.release(state);
                }
            }
        }
        // Not even the lock is waited for (every holder keeps it for a few
        // instructions, but a worker has better things to do than queue).
        let store = try_lock(&self.state)?.idle.pop()?;
        let mut borrowed = Borrowed {
            pool: self,
            store: Some(store),
        };
        let store = borrowed.store.as_mut()?;
        store.begin_lookup();
        f(store.as_mut())
    }

    /// How many stores are idle (for tests).
    pub fn idle_count(&self) -> usize {
        self.lock().idle.len()
    }

    /// How many stores exist, idle or lent (for tests).
    pub fn open_count(&self) -> usize {
        self.lock().open
    }
}

/// `mutex` locked if no other thread holds it now, `None` otherwise: for a
/// runtime worker, which must not wait. A poisoned lock only means another
/// thread panicked while holding it; what it guards stays valid (every
/// user here changes it in single statements).
pub fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The idle stores are closed on a thread of their own. A PostgreSQL store
/// says goodbye to its server through its own runtime's `block_on`, which
/// tokio refuses with a panic on a thread that drives async tasks
/// ("Cannot start a runtime from within a runtime"), and `serve` drops the
/// pool there when it stops: the panic cost a clean exit on SIGTERM.
/// Stores dropped after an error are dropped in [`StorePool::with`], on
/// the blocking thread that used them, where this does not arise.
impl Drop for StorePool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        if idle.is_empty() {
            return;
        }
        match thread::Builder::new()
            .name("close-stores".into())
            .spawn(move || drop(idle))
        {
            Ok(closer) => {
                let _ = closer.join();
            }
            // The closure, stores and all, is dropped here then.
            Err(e) => tracing::warn!("cannot start a thread to close database connections: {e}"),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The pool's threads are gone (shutdown).
    #[error("password hashing pool is not running")]
    Stopped,
    /// The job panicked (a bug, or a stored value nobody foresaw). Its
    /// thread lives on and takes the next job.
    #[error("password check failed unexpectedly")]
    Panicked,
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
            // A panic becomes this job's answer instead of ending the
            // thread: a few such logins must not leave the pool empty.
            let done = panic::catch_unwind(AssertUnwindSafe(job));
            // The caller may have gone away; nothing to do then.
            let _ = done_tx.send(done);
        });
        self.queue.send(job).map_err(|_| PoolError::Stopped)?;
        match done_rx.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(PoolError::Panicked),
            Err(_) => Err(PoolError::Stopped),
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only while taking a job, not while running it.
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match next {
            // `run` already catches the job's panic; this guards the
            // sending of its answer too, so the thread never ends early.
            Ok(job) => {
                if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a hashing job panicked");
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtable_core::store::memory::MemStore;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

    /// Each use of a store is one lookup for it (`begin_lookup` ..
    /// `end_lookup`), also when the store is reused and when the request
    /// fails.
    #[test]
    fn each_use_is_one_lookup_for_the_store() {
        let log = mailtable_core::store::memory::CallLog::default();
        let opened = log.clone();
        let p = StorePool::new(
            Box::new(move || {
                let mut s = MemStore::default().with("a", "x.org", "a@x.org", Some("h"));
                s.log = Some(opened.clone());
                Ok(Box::new(s) as Box<dyn Store>)
            }),
            2,
        );
        for fail in [false, false, true, false] {
            log.lock().unwrap().clear();
            let _ = p.with(|s| {
                s.exact("a", "x.org")?;
                s.has_domain("x.org")?;
                match fail {
                    true => Err(StoreError::Unavailable("gone".into())),
                    false => Ok(()),
                }
            });
            assert_eq!(*log.lock().unwrap(), ["begin", "call", "call", "end"]);
        }
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

        // An outage: the store is kept through it (it recovers by
        // itself)...
        let _ = p.with(|s| {
            s.exact("a", "x.org")?;
            Err::<(), _>(StoreError::Unavailable("gone".into()))
        });
        assert_eq!(p.idle_count(), 1);
        assert!(p.with(|s| s.exact("a", "x.org")).is_ok());
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        // ...while another error drops it, and a new one serves.
        let _ = p.with(|s| {
            s.exact("a", "x.org")?;
            Err::<(), _>(StoreError::Other("broken".into()))
        });
        assert_eq!(p.idle_count(), 0);
        assert!(p.with(|s| s.exact("a", "x.org")).is_ok());
        assert_eq!(opened.load(Ordering::SeqCst), 2);
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
        // A failed open gives its slot back.
        assert_eq!(p.open_count(), 0);
    }

    /// 20 threads, each holding a store for 50 ms, through a pool of 3:
    /// never more than 3 stores exist or are in use, and all 20 finish.
    #[test]
    fn at_most_max_open_stores_exist_at_once() {
        let opened = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&opened);
        let p = Arc::new(
            StorePool::new(
                Box::new(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    Ok(Box::new(MemStore::default()) as Box<dyn Store>)
                }),
                3,
            )
            .limit(3, Duration::from_secs(10)),
        );
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let (p, live, peak) = (Arc::clone(&p), Arc::clone(&live), Arc::clone(&peak));
                thread::spawn(move || {
                    p.with(|_| {
                        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(50));
                        live.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().expect("no panic").is_ok());
        }
        assert!(opened.load(Ordering::SeqCst) <= 3, "{opened:?} opened");
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert!(p.open_count() <= 3);
    }

    /// All stores lent: the next request waits its bounded time and then
    /// fails as "unavailable" (a temporary failure); a returned store is
    /// taken by a waiting request.
    #[test]
    fn a_request_beyond_the_cap_waits_then_fails_temporarily() {
        let p = Arc::new(
            StorePool::new(
                Box::new(|| Ok(Box::new(MemStore::default()) as Box<dyn Store>)),
                1,
            )
            .limit(1, Duration::from_millis(200)),
        );
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let holder = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                p.with(|_| {
                    held_tx.send(()).expect("send");
                    let _ = release_rx.recv();
                    Ok(())
                })
            })
        };
        held_rx.recv().expect("holder has the store");
        let started = Instant::now();
        let r = p.with(|_| Ok(()));
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(2));

        // A waiter gets the store as soon as the holder returns it.
        let waiter = {
            let p = Arc::clone(&p);
            thread::spawn(move || p.with(|_| Ok(())))
        };
        thread::sleep(Duration::from_millis(50));
        release_tx.send(()).expect("release");
        assert!(holder.join().expect("no panic").is_ok());
        assert!(waiter.join().expect("no panic").is_ok());
        assert_eq!(p.open_count(), 1);
    }

    /// A panic while a store is lent frees its slot.
    /// A store coming back wakes a request waiting for one at once, from
    /// `with` and from `try_idle` alike; the 10 s wait would otherwise
    /// run out first (the bound below is half of it, far above the
    /// milliseconds a wake-up takes).
    #[test]
    fn a_store_coming_back_wakes_a_waiting_request() {
        let p = Arc::new(
            StorePool::new(
                Box::new(|| Ok(Box::new(MemStore::default()) as Box<dyn Store>)),
                1,
            )
            .limit(1, Duration::from_secs(10)),
        );
        assert!(p.with(|_| Ok(())).is_ok());
        for in_place in [false, true] {
            let (held_tx, held_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let holder = {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    let hold = || {
                        held_tx.send(()).expect("send");
                        release_rx.recv().is_ok()
                    };
                    match in_place {
                        true => p.try_idle(|_| hold().then_some(())).is_some(),
                        false => p.with(|_| Ok(hold())).unwrap_or(false),
                    }
                })
            };
            held_rx.recv().expect("holder has the store");
            let waiter = {
                let p = Arc::clone(&p);
                thread::spawn(move || {
                    let started = Instant::now();
                    p.with(|_| Ok(())).map(|()| started.elapsed())
                })
            };
            while p.lock().waiting == 0 {
                thread::sleep(Duration::from_millis(1));
            }
            release_tx.send(()).expect("release");
            assert!(holder.join().expect("no panic"), "in place: {in_place}");
            let waited = waiter.join().expect("no panic").expect("got the store");
            assert!(
                waited < Duration::from_secs(5),
                "in place: {in_place}: {waited:?}"
            );
            assert_eq!(p.lock().waiting, 0);
        }
    }

    /// `try_idle` takes an idle store or nothing: it never waits, opens or
    /// drops one, whatever the closure does (a store that failed goes back
    /// for `with` to meet the failure and drop it); and it is one lookup
    /// for the store.
    #[test]
    fn try_idle_never_waits_opens_or_drops() {
        let broken = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let p = pool(Arc::clone(&broken), Arc::clone(&opened));
        let mut ran = false;
        let r = p.try_idle(|_| {
            ran = true;
            Some(())
        });
        assert_eq!(r, None, "nothing idle");
        assert!(!ran);
        assert_eq!((opened.load(Ordering::SeqCst), p.open_count()), (0, 0));

        assert!(p.with(|s| s.exact("a", "x.org")).is_ok());
        let rows = p.try_idle(|s| s.exact("a", "x.org").ok().map(|r| r.len()));
        assert_eq!(rows, Some(1));
        assert_eq!((p.idle_count(), p.open_count()), (1, 1));

        let q = Arc::new(p);
        let r = Arc::clone(&q);
        let panicked = thread::spawn(move || r.try_idle(|_| -> Option<()> { panic!("boom") }));
        assert!(panicked.join().is_err());
        assert_eq!(
            (q.idle_count(), q.open_count()),
            (1, 1),
            "back after a panic"
        );

        // An idle store that fails (opened during an outage): kept all
        // the same.
        broken.store(true, Ordering::SeqCst);
        let q2 = pool(Arc::clone(&broken), Arc::clone(&opened));
        let _ = q2.with(|_| Ok(()));
        assert_eq!(q2.try_idle(|s| s.exact("a", "x.org").ok()), None);
        assert_eq!((q2.idle_count(), q2.open_count()), (1, 1), "kept");
        assert!(q2.with(|s| s.exact("a", "x.org")).is_err());
        assert_eq!(
            (q2.idle_count(), q2.open_count()),
            (1, 1),
            "an unavailable database's store kept by with"
        );
        assert_eq!(opened.load(Ordering::SeqCst), 2);

        let log = mailtable_core::store::memory::CallLog::default();
        let logged = log.clone();
        let p = StorePool::new(
            Box::new(move || {
                let mut s = MemStore::default();
                s.log = Some(logged.clone());
                Ok(Box::new(s) as Box<dyn Store>)
            }),
            1,
        );
        assert!(p.with(|_| Ok(())).is_ok());
        log.lock().unwrap().clear();
        let _ = p.try_idle(|s| s.has_domain("x.org").ok());
        assert_eq!(*log.lock().unwrap(), ["begin", "call", "end"]);
        // A lookup that panics ends too (SQLite: its read lock goes).
        log.lock().unwrap().clear();
        let p = Arc::new(p);
        let r = Arc::clone(&p);
        let panicked = thread::spawn(move || {
            r.try_idle(|s| -> Option<()> {
                let _ = s.has_domain("x.org");
                panic!("boom")
            })
        });
        assert!(panicked.join().is_err());
        assert_eq!(*log.lock().unwrap(), ["begin", "call", "end"]);
    }

    #[test]
    fn a_panic_while_lent_frees_the_slot() {
        let p = Arc::new(
            StorePool::new(
                Box::new(|| Ok(Box::new(MemStore::default()) as Box<dyn Store>)),
                1,
            )
            .limit(1, Duration::from_millis(100)),
        );
        let q = Arc::clone(&p);
        let panicked =
            thread::spawn(move || q.with(|_| -> Result<(), StoreError> { panic!("boom") }));
        assert!(panicked.join().is_err());
        assert_eq!(p.open_count(), 0);
        assert!(p.with(|_| Ok(())).is_ok());
    }

    /// Panicking jobs answer `Panicked` (a temporary failure for the
    /// login) and leave every thread alive: after more panics than there
    /// are threads, the pool still runs two jobs in parallel.
    #[test]
    fn a_panicking_job_does_not_shrink_the_pool() {
        let pool = Arc::new(HashPool::new(2, 4).expect("threads start"));
        for _ in 0..5 {
            let r = pool.run(|| -> u8 { panic!("malformed stored hash") });
            assert_eq!(r, Err(PoolError::Panicked));
        }
        let start = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    pool.run(move || {
                        thread::sleep(Duration::from_millis(300));
                        i
                    })
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect();
        assert_eq!(results, vec![Ok(0), Ok(1)]);
        // Two 300 ms jobs at once: both threads still there.
        assert!(
            start.elapsed() < Duration::from_millis(550),
            "{:?}",
            start.elapsed()
        );
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

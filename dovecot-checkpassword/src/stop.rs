//! The shutdown signal that `serve` hands to every accept loop and
//! connection: a `watch` channel of `bool` that turns true once.
//!
//! The decision a reader would question: a `watch` channel rather than a
//! cancellation token. Connections must not be cancelled mid-request (the
//! reply to a lookup being answered still goes out); each one checks the
//! signal only where it waits for a client, so all they need is a value
//! they can await, and `watch` is in tokio already.

use tokio::sync::watch;

/// Resolves once `stop` turns true, or once its sender is gone (nobody is
/// left to serve for).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, inside this fn, so the
    // callers' futures stay `Send`.
    let _ = stop.wait_for(|s| *s).await;
}

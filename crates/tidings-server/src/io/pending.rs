//! A socket's pending work (the built-ins that wait for the store), driven by one task per
//! socket instead of a task per request.
//!
//! A `tokio::spawn` per confirmed publish cost about 6 % of the server's CPU in the publish
//! profiles (a cache-aligned task allocation, the runtime's task list, a schedule), and as
//! many wake-ups as publishes when a group commit confirms a batch. Here the socket's
//! requests go down a channel to one driver task, which polls them as a
//! [`FuturesUnordered`]: a batch of requests read together, or confirmed together, costs one
//! wake-up of that task.
//!
//! The guarantees of a task per request hold:
//! - the reader never waits: [`Pending::run`] only queues (the channel is unbounded, as the
//!   tasks were; the events rate limit and the store's own limits bound what a client can
//!   queue), so a slow store does not block the socket's other packets;
//! - requests complete in any order (each answers its own ack id);
//! - a request that panics ends alone, as its task would have: the driver catches the panic,
//!   logs it and goes on with the others (none is known to be reachable; a bug in one
//!   request must not leave a socket's other publishes unanswered);
//! - nothing outlives the socket for long: [`Pending::close`] (the socket left) drops the
//!   sender, the driver finishes what it holds (each request ends with the store's answer
//!   or error, as a task would) and exits. A request queued after the close runs in a task
//!   of its own, as before.
//! - the driver exists only while the socket has asked for something: it is spawned at the
//!   first request, so a socket that never publishes costs no task.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::namespace::BoxFuture;

/// The driver's side of a socket; see the [module docs](self).
#[derive(Default)]
pub(crate) struct Pending {
    state: Mutex<State>,
}

#[derive(Default)]
enum State {
    /// No request yet: no driver.
    #[default]
    Idle,
    /// The driver runs and takes requests from here.
    Driving(mpsc::UnboundedSender<BoxFuture<()>>),
    /// The socket left.
    Closed,
}

impl Pending {
    /// Runs `work` among the socket's pending work.
    pub(crate) fn run(&self, work: BoxFuture<()>) {
        let mut state = self.state.lock();
        let work = match &*state {
            State::Driving(tx) => match tx.send(work) {
                Ok(()) => return,
                // The driver is gone (the runtime is shutting down): on its own.
                Err(refused) => refused.0,
            },
            State::Idle => {
                let (tx, rx) = mpsc::unbounded_channel();
                // Cannot fail: the receiver is right here.
                let _ = tx.send(work);
                *state = State::Driving(tx);
                drop(state);
                tokio::spawn(drive(rx));
                return;
            }
            State::Closed => work,
        };
        drop(state);
        tokio::spawn(work);
    }

    /// The socket left: the driver finishes what it holds and exits.
    pub(crate) fn close(&self) {
        *self.state.lock() = State::Closed;
    }
}

/// Polls every request of `rx` until the channel is closed and every request is done.
fn drive(mut rx: mpsc::UnboundedReceiver<BoxFuture<()>>) -> impl Future<Output = ()> {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    std::future::poll_fn(move |cx| {
        while open {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(work)) => running.push(AssertUnwindSafe(work).catch_unwind()),
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        // `Ready(None)`: nothing left running; `Pending`: the rest wake this task.
        while let Poll::Ready(Some(done)) = running.poll_next_unpin(cx) {
            if let Err(panic) = done {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "a socket's request panicked; its other requests go on");
            }
        }
        if !open && running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A request that waits does not hold up the others, which all complete.
    #[tokio::test]
    async fn requests_run_concurrently() {
        let pending = Pending::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (release, held) = oneshot::channel::<()>();
        let (first_tx, first_rx) = oneshot::channel();
        pending.run(Box::pin(async move {
            let _ = held.await;
            let _ = first_tx.send(());
        }));
        let mut answers = Vec::new();
        for _ in 0..100 {
            let (tx, rx) = oneshot::channel();
            let d = done.clone();
            pending.run(Box::pin(async move {
                tokio::task::yield_now().await;
                d.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
            }));
            answers.push(rx);
        }
        for rx in answers {
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .expect("a request behind a waiting one was not run")
                .unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 100);
        pending.close();
        // The close does not drop what the driver holds.
        let _ = release.send(());
        tokio::time::timeout(Duration::from_secs(5), first_rx)
            .await
            .expect("the held request was dropped at the close")
            .unwrap();
        // After the close a request still runs, in a task of its own.
        let (tx, rx) = oneshot::channel();
        pending.run(Box::pin(async move {
            let _ = tx.send(());
        }));
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("a request after the close did not run")
            .unwrap();
    }

    /// A request that panics ends alone: the requests beside it, before and after it, are
    /// answered.
    #[tokio::test]
    async fn a_panicking_request_ends_alone() {
        let pending = Pending::default();
        let (release, held) = oneshot::channel::<()>();
        let (before_tx, before_rx) = oneshot::channel();
        pending.run(Box::pin(async move {
            let _ = held.await;
            let _ = before_tx.send(());
        }));
        pending.run(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("a bug in one request");
        }));
        let (after_tx, after_rx) = oneshot::channel();
        pending.run(Box::pin(async move {
            tokio::task::yield_now().await;
            let _ = after_tx.send(());
        }));
        tokio::time::timeout(Duration::from_secs(5), after_rx)
            .await
            .expect("the request after the panic was not run")
            .unwrap();
        let _ = release.send(());
        tokio::time::timeout(Duration::from_secs(5), before_rx)
            .await
            .expect("the request before the panic was dropped")
            .unwrap();
    }

    /// Once its sender is gone the driver finishes what it holds, then exits.
    #[tokio::test]
    async fn the_driver_exits_once_closed_and_done() {
        let (tx, rx) = mpsc::unbounded_channel::<BoxFuture<()>>();
        let driver = tokio::spawn(drive(rx));
        let (release, held) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(Box::pin(async move {
            let _ = held.await;
            let _ = done_tx.send(());
        }))
        .unwrap();
        drop(tx);
        tokio::task::yield_now().await;
        assert!(!driver.is_finished(), "exited with a request running");
        let _ = release.send(());
        tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .expect("the driver did not exit")
            .unwrap();
        assert!(done_rx.await.is_ok(), "the held request did not finish");
    }
}

//! The engine's blocking pool: a fixed set of threads for work that may
//! block in the kernel (creating and removing cgroups, writing their
//! files, clone3 with CLONE_VFORK, writing output and records, removing
//! directories), so the threads that serve connections only do I/O they
//! can wait for without stopping.
//!
//! Bounded twice: the threads are made once (a burst of work queues, it
//! does not spawn threads), and the queue holds at most `queue` tasks (a
//! caller past that waits, without blocking its thread, for room).
//! The threads live as long as the pool: a job's init cloned from one of
//! them keeps a live parent thread.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

type Task = Box<dyn FnOnce() + Send>;

/// A bounded pool of threads for blocking calls.
#[derive(Debug, Clone)]
pub struct Pool {
    tx: mpsc::Sender<Task>,
}

impl Pool {
    /// Starts `threads` threads named `{name}-N`, sharing a queue of at
    /// most `queue` tasks.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Task>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    // One idle thread waits on the queue, the others on the
                    // lock; a thread runs its task with the lock released.
                    let task = rx.lock().expect("pool queue lock").blocking_recv();
                    match task {
                        Some(task) => task(),
                        None => return,
                    }
                })?;
        }
        Ok(Pool { tx })
    }

    /// Runs `f` on a pool thread and returns what it returned. A panic in
    /// `f` is resumed here, as if `f` had run inline. If the caller stops
    /// waiting, `f` still runs to its end (its result is dropped).
    ///
    /// The future is boxed: `f` and what it captured live on the heap only
    /// while the call is under way, not in the state of every task that
    /// may make one (a supervisor per running job).
    pub fn run<T, F>(&self, f: F) -> Pin<Box<dyn Future<Output = T> + Send>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let tx = self.tx.clone();
        Box::pin(async move {
            let (done_tx, done_rx) = oneshot::channel();
            let task: Task = Box::new(move || {
                let _ = done_tx.send(catch_unwind(AssertUnwindSafe(f)));
            });
            if tx.send(task).await.is_err() {
                panic!("the blocking pool's threads are gone");
            }
            match done_rx.await {
                Ok(Ok(value)) => value,
                Ok(Err(panic)) => resume_unwind(panic),
                Err(_) => panic!("a blocking pool thread dropped its task"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn runs_off_the_calling_thread_and_returns_the_value() {
        let pool = Pool::new("test-pool", 2, 4).unwrap();
        let caller = std::thread::current().id();
        let (value, thread) = pool.run(|| (7, std::thread::current().id())).await;
        assert_eq!(value, 7);
        assert_ne!(thread, caller);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_burst_queues_on_its_threads_and_spawns_none() {
        let pool = Pool::new("test-pool", 2, 4).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                pool.run(|| {
                    std::thread::yield_now();
                    std::thread::current().name().map(String::from)
                })
                .await
            }));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in tasks {
            names.insert(t.await.unwrap().unwrap());
        }
        assert!(
            names
                .iter()
                .all(|n| n == "test-pool-0" || n == "test-pool-1"),
            "{names:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_comes_back_to_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new("test-pool", 1, 4).unwrap();
        let p = pool.clone();
        let panicked = tokio::spawn(async move { p.run(|| panic!("boom")).await }).await;
        assert!(panicked.is_err());
        assert_eq!(pool.run(|| 1).await, 1);
    }
}

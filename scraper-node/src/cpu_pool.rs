//! The node's CPU work (extraction, the quality pipeline, signing) on a fixed set of threads,
//! one per core. Tokio's blocking pool would start a thread for each call made while the
//! others are busy, and every thread that extracts keeps its own allocator and tokenizer
//! caches: a fixed set bounds both.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    thread,
};

use crossbeam_channel::Sender;
use tokio::sync::oneshot;
use tracing::warn;

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run jobs handed to them, in the order given.
#[derive(Debug)]
pub struct CpuPool {
    /// `None` when no thread could be started: jobs then run on the caller's thread.
    jobs: Option<Sender<Job>>,
}

/// A job panicked: its result will never come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the job panicked")]
pub struct Panicked;

impl CpuPool {
    /// A pool of `threads` threads (at least one). The threads end when the pool is dropped.
    pub fn new(threads: usize) -> Self {
        // Unbounded: the callers bound the jobs in flight (the worker's `extract_ahead`).
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut started = 0;
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = thread::Builder::new()
                .name(format!("tessera-cpu-{i}"))
                .spawn(move || {
                    for job in rx {
                        // The job's result sender drops with it: its caller sees `Panicked`.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => warn!(%e, "could not start a CPU thread"),
            }
        }
        Self {
            jobs: (started > 0).then_some(tx),
        }
    }

    /// One thread per core.
    pub fn per_core() -> Self {
        Self::new(thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Runs `job` on a pool thread; its result, or [`Panicked`].
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, Panicked>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let task: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        let inline = match &self.jobs {
            Some(jobs) => jobs.send(task).err().map(|e| e.into_inner()),
            None => Some(task),
        };
        if let Some(task) = inline {
            let _ = catch_unwind(AssertUnwindSafe(task));
        }
        async move { rx.await.map_err(|_| Panicked) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_and_a_panic_is_an_error_not_a_lost_thread() {
        let pool = CpuPool::new(2);
        let name = pool
            .run(|| thread::current().name().map(str::to_string))
            .await;
        assert!(name.unwrap().unwrap().starts_with("tessera-cpu-"));
        assert_eq!(
            pool.run(|| -> u32 { panic!("bad page") }).await,
            Err(Panicked)
        );
        // Both threads still serve.
        let sums: Vec<_> = (0..8u64).map(|i| pool.run(move || i * 2)).collect();
        let mut total = 0;
        for sum in sums {
            total += sum.await.unwrap();
        }
        assert_eq!(total, 56);
    }
}

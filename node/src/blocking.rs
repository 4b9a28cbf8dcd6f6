//! Blocking work (disk, RocksDB, hashing) run off the async threads, with the task's own
//! failure (a panic, a runtime shutting down) folded into one error beside the work's.

use std::fmt;

use tokio::task::JoinError;

/// Why blocking work gave no result.
#[derive(Debug)]
pub enum BlockingError<E> {
    /// The work failed.
    Failed(E),
    /// The task did not finish.
    Task(JoinError),
}

impl<E: fmt::Display> fmt::Display for BlockingError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::Task(e) => write!(f, "blocking task failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BlockingError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(e) => Some(e),
            Self::Task(e) => Some(e),
        }
    }
}

/// Runs `f` on tokio's blocking threads and waits for its result.
pub async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, BlockingError<E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(BlockingError::Failed),
        Err(e) => Err(BlockingError::Task(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_work_and_the_task_fail_apart() {
        assert_eq!(blocking(|| Ok::<_, String>(7)).await.unwrap(), 7);
        let failed = blocking(|| Err::<(), _>("disk full".to_string())).await;
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        let panicked = blocking(|| -> Result<(), String> { panic!("bug") }).await;
        assert!(matches!(panicked, Err(BlockingError::Task(_))));
    }
}

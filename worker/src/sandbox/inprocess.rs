//! The `inprocess` sandbox: a Rust handler on its own task, so that a panic is caught and
//! a timeout or cancel stops it by dropping its future.

use crate::activity::JobContext;
use crate::function::{Handler, HandlerResult};
use jobfleet_common::message::{ErrorKind, JobError};
use serde_json::Value;
use std::time::Duration;

/// Runs `handler` on `args` for at most `timeout`, with `context` as its
/// [`JobContext::current`].
pub async fn run(handler: &Handler, args: Value, timeout: Duration, context: JobContext) -> HandlerResult {
    let mut task = tokio::spawn(context.scope(handler(args)));
    // Dropping this run (a cancel, a forced drain) stops the handler too.
    let _abort = AbortOnDrop(task.abort_handle());
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) if join_error.is_panic() => {
            let panic = join_error.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the handler panicked".to_string());
            Err(JobError::new(ErrorKind::Crashed, format!("panic: {message}")))
        }
        Ok(Err(_)) => Err(JobError::new(
            ErrorKind::Canceled,
            "the handler task was canceled",
        )),
        Err(_) => {
            task.abort();
            Err(super::timed_out(timeout))
        }
    }
}

/// Makes sure a dropped run (a cancel, a drain) also stops the handler's task.
pub struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::handler;

    #[tokio::test]
    async fn outputs_panics_and_timeouts_become_outcomes() {
        let echo = handler(|v: Value| async move { Ok::<_, JobError>(v) });
        assert_eq!(
            run(
                &echo,
                Value::from(3),
                Duration::from_secs(1),
                JobContext::default()
            )
            .await
            .unwrap(),
            Value::from(3)
        );

        let panics = handler(|_: Value| async move {
            if true {
                panic!("boom");
            }
            Ok::<Value, JobError>(Value::Null)
        });
        let err = run(
            &panics,
            Value::Null,
            Duration::from_secs(1),
            JobContext::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Crashed);
        assert!(err.message.contains("boom"));

        let slow = handler(|_: Value| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<Value, JobError>(Value::Null)
        });
        let err = run(
            &slow,
            Value::Null,
            Duration::from_millis(20),
            JobContext::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);

        let typed =
            handler(
                |args: std::collections::HashMap<String, u32>| async move { Ok::<_, JobError>(args.len()) },
            );
        let err = run(
            &typed,
            Value::from("not a map"),
            Duration::from_secs(1),
            JobContext::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgs);
    }
}

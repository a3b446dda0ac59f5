//! `edgectl logs TASK`: any node answers; the lines come from the node that
//! runs the task, read from its container runtime's log files, so an
//! operator needs no shell on the device.

use std::time::Duration;

use super::peer::{PeerRequest, PeerResponse};
use super::Node;
use crate::api::{ApiError, ApiResponse, ApiResult, LogLine, LogStream};
use crate::orchestrator::records::{self, TaskRecord};

/// How long the node holding the task gets to answer.
const LOGS_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    /// Finds the task's node in the local replica and reads its logs there.
    pub(super) async fn task_logs(&self, task: &str, tail: Option<u32>) -> ApiResult {
        let record = self.task_record(task)?;
        let node = record.node.ok_or_else(|| {
            ApiError::Invalid(format!(
                "task {task} is not placed on any node yet, so it has no logs; \
                 `edgectl describe service {}` says why",
                record.service
            ))
        })?;
        if node == self.id() {
            return self.task_logs_here(task, tail).await;
        }
        let request = PeerRequest::TaskLogs {
            task: task.to_owned(),
            tail,
        };
        match self.call_member(node, &request, LOGS_TIMEOUT).await {
            Ok(PeerResponse::Forwarded(result)) => result,
            Ok(other) => Err(ApiError::Internal(format!(
                "unexpected peer response {other:?}"
            ))),
            Err(error) => Err(ApiError::Unavailable(format!(
                "node {node}, which runs task {task}, did not answer: {}",
                error.message
            ))),
        }
    }

    /// Reads a task's logs from this node's runtime.
    pub(super) async fn task_logs_here(&self, task: &str, tail: Option<u32>) -> ApiResult {
        let runtime = self.inner.runtime.clone().ok_or_else(|| {
            ApiError::Invalid(format!(
                "node {} runs no containers (--no-agent), so it holds no logs of {task}",
                self.id()
            ))
        })?;
        let container = records::container_id(task);
        let read = tokio::task::spawn_blocking(move || runtime.logs(&container))
            .await
            .map_err(|e| ApiError::Internal(format!("log reader stopped: {e}")))?;
        let lines = match read {
            Ok(lines) => lines,
            Err(runtime::Error::ContainerNotFound { .. }) => {
                return Err(ApiError::NotFound(format!(
                    "task {task} has no container on node {} (not started yet, or already removed)",
                    self.id()
                )))
            }
            Err(error) => return Err(ApiError::Internal(error.to_string())),
        };
        Ok(ApiResponse::Logs(last_lines(lines, tail)))
    }

    fn task_record(&self, task: &str) -> Result<TaskRecord, ApiError> {
        let kv = self
            .inner
            .kv
            .get(records::task_key(task).as_bytes())
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no task named {task}; `edgectl get tasks` lists them"
                ))
            })?;
        serde_json::from_slice(&kv.value).map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// The last `tail` lines (all of them for `None`), as the API shows them.
fn last_lines(lines: Vec<runtime::LogLine>, tail: Option<u32>) -> Vec<LogLine> {
    let skip = match tail {
        Some(tail) => lines.len().saturating_sub(tail as usize),
        None => 0,
    };
    lines
        .into_iter()
        .skip(skip)
        .map(|line| LogLine {
            time: line.time,
            stream: match line.stream {
                runtime::Stream::Stdout => LogStream::Stdout,
                runtime::Stream::Stderr => LogStream::Stderr,
            },
            text: line.text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, stream: runtime::Stream) -> runtime::LogLine {
        runtime::LogLine {
            time: "2026-11-27T14:00:00.000000000Z".into(),
            stream,
            text: text.into(),
        }
    }

    #[test]
    fn tail_keeps_the_newest_lines_in_order() {
        let lines = || {
            vec![
                line("one", runtime::Stream::Stdout),
                line("two", runtime::Stream::Stderr),
                line("three", runtime::Stream::Stdout),
            ]
        };
        let texts = |tail| -> Vec<(String, LogStream)> {
            last_lines(lines(), tail)
                .into_iter()
                .map(|l| (l.text, l.stream))
                .collect()
        };
        assert_eq!(
            texts(Some(2)),
            vec![
                ("two".to_string(), LogStream::Stderr),
                ("three".to_string(), LogStream::Stdout)
            ]
        );
        assert_eq!(texts(None).len(), 3);
        assert_eq!(texts(Some(10)).len(), 3);
        assert!(texts(Some(0)).is_empty());
    }
}

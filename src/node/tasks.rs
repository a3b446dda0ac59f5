//! `edgectl logs TASK` and `edgectl exec TASK -- CMD`: any node answers.
//! It looks the task up in its replica and hands the request to the node
//! that runs it over the peer protocol; that node reads its runtime's log
//! files or execs in the container. An operator needs no shell on the device.

use std::time::Duration;

use super::peer::{PeerRequest, PeerResponse};
use super::Node;
use crate::api::{ApiError, ApiRequest, ApiResponse, ApiResult, ExecResult, LogLine, LogStream};
use crate::orchestrator::records::{self, TaskRecord};

/// How long the node holding the task gets to answer, on top of an exec's
/// own timeout.
const TASK_NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `edgectl exec` deadline a node accepts.
pub const EXEC_TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// The task a task request names.
fn task_of(request: &ApiRequest) -> Result<String, ApiError> {
    match request {
        ApiRequest::TaskLogs { task, .. } | ApiRequest::TaskExec { task, .. } => Ok(task.clone()),
        other => Err(ApiError::Internal(format!("{other:?} names no task"))),
    }
}

impl Node {
    /// Runs a task request on the node that runs the task: here, or there
    /// through the peer protocol.
    pub(super) async fn on_task_node(&self, request: ApiRequest) -> ApiResult {
        let task = task_of(&request)?;
        let record = self.task_record(&task)?;
        let node = record.node.ok_or_else(|| {
            ApiError::Invalid(format!(
                "task {task} is not placed on any node yet; \
                 `edgectl describe service {}` says why",
                record.service
            ))
        })?;
        if node == self.id() {
            return self.on_this_task_node(request).await;
        }
        let timeout = match &request {
            ApiRequest::TaskExec { timeout_ms, .. } => {
                TASK_NODE_TIMEOUT + Duration::from_millis(*timeout_ms).min(EXEC_TIMEOUT_MAX)
            }
            _ => TASK_NODE_TIMEOUT,
        };
        match self
            .call_member(node, &PeerRequest::OnTaskNode(request), timeout)
            .await
        {
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

    /// Executes a task request against this node's own runtime.
    pub(super) async fn on_this_task_node(&self, request: ApiRequest) -> ApiResult {
        let task = task_of(&request)?;
        let runtime = self.inner.runtime.clone().ok_or_else(|| {
            ApiError::Invalid(format!(
                "node {} runs no containers (--no-agent), so it does not run {task}",
                self.id()
            ))
        })?;
        let container = records::container_id(&task);
        let node = self.id();
        let no_container = move || {
            ApiError::NotFound(format!(
                "task {task} has no container on node {node} (not started yet, or already removed)"
            ))
        };
        match request {
            ApiRequest::TaskLogs { tail, .. } => {
                let read = tokio::task::spawn_blocking(move || runtime.logs(&container))
                    .await
                    .map_err(|e| ApiError::Internal(format!("log reader stopped: {e}")))?;
                match read {
                    Ok(lines) => Ok(ApiResponse::Logs(last_lines(lines, tail))),
                    Err(runtime::Error::ContainerNotFound { .. }) => Err(no_container()),
                    Err(error) => Err(ApiError::Internal(error.to_string())),
                }
            }
            ApiRequest::TaskExec {
                command,
                timeout_ms,
                ..
            } => {
                if command.is_empty() {
                    return Err(ApiError::Invalid(
                        "exec needs a command: edgectl exec TASK -- CMD [ARGS...]".into(),
                    ));
                }
                let timeout = Duration::from_millis(timeout_ms).min(EXEC_TIMEOUT_MAX);
                let ran = tokio::task::spawn_blocking(move || {
                    runtime.exec_until(&container, &command, Some(timeout))
                })
                .await
                .map_err(|e| ApiError::Internal(format!("exec stopped: {e}")))?;
                match ran {
                    Ok(output) => Ok(ApiResponse::Exec(ExecResult {
                        code: output.code,
                        signal: output.signal,
                        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                        timed_out: output.timed_out,
                    })),
                    Err(runtime::Error::ContainerNotFound { .. }) => Err(no_container()),
                    Err(error @ runtime::Error::InvalidState { .. }) => {
                        Err(ApiError::Invalid(error.to_string()))
                    }
                    Err(error) => Err(ApiError::Internal(error.to_string())),
                }
            }
            other => Err(ApiError::Internal(format!(
                "{other:?} is not a task request"
            ))),
        }
    }

    fn task_record(&self, task: &str) -> Result<TaskRecord, ApiError> {
        let (record, _) = self.record_at(&records::task_key(task), || {
            ApiError::NotFound(format!(
                "no task named {task}; `edgectl get tasks` lists them"
            ))
        })?;
        Ok(record)
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

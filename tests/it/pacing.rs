//! A client that keeps sending requests a node refuses is paced, and only
//! it: one node in this process, two client connections with the same
//! admin certificate (a broken script and an operator share it).

use std::time::Duration;

use crate::support;
use edgectl::api::client::{AdminConfig, Client, ClientError};
use edgectl::api::{ApiError, ApiRequest, ApiResponse, KvRequest};
use edgectl::paths::DataDir;
use raft::Txn;

/// More refusals at once than the budget holds, so that the script's next
/// request waits for seconds, not milliseconds: the operator's request
/// must overtake it by far more than any scheduling delay.
const REFUSALS_AT_ONCE: usize = 40;

fn invalid_apply() -> ApiRequest {
    ApiRequest::Apply {
        yaml: format!(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: deep}}\nspec:\n  image: {}\n",
            "[".repeat(100)
        ),
    }
}

fn assert_refused(result: Result<ApiResponse, ClientError>) {
    match result {
        Err(ClientError::Api(ApiError::Invalid(why))) => {
            assert!(why.contains("DEPTH_MAX"), "{why}")
        }
        other => panic!("a too deep document was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_refused_again_and_again_is_paced_and_others_are_not() {
    let dir = tempfile::Builder::new()
        .prefix("edgectl-it-pacing-")
        .tempdir()
        .expect("a temp dir");
    let (node, _addr) = support::one_node_in_process(dir.path()).await;
    support::join_token(&node).await; // leads, and takes writes
    let config = AdminConfig::from_node_data_dir(&DataDir::new(dir.path().join("first")))
        .expect("the admin config");
    let script = Client::connect(&config).await.expect("a connection");
    let operator = Client::connect(&config).await.expect("a second connection");

    // Sent at once, before any was refused: all are read and refused,
    // and the identity's budget is spent far into debt.
    let burst = (0..REFUSALS_AT_ONCE).map(|_| script.call(invalid_apply()));
    for result in futures::future::join_all(burst).await {
        assert_refused(result);
    }

    {
        let mut paced = Box::pin(script.call(invalid_apply()));
        let operators_write = operator.call(ApiRequest::Write(KvRequest::Txn(Txn::put(
            b"/kv/pacing",
            b"still served".to_vec(),
        ))));
        tokio::select! {
            written = operators_write => {
                assert!(matches!(written, Ok(ApiResponse::Written(_))), "{written:?}");
            }
            result = &mut paced => panic!("the refused client was not held back: {result:?}"),
        }
        // Held, not dropped: it is answered once its budget allows.
        assert_refused(
            tokio::time::timeout(Duration::from_secs(30), paced)
                .await
                .expect("answered within 30 s"),
        );
    }
    script.close().await;
    operator.close().await;
    node.shutdown().await;
}

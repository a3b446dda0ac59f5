//! A client that keeps sending requests a node refuses is paced, and only
//! it: one node in this process, two client connections with the same
//! admin certificate (a broken script and an operator share it).

use std::time::Duration;

use crate::support;
use edgectl::api::client::{AdminConfig, Client, ClientError};
use edgectl::api::{ApiError, ApiRequest, ApiResponse, ReadConsistency};
use edgectl::paths::DataDir;

/// More refusals at once than the budget holds.
const REFUSALS_AT_ONCE: usize = 40;
/// Refusals sent one after the other once the budget is spent.
const PACED: usize = 6;
/// They consume PACED tokens from a budget that starts below 3 and
/// refills at 5 a second: at least (6 - 3) / 5 s.
const PACED_AT_LEAST: Duration = Duration::from_millis(600);

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

    // Sent at once: the identity's budget is spent, and into debt as far as
    // the node read them before the first refusal marked the connection.
    let burst = (0..REFUSALS_AT_ONCE).map(|_| script.call(invalid_apply()));
    for result in futures::future::join_all(burst).await {
        assert_refused(result);
    }

    // Then, side by side: the script goes on being refused, the operator
    // reads. The script's budget holds less than one refusal when it starts
    // (a little more if the node was slow), and refills at REFILL_PER_SEC:
    // PACED refusals cannot take less than PACED_AT_LEAST, however loaded
    // the machine. The operator's connection was never refused: its reads
    // are not held and end first.
    {
        let scripts_refusals = async {
            let started = std::time::Instant::now();
            for _ in 0..PACED {
                assert_refused(script.call(invalid_apply()).await);
            }
            started.elapsed()
        };
        let operators_reads = async {
            for _ in 0..PACED {
                let read = operator
                    .call(ApiRequest::Get {
                        key: b"/kv/pacing".to_vec(),
                        consistency: ReadConsistency::Stale,
                    })
                    .await;
                assert!(matches!(read, Ok(ApiResponse::Value { .. })), "{read:?}");
            }
        };
        tokio::pin!(scripts_refusals);
        tokio::select! {
            () = operators_reads => {}
            took = &mut scripts_refusals => panic!(
                "the refused client ({took:?} for {PACED} refusals) was served before the operator"
            ),
        }
        let took = scripts_refusals.await;
        assert!(
            took >= PACED_AT_LEAST,
            "{PACED} refusals in {took:?}: the client was not paced"
        );
    }
    script.close().await;
    operator.close().await;
    node.shutdown().await;
}

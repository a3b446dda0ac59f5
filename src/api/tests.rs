use raft::{RequestId, Txn};

use super::*;

fn check(request: ApiRequest, route: Route, writes: bool, idempotent: bool) {
    assert_eq!(
        request.class(),
        RequestClass {
            route,
            writes,
            idempotent
        },
        "{request:?}"
    );
}

#[test]
fn every_request_is_classified() {
    use Route::{Here, Leader, TaskNode};
    let txn = Txn::put("/k", b"v".to_vec());
    // One line per variant (and per case that changes the class).
    check(
        ApiRequest::Write(KvRequest::Txn(txn.clone())),
        Leader,
        true,
        false,
    );
    check(
        ApiRequest::Write(KvRequest::Idempotent {
            id: RequestId {
                bucket_minute: 1,
                nonce: 2,
            },
            txn: txn.clone(),
        }),
        Leader,
        true,
        true,
    );
    check(
        ApiRequest::Write(KvRequest::Batch(vec![KvRequest::Txn(txn)])),
        Leader,
        true,
        false,
    );
    for (consistency, route) in [
        (ReadConsistency::Linearizable, Leader),
        (ReadConsistency::Stale, Here),
    ] {
        check(
            ApiRequest::Get {
                key: b"/k".to_vec(),
                consistency,
            },
            route,
            false,
            true,
        );
        check(
            ApiRequest::Range {
                prefix: b"/".to_vec(),
                consistency,
            },
            route,
            false,
            true,
        );
    }
    check(
        ApiRequest::TokenCreate {
            ttl_secs: 60,
            description: String::new(),
        },
        Leader,
        true,
        false,
    );
    check(ApiRequest::TokenList, Here, false, true);
    check(
        ApiRequest::TokenRevoke { id: "t".into() },
        Leader,
        true,
        false,
    );
    check(ApiRequest::NodeList, Leader, false, true);
    check(ApiRequest::NodeSelf, Here, false, true);
    check(ApiRequest::ClusterStatus, Leader, false, true);
    check(ApiRequest::Apply { yaml: "".into() }, Leader, true, true);
    check(
        ApiRequest::Scale {
            name: "web".into(),
            replicas: 3,
        },
        Leader,
        true,
        true,
    );
    check(
        ApiRequest::DeleteService { name: "web".into() },
        Leader,
        true,
        true,
    );
    check(
        ApiRequest::RollbackService { name: "web".into() },
        Leader,
        true,
        false,
    );
    check(ApiRequest::GetServices, Leader, false, true);
    check(ApiRequest::GetTasks { service: None }, Leader, false, true);
    check(
        ApiRequest::DescribeService { name: "web".into() },
        Leader,
        false,
        true,
    );
    check(ApiRequest::GetNodes, Leader, false, true);
    check(
        ApiRequest::UpdateNode {
            node: "n1".into(),
            change: NodeChange::Cordon,
        },
        Leader,
        true,
        true,
    );
    check(
        ApiRequest::ImageImport {
            path: "/tmp/i.tar".into(),
        },
        Here,
        true,
        false,
    );
    check(ApiRequest::ImageList, Here, false, true);
    check(
        ApiRequest::TaskLogs {
            task: "web.0.1".into(),
            tail: None,
        },
        TaskNode,
        false,
        true,
    );
    check(
        ApiRequest::TaskExec {
            task: "web.0.1".into(),
            command: vec!["true".into()],
            timeout_ms: 1000,
        },
        TaskNode,
        false,
        false,
    );
}

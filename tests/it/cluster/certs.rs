//! Node certificates renew themselves: a running cluster outlives its
//! certificates' validity, and a node that was down until its certificate
//! expired (a device in a drawer) comes back on its own, with no operator
//! and no token. The admin client certificate `init` wrote is kept fresh
//! too. Certificates here are valid for 20 s instead of a year.

use std::time::{Duration, SystemTime};

use super::{EdgeCluster, CONVERGE};
use crate::support::wait_until;

const VALIDITY: &str = "20s";
const PAST_VALIDITY: Duration = Duration::from_secs(24);

fn not_after(path: &std::path::Path) -> SystemTime {
    let pem = std::fs::read_to_string(path).unwrap();
    raft::transport::pki::not_after(&pem).unwrap()
}

fn cert_not_after(cluster: &EdgeCluster, i: usize) -> SystemTime {
    not_after(&cluster.data_dir(i).join("tls/node.pem"))
}

#[test]
fn certificates_renew_while_running_and_after_a_node_slept_past_expiry() {
    let mut cluster =
        EdgeCluster::with_flags("cce", 3, &["--no-agent", "--cert-validity", VALIDITY]);
    cluster.form(3);
    cluster.wait_voters(1, 3, 3);
    let first_expiry = cert_not_after(&cluster, 3);
    let admin_cert = cluster.data_dir(1).join("admin/admin.pem");
    let first_admin_expiry = not_after(&admin_cert);

    // Past the first certificates' validity: every node still answers a new
    // connection, because each renewed its own certificate in time.
    std::thread::sleep(PAST_VALIDITY);
    assert!(
        SystemTime::now() > first_expiry,
        "the first certificate should have run out"
    );
    for i in 1..=3 {
        let put = cluster.put(i, &format!("/kv/renewed/{i}"), "yes");
        assert!(
            put.status.success(),
            "node {i} after its first certificate expired: {}",
            String::from_utf8_lossy(&put.stderr)
        );
    }
    assert!(cert_not_after(&cluster, 3) > SystemTime::now());

    // The operator's credentials from `init` still work: the admin
    // certificate was renewed in place, where the admin config points.
    assert!(SystemTime::now() > first_admin_expiry);
    assert!(not_after(&admin_cert) > SystemTime::now());
    let admin_config = cluster.data_dir(1).join("admin/config.json");
    let admin_config = admin_config.display().to_string();
    cluster.cli_ok(
        1,
        &[
            "--config",
            &admin_config,
            "kv",
            "put",
            "/kv/admin",
            "renewed",
        ],
    );

    // Node 3 sleeps until its certificate has expired, then wakes up.
    cluster.kill(3);
    std::thread::sleep(PAST_VALIDITY);
    assert!(
        cert_not_after(&cluster, 3) < SystemTime::now(),
        "node 3's certificate should have expired while it was down"
    );
    cluster.serve(3);
    wait_until(
        CONVERGE,
        "node 3 serving again after its certificate expired",
        || cluster.put(3, "/kv/after-drawer", "back").status.success(),
    )
    .unwrap();
    assert!(cert_not_after(&cluster, 3) > SystemTime::now());
    assert_eq!(
        cluster.get(1, "/kv/after-drawer", false).as_deref(),
        Some("back")
    );
    cluster.wait_voters(1, 3, 3);
}

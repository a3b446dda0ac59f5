use std::path::Path;
use std::time::Duration;

use runtime::{ContainerSpec, NetworkMode};

use crate::support::{self, Env};

/// Deletes the test's bridge even when the test fails half-way.
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        if Path::new("/sys/class/net").join(&self.0).exists() {
            let _ = std::process::Command::new("ip")
                .args(["link", "delete", &self.0])
                .status();
        }
    }
}

#[test]
fn two_containers_reach_each_other_over_the_bridge() {
    let env = Env::new("net");
    env.import_busybox();
    let rt = env.rt();
    rt.images().import(&support::httpd_tar()).unwrap();
    let pid = std::process::id();
    let bridge = format!("edt{}", pid % 100_000);
    let _guard = BridgeGuard(bridge.clone());
    let network = NetworkMode::Bridge {
        bridge: bridge.clone(),
        subnet: format!("10.213.{}.0/24", pid % 250),
        mtu: None,
    };
    let server = ContainerSpec {
        id: "server".into(),
        image: "httpd:latest".into(),
        network: network.clone(),
        ..Default::default()
    };
    rt.create(server).unwrap();
    rt.start("server").unwrap();
    let server_ip = rt.info("server").unwrap().ip.unwrap();
    assert_eq!(server_ip.octets()[3], 2, "first lease after the gateway");

    let script = format!(
        "grep -q \"$(hostname)\" /etc/hosts || exit 9; \
         for i in $(seq 1 100); do wget -q -O - http://{server_ip}:8080/index.html && exit 0; sleep 0.1; done; exit 1"
    );
    let mut client = env.spec("client", &["/bin/sh", "-c", &script]);
    client.network = network;
    let (status, out) = env.run(client);
    assert_eq!(status.code, Some(0), "{out:?}");
    assert_eq!(out, vec!["hello from edgectl".to_string()]);
    let client_ip = rt.info("client").unwrap().ip.unwrap();
    assert_ne!(client_ip, server_ip);

    // The httpd image's shell exits 0 on SIGTERM: a graceful stop.
    assert_eq!(
        rt.stop("server", Duration::from_secs(10)).unwrap().code,
        Some(0)
    );
    assert!(
        !rt.remove_bridge(&bridge).unwrap(),
        "bridge kept while leases exist"
    );
    rt.delete("server").unwrap();
    rt.delete("client").unwrap();
    assert!(rt.remove_bridge(&bridge).unwrap());
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!links.contains(&bridge), "bridge left behind");
    let veth_prefix = "edg";
    let ours: Vec<&String> = links
        .iter()
        .filter(|l| l.starts_with(veth_prefix) && runtime_veth_of(&env, l))
        .collect();
    assert!(ours.is_empty(), "veths left: {ours:?}");
    env.finish();
}

fn runtime_veth_of(env: &Env, link: &str) -> bool {
    ["server", "client"]
        .iter()
        .any(|id| runtime::host_veth_name(env.rt().root(), id) == link)
}

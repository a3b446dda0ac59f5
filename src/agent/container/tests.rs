use std::path::PathBuf;

use super::*;
use crate::model::parse_service;
use crate::orchestrator::records::DesiredState;

/// The block the node of most tests holds.
fn block() -> NodeBlock {
    NodeBlock::Assigned {
        block: "10.88.8.0/24".parse().unwrap(),
        mtu: None,
    }
}

fn task(spec_body: &str) -> TaskRecord {
    let yaml = format!(
        "apiVersion: edgectl/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n{spec_body}"
    );
    TaskRecord {
        id: "web.2.17".into(),
        service: "web".into(),
        slot: 2,
        generation: 3,
        spec: parse_service(&yaml).unwrap(),
        node: Some(7),
        desired: DesiredState::Running,
        pending_reason: None,
        shutdown_reason: None,
        created_unix: 0,
        objects: Default::default(),
    }
}

#[test]
fn process_identity_and_labels() {
    let spec = container_spec(
        &task(
            "  image: busybox:latest\n  command: [/bin/sh, -c]\n  args: [\"exit 3\"]\n  \
             env: {A: one, PORT: 8080}\n",
        ),
        &block(),
        false,
    )
    .unwrap();
    assert_eq!(spec.id, "web.2.17");
    assert_eq!(spec.hostname.as_deref(), Some("web.2.17"));
    assert_eq!(spec.image, "busybox:latest");
    assert_eq!(
        spec.entrypoint,
        Some(vec!["/bin/sh".to_string(), "-c".to_string()])
    );
    assert_eq!(spec.command, Some(vec!["exit 3".to_string()]));
    assert_eq!(spec.env["A"], "one");
    assert_eq!(spec.env["PORT"], "8080");
    assert_eq!(spec.labels[LABEL_TASK], "web.2.17");
    assert_eq!(spec.labels[LABEL_SERVICE], "web");
    assert_eq!(spec.labels[LABEL_GENERATION], "3");
    runtime::validate(&spec).unwrap();
}

#[test]
fn unset_command_and_args_keep_the_image_defaults() {
    let spec = container_spec(&task("  image: busybox:latest\n"), &block(), false).unwrap();
    assert_eq!(spec.entrypoint, None);
    assert_eq!(spec.command, None);
    assert_eq!(spec.resources, runtime::Resources::default());
}

#[test]
fn resources_map_to_cgroup_limits() {
    let spec = container_spec(
        &task(
            "  image: busybox:latest\n  resources:\n    requests: {cpu: 250m, memory: 64Mi}\n    \
             limits: {cpu: 1500m, memory: 128Mi}\n",
        ),
        &block(),
        false,
    )
    .unwrap();
    assert_eq!(
        spec.resources,
        runtime::Resources {
            cpu_shares: Some(256),
            cpu_quota_us: Some(150_000),
            cpu_period_us: Some(100_000),
            memory_bytes: Some(128 * 1024 * 1024),
            pids_max: None,
        }
    );
    runtime::validate(&spec).unwrap();
}

#[test]
fn tiny_cpu_request_keeps_the_minimum_share_and_a_limit_alone_also_requests() {
    let spec = container_spec(
        &task("  image: busybox:latest\n  resources:\n    requests: {cpu: 1m}\n"),
        &block(),
        false,
    )
    .unwrap();
    assert_eq!(spec.resources.cpu_shares, Some(2));
    assert_eq!(spec.resources.cpu_quota_us, None);

    let spec = container_spec(
        &task("  image: busybox:latest\n  resources:\n    limits: {cpu: \"2\"}\n"),
        &block(),
        false,
    )
    .unwrap();
    assert_eq!(spec.resources.cpu_shares, Some(2048));
    assert_eq!(spec.resources.cpu_quota_us, Some(200_000));
}

#[test]
fn volumes_map_to_runtime_mounts() {
    let spec = container_spec(
        &task(
            "  image: busybox:latest\n  volumes:\n    - {name: data, type: local}\n    \
             - {name: config, type: hostPath, path: /etc/web}\n    \
             - {name: scratch, type: tmpfs, size: 64Mi}\n    \
             - {name: serial, type: device, path: /dev/ttyUSB0}\n    \
             - {name: unused, type: local}\n  mounts:\n    \
             - {volume: data, path: /var/lib/web}\n    \
             - {volume: config, path: /etc/web, readOnly: true}\n    \
             - {volume: scratch, path: /tmp}\n    \
             - {volume: serial, path: /dev/serial0}\n",
        ),
        &block(),
        false,
    )
    .unwrap();
    assert_eq!(
        spec.mounts,
        vec![
            runtime::Mount::Volume {
                name: "data".into(),
                target: "/var/lib/web".into(),
                read_only: false,
                size_bytes: None,
            },
            runtime::Mount::Bind {
                source: PathBuf::from("/etc/web"),
                target: "/etc/web".into(),
                read_only: true
            },
            runtime::Mount::Tmpfs {
                target: "/tmp".into(),
                size_bytes: Some(64 * 1024 * 1024)
            },
            runtime::Mount::Device {
                host_path: PathBuf::from("/dev/ttyUSB0"),
                container_path: Some("/dev/serial0".into())
            },
        ]
    );
    runtime::validate(&spec).unwrap();
}

#[test]
fn a_mount_of_an_undeclared_volume_is_an_error() {
    let mut web = task("  image: busybox:latest\n");
    web.spec.spec.mounts.push(crate::model::VolumeMount {
        volume: "ghost".into(),
        path: "/x".into(),
        read_only: false,
    });
    assert_eq!(
        container_spec(&web, &block(), false),
        Err(SpecError::UndeclaredVolume {
            volume: "ghost".into(),
            path: "/x".into()
        })
    );
}

#[test]
fn network_bridge_uses_the_node_block_and_host_is_host() {
    let spec = container_spec(&task("  image: busybox:latest\n"), &block(), false).unwrap();
    assert_eq!(
        spec.network,
        runtime::NetworkMode::Bridge {
            bridge: "edgectl0".into(),
            subnet: "10.88.8.0/24".into(),
            mtu: None,
        }
    );
    let spec = container_spec(
        &task("  image: busybox:latest\n  network: host\n"),
        &block(),
        false,
    )
    .unwrap();
    assert_eq!(spec.network, runtime::NetworkMode::Host);
}

#[test]
fn long_task_ids_use_the_short_container_id_as_hostname() {
    let mut web = task("  image: busybox:latest\n");
    web.id = format!("{}.0.1", "a".repeat(63));
    let spec = container_spec(&web, &block(), false).unwrap();
    assert_eq!(spec.hostname.as_deref(), Some(spec.id.as_str()));
    assert!(spec.id.len() <= 64);
    assert_eq!(spec.labels[LABEL_TASK], web.id);
}

#[test]
fn a_bridged_task_without_a_node_block_says_why_and_a_host_task_runs() {
    let missing = NodeBlock::Missing {
        reason: "pod CIDR 10.1.0.0/23 is full".into(),
    };
    let error = container_spec(&task("  image: busybox:latest\n"), &missing, true).unwrap_err();
    assert_eq!(
        error.to_string(),
        "this node has no block of the pod CIDR yet, so it runs no bridged task: \
         pod CIDR 10.1.0.0/23 is full"
    );
    let host = container_spec(
        &task("  image: busybox:latest\n  network: host\n"),
        &missing,
        true,
    );
    assert_eq!(host.unwrap().network, runtime::NetworkMode::Host);
}

#[test]
fn a_bridged_task_on_a_node_with_dns_resolves_through_the_bridge_address() {
    let spec = container_spec(&task("  image: busybox:latest\n"), &block(), true).unwrap();
    let dns = spec.dns.expect("a bridged task gets the node's resolver");
    let runtime::NetworkMode::Bridge { subnet, .. } = &spec.network else {
        panic!("bridge mode expected")
    };
    let gateway = subnet
        .split('/')
        .next()
        .unwrap()
        .parse::<std::net::Ipv4Addr>()
        .unwrap();
    let gateway = std::net::Ipv4Addr::from(u32::from(gateway) + 1);
    assert_eq!(dns.nameservers, vec![std::net::IpAddr::from(gateway)]);
    assert_eq!(dns.search, vec![crate::network::CLUSTER_DOMAIN.to_string()]);
    let host = container_spec(
        &task("  image: busybox:latest\n  network: host\n"),
        &block(),
        true,
    )
    .unwrap();
    assert_eq!(
        host.dns, None,
        "a host-network task keeps the host's resolv.conf"
    );
}

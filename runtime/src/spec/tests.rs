use super::*;

fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
    ImageConfig {
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "A=image".into()],
        working_dir: Some("/srv".into()),
        user: None,
    }
}

fn check(spec: ContainerSpec, image: ImageConfig, expected_args: &[&str]) {
    let plan = plan_process(&spec, &image).unwrap();
    assert_eq!(plan.args, expected_args);
}

#[test]
fn merges_entrypoint_and_cmd_like_docker() {
    let base = ContainerSpec {
        id: "c".into(),
        image: "i".into(),
        ..Default::default()
    };
    check(
        base.clone(),
        image(&["/bin/sh", "-c"], &["echo hi"]),
        &["/bin/sh", "-c", "echo hi"],
    );
    check(
        ContainerSpec {
            command: Some(vec!["echo bye".into()]),
            ..base.clone()
        },
        image(&["/bin/sh", "-c"], &["echo hi"]),
        &["/bin/sh", "-c", "echo bye"],
    );
    check(
        ContainerSpec {
            entrypoint: Some(vec!["/bin/true".into()]),
            ..base.clone()
        },
        image(&["/bin/sh", "-c"], &["echo hi"]),
        &["/bin/true"],
    );
    assert!(matches!(
        plan_process(&base, &image(&[], &[])),
        Err(Error::NoCommand { .. })
    ));
}

#[test]
fn env_overrides_image_and_workdir_falls_back() {
    let mut spec = ContainerSpec {
        id: "c".into(),
        image: "i".into(),
        ..Default::default()
    };
    spec.env.insert("A".into(), "spec".into());
    let plan = plan_process(&spec, &image(&["/bin/true"], &[])).unwrap();
    assert!(plan.env.contains(&"A=spec".to_string()));
    assert!(!plan.env.contains(&"A=image".to_string()));
    assert!(plan.env.contains(&"PATH=/bin".to_string()));
    assert_eq!(plan.cwd, "/srv");
}

#[test]
fn validate_refuses_bad_ids_and_tiny_memory() {
    let mut spec = ContainerSpec {
        id: "../x".into(),
        image: "i".into(),
        ..Default::default()
    };
    assert!(matches!(
        validate(&spec),
        Err(Error::InvalidContainerId { .. })
    ));
    spec.id = "ok-1".into();
    spec.resources.memory_bytes = Some(4096);
    assert!(matches!(
        validate(&spec),
        Err(Error::MemoryLimitTooSmall {
            requested: 4096,
            ..
        })
    ));
    spec.resources.memory_bytes = Some(MEMORY_BYTES_MIN);
    validate(&spec).unwrap();
    spec.mounts.push(Mount::Volume {
        name: "../etc".into(),
        target: "/data".into(),
        read_only: false,
        size_bytes: None,
    });
    assert!(matches!(validate(&spec), Err(Error::InvalidSpec(_))));
}

#[test]
fn oci_spec_carries_limits_and_mounts() {
    let spec = ContainerSpec {
        id: "c1".into(),
        image: "i".into(),
        resources: Resources {
            cpu_shares: Some(512),
            cpu_quota_us: Some(50_000),
            cpu_period_us: None,
            memory_bytes: Some(64 << 20),
            pids_max: Some(32),
        },
        mounts: vec![
            Mount::Tmpfs {
                target: "/scratch".into(),
                size_bytes: Some(1 << 20),
            },
            Mount::Volume {
                name: "data".into(),
                target: "/data".into(),
                read_only: true,
                size_bytes: None,
            },
        ],
        network: NetworkMode::Host,
        ..Default::default()
    };
    let plan = plan_process(&spec, &image(&["/bin/true"], &[])).unwrap();
    let resolved = Resolved {
        rootfs: Path::new("/r"),
        uid: 0,
        gid: 0,
        cgroups_path: "/edgectl/c1".into(),
        volume_dirs: vec![PathBuf::from("/vol/data")],
        devices: vec![],
        etc_files: vec![],
        netns: None,
    };
    let oci = build_oci_spec(&spec, &plan, &resolved).unwrap();
    let v = serde_json::to_value(&oci).unwrap();
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(v["linux"]["resources"]["cpu"]["period"], 100_000);
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 32);
    let namespaces = v["linux"]["namespaces"].as_array().unwrap();
    assert!(
        !namespaces.iter().any(|n| n["type"] == "network"),
        "host mode keeps the host netns"
    );
    let mounts = v["mounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["destination"] == "/scratch" && m["type"] == "tmpfs"));
    assert!(mounts.iter().any(|m| m["destination"] == "/data"
        && m["source"] == "/vol/data"
        && m["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ro"))));
}

#[test]
fn dns_config_writes_resolv_conf_and_is_refused_outside_bridge_mode() {
    let dns = DnsConfig {
        nameservers: vec!["10.42.1.1".parse().unwrap()],
        search: vec!["edgectl.internal".into()],
        options: vec!["ndots:2".into()],
    };
    assert_eq!(
        dns.resolv_conf(),
        "nameserver 10.42.1.1\nsearch edgectl.internal\noptions ndots:2\n"
    );
    let bridge = ContainerSpec {
        id: "c".into(),
        image: "i".into(),
        network: NetworkMode::Bridge {
            bridge: "edgectl0".into(),
            subnet: "10.42.1.0/24".into(),
            mtu: None,
        },
        dns: Some(dns.clone()),
        ..Default::default()
    };
    assert!(validate(&bridge).is_ok());
    let host = ContainerSpec {
        network: NetworkMode::Host,
        ..bridge.clone()
    };
    assert!(matches!(validate(&host), Err(Error::InvalidSpec(_))));
    let injected = ContainerSpec {
        dns: Some(DnsConfig {
            options: vec!["ndots:1\nnameserver 192.0.2.1".into()],
            ..dns.clone()
        }),
        ..bridge.clone()
    };
    assert!(matches!(validate(&injected), Err(Error::InvalidSpec(_))));
    let empty = ContainerSpec {
        dns: Some(DnsConfig::default()),
        ..bridge
    };
    assert!(matches!(validate(&empty), Err(Error::InvalidSpec(_))));
}

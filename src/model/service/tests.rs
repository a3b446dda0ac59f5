use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::limits::SpecLimits;
use crate::model::quantity::{CpuMillis, MemoryBytes};

/// The smallest valid spec, six lines; cases append to it so that the
/// lines they name are easy to count.
const MINIMAL: &str = "\
apiVersion: edgectl/v1
kind: Service
metadata:
  name: web
spec:
  image: busybox
";

/// Parses `source`, expects a field error, and checks its field, its line
/// and that the message contains `message_part`.
fn check_field_error(source: &str, field: &str, line: usize, message_part: &str) {
    let error = parse_service(source).expect_err("the spec should be rejected");
    let text = error.to_string();
    assert_eq!(error.field(), Some(field), "wrong field in: {text}");
    assert_eq!(error.line(), Some(line), "wrong line in: {text}");
    assert!(
        text.contains(message_part),
        "{text:?} does not contain {message_part:?}"
    );
    assert!(
        text.contains(&format!("line {line}")),
        "the message {text:?} does not show the line"
    );
}

fn web_expected() -> ServiceSpec {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    ServiceSpec {
        api_version: "edgectl/v1".into(),
        kind: "Service".into(),
        metadata: Metadata {
            name: "web".into(),
            labels: BTreeMap::from([
                ("app".into(), "web".into()),
                ("tier".into(), "frontend".into()),
            ]),
        },
        spec: ServiceBody {
            image: "registry.local/web:1.4".into(),
            command: Some(strings(&["/bin/httpd"])),
            args: Some(strings(&["-f", "-p", "8080"])),
            env: BTreeMap::from([
                ("LOG_LEVEL".into(), "info".into()),
                ("PORT".into(), "8080".into()),
            ]),
            replicas: 3,
            resources: Resources {
                requests: ResourceList {
                    cpu: Some(CpuMillis(250)),
                    memory: Some(MemoryBytes(64 << 20)),
                },
                limits: ResourceList {
                    cpu: Some(CpuMillis(1000)),
                    memory: Some(MemoryBytes(128 << 20)),
                },
            },
            restart_policy: RestartPolicy {
                condition: RestartCondition::OnFailure,
                backoff: Backoff {
                    initial: Duration::from_secs(1),
                    max: Duration::from_secs(300),
                },
            },
            placement: Placement {
                constraints: vec![
                    Constraint {
                        label: "zone".into(),
                        operator: ConstraintOperator::Equal,
                        value: "north".into(),
                    },
                    Constraint {
                        label: "gpu".into(),
                        operator: ConstraintOperator::NotEqual,
                        value: "true".into(),
                    },
                ],
                spread: Spread::Label("rack".into()),
            },
            volumes: vec![
                Volume {
                    name: "data".into(),
                    volume_type: VolumeType::Local,
                    path: None,
                    size: None,
                },
                Volume {
                    name: "config".into(),
                    volume_type: VolumeType::HostPath,
                    path: Some("/etc/web".into()),
                    size: None,
                },
                Volume {
                    name: "scratch".into(),
                    volume_type: VolumeType::Tmpfs,
                    path: None,
                    size: Some(MemoryBytes(64 << 20)),
                },
            ],
            mounts: vec![
                VolumeMount {
                    volume: "data".into(),
                    path: "/var/lib/web".into(),
                    read_only: false,
                },
                VolumeMount {
                    volume: "config".into(),
                    path: "/etc/web".into(),
                    read_only: true,
                },
                VolumeMount {
                    volume: "scratch".into(),
                    path: "/tmp".into(),
                    read_only: false,
                },
            ],
            network: NetworkMode::Bridge,
            ports: vec![
                Port {
                    container: 8080,
                    host: Some(80),
                    protocol: Protocol::Tcp,
                    publish: Publish::Host,
                },
                Port {
                    container: 9090,
                    host: None,
                    protocol: Protocol::Tcp,
                    publish: Publish::Host,
                },
            ],
            health_check: None,
            probes: Probes {
                readiness: Some(Probe {
                    http: Some(HttpProbe {
                        path: "/ready".into(),
                        port: 8080,
                        scheme: HttpScheme::Http,
                    }),
                    interval: Duration::from_secs(5),
                    failure_threshold: 2,
                    ..probe_defaults()
                }),
                liveness: Some(Probe {
                    exec: Some(strings(&[
                        "wget",
                        "-q",
                        "-O-",
                        "http://localhost:8080/health",
                    ])),
                    timeout: Duration::from_secs(2),
                    ..probe_defaults()
                }),
                startup: Some(Probe {
                    tcp: Some(TcpProbe { port: 8080 }),
                    interval: Duration::from_secs(1),
                    failure_threshold: 30,
                    ..probe_defaults()
                }),
            },
            update: UpdatePolicy {
                parallelism: 2,
                ..UpdatePolicy::default()
            },
            rollback: RollbackPolicy::default(),
            revision_history: REVISION_HISTORY_DEFAULT,
            session_affinity: SessionAffinity::None,
            session_affinity_timeout: None,
            drain_period: None,
            user: None,
            secrets: Vec::new(),
            configs: Vec::new(),
            env_from: Vec::new(),
        },
    }
}

#[test]
fn example_web_yaml_parses_to_the_expected_spec() {
    let source = include_str!("../../../examples/web.yaml");
    let spec = parse_service(source).unwrap();
    assert_eq!(spec, web_expected());
}

#[test]
fn the_demo_service_parses() {
    let spec = parse_service(include_str!("../../../examples/demo-web.yaml")).unwrap();
    assert_eq!(spec.spec.replicas, 6);
    assert!(spec.spec.health_check.is_some());
}

#[test]
fn module_doc_example_parses() {
    // The example in the service module's doc comment, with the `//! ` cut off.
    let doc = include_str!("mod.rs");
    let start = doc.find("//! ```yaml\n").unwrap() + "//! ```yaml\n".len();
    let end = start + doc[start..].find("//! ```\n").unwrap();
    let yaml: String = doc[start..end]
        .lines()
        .map(|line| {
            line.strip_prefix("//! ")
                .or(line.strip_prefix("//!"))
                .unwrap()
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let spec = parse_service(&yaml).unwrap();
    assert_eq!(spec.spec.volumes.len(), 4);
    assert_eq!(spec.spec.volumes[3].volume_type, VolumeType::Device);
    assert_eq!(spec.spec.resources.limits.cpu, Some(CpuMillis(1000)));
}

#[test]
fn minimal_spec_gets_the_defaults() {
    let spec = parse_service(MINIMAL).unwrap();
    let body = &spec.spec;
    assert_eq!(body.replicas, 1);
    assert_eq!(body.command, None);
    assert_eq!(body.restart_policy.condition, RestartCondition::Always);
    assert_eq!(body.restart_policy.backoff, Backoff::default());
    assert_eq!(body.placement.spread, Spread::Nodes);
    assert_eq!(body.network, NetworkMode::Bridge);
    assert_eq!(body.resources, Resources::default());
    assert!(body.env.is_empty() && body.volumes.is_empty() && body.ports.is_empty());
}

#[test]
fn spec_serializes_and_parses_back_unchanged() {
    let spec = web_expected();
    let text = serde_yaml::to_string(&spec).unwrap();
    assert_eq!(parse_service(&text).unwrap(), spec);
    let json = serde_json::to_string(&spec).unwrap();
    let from_json: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(from_json, spec);
    validate(&from_json).unwrap();
}

#[test]
fn env_scalars_are_kept_as_written() {
    let source = format!("{MINIMAL}  env:\n    PORT: 8080\n    RATIO: 1.10\n    ON: true\n");
    let spec = parse_service(&source).unwrap();
    assert_eq!(spec.spec.env["PORT"], "8080");
    assert_eq!(spec.spec.env["RATIO"], "1.10");
    assert_eq!(spec.spec.env["ON"], "true");
}

#[test]
fn numeric_quantities_are_read_exactly() {
    let source =
        format!("{MINIMAL}  resources:\n    requests:\n      cpu: 0.1\n      memory: 1000000\n");
    let spec = parse_service(&source).unwrap();
    assert_eq!(spec.spec.resources.requests.cpu, Some(CpuMillis(100)));
    assert_eq!(
        spec.spec.resources.requests.memory,
        Some(MemoryBytes(1_000_000))
    );
}

#[test]
fn effective_requests_fall_back_to_limits() {
    let resources = Resources {
        requests: ResourceList {
            cpu: Some(CpuMillis(100)),
            memory: None,
        },
        limits: ResourceList {
            cpu: Some(CpuMillis(500)),
            memory: Some(MemoryBytes(64 << 20)),
        },
    };
    assert_eq!(
        resources.effective_requests(),
        ResourceList {
            cpu: Some(CpuMillis(100)),
            memory: Some(MemoryBytes(64 << 20)),
        }
    );
}

#[test]
fn unknown_top_level_field() {
    let source = format!("{MINIMAL}replica: 3\n");
    check_field_error(&source, "replica", 7, "unknown field `replica`");
}

#[test]
fn unknown_nested_fields() {
    let source = format!("{MINIMAL}  resources:\n    limits:\n      memroy: 64Mi\n");
    check_field_error(
        &source,
        "spec.resources.limits.memroy",
        9,
        "expected `cpu` or `memory`",
    );
    let source = format!("{MINIMAL}  volumes:\n    - name: v\n      type: local\n      zize: 1\n");
    check_field_error(&source, "spec.volumes[0].zize", 10, "unknown field `zize`");
}

#[test]
fn bad_quantity_names_the_field() {
    let source = format!("{MINIMAL}  resources:\n    limits:\n      memory: 12Qi\n");
    check_field_error(&source, "spec.resources.limits.memory", 9, "\"Qi\"");
    let source = format!("{MINIMAL}  resources:\n    requests:\n      cpu: -1\n");
    check_field_error(&source, "spec.resources.requests.cpu", 9, "negative");
}

#[test]
fn limits_below_requests() {
    let source = format!(
            "{MINIMAL}  resources:\n    requests:\n      memory: 256Mi\n    limits:\n      memory: 128Mi\n"
        );
    check_field_error(
        &source,
        "spec.resources.limits.memory",
        11,
        "memory limit 128Mi is below the request 256Mi",
    );
    let source = format!(
        "{MINIMAL}  resources:\n    limits:\n      cpu: 100m\n    requests:\n      cpu: 200m\n"
    );
    check_field_error(&source, "spec.resources.limits.cpu", 9, "at least 200m");
}

#[test]
fn health_check_defaults_and_bounds() {
    let spec = parse_service(&format!("{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n")).unwrap();
    let health = spec.spec.health_check.unwrap();
    assert_eq!(
        (
            health.interval,
            health.timeout,
            health.retries,
            health.start_period
        ),
        (
            Duration::from_secs(10),
            Duration::from_secs(5),
            3,
            Duration::ZERO
        )
    );
    check_field_error(
        &format!("{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n    retries: 0\n"),
        "spec.healthCheck.retries",
        9,
        "expected 1 to 100",
    );
    check_field_error(
        &format!("{MINIMAL}  healthCheck:\n    exec: []\n"),
        "spec.healthCheck.exec",
        8,
        "exec is empty",
    );
    check_field_error(
        &format!("{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n    interval: 10ms\n"),
        "spec.healthCheck.interval",
        9,
        "expected 100ms to 10m",
    );
    let unknown = parse_service(&format!(
        "{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n    tries: 3\n"
    ))
    .unwrap_err();
    assert_eq!(unknown.field(), Some("spec.healthCheck.tries"), "{unknown}");
}

#[test]
fn update_parallelism_defaults_to_one_and_is_at_least_one() {
    assert_eq!(parse_service(MINIMAL).unwrap().spec.update.parallelism, 1);
    check_field_error(
        &format!("{MINIMAL}  update:\n    parallelism: 0\n"),
        "spec.update.parallelism",
        8,
        "expected 1 to",
    );
}

#[test]
fn memory_limit_floor() {
    let source = format!("{MINIMAL}  resources:\n    limits:\n      memory: 1Mi\n");
    check_field_error(&source, "spec.resources.limits.memory", 9, "at least 4Mi");
}

#[test]
fn missing_image_points_at_spec() {
    let source =
        "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  replicas: 2\n";
    check_field_error(source, "spec.image", 5, "missing field `image`");
    let source = MINIMAL.replace("busybox", "\"\"");
    check_field_error(&source, "spec.image", 6, "not an image reference");
}

#[test]
fn bad_constraint() {
    let source = format!(
            "{MINIMAL}  placement:\n    constraints:\n      - node.labels.zone == north\n      - zone = north\n"
        );
    check_field_error(
        &source,
        "spec.placement.constraints[1]",
        10,
        "node.labels.KEY == VALUE",
    );
    let source = format!("{MINIMAL}  placement:\n    spread: rack\n");
    check_field_error(&source, "spec.placement.spread", 8, "node.labels.KEY");
}

#[test]
fn mount_of_undeclared_volume() {
    let source = format!(
            "{MINIMAL}  volumes:\n  - name: data\n    type: local\n  mounts:\n  - volume: data\n    path: /data\n  - volume: cache\n    path: /cache\n"
        );
    check_field_error(
        &source,
        "spec.mounts[1].volume",
        13,
        "volume \"cache\" is not declared in spec.volumes; declared: data",
    );
}

#[test]
fn volume_checks() {
    let source = format!(
        "{MINIMAL}  volumes:\n    - name: a\n      type: local\n    - name: a\n      type: tmpfs\n"
    );
    check_field_error(&source, "spec.volumes[1].name", 10, "declared twice");
    let source = format!("{MINIMAL}  volumes:\n    - name: a\n      type: hostPath\n");
    check_field_error(&source, "spec.volumes[0].type", 9, "needs `path`");
    let source = format!("{MINIMAL}  volumes:\n    - name: a\n      type: nfs\n");
    check_field_error(&source, "spec.volumes[0].type", 9, "`hostPath`");
    let source =
        format!("{MINIMAL}  volumes:\n    - name: a\n      type: local\n      size: 1Mi\n");
    check_field_error(
        &source,
        "spec.volumes[0].size",
        10,
        "smallest sized local volume",
    );
    let source = format!(
        "{MINIMAL}  volumes:\n    - name: a\n      type: device\n      path: /dev/null\n      size: 1Gi\n"
    );
    check_field_error(&source, "spec.volumes[0].size", 11, "only local and tmpfs");
    let source =
        format!("{MINIMAL}  volumes:\n    - name: a\n      type: local\n      size: 1Gi\n");
    assert!(crate::model::parse_service(&source).is_ok());
}

#[test]
fn duplicate_host_port() {
    let source = format!(
            "{MINIMAL}  ports:\n    - container: 80\n      host: 8080\n    - container: 81\n      host: 8080\n"
        );
    check_field_error(
        &source,
        "spec.ports[1].host",
        11,
        "host port 8080 is published twice",
    );
    // Same number, other protocol: allowed.
    let source = format!(
            "{MINIMAL}  ports:\n    - container: 53\n      host: 53\n    - container: 53\n      host: 53\n      protocol: udp\n"
        );
    parse_service(&source).unwrap();
    let source = format!("{MINIMAL}  ports:\n    - container: 70000\n");
    check_field_error(&source, "spec.ports[0].container", 8, "expected u16");
    let source = format!("{MINIMAL}  ports:\n    - container: 80\n      host: 0\n");
    check_field_error(&source, "spec.ports[0].host", 9, "1-65535");
}

#[test]
fn wrong_kind_and_api_version() {
    let source = MINIMAL.replace("kind: Service", "kind: Deployment");
    check_field_error(&source, "kind", 2, "accepted: Service");
    let source = MINIMAL.replace("edgectl/v1", "apps/v1");
    check_field_error(&source, "apiVersion", 1, "accepted: edgectl/v1");
}

#[test]
fn yaml_syntax_error() {
    let source = format!("{MINIMAL}  env:\n    A: 1\n     B: 2\n");
    let error = parse_service(&source).unwrap_err();
    assert!(matches!(error, SpecError::Syntax { .. }), "{error}");
    assert_eq!(error.line(), Some(9), "{error}");
    assert!(
        error.to_string().starts_with("yaml syntax error (line 9"),
        "{error}"
    );
}

#[test]
fn restart_policy_checks() {
    let source = format!("{MINIMAL}  restartPolicy:\n    condition: sometimes\n");
    check_field_error(
        &source,
        "spec.restartPolicy.condition",
        8,
        "`always`, `on-failure`, `never`",
    );
    let source =
        format!("{MINIMAL}  restartPolicy:\n    backoff:\n      initial: 10m\n      max: 1m\n");
    check_field_error(
        &source,
        "spec.restartPolicy.backoff.initial",
        9,
        "longer than max",
    );
    let source = format!("{MINIMAL}  restartPolicy:\n    backoff:\n      max: soon\n");
    check_field_error(&source, "spec.restartPolicy.backoff.max", 9, "`5m`");
}

#[test]
fn name_replicas_and_command_checks() {
    let source = MINIMAL.replace("name: web", "name: Web_1");
    check_field_error(&source, "metadata.name", 4, "DNS label");
    let source = format!("{MINIMAL}  replicas: 1001\n");
    check_field_error(&source, "spec.replicas", 7, "1000");
    let source = format!("{MINIMAL}  command: []\n");
    check_field_error(&source, "spec.command", 7, "empty list");
    let source = format!("{MINIMAL}  network: overlay\n");
    check_field_error(&source, "spec.network", 7, "expected `bridge` or `host`");
}

#[test]
fn host_network_ports_must_match() {
    let source =
        format!("{MINIMAL}  network: host\n  ports:\n    - container: 80\n      host: 8080\n");
    check_field_error(&source, "spec.ports[0].host", 10, "network: host");
}

#[test]
fn labels_env_and_lists_over_their_limits_are_refused() {
    let labels: String = (0..=SpecLimits::LABELS_MAX)
        .map(|index| format!("    l{index}: v\n"))
        .collect();
    let source = MINIMAL.replace(
        "  name: web\n",
        &format!("  name: web\n  labels:\n{labels}"),
    );
    check_field_error(
        &source,
        "metadata.labels",
        5,
        "65 labels is more than the 64 accepted",
    );

    let env: String = (0..=SpecLimits::ENV_VARS_MAX)
        .map(|index| format!("    V{index}: x\n"))
        .collect();
    check_field_error(
        &format!("{MINIMAL}  env:\n{env}"),
        "spec.env",
        7,
        "1025 environment variables is more than the 1024 accepted",
    );
    let value = "x".repeat(SpecLimits::ARG_BYTES_MAX);
    check_field_error(
        &format!("{MINIMAL}  env:\n    BIG: {value}\n"),
        "spec.env.BIG",
        8,
        "put large data in a file or a volume",
    );
    check_field_error(
        &format!("{MINIMAL}  args: [\"{value}\"]\n"),
        "spec.args[0]",
        7,
        "pass large data in a file or a volume",
    );
    let args = vec!["a"; SpecLimits::ARGV_ITEMS_MAX + 1].join(", ");
    check_field_error(
        &format!("{MINIMAL}  args: [{args}]\n"),
        "spec.args",
        7,
        "1025 arguments",
    );
    let ports: String = (1..=SpecLimits::PORTS_MAX + 1)
        .map(|port| format!("    - container: {port}\n"))
        .collect();
    check_field_error(
        &format!("{MINIMAL}  ports:\n{ports}"),
        "spec.ports",
        7,
        "257 ports is more than the 256 accepted",
    );
    let image = "r/".repeat(SpecLimits::IMAGE_REF_BYTES_MAX);
    check_field_error(
        &MINIMAL.replace("busybox", &image),
        "spec.image",
        6,
        "longer than the 1024 accepted",
    );
    let long_path = format!("/{}", "p".repeat(SpecLimits::PATH_BYTES_MAX));
    check_field_error(
            &format!(
                "{MINIMAL}  volumes:\n    - {{name: d, type: local}}\n  mounts:\n    - volume: d\n      path: {long_path}\n"
            ),
            "spec.mounts[0].path",
            11,
            "longer than the 4095 Linux accepts",
        );
    // At the limits, accepted.
    let labels: String = (0..SpecLimits::LABELS_MAX)
        .map(|index| format!("    l{index}: v\n"))
        .collect();
    let source = MINIMAL.replace(
        "  name: web\n",
        &format!("  name: web\n  labels:\n{labels}"),
    );
    assert!(parse_service(&source).is_ok());
}

#[test]
fn oversized_spec_is_rejected() {
    let source = format!("{MINIMAL}#{}\n", "x".repeat(SPEC_BYTES_MAX));
    assert!(matches!(
        parse_service(&source),
        Err(SpecError::TooLarge { .. })
    ));
}

#[test]
fn backoff_doubles_up_to_max() {
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };
    let delays: Vec<u64> = (0..6).map(|n| backoff.delay(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(10));
}

#[test]
fn constraints_match_node_labels() {
    let labels = BTreeMap::from([("zone".to_string(), "north".to_string())]);
    let parse = |text: &str| text.parse::<Constraint>().unwrap();
    assert!(parse("node.labels.zone == north").matches(&labels));
    assert!(!parse("node.labels.zone != north").matches(&labels));
    assert!(!parse("node.labels.gpu == true").matches(&labels));
    assert!(parse("node.labels.gpu != true").matches(&labels));
    assert_eq!(
        parse("node.labels.zone==north").to_string(),
        "node.labels.zone == north"
    );
}

mod robustness {
    use super::*;

    const WEB: &str = include_str!("../../../examples/web.yaml");

    /// Checks what every outcome must satisfy: no panic, and an error's
    /// line lies inside the text (an error never points past the end).
    fn check_outcome(source: &str) {
        let lines = source.lines().count().max(1);
        match parse_service(source) {
            Ok(spec) => validate(&spec).unwrap(),
            Err(error) => {
                if let Some(line) = error.line() {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "line {line} outside 1..={lines}: {error}"
                    );
                }
                assert!(!error.to_string().is_empty());
            }
        }
    }

    proptest! {
        #[test]
        fn dropped_lines_never_panic_and_point_inside(
            dropped in proptest::collection::btree_set(0usize..64, 0..6)
        ) {
            let source: String = WEB
                .lines()
                .enumerate()
                .filter(|(index, _)| !dropped.contains(index))
                .map(|(_, line)| format!("{line}\n"))
                .collect();
            check_outcome(&source);
        }

        #[test]
        fn replaced_values_never_panic_and_point_inside(
            index in 0usize..64,
            value in "\\PC{0,16}",
        ) {
            // Keep the key and indentation, replace what follows the colon.
            let source: String = WEB
                .lines()
                .enumerate()
                .map(|(number, line)| match line.split_once(": ") {
                    Some((key, _)) if number == index => format!("{key}: {value}\n"),
                    _ => format!("{line}\n"),
                })
                .collect();
            check_outcome(&source);
        }
    }
}

#[test]
fn publish_cluster_needs_a_host_port_and_a_bridged_task() {
    let source = format!(
        "{MINIMAL}  ports:\n    - container: 80\n      host: 8080\n      publish: cluster\n"
    );
    let spec = parse_service(&source).unwrap();
    assert_eq!(spec.spec.ports[0].publish, Publish::Cluster);
    let source = format!("{MINIMAL}  ports:\n    - container: 80\n      publish: cluster\n");
    check_field_error(
        &source,
        "spec.ports[0].publish",
        9,
        "needs the port every node",
    );
    let source = format!(
        "{MINIMAL}  network: host\n  ports:\n    - container: 80\n      host: 80\n      publish: cluster\n"
    );
    check_field_error(&source, "spec.ports[0].publish", 11, "network: host");
    let source = format!("{MINIMAL}  ports:\n    - container: 80\n      publish: mesh\n");
    check_field_error(&source, "spec.ports[0].publish", 9, "`host` or `cluster`");
}

#[test]
fn session_affinity_reads_with_its_default_timeout_and_refuses_a_stray_timeout() {
    let spec = parse_service(&format!("{MINIMAL}  sessionAffinity: clientIP\n")).unwrap();
    assert_eq!(spec.spec.session_affinity, SessionAffinity::ClientIp);
    assert_eq!(
        spec.spec.affinity_timeout(),
        Some(SESSION_AFFINITY_TIMEOUT_DEFAULT)
    );
    let spec = parse_service(&format!(
        "{MINIMAL}  sessionAffinity: clientIP\n  sessionAffinityTimeout: 10m\n"
    ))
    .unwrap();
    assert_eq!(spec.spec.affinity_timeout(), Some(Duration::from_secs(600)));
    assert_eq!(
        parse_service(MINIMAL).unwrap().spec.affinity_timeout(),
        None
    );

    check_field_error(
        &format!("{MINIMAL}  sessionAffinityTimeout: 10m\n"),
        "spec.sessionAffinityTimeout",
        7,
        "without `sessionAffinity: clientIP`",
    );
    check_field_error(
        &format!("{MINIMAL}  sessionAffinity: clientIP\n  sessionAffinityTimeout: 2d\n"),
        "spec.sessionAffinityTimeout",
        8,
        "out of range",
    );
    check_field_error(
        &format!("{MINIMAL}  sessionAffinity: sticky\n"),
        "spec.sessionAffinity",
        7,
        "clientIP",
    );
}

#[test]
fn drain_period_defaults_to_two_seconds_reads_zero_and_refuses_too_long() {
    assert_eq!(
        parse_service(MINIMAL).unwrap().spec.drain_period(),
        DRAIN_PERIOD_DEFAULT
    );
    let spec = parse_service(&format!(
        "{MINIMAL}  drainPeriod: 0s
"
    ))
    .unwrap();
    assert_eq!(spec.spec.drain_period(), Duration::ZERO);
    let spec = parse_service(&format!(
        "{MINIMAL}  drainPeriod: 500ms
"
    ))
    .unwrap();
    assert_eq!(spec.spec.drain_period(), Duration::from_millis(500));
    check_field_error(
        &format!(
            "{MINIMAL}  drainPeriod: 1h
"
        ),
        "spec.drainPeriod",
        7,
        "out of range",
    );
}

/// The ports the probe cases ask, declared (a probe may only reach one).
const PROBED_PORTS: &str =
    "  ports:\n    - container: 80\n    - container: 8080\n    - container: 9090\n";

/// A probe with every default and no action (cases set one).
fn probe_defaults() -> Probe {
    Probe {
        exec: None,
        http: None,
        tcp: None,
        initial_delay: Duration::ZERO,
        interval: PROBE_INTERVAL_DEFAULT,
        timeout: PROBE_TIMEOUT_DEFAULT,
        success_threshold: 1,
        failure_threshold: 3,
    }
}

#[test]
fn probes_take_the_documented_defaults() {
    let spec = parse_service(&format!(
        "{MINIMAL}{PROBED_PORTS}  probes:\n    readiness:\n      http: {{port: 8080}}\n    liveness:\n      tcp: {{port: 9090}}\n"
    ))
    .unwrap();
    let readiness = spec.spec.probes.readiness.clone().unwrap();
    assert_eq!(
        readiness,
        Probe {
            http: Some(HttpProbe {
                path: "/".into(),
                port: 8080,
                scheme: HttpScheme::Http,
            }),
            ..probe_defaults()
        }
    );
    assert_eq!(
        (
            readiness.initial_delay,
            readiness.interval,
            readiness.timeout,
            readiness.success_threshold,
            readiness.failure_threshold
        ),
        (
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(3),
            1,
            3
        )
    );
    let probes = spec.spec.effective_probes();
    assert_eq!(
        probes.liveness.as_ref().map(|check| check.action.clone()),
        Some(ProbeAction::Tcp { port: 9090 })
    );
    assert!(probes.gates_readiness() && !probes.liveness_from_health_check);
    assert_eq!(probes.startup, None);
}

#[test]
fn a_spec_without_probes_stores_and_reads_as_before() {
    // A spec stored before probes existed has no `probes` key, and one
    // without probes must not grow one when stored again.
    let spec = parse_service(&format!("{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n")).unwrap();
    let stored = serde_json::to_string(&spec).unwrap();
    assert!(!stored.contains("probes"), "{stored}");
    let back: ServiceSpec = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, spec);
    assert!(spec.spec.probes.is_empty());
    // And probes round-trip through the stored form.
    let probed = parse_service(&format!(
        "{MINIMAL}{PROBED_PORTS}  probes:\n    readiness:\n      http: {{path: /ready, port: 80}}\n      successThreshold: 2\n"
    ))
    .unwrap();
    let back: ServiceSpec = serde_json::from_str(&serde_json::to_string(&probed).unwrap()).unwrap();
    assert_eq!(back, probed);
    validate(&back).unwrap();
}

#[test]
fn health_check_is_a_liveness_exec_probe() {
    let spec = parse_service(&format!(
        "{MINIMAL}  healthCheck:\n    exec: [\"test\", \"-f\", \"/ok\"]\n    interval: 2s\n    timeout: 1s\n    retries: 4\n    startPeriod: 30s\n"
    ))
    .unwrap();
    let probes = spec.spec.effective_probes();
    assert!(probes.liveness_from_health_check);
    assert!(!probes.gates_readiness());
    assert_eq!(
        probes.liveness,
        Some(ProbeCheck {
            action: ProbeAction::Exec(vec!["test".into(), "-f".into(), "/ok".into()]),
            initial_delay: Duration::from_secs(30),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 4,
        })
    );
    // With no start period the first run is one interval in, as before.
    let quick = parse_service(&format!("{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n")).unwrap();
    assert_eq!(
        quick
            .spec
            .effective_probes()
            .liveness
            .unwrap()
            .initial_delay,
        Duration::from_secs(10)
    );
}

#[test]
fn health_check_and_a_liveness_probe_together_are_refused_naming_both() {
    check_field_error(
        &format!(
            "{MINIMAL}  healthCheck:\n    exec: [\"true\"]\n  probes:\n    liveness:\n      exec: [\"true\"]\n"
        ),
        "spec.probes.liveness",
        10,
        "spec.healthCheck and spec.probes.liveness are both set",
    );
    // A health check beside a readiness probe is fine: different jobs.
    parse_service(&format!(
        "{MINIMAL}{PROBED_PORTS}  healthCheck:\n    exec: [\"true\"]\n  probes:\n    readiness:\n      tcp: {{port: 80}}\n"
    ))
    .unwrap();
}

#[test]
fn a_probe_runs_exactly_one_action() {
    check_field_error(
        &format!("{MINIMAL}  probes:\n    readiness:\n      interval: 5s\n"),
        "spec.probes.readiness",
        8,
        "set exactly one of exec",
    );
    check_field_error(
        &format!(
            "{MINIMAL}{PROBED_PORTS}  probes:\n    startup:\n      exec: [\"true\"]\n      tcp: {{port: 80}}\n"
        ),
        "spec.probes.startup.tcp",
        14,
        "sets both exec and tcp",
    );
    check_field_error(
        &format!("{MINIMAL}  probes:\n    liveness:\n      exec: []\n"),
        "spec.probes.liveness.exec",
        9,
        "exec is empty",
    );
}

#[test]
fn probe_ports_paths_and_schemes_are_checked() {
    check_field_error(
        &format!("{MINIMAL}  probes:\n    readiness:\n      http:\n        port: 0\n"),
        "spec.probes.readiness.http.port",
        10,
        "expected the container's port, 1-65535",
    );
    check_field_error(
        &format!("{MINIMAL}  probes:\n    readiness:\n      tcp:\n        port: 0\n"),
        "spec.probes.readiness.tcp.port",
        10,
        "1-65535",
    );
    check_field_error(
        &format!(
            "{MINIMAL}  probes:\n    readiness:\n      http:\n        port: 80\n        path: healthz\n"
        ),
        "spec.probes.readiness.http.path",
        11,
        "expected an absolute path",
    );
    check_field_error(
        &format!(
            "{MINIMAL}  probes:\n    readiness:\n      http:\n        port: 80\n        path: \"/a b\"\n"
        ),
        "spec.probes.readiness.http.path",
        11,
        "no spaces",
    );
    let https = parse_service(&format!(
        "{MINIMAL}  probes:\n    readiness:\n      http:\n        port: 443\n        scheme: https\n"
    ))
    .unwrap_err();
    assert_eq!(
        https.field(),
        Some("spec.probes.readiness.http.scheme"),
        "{https}"
    );
    assert!(https.to_string().contains("http"), "{https}");
    let too_big = parse_service(&format!(
        "{MINIMAL}{PROBED_PORTS}  probes:\n    readiness:\n      tcp: {{port: 70000}}\n"
    ))
    .unwrap_err();
    assert!(
        too_big
            .field()
            .is_some_and(|f| f.starts_with("spec.probes.readiness.tcp")),
        "{too_big}"
    );
    let unknown = parse_service(&format!(
        "{MINIMAL}{PROBED_PORTS}  probes:\n    readiness:\n      tcp: {{port: 80}}\n      periodSeconds: 5\n"
    ))
    .unwrap_err();
    assert_eq!(
        unknown.field(),
        Some("spec.probes.readiness.periodSeconds"),
        "{unknown}"
    );
}

#[test]
fn a_probe_on_a_port_the_service_does_not_declare_is_refused() {
    check_field_error(
        &format!("{MINIMAL}  probes:\n    readiness:\n      http: {{port: 8080}}\n"),
        "spec.probes.readiness.http.port",
        9,
        "add `- container: 8080` under spec.ports",
    );
    let udp_only = "  ports:\n    - {container: 53, protocol: udp}\n";
    check_field_error(
        &format!("{MINIMAL}{udp_only}  probes:\n    liveness:\n      tcp: {{port: 53}}\n"),
        "spec.probes.liveness.tcp.port",
        11,
        "does not declare",
    );
}

#[test]
fn probe_timing_and_thresholds_are_bounded() {
    let probe = |fields: &str| {
        format!(
            "{MINIMAL}{PROBED_PORTS}  probes:\n    readiness:\n      tcp: {{port: 80}}\n{fields}"
        )
    };
    check_field_error(
        &probe("      interval: 10ms\n"),
        "spec.probes.readiness.interval",
        14,
        "expected 100ms to 10m",
    );
    check_field_error(
        &probe("      timeout: 11m\n"),
        "spec.probes.readiness.timeout",
        14,
        "expected 100ms to 10m",
    );
    check_field_error(
        &probe("      initialDelay: 1h\n"),
        "spec.probes.readiness.initialDelay",
        14,
        "at most 10m",
    );
    check_field_error(
        &probe("      failureThreshold: 0\n"),
        "spec.probes.readiness.failureThreshold",
        14,
        "expected 1 to 100",
    );
    check_field_error(
        &probe("      successThreshold: 101\n"),
        "spec.probes.readiness.successThreshold",
        14,
        "expected 1 to 100",
    );
    // Readiness may ask for several passes; liveness and startup may not.
    parse_service(&probe("      successThreshold: 3\n")).unwrap();
    for name in ["liveness", "startup"] {
        check_field_error(
            &format!(
                "{MINIMAL}{PROBED_PORTS}  probes:\n    {name}:\n      tcp: {{port: 80}}\n      successThreshold: 2\n"
            ),
            &format!("spec.probes.{name}.successThreshold"),
            14,
            "expected 1",
        );
    }
}

#[test]
fn secrets_configs_and_env_from_take_their_defaults_and_octal_modes() {
    let spec = parse_service(&format!(
        "{MINIMAL}  user: \"1000:1000\"\n  secrets:\n    - name: db-password\n    - {{name: tls.key, target: /etc/tls/key.pem, uid: 1000, gid: 1000, mode: 0400}}\n  configs:\n    - {{name: app.conf, mode: \"0o640\"}}\n  envFrom:\n    - config: app.env\n"
    ))
    .expect("valid");
    let body = &spec.spec;
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    let secrets: Vec<(String, u32, u32, u32)> = body
        .secret_files()
        .map(|(file, target)| (target, file.uid, file.gid, file.mode))
        .collect();
    assert_eq!(
        secrets,
        vec![
            ("/run/secrets/db-password".to_string(), 0, 0, 0o444),
            ("/etc/tls/key.pem".to_string(), 1000, 1000, 0o400),
        ]
    );
    let configs: Vec<(String, u32)> = body
        .config_files()
        .map(|(file, target)| (target, file.mode))
        .collect();
    assert_eq!(configs, vec![("/run/configs/app.conf".to_string(), 0o640)]);
    assert_eq!(
        body.config_names().into_iter().collect::<Vec<_>>(),
        vec!["app.conf", "app.env"]
    );
    // The stored form (JSON) reads back the same, modes included.
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains("\"mode\":\"0400\""), "{json}");
    assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), spec);
}

#[test]
fn on_change_takes_reload_signals_and_marks_objects_followed_in_place() {
    let spec = parse_service(&format!(
        "{MINIMAL}  secrets:\n    - {{name: pw, onChange: {{signal: SIGHUP}}}}\n    - name: tls\n      onChange:\n        signal: usr2\n    - name: tls\n      target: /etc/tls.pem\n  configs:\n    - {{name: app.env, onChange: {{signal: HUP}}}}\n  envFrom:\n    - config: app.env\n"
    ))
    .expect("valid");
    let body = &spec.spec;
    assert!(body.follows_in_place(true, "pw"));
    // One use of tls restarts: a new generation is still needed.
    assert!(!body.follows_in_place(true, "tls"));
    // envFrom is read at start only.
    assert!(!body.follows_in_place(false, "app.env"));
    assert!(!body.follows_in_place(true, "unused"));
    let json = serde_json::to_string(&spec).unwrap();
    assert!(
        json.contains("\"onChange\":{\"signal\":\"SIGHUP\"}"),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), spec);

    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - name: a\n      onChange:\n        signal: SIGKILL\n"),
        "spec.secrets[0].onChange.signal",
        10,
        "SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH",
    );
    check_field_error(
        &format!("{MINIMAL}  configs:\n    - name: a\n      onChange: {{restart: true}}\n"),
        "spec.configs[0].onChange.restart",
        9,
        "unknown field",
    );
}

#[test]
fn bad_secret_and_config_references_are_refused_with_field_and_line() {
    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - {{name: a, target: relative/path}}\n"),
        "spec.secrets[0].target",
        8,
        "not an absolute path",
    );
    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - name: a\n      target: /x/../y\n"),
        "spec.secrets[0].target",
        9,
        "not an absolute path",
    );
    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - name: a\n  configs:\n    - name: b\n      target: /run/secrets/a\n"),
        "spec.configs[0].target",
        11,
        "used twice",
    );
    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - name: a\n      mode: 4755\n"),
        "spec.secrets[0].mode",
        9,
        "more than 0777",
    );
    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - name: a\n      mode: 0489\n"),
        "spec.secrets[0].mode",
        9,
        "not an octal file mode",
    );
    check_field_error(
        &format!("{MINIMAL}  secrets:\n    - name: A_Bad\n"),
        "spec.secrets[0].name",
        8,
        "invalid",
    );
    check_field_error(
        &format!("{MINIMAL}  configs:\n    - name: a\n      owner: me\n"),
        "spec.configs[0].owner",
        9,
        "unknown field",
    );
    check_field_error(
        &format!("{MINIMAL}  envFrom:\n    - config: a\n    - config: a\n"),
        "spec.envFrom[1].config",
        9,
        "twice",
    );
    check_field_error(
        &format!("{MINIMAL}  user: \"a b\"\n"),
        "spec.user",
        7,
        "invalid",
    );
}

#[test]
fn names_that_do_not_exist_are_refused_with_field_and_line() {
    let source = format!(
        "{MINIMAL}  secrets:\n    - name: here\n    - name: gone\n  envFrom:\n    - config: nope\n"
    );
    let spec = parse_service(&source).unwrap();
    let names = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    let error = check_references(&spec, Some(&source), &names(&["here"]), &names(&[]))
        .expect_err("gone is missing");
    assert_eq!(error.field(), Some("spec.secrets[1].name"));
    assert_eq!(error.line(), Some(9));
    assert!(
        error.to_string().contains("secret \"gone\" does not exist"),
        "{error}"
    );
    let error = check_references(&spec, Some(&source), &names(&["here", "gone"]), &names(&[]))
        .expect_err("nope is missing");
    assert_eq!(error.field(), Some("spec.envFrom[0].config"));
    assert_eq!(error.line(), Some(11));
    check_references(&spec, None, &names(&["here", "gone"]), &names(&["nope"])).unwrap();
}

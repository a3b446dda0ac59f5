//! `edgectl init`, `join` and `serve`: prepare the data dir, then run the node
//! until SIGINT or SIGTERM.

use std::path::Path;

use anyhow::{bail, Context};
use edgectl::api::client::AdminConfig;
use edgectl::api::{ApiRequest, ApiResponse};
use edgectl::cluster::autopilot::AutopilotConfig;
use edgectl::node::{self, Node, NodeConfig, RaftTuning};
use edgectl::paths::DataDir;
use tokio::signal::unix::{signal, SignalKind};

use super::args::{InitArgs, JoinArgs, ServeArgs, TuningArgs};

fn node_config(data_dir: &Path, tuning: &TuningArgs) -> NodeConfig {
    let mut config = NodeConfig::new(DataDir::new(data_dir));
    config.raft = RaftTuning {
        heartbeat_ms: tuning.raft_heartbeat_ms,
        election_timeout_min_ms: tuning.election_min_ms,
        election_timeout_max_ms: tuning.election_max_ms,
        snapshot_after_entries: tuning.snapshot_after,
        logs_kept_after_snapshot: tuning.keep_after_snapshot,
    };
    config.autopilot = AutopilotConfig {
        target_voters: tuning.target_voters,
        dead_after: tuning.dead_after,
        remove_after: tuning.remove_after,
        ..AutopilotConfig::default()
    };
    config.heartbeat_interval = tuning.heartbeat;
    config.lease = tuning.lease;
    config.disk_reserve = tuning.disk_reserve;
    config.import_limits = tuning.import.limits(tuning.disk_reserve);
    if let Some(validity) = tuning.cert_validity {
        config.cert_validity = validity;
    }
    config.agent = edgectl::agent::AgentConfig {
        enabled: !tuning.no_agent,
        cpu_millis: tuning.cpu,
        memory_bytes: tuning.memory,
        labels: tuning.labels.iter().cloned().collect(),
        dns: !tuning.no_dns,
    };
    config.dns = edgectl::node::dns::DnsConfig {
        disabled: tuning.no_dns,
        upstreams: tuning.dns_upstreams.clone(),
        extra_listen: tuning.dns_listen.clone(),
    };
    config
}

fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// The address peers dial: --advertise, else --listen if it names one host.
fn advertise_addr(listen: &str, advertise: Option<&str>) -> anyhow::Result<String> {
    if let Some(advertise) = advertise {
        let addr: std::net::SocketAddr = advertise
            .parse()
            .with_context(|| format!("--advertise {advertise:?} is not an ip:port"))?;
        if addr.ip().is_unspecified() {
            bail!("--advertise {advertise} is not an address other nodes can dial");
        }
        return Ok(advertise.to_string());
    }
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an ip:port"))?;
    if addr.ip().is_unspecified() {
        bail!("--listen {listen} binds every address; say which one other nodes dial with --advertise IP:PORT");
    }
    Ok(listen.to_string())
}

pub async fn init(data_dir: &Path, args: InitArgs) -> anyhow::Result<()> {
    let name = args.node.name.clone().unwrap_or_else(default_name);
    let advertise = advertise_addr(&args.node.listen, args.node.advertise.as_deref())?;
    let data = DataDir::new(data_dir);
    let config = node_config(data_dir, &args.tuning);
    let network = edgectl::network::ClusterNetwork {
        pod_cidr: args.pod_cidr,
        node_prefix_len: args.node_prefix,
        mode: args.network,
        vxlan: edgectl::network::config::VxlanConfig {
            // Replaced by one derived from the cluster id unless given
            // (init_data_dir_with_network); checked here either way.
            vni: args
                .vxlan_vni
                .unwrap_or(edgectl::network::config::DEFAULT_VXLAN_VNI),
            port: args.vxlan_port,
        },
        service_cidr: args.service_cidr,
    };
    network.validate().context("cannot initialize a cluster")?;
    let outcome = node::init_data_dir_with_network(
        &data,
        &name,
        &args.node.listen,
        &advertise,
        config.cert_validity,
        network,
        args.vxlan_vni,
    )
    .with_context(|| format!("cannot initialize a cluster in {}", data_dir.display()))?;
    let node = Node::start(config).await.context("cannot start the node")?;
    edgectl::images::set_upload_rate_cap(&node.images(), args.tuning.blob_upload_cap);

    let response = node
        .request(ApiRequest::TokenCreate {
            ttl_secs: args.token_ttl.as_secs(),
            description: "created by init".into(),
        })
        .await
        .context("cannot create the first join token")?;
    let ApiResponse::TokenCreated { token, .. } = response else {
        bail!("unexpected answer creating the join token")
    };

    let mut admin_note = format!("admin credentials: {}", outcome.admin_config.display());
    if let Some(user_config) = AdminConfig::default_path() {
        if !user_config.exists() {
            let config = AdminConfig::load(&outcome.admin_config)?;
            config.save(&user_config)?;
            admin_note = format!(
                "admin credentials: {} (also {})",
                outcome.admin_config.display(),
                user_config.display()
            );
        }
    }
    println!(
        "cluster {} initialized; node {} ({}) listening on {}",
        outcome.identity.cluster_id, name, outcome.identity.node_id, advertise
    );
    println!("{admin_note}");
    println!("join other nodes with:");
    println!("  edgectl join {advertise} --token {token} --listen <IP:PORT>");
    println!("join token: {token}");
    run_until_signal(node).await
}

pub async fn join(data_dir: &Path, args: JoinArgs) -> anyhow::Result<()> {
    let name = args.node.name.clone().unwrap_or_else(default_name);
    let advertise = advertise_addr(&args.node.listen, args.node.advertise.as_deref())?;
    let data = DataDir::new(data_dir);
    let identity = node::join_data_dir(
        &data,
        &args.peer,
        &args.token,
        &name,
        &args.node.listen,
        &advertise,
    )
    .await
    .with_context(|| format!("cannot join the cluster at {}", args.peer))?;
    println!(
        "joined cluster {} as node {} ({})",
        identity.cluster_id, identity.node_id, identity.name
    );
    let node = Node::start(node_config(data_dir, &args.tuning))
        .await
        .context("cannot start the node")?;
    edgectl::images::set_upload_rate_cap(&node.images(), args.tuning.blob_upload_cap);
    run_until_signal(node).await
}

pub async fn serve(data_dir: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = node_config(data_dir, &args.tuning);
    config.listen_override = args.listen;
    config.advertise_override = args.advertise;
    let node = Node::start(config)
        .await
        .with_context(|| format!("cannot start the node in {}", data_dir.display()))?;
    edgectl::images::set_upload_rate_cap(&node.images(), args.tuning.blob_upload_cap);
    println!(
        "node {} ({}) of cluster {} running",
        node.identity().node_id,
        node.identity().name,
        node.identity().cluster_id
    );
    run_until_signal(node).await
}

async fn run_until_signal(node: Node) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
    let mut removed = false;
    let fatal = tokio::select! {
        _ = terminate.recv() => None,
        _ = interrupt.recv() => None,
        reason = node.raft_stopped() => Some(reason),
        _ = node.removed() => {
            removed = true;
            None
        }
    };
    tracing::info!("stopping");
    node.shutdown().await;
    if removed {
        // Not a crash: a supervisor that restarts on failure leaves it
        // stopped (a restart would only learn the same again).
        node.clean_up_after_removal().await;
        eprintln!(
            "node {} was removed from cluster {} while it was away: it stopped its tasks and \
             removed its network state. To come back: `edgectl reset`, then `edgectl join`",
            node.identity().node_id,
            node.identity().cluster_id
        );
        return Ok(());
    }
    match fatal {
        None => Ok(()),
        Some(reason) => anyhow::bail!(
            "the replicated store stopped ({reason}); the node exits so that its supervisor \
             restarts it. Check the disk holding the data dir (free space, I/O errors)"
        ),
    }
}

//! Argument types only; behaviour lives in the handlers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "edgectl",
    version,
    about = "A lightweight container orchestrator for edge fleets",
    propagate_version = true
)]
pub struct Cli {
    /// Node data directory (also where a node's own credentials are found).
    #[arg(
        long,
        global = true,
        env = "EDGECTL_DATA_DIR",
        default_value = "/var/lib/edgectl"
    )]
    pub data_dir: PathBuf,
    /// Admin client configuration (default: the node in --data-dir, else ~/.config/edgectl/config.json).
    #[arg(long, global = true, env = "EDGECTL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new cluster with this machine as its first node, print a join token, and run the node.
    Init(InitArgs),
    /// Join an existing cluster with a token, and run the node.
    Join(JoinArgs),
    /// Run the node of an existing data dir (after a reboot or a stop); needs no token.
    Serve(ServeArgs),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect the cluster's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Read and write keys of the replicated store (for scripts and debugging).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Manage images in this node's store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run one container from a local image (debugging aid) and print its output.
    Run(RunArgs),
    /// Create or update a service from a YAML file.
    Apply(ApplyArgs),
    /// List services, tasks or nodes.
    #[command(subcommand)]
    Get(GetCommand),
    /// Show one service in detail.
    #[command(subcommand)]
    Describe(DescribeCommand),
    /// Change a service's replica count.
    Scale(ScaleArgs),
    /// Print what a task's container wrote (read on the node that runs it).
    Logs(LogsArgs),
    /// Run a command inside a task's running container and exit with its code.
    Exec(ExecArgs),
    /// Delete a service.
    #[command(subcommand)]
    Delete(DeleteCommand),
    /// Go back to a service's previous spec (rolled out like an update);
    /// the same as `rollout undo`.
    #[command(subcommand)]
    Rollback(RollbackCommand),
    /// Follow, list, undo, pause and resume a service's rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Manage secrets (encrypted at rest).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage volumes: data that outlives a task, kept where it was made.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Retire this node's data dir: stop and delete its containers, then remove the dir (the node must be stopped).
    Reset {
        /// Remove the containers but keep the data dir.
        #[arg(long)]
        keep_data: bool,
    },
}

/// Where a new node listens and what it is called.
#[derive(Clone, Debug, Args)]
pub struct NewNodeArgs {
    /// UDP address the node's QUIC endpoint binds, e.g. 0.0.0.0:7440.
    #[arg(long, default_value = "0.0.0.0:7440")]
    pub listen: String,
    /// Address other nodes dial (default: --listen, which must then be a specific address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub node: NewNodeArgs,
    /// Lifetime of the printed join token (0 = never expires).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub token_ttl: Duration,
    /// Every task address of the cluster comes from this IPv4 block; each
    /// node is given a block of it. Fixed for the life of the cluster.
    #[arg(long, default_value = "10.88.0.0/16")]
    pub pod_cidr: edgectl::network::Ipv4Cidr,
    /// Prefix length of each node's block of --pod-cidr (24: 254 task
    /// addresses per node, 256 nodes in a /16).
    #[arg(long, default_value_t = edgectl::network::config::DEFAULT_NODE_PREFIX_LEN)]
    pub node_prefix: u8,
    /// How tasks on different nodes reach each other: routed (kernel routes
    /// via each node's address; nodes on one segment or a routed LAN) or
    /// vxlan (the kernel's VXLAN device; nodes on different segments).
    #[arg(long, default_value = "routed")]
    pub network: edgectl::network::NetworkMode,
    /// VXLAN network identifier of --network vxlan (1 to 16777215).
    /// Default: derived from the new cluster's random id, so clusters that
    /// share a segment get different ones.
    #[arg(long)]
    pub vxlan_vni: Option<u32>,
    /// UDP port of --network vxlan's tunnel, on every node.
    #[arg(long, default_value_t = edgectl::network::config::DEFAULT_VXLAN_PORT)]
    pub vxlan_port: u16,
    /// Every service's virtual IP comes from this IPv4 block (outside
    /// --pod-cidr, /12 to /30). Fixed for the life of the cluster.
    #[arg(long, default_value = "10.96.0.0/16")]
    pub service_cidr: edgectl::network::Ipv4Cidr,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

#[derive(Clone, Debug, Args)]
pub struct JoinArgs {
    /// Address of any node of the cluster.
    pub peer: String,
    /// Join token from `edgectl init` or `edgectl token create`.
    #[arg(long, env = "EDGECTL_TOKEN")]
    pub token: String,
    #[command(flatten)]
    pub node: NewNodeArgs,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Bind another address than the stored one.
    #[arg(long)]
    pub listen: Option<String>,
    /// Announce another address than the stored one (the device moved).
    #[arg(long)]
    pub advertise: Option<String>,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// Knobs of a running node; the defaults suit a small site.
#[derive(Clone, Debug, Args)]
pub struct TuningArgs {
    /// Voters autopilot keeps (1, 3 or 5); every other node is a learner.
    #[arg(long, default_value_t = 3, value_parser = parse_target_voters)]
    pub target_voters: usize,
    /// A voter silent this long is replaced by a healthy learner.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub dead_after: Duration,
    /// A learner silent this long leaves the membership (0 = never).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub remove_after: Duration,
    /// Interval of the heartbeats nodes send the leader.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "250ms")]
    pub heartbeat: Duration,
    /// Raft heartbeat interval in ms.
    #[arg(long, default_value_t = 50)]
    pub raft_heartbeat_ms: u64,
    /// Raft election timeout, lower bound in ms.
    #[arg(long, default_value_t = 150)]
    pub election_min_ms: u64,
    /// Raft election timeout, upper bound in ms.
    #[arg(long, default_value_t = 300)]
    pub election_max_ms: u64,
    /// Snapshot and compact the log after this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_after: u64,
    /// Entries kept after a snapshot for followers slightly behind.
    #[arg(long, default_value_t = 1_000)]
    pub keep_after_snapshot: u64,
    /// A node silent this long has lapsed: its tasks are replaced elsewhere.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1500ms")]
    pub lease: Duration,
    /// CPU this node offers to tasks, e.g. `2` or `1500m` (default: every CPU).
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<u64>,
    /// Memory this node offers to tasks, e.g. `1Gi` (default: all of it).
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// A label of this node, KEY=VALUE (repeatable), matched by placement constraints.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Run no containers: a control-plane-only member.
    #[arg(long)]
    pub no_agent: bool,
    /// Most bytes per second this node sends to peers fetching image blobs,
    /// e.g. `1Mi` on a thin uplink (default: no cap).
    #[arg(long, value_parser = parse_memory)]
    pub blob_upload_cap: Option<u64>,
    /// Free space to keep on the data dir's disk (e.g. 128Mi): below it the
    /// leader refuses writes that grow the store (user keys, service specs),
    /// so RocksDB never meets a full disk; deletes and the cluster's own
    /// records still pass.
    #[arg(long, value_parser = parse_memory, default_value = "128Mi")]
    pub disk_reserve: u64,
    /// Validity of the node certificates this node issues (tests of expiry
    /// and renewal; the default is a year, renewed at half-life).
    #[arg(long, value_parser = humantime::parse_duration, hide = true)]
    pub cert_validity: Option<Duration>,
    #[command(flatten)]
    pub import: ImportLimitArgs,
    /// A resolver this node's DNS server forwards names outside the
    /// cluster to, IP or IP:PORT (repeatable; default: the nameservers of
    /// /etc/resolv.conf).
    #[arg(long = "dns-upstream", value_parser = parse_dns_address)]
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// Also answer DNS queries on this address, IP or IP:PORT (repeatable;
    /// e.g. 127.0.0.1:5353 for the host's own clients). The bridge's
    /// address, port 53, is always served.
    #[arg(long = "dns-listen", value_parser = parse_dns_address)]
    pub dns_listen: Vec<std::net::SocketAddr>,
    /// Run no DNS server: containers keep the host's resolvers.
    #[arg(long)]
    pub no_dns: bool,
}

/// Bounds of an image import on this node (defaults suit small flash
/// disks; raise them for big trusted images). Sizes take `Mi`/`Gi`.
#[derive(Clone, Debug, Args)]
pub struct ImportLimitArgs {
    /// Most bytes an image archive may hold (as read, after gzip).
    #[arg(long, value_parser = parse_memory, default_value_t = runtime::ImportLimits::default().archive_bytes_max)]
    pub import_archive_max: u64,
    /// Most bytes of one layer blob (compressed).
    #[arg(long, value_parser = parse_memory, default_value_t = runtime::ImportLimits::default().layer_bytes_max)]
    pub import_layer_max: u64,
    /// Most bytes of one layer unpacked (a gzip bomb stops here).
    #[arg(long, value_parser = parse_memory, default_value_t = runtime::ImportLimits::default().layer_unpacked_bytes_max)]
    pub import_layer_unpacked_max: u64,
    /// Most bytes of all of an image's blobs.
    #[arg(long, value_parser = parse_memory, default_value_t = runtime::ImportLimits::default().image_bytes_max)]
    pub import_image_max: u64,
    /// Most bytes of all of an image's layers unpacked.
    #[arg(long, value_parser = parse_memory, default_value_t = runtime::ImportLimits::default().image_unpacked_bytes_max)]
    pub import_image_unpacked_max: u64,
    /// Most files (entries) in one layer.
    #[arg(long, default_value_t = runtime::ImportLimits::default().layer_files_max)]
    pub import_layer_files_max: u64,
    /// Most files in all of an image's layers.
    #[arg(long, default_value_t = runtime::ImportLimits::default().image_files_max)]
    pub import_image_files_max: u64,
    /// Longest path of a file in a layer, in bytes (at most 4096).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096), default_value_t = runtime::ImportLimits::default().path_bytes_max as u16)]
    pub import_path_max: u16,
}

impl ImportLimitArgs {
    /// The runtime's limits; imports keep `disk_reserve` free too.
    pub fn limits(&self, disk_reserve: u64) -> runtime::ImportLimits {
        runtime::ImportLimits {
            archive_bytes_max: self.import_archive_max,
            layer_bytes_max: self.import_layer_max,
            layer_unpacked_bytes_max: self.import_layer_unpacked_max,
            image_bytes_max: self.import_image_max,
            image_unpacked_bytes_max: self.import_image_unpacked_max,
            layer_files_max: self.import_layer_files_max,
            image_files_max: self.import_image_files_max,
            path_bytes_max: usize::from(self.import_path_max),
            disk_reserve_bytes: disk_reserve,
            ..runtime::ImportLimits::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token.
    Create {
        #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
        ttl: Duration,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List join tokens (never their secrets).
    Ls,
    /// Revoke a join token by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes: name, address, raft role, leader, last heartbeat, health.
    Ls,
    /// This node's own view, answered without the leader: the leader it
    /// knows, the last entry applied, how long since it heard from the
    /// leader (how stale its replica may be), where its DNS answers.
    Status,
    /// Set (KEY=VALUE) or remove (KEY-) labels of a node.
    Label {
        /// Node name or id.
        node: String,
        /// KEY=VALUE to set, KEY- to remove.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Take no new tasks on a node; keep what it runs.
    Cordon { node: String },
    /// Let a node take tasks again (also ends a drain).
    Uncordon { node: String },
    /// Move every task off a node (and cordon it).
    Drain {
        node: String,
        /// Wait until no task of the node is left running.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
        timeout: Duration,
    },
}

/// `--wait` and how long.
#[derive(Clone, Debug, Args)]
pub struct WaitArgs {
    /// Wait, showing progress, until every replica runs.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The service document (YAML); `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Services: replicas wanted and running.
    #[command(alias = "service", alias = "svc")]
    Services,
    /// Tasks: one line per replica, its node and state.
    #[command(alias = "task")]
    Tasks {
        /// Only this service's tasks.
        service: Option<String>,
    },
    /// Nodes: readiness, capacity, what is allocated.
    #[command(alias = "node")]
    Nodes,
    /// Endpoints: each service's VIP and its tasks, ready (in rotation) or
    /// not and why.
    #[command(alias = "endpoint", alias = "ep")]
    Endpoints {
        /// Only this service's endpoints.
        service: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DescribeCommand {
    /// A service: spec, tasks, why a task is pending, recent events.
    #[command(alias = "svc")]
    Service { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete a service; its tasks are stopped.
    #[command(alias = "svc")]
    Service { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RollbackCommand {
    /// Roll a service back to the spec it had before its last update.
    #[command(alias = "svc")]
    Service {
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow a rollout until it completes (exit 0), rolls back or pauses
    /// (exit 1), showing progress.
    Status {
        service: String,
        /// Print where it stands now and return.
        #[arg(long)]
        no_follow: bool,
        /// Give up following after this long (exit 1).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        timeout: Duration,
    },
    /// The service's kept generations: when, what changed, what became of it.
    History { service: String },
    /// Go back to a kept generation (default: the one before the current)
    /// as a new generation, rolled out like an update.
    Undo {
        service: String,
        /// The generation to go back to (`rollout history` lists them).
        #[arg(long)]
        to_revision: Option<u64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Replace no more tasks until `rollout resume`.
    Pause { service: String },
    /// Promote a rollout's canaries (`update.canary`) once they are healthy.
    Promote { service: String },
    /// Go on replacing tasks; a rollout paused after a failure tries again.
    Resume { service: String },
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Task name, as `edgectl get tasks` shows it (e.g. web.0.1).
    pub task: String,
    /// Kill the command if it still runs after this long (at most 10m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Task name, as `edgectl get tasks` shows it (e.g. web.0.1).
    pub task: String,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u32>,
    /// Prefix each line with the time the node read it (RFC 3339, UTC).
    #[arg(long, short = 't')]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Service name.
    pub name: String,
    /// Replicas wanted.
    pub replicas: u32,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, voters and learners, log and store positions.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Write a key.
    Put { key: String, value: String },
    /// Read a key.
    Get {
        key: String,
        /// Serve from the contacted node's replica instead of through the leader.
        #[arg(long)]
        stale: bool,
    },
    /// List keys under a prefix.
    Ls {
        #[arg(default_value = "/")]
        prefix: String,
        #[arg(long)]
        stale: bool,
    },
    /// Delete a key.
    Del { key: String },
}

fn parse_cpu(text: &str) -> Result<u64, String> {
    edgectl::model::quantity::parse_cpu_millis(text).map_err(|e| e.to_string())
}

fn parse_memory(text: &str) -> Result<u64, String> {
    edgectl::model::quantity::parse_memory_bytes(text).map_err(|e| e.to_string())
}

/// `IP:PORT`, or a bare IP on port 53.
fn parse_dns_address(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(address) = text.parse::<std::net::SocketAddr>() {
        return Ok(address);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?}: expected IP or IP:PORT"))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected KEY=VALUE"))?;
    if !edgectl::model::service::valid_label_key(key)
        || !edgectl::model::service::valid_label_value(value)
    {
        return Err(format!(
            "{text:?}: keys are 1-253 of [A-Za-z0-9._/-], values 0-63 of [A-Za-z0-9._-]"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

fn parse_target_voters(text: &str) -> Result<usize, String> {
    match text {
        "1" => Ok(1),
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!(
            "{text:?}: the number of voters must be 1, 3 or 5 (an odd number keeps a majority)"
        )),
    }
}

/// `edgectl image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image archive: an OCI image archive or layout directory, or a `docker save` tarball.
    /// When a node lives in --data-dir, that node imports it and records it in the cluster.
    Import {
        /// The archive (tar, optionally gzipped) or OCI layout directory.
        file: PathBuf,
    },
    /// List the images in this node's store, or the cluster's when a node lives in --data-dir
    /// (a table; `-o json` for JSON).
    Ls,
    /// Show one image as JSON.
    Inspect {
        /// Name (name:tag), id (sha256:...) or short id.
        image: String,
    },
    /// Remove images (refused while a container uses one).
    Rm {
        /// Names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Delete blobs and unpacked layers no image references.
    Gc,
}

/// `edgectl run IMAGE [-- CMD...]`: run one container and print its output and exit code.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image reference (name:tag) or digest.
    pub image: String,
    /// Command and arguments, replacing the image's CMD.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Container id (default: generated).
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the image's ENTRYPOINT.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory in the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (uid[:gid] or name).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<u64>,
    /// Max number of processes.
    #[arg(long)]
    pub pids: Option<i64>,
    /// Use the host's network namespace.
    #[arg(long)]
    pub host_network: bool,
    /// Keep the container (and its logs) after it exits.
    #[arg(long)]
    pub keep: bool,
}

/// `edgectl secret ...`: values encrypted before they reach the replicated
/// state, never shown by any command.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret from FILE, or from standard input with `-` (at most 512 KiB).
    Create(ObjectPutArgs),
    /// Replace a secret's value: a new version.
    Update(ObjectPutArgs),
    /// Remove a secret.
    Rm(ObjectNameArgs),
    /// List the secrets (metadata only).
    Ls,
    /// Show a secret's metadata (never its value).
    Inspect(ObjectNameArgs),
    /// Make a new keyring data key and re-encrypt every secret under it.
    RotateKey,
}

/// `edgectl config ...`: versioned like secrets, stored unencrypted.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Create a config from FILE, or from standard input with `-` (at most 1 MiB).
    Create(ObjectPutArgs),
    /// Replace a config's value: a new version.
    Update(ObjectPutArgs),
    /// Remove a config.
    Rm(ObjectNameArgs),
    /// List the configs.
    Ls,
    /// Show a config's metadata, and its value with --show.
    Inspect {
        #[command(flatten)]
        object: ObjectNameArgs,
        /// Print the value too.
        #[arg(long)]
        show: bool,
    },
}

/// `edgectl volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume; its node is the one its first task is placed on.
    Create {
        /// Name: A-Z, a-z, 0-9, '_', '.', '-'; at most 63 characters.
        name: String,
        /// What backs it. `local` only in this version (one node's disk).
        #[arg(long, value_enum, default_value_t = VolumeDriverArg::Local)]
        driver: VolumeDriverArg,
        /// A size limit (e.g. 512Mi, 2Gi; at least 8Mi): the volume gets a
        /// filesystem of its own and writes past it fail with ENOSPC.
        #[arg(long)]
        size: Option<edgectl::model::MemoryBytes>,
    },
    /// List the volumes: driver, size, node, users.
    Ls,
    /// Show one volume.
    Inspect { name: String },
    /// Remove a volume (refused while a service uses it).
    Rm { name: String },
    /// Move a local volume to another node: its tasks stop, the data is
    /// copied over the cluster's blob path (resumable, digest-checked,
    /// under the upload cap), and the tasks start again there.
    Move {
        name: String,
        /// The node to move it to (name or id).
        #[arg(long)]
        to: String,
        /// Follow the move until it is done, with a progress display.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (e.g. 90s, 10m).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

/// The drivers `volume create --driver` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VolumeDriverArg {
    /// A directory (or, with --size, a filesystem image) on one node.
    Local,
}

#[derive(Debug, Args)]
pub struct ObjectPutArgs {
    /// Name: a-z, 0-9, '-', '_', '.'; at most 63 characters.
    pub name: String,
    /// File holding the value, or `-` for standard input.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ObjectNameArgs {
    pub name: String,
}

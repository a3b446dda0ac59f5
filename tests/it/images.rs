//! Images cluster-wide, end to end in process: a two-node cluster (real
//! RocksDB, real QUIC with mutual TLS on loopback, real image stores), an
//! image imported on node A and fetched blob by blob by node B from A over
//! the blob ALPN. Needs root (each node opens a container runtime).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support;
use edgectl::api::{ApiRequest, ApiResponse};
use edgectl::images::{self, ClusterImage, ImageError};
use edgectl::node::{init_data_dir, join_data_dir, Node, NodeConfig};
use edgectl::paths::DataDir;
use runtime::Digest;

/// Generous: two cores shared with every other build and test.
const CONVERGE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Runs `scenario` against a fresh two-node cluster, then stops both nodes
/// and removes their dirs and cgroup parents whatever the scenario did.
async fn with_cluster<F, Fut>(name: &str, scenario: F)
where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    with_nodes(name, 2, scenario).await;
}

/// `with_cluster` with `count` nodes (A, B, then `others`).
async fn with_nodes<F, Fut>(name: &str, count: usize, scenario: F)
where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    assert!(
        is_root(),
        "the images test needs root: every node opens a container runtime"
    );
    with_configured_nodes(name, count, |_, _| {}, scenario).await;
}

/// `with_nodes`, each node's config changed by `configure(index, config)`
/// first (A is index 0, B index 1).
async fn with_configured_nodes<F, Fut>(
    name: &str,
    count: usize,
    configure: fn(usize, &mut NodeConfig),
    scenario: F,
) where
    F: FnOnce(Cluster) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let _one = support::IN_PROCESS_AGENTS.lock().await;
    let cluster = Cluster::start(name, count, configure).await;
    let nodes = cluster.nodes();
    let guard = cluster.guard.clone();
    let outcome = tokio::spawn(scenario(cluster)).await;
    for node in nodes {
        node.shutdown().await;
    }
    drop(guard);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[derive(Clone)]
struct Cluster {
    a: Node,
    b: Node,
    others: Vec<Node>,
    guard: Arc<Cleanup>,
}

impl Cluster {
    async fn start(name: &str, count: usize, configure: fn(usize, &mut NodeConfig)) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("edgectl-images-{name}-"))
            .tempdir()
            .unwrap();
        let guard = Arc::new(Cleanup {
            dir: Mutex::new(Some(dir)),
            cgroup_parents: Mutex::new(Vec::new()),
        });
        let root = guard.path();
        let data_a = DataDir::new(root.join("a"));
        let listen_a = support::free_udp_addr();
        init_data_dir(
            &data_a,
            "img-a",
            &listen_a,
            &listen_a,
            raft::transport::pki::LEAF_VALIDITY,
        )
        .unwrap();
        let mut config_a = NodeConfig::new(data_a);
        configure(0, &mut config_a);
        let a = Node::start(config_a).await.unwrap();
        guard.add_cgroup_parent(&a);
        let token = wait_for("a join token from node A", || {
            let a = a.clone();
            async move {
                match a
                    .request(ApiRequest::TokenCreate {
                        ttl_secs: 600,
                        description: "images test".into(),
                    })
                    .await
                {
                    Ok(ApiResponse::TokenCreated { token, .. }) => Some(token),
                    _ => None,
                }
            }
        })
        .await;
        let mut joined = Vec::new();
        for i in 1..count {
            let name = format!("img-{i}");
            let data = DataDir::new(root.join(&name));
            let listen = support::free_udp_addr();
            join_data_dir(&data, &listen_a, &token, &name, &listen, &listen)
                .await
                .unwrap();
            let mut config = NodeConfig::new(data);
            configure(i, &mut config);
            let node = Node::start(config).await.unwrap();
            guard.add_cgroup_parent(&node);
            joined.push(node);
        }
        let mut joined = joined.into_iter();
        let b = joined.next().expect("two nodes at least");
        assert_ne!(a.id(), b.id());
        Cluster {
            a,
            b,
            others: joined.collect(),
            guard,
        }
    }

    fn nodes(&self) -> Vec<Node> {
        let mut nodes = vec![self.a.clone(), self.b.clone()];
        nodes.extend(self.others.iter().cloned());
        nodes
    }
}

/// Removes the cluster's data dirs and the nodes' cgroup parents (Drop).
struct Cleanup {
    dir: Mutex<Option<tempfile::TempDir>>,
    cgroup_parents: Mutex<Vec<String>>,
}

impl Cleanup {
    fn path(&self) -> PathBuf {
        self.dir
            .lock()
            .unwrap()
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap()
    }
}

impl Cleanup {
    fn add_cgroup_parent(&self, node: &Node) {
        self.cgroup_parents
            .lock()
            .unwrap()
            .push(edgectl::node::cgroup_parent(node.identity()));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut dir) = self.dir.lock() {
            drop(dir.take());
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parents = self
                .cgroup_parents
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default();
            for parent in &parents {
                // Fails (and stays) only while a runtime still uses it.
                let _ = fs::remove_dir(hierarchy.path().join(parent));
            }
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The busybox archive (scripts/build-images.sh, built once per target dir).
fn busybox_tar() -> PathBuf {
    support::test_images_dir(env!("CARGO_TARGET_TMPDIR")).join("busybox.tar")
}

async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `node`'s replica has the record of `id` and `accept` holds.
async fn wait_record(
    node: &Node,
    id: &Digest,
    what: &str,
    accept: impl Fn(&ClusterImage) -> bool,
) -> ClusterImage {
    wait_for(what, || {
        let found = images::list(node.kv())
            .unwrap()
            .into_iter()
            .find(|i| &i.id == id && accept(i));
        async move { found }
    })
    .await
}

/// Imports busybox on A and waits until B's replica knows it.
async fn import_on_a(cluster: &Cluster) -> ClusterImage {
    let records = images::import_file(&cluster.a.images(), &busybox_tar())
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record = records[0].clone();
    assert_eq!(record.refs, vec!["busybox:latest".to_string()]);
    assert_eq!(record.holders, vec![cluster.a.id()]);
    wait_record(&cluster.b, &record.id, "B to see the image record", |_| {
        true
    })
    .await
}

fn store(node: &Node) -> Arc<runtime::Runtime> {
    node.runtime()
        .expect("agent enabled: the node has a runtime")
        .clone()
}

/// Leaves `bytes` in `node`'s partial file for `digest`, as a cut transfer would.
async fn write_partial(node: &Node, digest: &Digest, bytes: Vec<u8>) {
    let runtime = store(node);
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || {
        runtime
            .images()
            .partial_blob(&digest)
            .unwrap()
            .append(&bytes)
            .unwrap()
    })
    .await
    .unwrap();
}

fn tmp_entries(node: &Node) -> Vec<String> {
    fs::read_dir(store(node).root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn blob_file(node: &Node, digest: &Digest) -> PathBuf {
    store(node)
        .root()
        .join("images/blobs/sha256")
        .join(digest.hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_imported_on_a_is_fetched_by_b() {
    with_cluster("fetch", |cluster| async move {
        let (a, b) = (&cluster.a, &cluster.b);
        let record = import_on_a(&cluster).await;
        assert_eq!(record.blobs.len(), 3, "manifest, config, one layer");
        assert_eq!(
            record.size_bytes,
            record.blobs.iter().map(|b| b.size).sum::<u64>()
        );
        assert!(store(b).images().list().unwrap().is_empty());

        // Two calls at once on B: one fetch, the same id for both.
        let served_before = images::bytes_served(&a.images());
        let b_images = b.images();
        let (first, second) = tokio::join!(
            images::ensure_local(&b_images, "busybox"),
            images::ensure_local(&b_images, &record.id.hex()[..12]),
        );
        assert_eq!(first.unwrap(), record.id);
        assert_eq!(second.unwrap(), record.id);
        assert_eq!(
            images::bytes_served(&a.images()) - served_before,
            record.size_bytes,
            "every blob sent once"
        );
        let local = store(b).images().inspect("busybox:latest").unwrap();
        assert_eq!(local.id, record.id);
        assert_eq!(local.id, store(a).images().inspect("busybox").unwrap().id);
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));

        // B is a holder now, on both replicas.
        let both = {
            let mut ids = vec![a.id(), b.id()];
            ids.sort();
            ids
        };
        for node in [a, b] {
            wait_record(node, &record.id, "B listed as a holder", |r| r.holders == both).await;
        }
        // Already local: nothing to do, same answer.
        assert_eq!(
            images::ensure_local(&b.images(), "busybox:latest").await.unwrap(),
            record.id
        );
        // An image imported into B's store behind the cluster's back (the
        // daemon stopped) becomes known when B is asked for it.
        let b_runtime = store(b);
        let httpd_tar = busybox_tar().with_file_name("httpd.tar");
        let httpd = tokio::task::spawn_blocking(move || {
            b_runtime.images().import(&httpd_tar).unwrap().remove(0)
        })
        .await
        .unwrap();
        assert!(images::list(b.kv()).unwrap().iter().all(|r| r.id != httpd.id));
        assert_eq!(images::ensure_local(&b.images(), "httpd").await.unwrap(), httpd.id);
        wait_record(a, &httpd.id, "A to see B's httpd", |r| r.holders == vec![b.id()]).await;
        // Importing again on A changes nothing in the record.
        let again = images::import_file(&a.images(), &busybox_tar()).await.unwrap();
        assert_eq!(again[0].holders, both);

        // An unknown reference names what the cluster has.
        let err = images::ensure_local(&b.images(), "nginx:1.25").await.unwrap_err();
        assert!(matches!(err, ImageError::NotInCluster { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("image nginx:1.25 is not in the cluster; import it with `edgectl image import FILE` on any node"),
            "{message}"
        );
        assert!(message.contains("busybox:latest"), "{message}");
    })
    .await;
}

/// B's layer limit: below busybox's one layer (~1 MiB compressed), above
/// its manifest and config.
const SMALL_LAYER_MAX: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_smaller_limits_refuses_a_fetch_before_any_byte() {
    let smaller_limits_on_b = |index: usize, config: &mut NodeConfig| {
        if index == 1 {
            config.import_limits.layer_bytes_max = SMALL_LAYER_MAX;
        }
    };
    with_configured_nodes("limits", 2, smaller_limits_on_b, |cluster| async move {
        let (a, b) = (&cluster.a, &cluster.b);
        let record = import_on_a(&cluster).await;
        let layer = record.blobs[2].clone();
        assert!(
            layer.size > SMALL_LAYER_MAX,
            "the fixture's layer is {} bytes",
            layer.size
        );

        let served_before = images::bytes_served(&a.images());
        let err = images::ensure_local(&b.images(), "busybox")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Store(runtime::Error::ImportLimit {
                    limit: runtime::Limit::LayerBytes,
                    ..
                })
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains(&layer.digest.to_string()), "{message}");
        assert!(message.contains("--import-layer-max"), "{message}");
        assert_eq!(
            images::bytes_served(&a.images()),
            served_before,
            "A sent bytes for a fetch B was bound to refuse"
        );
        for blob in &record.blobs {
            assert!(!blob_file(b, &blob.digest).exists(), "{} on B", blob.digest);
        }
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_transfer_resumes_from_the_partial_file() {
    with_cluster("resume", |cluster| async move {
        let (a, b) = (&cluster.a, &cluster.b);
        let record = import_on_a(&cluster).await;
        let layer = record.blobs[2].clone();
        let bytes = fs::read(blob_file(a, &layer.digest)).unwrap();
        assert_eq!(bytes.len() as u64, layer.size);
        let half = bytes.len() / 2;

        // What a transfer cut halfway leaves behind on B.
        write_partial(b, &layer.digest, bytes[..half].to_vec()).await;

        let fetch = images::fetch_blob(&b.images(), &layer.digest, layer.size, &[a.id()])
            .await
            .unwrap();
        assert_eq!(fetch.resumed_from, half as u64);
        assert_eq!(
            fetch.bytes_received,
            layer.size - half as u64,
            "only the rest"
        );
        assert_eq!(fetch.holder, Some(a.id()));
        assert_eq!(fs::read(blob_file(b, &layer.digest)).unwrap(), bytes);
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));

        // The rest of the image comes along; the layer is not fetched again.
        assert_eq!(
            images::ensure_local(&b.images(), "busybox").await.unwrap(),
            record.id
        );
        let info = store(b).images().inspect("busybox").unwrap();
        assert_eq!(info.layers[0].digest, layer.digest);
        let again = images::fetch_blob(&b.images(), &layer.digest, layer.size, &[a.id()])
            .await
            .unwrap();
        assert_eq!(again.bytes_received, 0, "held already");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_bytes_are_refused_and_leave_the_store_as_it_was() {
    with_cluster("corrupt", |cluster| async move {
        let (a, b) = (&cluster.a, &cluster.b);
        let record = import_on_a(&cluster).await;
        let layer = record.blobs[2].clone();
        let a_file = blob_file(a, &layer.digest);
        let good = fs::read(&a_file).unwrap();
        let index_path = store(b).root().join("images/index.json");
        let index_before = fs::read(&index_path).unwrap();

        // A holder whose blob is not the size the record says is refused
        // before a byte is written.
        let config = record.blobs[1].clone();
        let err = images::fetch_blob(&b.images(), &config.digest, config.size - 1, &[a.id()])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "holder has {} bytes where the image record says {}",
                config.size,
                config.size - 1
            )),
            "{err}"
        );
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));

        // A's copy rots on disk (same size, one byte flipped).
        let mut rotten = good.clone();
        let middle = rotten.len() / 2;
        rotten[middle] ^= 0xff;
        fs::write(&a_file, &rotten).unwrap();
        let err = images::ensure_local(&b.images(), "busybox")
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ImageError::Fetch { .. }), "{message}");
        assert!(
            message.starts_with(&format!(
                "cannot fetch blob {} of image busybox:latest: node {}",
                layer.digest,
                a.id()
            )),
            "{message}"
        );
        assert!(message.contains(&layer.digest.to_string()), "{message}");
        assert!(message.contains("digest mismatch"), "{message}");
        assert!(message.contains(&format!("node {}", a.id())), "{message}");
        // B's store is as it was: no image, no layer, no such blob, no partial.
        assert!(store(b).images().list().unwrap().is_empty());
        assert_eq!(fs::read(&index_path).unwrap(), index_before);
        assert!(!blob_file(b, &layer.digest).exists());
        assert_eq!(
            fs::read_dir(store(b).root().join("layers"))
                .unwrap()
                .count(),
            0
        );
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));
        let record_now = images::list(b.kv()).unwrap();
        assert_eq!(record_now[0].holders, vec![a.id()], "B is no holder");

        // A's copy repaired; B's partial file holds a corrupted first half
        // (e.g. a disk error before a crash): the finished blob does not
        // verify, so B starts over from zero and gets it right.
        fs::write(&a_file, &good).unwrap();
        let half = good.len() / 2;
        let mut bad_half = good[..half].to_vec();
        bad_half[half / 2] ^= 0xff;
        write_partial(b, &layer.digest, bad_half).await;
        let fetch = images::fetch_blob(&b.images(), &layer.digest, layer.size, &[a.id()])
            .await
            .unwrap();
        assert_eq!(
            fetch.bytes_received,
            (good.len() - half + good.len()) as u64,
            "the rest, then the whole blob again"
        );
        assert_eq!(fs::read(blob_file(b, &layer.digest)).unwrap(), good);
        assert_eq!(
            images::ensure_local(&b.images(), "busybox").await.unwrap(),
            record.id
        );

        // A holder that does not have the blob says so.
        let stranger: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        let err = images::fetch_blob(&b.images(), &stranger, 10, &[a.id()])
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("node {} does not hold blob {stranger}", a.id())),
            "{err}"
        );
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));
    })
    .await;
}

/// `edgectl --data-dir <node dir> image import|ls`: the command goes through
/// the running node, so the image is recorded cluster-wide and B can fetch it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_import_goes_through_the_node_living_in_the_data_dir() {
    with_cluster("cli", |cluster| async move {
        let (a, b) = (&cluster.a, &cluster.b);
        let data_dir = a.config().data_dir.root().to_owned();
        let home = cluster.guard.path().join("home");
        fs::create_dir_all(&home).unwrap();
        let edgectl = move |args: &[&str]| {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgectl"))
                .env("HOME", &home)
                .arg("--data-dir")
                .arg(&data_dir)
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "edgectl {args:?} failed:\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let tar = busybox_tar().display().to_string();
        let printed = tokio::task::spawn_blocking(move || {
            let imported = edgectl(&["image", "import", &tar]);
            let listed = edgectl(&["image", "ls", "-o", "json"]);
            (imported, listed)
        })
        .await
        .unwrap();
        let (imported, listed) = printed;
        assert!(
            imported.starts_with("imported busybox:latest sha256:"),
            "{imported}"
        );
        assert!(imported.contains("into the cluster"), "{imported}");
        let records: Vec<ClusterImage> = serde_json::from_str(&listed).unwrap();
        assert_eq!(records.len(), 1, "{listed}");
        assert_eq!(records[0].holders, vec![a.id()]);
        wait_record(b, &records[0].id, "B to see the image record", |_| true).await;
        assert_eq!(
            images::ensure_local(&b.images(), "busybox").await.unwrap(),
            records[0].id
        );
    })
    .await;
}

/// A holder dies halfway through sending a layer: the receiver carries on
/// from the bytes it has, from the other holder, and the blob verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_cut_by_a_dying_holder_resumes_from_another() {
    with_nodes("cut", 3, |cluster| async move {
        let (a, b, c) = (&cluster.a, &cluster.b, &cluster.others[0]);
        let record = import_on_a(&cluster).await;
        images::import_file(&c.images(), &busybox_tar())
            .await
            .unwrap();
        let mut both = vec![a.id(), c.id()];
        both.sort();
        wait_record(b, &record.id, "B to see A and C as holders", |r| {
            r.holders == both
        })
        .await;
        let layer = record.blobs[2].clone();
        let good = fs::read(blob_file(a, &layer.digest)).unwrap();

        // A sends slowly enough to be cut midway (a few chunks a second).
        images::set_upload_rate_cap(&a.images(), Some(256 * 1024));
        let partial = store(b)
            .root()
            .join("tmp")
            .join(format!("partial-{}", layer.digest.hex()));
        let fetch = {
            let (b, digest, holders) = (b.clone(), layer.digest.clone(), vec![a.id(), c.id()]);
            tokio::spawn(async move {
                images::fetch_blob(&b.images(), &digest, layer.size, &holders).await
            })
        };
        wait_for("B to have received part of the layer from A", || {
            let len = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            async move { (len > 0).then_some(len) }
        })
        .await;
        a.shutdown().await;
        let fetch = fetch.await.unwrap().unwrap();
        images::set_upload_rate_cap(&a.images(), None);

        assert_eq!(fetch.transfers.len(), 2, "{fetch:?}");
        let (first, from_a) = fetch.transfers[0];
        let (second, from_c) = fetch.transfers[1];
        assert_eq!((first, second), (a.id(), c.id()), "{fetch:?}");
        assert!(from_a > 0 && from_a < layer.size, "{fetch:?}");
        assert_eq!(
            from_a + from_c,
            layer.size,
            "nothing fetched twice: {fetch:?}"
        );
        assert_eq!(fetch.bytes_received, layer.size);
        assert_eq!(fetch.holder, Some(c.id()));
        assert_eq!(fs::read(blob_file(b, &layer.digest)).unwrap(), good);

        // The rest of the image comes from C while A stays down.
        assert_eq!(
            images::ensure_local(&b.images(), "busybox").await.unwrap(),
            record.id
        );
        assert_eq!(store(b).images().inspect("busybox").unwrap().id, record.id);
    })
    .await;
}

/// Builds an OCI layout directory holding one image `name:latest` with one
/// uncompressed layer: a file of `bytes` random bytes.
fn random_image_layout(root: &Path, name: &str, bytes: usize) -> PathBuf {
    use rand::RngCore;
    use sha2::{Digest as _, Sha256};
    let sha = |data: &[u8]| hex::encode(Sha256::digest(data));
    let content = root.join("content");
    fs::create_dir_all(&content).unwrap();
    let mut data = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut data);
    fs::write(content.join("payload"), &data).unwrap();
    let layer_path = root.join("layer.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&content)
        .arg("-cf")
        .arg(&layer_path)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let layer = fs::read(&layer_path).unwrap();
    let layout = root.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let hex = sha(data);
        fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/payload"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": format!("{name}:latest")}}],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

/// A 64 MiB layer crosses over loopback QUIC intact; the rate is printed
/// (a figure for the report, not a pass/fail criterion).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_layer_arrives_intact() {
    with_cluster("large", |cluster| async move {
        const LAYER_BYTES: usize = 64 * 1024 * 1024;
        let (a, b) = (&cluster.a, &cluster.b);
        let layout = random_image_layout(&cluster.guard.path().join("big"), "big", LAYER_BYTES);
        let record = images::import_file(&a.images(), &layout).await.unwrap().remove(0);
        assert_eq!(record.refs, vec!["big:latest".to_string()]);
        wait_record(b, &record.id, "B to see the big image", |_| true).await;
        let layer = record.blobs[2].clone();
        assert!(layer.size > LAYER_BYTES as u64);
        let started = std::time::Instant::now();
        let fetch = images::fetch_blob(&b.images(), &layer.digest, layer.size, &[a.id()])
            .await
            .unwrap();
        let fetched = started.elapsed();
        assert_eq!(fetch.bytes_received, layer.size);
        let started = std::time::Instant::now();
        assert_eq!(images::ensure_local(&b.images(), "big").await.unwrap(), record.id);
        let imported = started.elapsed();
        assert_eq!(
            fs::read(blob_file(b, &layer.digest)).unwrap(),
            fs::read(blob_file(a, &layer.digest)).unwrap()
        );
        let mib = layer.size as f64 / (1024.0 * 1024.0);
        eprintln!(
            "large_layer_arrives_intact: layer of {:.1} MiB fetched and verified in {:.2} s ({:.1} MiB/s); \
             then re-verified, unpacked and registered in {:.2} s",
            mib,
            fetched.as_secs_f64(),
            mib / fetched.as_secs_f64(),
            imported.as_secs_f64()
        );
    })
    .await;
}

/// A fetch cancelled mid-stream (the caller gave up, the daemon stopped)
/// leaves what it wrote; the next fetch resumes from there, from the same
/// holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_fetch_resumes_from_what_it_wrote() {
    with_cluster("cancel", |cluster| async move {
        let (a, b) = (&cluster.a, &cluster.b);
        let record = import_on_a(&cluster).await;
        let layer = record.blobs[2].clone();
        images::set_upload_rate_cap(&a.images(), Some(256 * 1024));
        let partial = store(b)
            .root()
            .join("tmp")
            .join(format!("partial-{}", layer.digest.hex()));
        let first = {
            let (b, digest, holders) = (b.clone(), layer.digest.clone(), vec![a.id()]);
            tokio::spawn(async move {
                images::fetch_blob(&b.images(), &digest, layer.size, &holders).await
            })
        };
        let seen = wait_for("B to have written part of the layer", || {
            let len = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            async move { (len > 0).then_some(len) }
        })
        .await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        images::set_upload_rate_cap(&a.images(), None);

        let fetch = images::fetch_blob(&b.images(), &layer.digest, layer.size, &[a.id()])
            .await
            .unwrap();
        assert!(
            fetch.resumed_from >= seen && fetch.resumed_from < layer.size,
            "{fetch:?} after {seen} bytes seen"
        );
        assert_eq!(fetch.bytes_received, layer.size - fetch.resumed_from);
        assert_eq!(fetch.transfers, vec![(a.id(), fetch.bytes_received)]);
        assert_eq!(
            fs::read(blob_file(b, &layer.digest)).unwrap(),
            fs::read(blob_file(a, &layer.digest)).unwrap()
        );
        assert!(tmp_entries(b).is_empty(), "{:?}", tmp_entries(b));
    })
    .await;
}

/// Known content imported under a new name is reported under that name
/// (the record keeps every name, sorted) and the new name is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retag_is_reported_under_the_new_name() {
    with_cluster("retag", |cluster| async move {
        let work = cluster.guard.path().join("retag-work");
        let layout = random_image_layout(&work, "control", 4096);
        let first = images::import_file(&cluster.a.images(), &layout)
            .await
            .unwrap();
        assert_eq!(first[0].display_name(), "control:latest");
        // The same manifest, named otherwise in the layout's index.
        let index_path = layout.join("index.json");
        let index = fs::read_to_string(&index_path).unwrap();
        fs::write(&index_path, index.replace("control:latest", "retag:latest")).unwrap();
        let second = images::import_file(&cluster.a.images(), &layout)
            .await
            .unwrap();
        assert_eq!(second[0].id, first[0].id);
        assert_eq!(
            second[0].display_name(),
            "retag:latest",
            "{:?}",
            second[0].refs
        );
        let mut names = second[0].refs.clone();
        names.sort();
        assert_eq!(names, ["control:latest", "retag:latest"]);
    })
    .await;
}

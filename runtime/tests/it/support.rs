//! Shared fixtures: the busybox images (built once by scripts/build-images.sh),
//! a `Runtime` per test over its own temp dir and cgroup parent, tar/OCI
//! builders for hand-made images, and the leak checks every test ends with.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use runtime::{ContainerSpec, Runtime, RuntimeOptions};
use sha2::{Digest as _, Sha256};

pub fn images_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "runtime integration tests need root (real containers)"
        );
        // Built once per target dir and reused: the archives are
        // reproducible. Built aside and renamed, so parallel runs never see
        // a half-written set.
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = tmp.join("edgectl-rt-images");
        if out.join("httpd.tar").exists() {
            return out;
        }
        let staging = tmp.join(format!("edgectl-rt-images-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(&staging)
            .status()
            .unwrap();
        assert!(status.success(), "build-images.sh failed");
        if fs::rename(&staging, &out).is_err() {
            // Another run got there first; its set is identical.
            let _ = fs::remove_dir_all(&staging);
        }
        out
    })
}

pub fn busybox_tar() -> PathBuf {
    images_dir().join("busybox.tar")
}

pub fn httpd_tar() -> PathBuf {
    images_dir().join("httpd.tar")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub rt: Option<Runtime>,
    pub cgroup_parent: String,
}

impl Env {
    pub fn new(name: &str) -> Env {
        Self::with_options(name, |_| {})
    }

    pub fn with_options(name: &str, tweak: impl FnOnce(&mut RuntimeOptions)) -> Env {
        images_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("edgectl-rt-{name}-"))
            .tempdir()
            .unwrap();
        let cgroup_parent = format!("edgectl-test-{name}-{}", std::process::id());
        let mut options = RuntimeOptions {
            cgroup_parent: cgroup_parent.clone(),
            ..RuntimeOptions::default()
        };
        tweak(&mut options);
        let rt = Runtime::open(dir.path(), options).unwrap();
        Env {
            dir,
            rt: Some(rt),
            cgroup_parent,
        }
    }

    pub fn rt(&self) -> &Runtime {
        self.rt.as_ref().unwrap()
    }

    pub fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            cgroup_parent: self.cgroup_parent.clone(),
            ..RuntimeOptions::default()
        }
    }

    pub fn import_busybox(&self) -> runtime::ImageInfo {
        self.rt().images().import(&busybox_tar()).unwrap().remove(0)
    }

    pub fn spec(&self, id: &str, command: &[&str]) -> ContainerSpec {
        ContainerSpec {
            id: id.to_owned(),
            image: "busybox:latest".to_owned(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    /// create + start + wait; returns the exit status and stdout lines.
    pub fn run(&self, spec: ContainerSpec) -> (runtime::ExitStatus, Vec<String>) {
        let rt = self.rt();
        let id = rt.create(spec).unwrap();
        rt.start(&id).unwrap();
        let status = rt.wait(&id).unwrap();
        let lines = rt
            .logs(&id)
            .unwrap()
            .into_iter()
            .filter(|l| l.stream == runtime::Stream::Stdout)
            .map(|l| l.text)
            .collect();
        (status, lines)
    }

    /// Deletes every container, then asserts nothing is left behind: no
    /// mount under the data dir, no cgroup, no container directory.
    pub fn finish(mut self) {
        self.cleanup();
        let rt = self.rt.take().unwrap();
        let layout = rt.cgroup_layout().cloned();
        drop(rt);
        assert_no_leftovers(self.dir.path(), &self.cgroup_parent, layout.as_ref());
    }

    fn cleanup(&mut self) {
        if let Some(rt) = &self.rt {
            if let Ok(list) = rt.list() {
                for c in list {
                    let _ = rt.delete(&c.id);
                }
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A failed test still cleans up: kill and delete its containers and
        // unmount anything under its dir before the temp dir is removed.
        self.cleanup();
        if let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") {
            for line in mounts.lines() {
                if let Some(point) = line.split(' ').nth(4) {
                    if point.starts_with(&self.dir.path().display().to_string()) {
                        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
                    }
                }
            }
        }
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(hierarchy.path().join(&self.cgroup_parent));
        }
    }
}

pub fn assert_no_leftovers(
    dir: &Path,
    cgroup_parent: &str,
    layout: Option<&runtime::CgroupLayout>,
) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir_str = dir.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&dir_str)),
        "a mount under {dir_str} was left behind"
    );
    if let Some(layout) = layout {
        for d in layout.all_dirs(&format!("/{cgroup_parent}")) {
            assert!(!d.exists(), "cgroup {} was left behind", d.display());
        }
    }
    // No process of ours survives in (or was moved out of) our cgroups.
    let stray: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            fs::read_to_string(e.path().join("cgroup"))
                .map(|c| c.contains(&format!("/{cgroup_parent}/")))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(stray.is_empty(), "processes left in our cgroups: {stray:?}");
    let containers = dir.join("runtime/containers");
    let left: Vec<_> = fs::read_dir(&containers)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "container dirs left: {left:?}");
    let state: Vec<_> = fs::read_dir(dir.join("runtime/state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(state.is_empty(), "libcontainer state left: {state:?}");
    // Deleted containers' dirs are reclaimed by the time the runtime is dropped.
    let trash = dir.join("runtime/trash");
    let trashed: Vec<_> = fs::read_dir(&trash)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        trashed.is_empty(),
        "deleted container dirs left: {trashed:?}"
    );
}

/// A snapshot of every path and file digest under the store, to prove a
/// failed import changed nothing.
pub fn store_snapshot(rt: &Runtime) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for sub in ["images", "layers"] {
        walk(&rt.root().join(sub), rt.root(), &mut out);
    }
    out.sort();
    out
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if rel.ends_with(".lock") {
            continue;
        }
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.push((rel, "dir".into()));
            walk(&p, root, out);
        } else if meta.is_file() {
            out.push((rel, hex::encode(Sha256::digest(fs::read(&p).unwrap()))));
        } else {
            out.push((rel, "other".into()));
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One tar entry for a hand-made layer; `name` is written raw into the
/// header so tests can forge `../` and absolute names.
pub enum Entry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

pub fn layer_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match entry {
            Entry::File(name, data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (name, data)
            }
            Entry::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (name, &[])
            }
            Entry::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                let bytes = target.as_bytes();
                header.as_old_mut().linkname[..bytes.len()].copy_from_slice(bytes);
                (name, &[])
            }
        };
        let raw = name.as_bytes();
        header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub struct LayoutImage {
    pub layers: Vec<Vec<u8>>,
    pub process: serde_json::Value,
    pub layer_media_type: String,
    pub name: String,
}

/// Writes an OCI layout directory; returns the path. The diff ids are the
/// layer digests (right for uncompressed layers).
pub fn write_layout(dir: &Path, image: &LayoutImage) -> PathBuf {
    let diff_ids: Vec<String> = image
        .layers
        .iter()
        .map(|layer| format!("sha256:{}", sha256_hex(layer)))
        .collect();
    write_layout_with_diff_ids(dir, image, &diff_ids)
}

/// Writes an OCI layout directory whose config lists `diff_ids`.
pub fn write_layout_with_diff_ids(dir: &Path, image: &LayoutImage, diff_ids: &[String]) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let mut layer_descs = Vec::new();
    for layer in &image.layers {
        let digest = sha256_hex(layer);
        fs::write(blobs.join(&digest), layer).unwrap();
        layer_descs.push(serde_json::json!({"mediaType": image.layer_media_type, "digest": format!("sha256:{digest}"), "size": layer.len()}));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": image.process,
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_digest = sha256_hex(&config);
    fs::write(blobs.join(&config_digest), &config).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": layer_descs
    }))
    .unwrap();
    let manifest_digest = sha256_hex(&manifest);
    fs::write(blobs.join(&manifest_digest), &manifest).unwrap();
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_digest}"), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": image.name}}]
        }))
        .unwrap(),
    )
    .unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    dir.to_owned()
}

/// Tars a directory (an OCI layout or docker save tree) into `dest`.
pub fn tar_dir(src: &Path, dest: &Path) {
    let file = fs::File::create(dest).unwrap();
    let mut builder = tar::Builder::new(file);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", src).unwrap();
    builder.into_inner().unwrap().flush().unwrap();
}

/// The busybox layer blob, read out of the busybox OCI archive.
pub fn busybox_layer() -> Vec<u8> {
    let mut archive = tar::Archive::new(fs::File::open(busybox_tar()).unwrap());
    let mut biggest = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.size() as usize > biggest.len() {
            biggest.clear();
            std::io::Read::read_to_end(&mut entry, &mut biggest).unwrap();
        }
    }
    biggest
}

/// Polls `condition` until it holds; panics after 20 s. For readiness only
/// (a process installed its trap, a line reached the log), never timing.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits until the container's log has a line equal to `text`.
pub fn wait_for_line(rt: &Runtime, id: &str, text: &str) {
    wait_until(&format!("{text:?} in the log of {id}"), || {
        rt.logs(id).unwrap().iter().any(|l| l.text == text)
    });
}

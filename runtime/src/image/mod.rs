//! The image store: an OCI image layout under `<root>/images` (blobs named by
//! digest plus an `index.json` naming the images), and the unpacked layers
//! under `<root>/layers/<blob hex>`, each unpacked once and shared by every
//! container through overlayfs. Importing is all-or-nothing: blobs and
//! layers added by a failed import are removed again, and `index.json` is
//! replaced atomically only once everything is verified and unpacked.
//!
//! Images also arrive blob by blob from peers (the cluster's image module
//! does the networking): each blob grows in `<root>/tmp/partial-<hex>`
//! (kept across restarts, so a cut transfer resumes) and enters the blob
//! directory only once it hashes to its digest; `import_from_blobs` then
//! checks and unpacks the image as an archive import would.
//!
//! This module knows nothing of containers except that it reads their
//! records to refuse removing an image in use.

mod fuzzing;
mod import;
mod limits;
pub(crate) mod oci;
mod partial;
mod unpack;

pub use fuzzing::ImportFuzzer;
pub use limits::{ImportLimits, Limit, DISK_RESERVE_BYTES_DEFAULT};
pub use partial::PartialBlob;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};
use oci::{ConfigFile, Index, Manifest};

/// The parts of an image's config that shape a container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`, if set.
    pub working_dir: Option<String>,
    /// `User`, if set (`uid[:gid]` or a name).
    pub user: Option<String>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Blob size in bytes.
    pub size_bytes: u64,
    /// The blob's media type.
    pub media_type: String,
}

/// What `list` and `inspect` return for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image id: the digest of its manifest.
    pub id: Digest,
    /// Names (`name:tag`) that point at it.
    pub refs: Vec<String>,
    /// Digest of the config blob.
    pub config_digest: Digest,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// Manifest + config + layer blob sizes.
    pub size_bytes: u64,
    /// `created` from the config.
    pub created: Option<String>,
    /// `architecture` from the config.
    pub architecture: Option<String>,
    /// `os` from the config.
    pub os: Option<String>,
    /// Process defaults.
    pub config: ImageConfig,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Unpacked layer directories deleted.
    pub layers_removed: usize,
    /// Bytes of blobs freed.
    pub bytes_freed: u64,
}

/// The node's image store. Safe to share between threads; operations that
/// change the store hold an in-process mutex and a file lock (`FileLock`).
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    mutex: Mutex<()>,
    limits: ImportLimits,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `runtime_root`; imports
    /// are held to `limits`.
    pub(crate) fn open(runtime_root: &Path, limits: ImportLimits) -> Result<ImageStore> {
        let store = ImageStore {
            root: runtime_root.to_owned(),
            mutex: Mutex::new(()),
            limits,
        };
        for dir in [store.blob_dir(), store.layers_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        }
        let layout = store.images_dir().join("oci-layout");
        if !layout.exists() {
            fsutil::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.index_path().exists() {
            store.write_index(&Index {
                schema_version: 2,
                media_type: Some(oci::MEDIA_INDEX.to_owned()),
                manifests: Vec::new(),
            })?;
        }
        // Leftovers of an import that crashed midway: nothing references
        // them. Under the lock, so that a CLI opening the store never
        // removes the staging of a daemon's import in progress.
        {
            let _lock = store.lock()?;
            if let Ok(entries) = fs::read_dir(store.tmp_dir()) {
                for entry in entries.flatten() {
                    // Partial blobs are kept: a fetch resumes from them.
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(partial::PARTIAL_PREFIX)
                    {
                        continue;
                    }
                    let path = entry.path();
                    let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
                }
            }
        }
        Ok(store)
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    fn blob_dir(&self) -> PathBuf {
        self.images_dir().join("blobs").join("sha256")
    }
    pub(crate) fn blob_file(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }
    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// The unpacked directory of a layer blob.
    pub(crate) fn layer_path(&self, digest: &Digest) -> PathBuf {
        self.layers_dir().join(digest.hex())
    }
    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    fn index_path(&self) -> PathBuf {
        self.images_dir().join("index.json")
    }
    pub(crate) fn lock(&self) -> Result<(std::sync::MutexGuard<'_, ()>, FileLock)> {
        // A poisoned mutex only means another thread panicked mid-operation;
        // the on-disk store is still consistent (atomic renames), so go on.
        let guard = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        let file_lock = FileLock::acquire(&self.images_dir().join(".lock"))?;
        Ok((guard, file_lock))
    }

    pub(crate) fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = fs::read(&path).ctx("read", &path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| Error::Json {
            what: "index.json".to_owned(),
            source,
        })?;
        fsutil::write_atomic(&self.index_path(), &bytes)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest, what: &str) -> Result<T> {
        let path = self.blob_file(digest);
        let bytes = fs::read(&path).ctx("read blob", &path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("{what} {digest}"),
            source,
        })
    }

    /// Imports an OCI image archive (tar, optionally gzip), an OCI layout
    /// directory, or a `docker save` tarball, within the store's
    /// `ImportLimits`. Returns every image it named; each one's `refs` start
    /// with the names the archive gave it (so content the store held under
    /// another name is reported under the name just added), then its other
    /// names. On any error the store is left exactly as it was.
    pub fn import(&self, path: &Path) -> Result<Vec<ImageInfo>> {
        let _lock = self.lock()?;
        let imported = import::import(self, path)?;
        let mut infos = Vec::new();
        for image in imported {
            let mut info = self.info_unlocked(&image.id)?;
            let others: Vec<String> = info
                .refs
                .drain(..)
                .filter(|name| !image.refs.contains(name))
                .collect();
            info.refs = image.refs;
            info.refs.dedup();
            info.refs.extend(others);
            infos.push(info);
        }
        Ok(infos)
    }

    /// The limits imports are held to.
    pub fn limits(&self) -> &ImportLimits {
        &self.limits
    }

    /// The file of a blob the store holds (verified when it entered), for
    /// serving it to peers; None when the store does not hold it.
    pub fn blob_path(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.blob_file(digest);
        path.is_file().then_some(path)
    }

    /// The partial file of a blob being received (created empty if absent),
    /// to resume a transfer from its length. One writer per digest at a time.
    pub fn partial_blob(&self, digest: &Digest) -> Result<PartialBlob> {
        PartialBlob::open(self, digest)
    }

    /// Adds the image whose manifest is `manifest` once its manifest, config
    /// and layer blobs are all in the blob directory (see `partial_blob`):
    /// verified like an archive import, missing layers unpacked, named
    /// `refs` in the index. All-or-nothing for the index and the layers.
    pub fn import_from_blobs(&self, manifest: &Digest, refs: &[String]) -> Result<ImageInfo> {
        let _lock = self.lock()?;
        let id = import::import_from_blobs(self, manifest, refs)?;
        self.info_unlocked(&id)
    }

    /// The blobs of an image held in the store: manifest, config, then the
    /// layers bottom first, each with its size in bytes.
    pub fn blobs_of(&self, id: &Digest) -> Result<Vec<(Digest, u64)>> {
        let manifest_path = self.blob_file(id);
        let manifest_size = fs::metadata(&manifest_path)
            .ctx("stat blob", &manifest_path)?
            .len();
        let manifest: Manifest = self.read_json(id, "manifest")?;
        let mut blobs = vec![
            (id.clone(), manifest_size),
            (manifest.config.digest.clone(), manifest.config.size),
        ];
        blobs.extend(manifest.layers.iter().map(|l| (l.digest.clone(), l.size)));
        Ok(blobs)
    }

    /// Every image in the store, sorted by first name.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let index = self.read_index()?;
        let mut ids: Vec<Digest> = Vec::new();
        for descriptor in &index.manifests {
            if !ids.contains(&descriptor.digest) {
                ids.push(descriptor.digest.clone());
            }
        }
        let mut infos = Vec::new();
        for id in ids {
            infos.push(self.info_from_index(&index, &id)?);
        }
        infos.sort_by(|a, b| a.refs.first().cmp(&b.refs.first()).then(a.id.cmp(&b.id)));
        Ok(infos)
    }

    /// Resolves `name:tag`, `name` (meaning `name:latest`), `sha256:<hex>` or
    /// a hex prefix of at least 4 characters of the image id.
    pub fn resolve(&self, reference: &str) -> Result<Digest> {
        let index = self.read_index()?;
        resolve_in(&index, reference)
    }

    /// Details of one image.
    pub fn inspect(&self, reference: &str) -> Result<ImageInfo> {
        let index = self.read_index()?;
        let id = resolve_in(&index, reference)?;
        self.info_from_index(&index, &id)
    }

    fn info_unlocked(&self, id: &Digest) -> Result<ImageInfo> {
        let index = self.read_index()?;
        self.info_from_index(&index, id)
    }

    fn info_from_index(&self, index: &Index, id: &Digest) -> Result<ImageInfo> {
        let refs: Vec<String> = index
            .manifests
            .iter()
            .filter(|d| &d.digest == id)
            .filter_map(|d| {
                d.annotations
                    .as_ref()?
                    .get(oci::ANNOTATION_REF_NAME)
                    .cloned()
            })
            .collect();
        let manifest_size = fs::metadata(self.blob_file(id))
            .ctx("stat blob", self.blob_file(id))?
            .len();
        let manifest: Manifest = self.read_json(id, "manifest")?;
        let config_file: ConfigFile = self.read_json(&manifest.config.digest, "config")?;
        let process = config_file.config.clone().unwrap_or_default();
        let layers = manifest
            .layers
            .iter()
            .zip(config_file.rootfs.diff_ids.iter())
            .map(|(l, diff_id)| LayerInfo {
                digest: l.digest.clone(),
                diff_id: diff_id.clone(),
                size_bytes: l.size,
                media_type: l.media_type.clone(),
            })
            .collect::<Vec<_>>();
        let size_bytes =
            manifest_size + manifest.config.size + layers.iter().map(|l| l.size_bytes).sum::<u64>();
        Ok(ImageInfo {
            id: id.clone(),
            refs,
            config_digest: manifest.config.digest.clone(),
            layers,
            size_bytes,
            created: config_file.created,
            architecture: config_file.architecture,
            os: config_file.os,
            config: ImageConfig {
                entrypoint: process.entrypoint.unwrap_or_default(),
                cmd: process.cmd.unwrap_or_default(),
                env: process.env.unwrap_or_default(),
                working_dir: process.working_dir.filter(|w| !w.is_empty()),
                user: process.user.filter(|u| !u.is_empty()),
            },
        })
    }

    /// Removes a name, or (given an id) every name of an image, then
    /// garbage-collects the blobs and layers nothing references any more.
    /// Refused while a container of this runtime uses the image.
    pub fn remove(&self, reference: &str) -> Result<GcReport> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let id = resolve_in(&index, reference)?;
        let by_name = index
            .manifests
            .iter()
            .any(|d| ref_name(d).as_deref() == Some(normalize_ref(reference).as_str()));
        let names_left = index.manifests.iter().filter(|d| d.digest == id).count();
        let removes_image = !by_name || names_left <= 1;
        if removes_image {
            if let Some(container) = crate::container::container_using_image(&self.root, &id)? {
                return Err(Error::ImageInUse {
                    image: id.to_string(),
                    container,
                });
            }
            index.manifests.retain(|d| d.digest != id);
        } else {
            let wanted = normalize_ref(reference);
            index
                .manifests
                .retain(|d| ref_name(d).as_deref() != Some(wanted.as_str()));
        }
        self.write_index(&index)?;
        self.gc_unlocked()
    }

    /// Deletes every blob and unpacked layer no image in the index reaches.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock()?;
        self.gc_unlocked()
    }

    fn gc_unlocked(&self) -> Result<GcReport> {
        let index = self.read_index()?;
        let mut keep_blobs: BTreeSet<String> = BTreeSet::new();
        for descriptor in &index.manifests {
            keep_blobs.insert(descriptor.digest.hex().to_owned());
            // A manifest we cannot read is kept whole rather than guessed at.
            let manifest: Manifest = match self.read_json(&descriptor.digest, "manifest") {
                Ok(m) => m,
                Err(_) => continue,
            };
            keep_blobs.insert(manifest.config.digest.hex().to_owned());
            for layer in &manifest.layers {
                keep_blobs.insert(layer.digest.hex().to_owned());
            }
        }
        let mut report = GcReport::default();
        let blob_dir = self.blob_dir();
        for entry in fs::read_dir(&blob_dir).ctx("list", &blob_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                report.bytes_freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fsutil::remove_file_if_exists(&entry.path())?;
                report.blobs_removed += 1;
            }
        }
        // Partial blobs nobody has resumed for a long time; recent ones may
        // belong to a transfer in progress (possibly in another process).
        let now = std::time::SystemTime::now();
        if let Ok(entries) = fs::read_dir(self.tmp_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if partial::is_stale_partial(&name, &entry.path(), now) {
                    report.bytes_freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    fsutil::remove_file_if_exists(&entry.path())?;
                }
            }
        }
        let layers_dir = self.layers_dir();
        for entry in fs::read_dir(&layers_dir)
            .ctx("list", &layers_dir)?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                fsutil::remove_dir_all_if_exists(&entry.path())?;
                report.layers_removed += 1;
            }
        }
        Ok(report)
    }

    /// The unpacked layer directories of an image, bottom first.
    pub(crate) fn layer_dirs(&self, id: &Digest) -> Result<Vec<PathBuf>> {
        let manifest: Manifest = self.read_json(id, "manifest")?;
        let mut dirs = Vec::new();
        for layer in &manifest.layers {
            let dir = self.layer_path(&layer.digest);
            if !dir.is_dir() {
                return Err(Error::MissingBlob {
                    what: format!("unpacked layer {}", layer.digest),
                });
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }
}

fn ref_name(descriptor: &oci::Descriptor) -> Option<String> {
    descriptor
        .annotations
        .as_ref()?
        .get(oci::ANNOTATION_REF_NAME)
        .cloned()
}

/// `busybox` means `busybox:latest`; a name with a tag or digest is kept.
pub(crate) fn normalize_ref(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') || last.contains('@') {
        reference.to_owned()
    } else {
        format!("{reference}:latest")
    }
}

fn resolve_in(index: &Index, reference: &str) -> Result<Digest> {
    if let Ok(digest) = reference.parse::<Digest>() {
        if index.manifests.iter().any(|d| d.digest == digest) {
            return Ok(digest);
        }
        return Err(Error::ImageNotFound {
            reference: reference.to_owned(),
        });
    }
    let wanted = normalize_ref(reference);
    if let Some(d) = index
        .manifests
        .iter()
        .find(|d| ref_name(d).as_deref() == Some(wanted.as_str()))
    {
        return Ok(d.digest.clone());
    }
    let is_hex_prefix = reference.len() >= 4
        && reference
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_hex_prefix {
        let matches: BTreeMap<&str, &Digest> = index
            .manifests
            .iter()
            .filter(|d| d.digest.hex().starts_with(reference))
            .map(|d| (d.digest.hex(), &d.digest))
            .collect();
        if matches.len() > 1 {
            return Err(Error::AmbiguousReference {
                reference: reference.to_owned(),
            });
        }
        if let Some(digest) = matches.values().next() {
            return Ok((*digest).clone());
        }
    }
    Err(Error::ImageNotFound {
        reference: reference.to_owned(),
    })
}

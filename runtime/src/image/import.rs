//! Import of an image archive into the store, as one all-or-nothing step:
//! 1. the archive is extracted into a private staging directory (names
//!    checked, digests computed while writing);
//! 2. the format is recognised (OCI layout or `docker save`) and every
//!    manifest, config and layer blob is checked against its digest and size;
//! 3. blobs move into the store and new layers are unpacked (each layer's
//!    uncompressed digest checked against the config's `diff_ids`);
//! 4. `index.json` is replaced atomically.
//!
//! A failure at any step drops the `Txn`, which deletes what steps 3 added.
//!
//! Every step is held to the store's `ImportLimits` (see `limits.rs`) and
//! claims its writes from a `DiskBudget` that keeps the disk reserve free.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::GzDecoder;

use super::limits::{DiskBudget, ImportLimits, Limit, StreamMeter};
use super::oci::{
    self, ConfigFile, Descriptor, DockerManifestEntry, Index, Manifest, ManifestKind,
};
use super::unpack::{diff_id_of, unpack_layer, LayerBounds};
use super::ImageStore;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, normalize_relative};

/// Largest JSON document (index, manifest, config) read into memory.
const JSON_SIZE_MAX: u64 = 4 * 1024 * 1024;
/// How many symlinks inside an archive are followed before giving up.
const ARCHIVE_LINK_HOPS_MAX: usize = 16;

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// Paths added to the store by an import that has not committed yet.
struct Txn {
    added: Vec<PathBuf>,
    committed: bool,
}

impl Drop for Txn {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for path in self.added.iter().rev() {
            let result = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            if let Err(e) = result {
                tracing::warn!(path = %path.display(), error = %e, "rollback of a failed import");
            }
        }
    }
}

/// The archive's files: either a staging copy we extracted, or a directory.
struct Source {
    archive: PathBuf,
    root: PathBuf,
    staged: bool,
    links: HashMap<PathBuf, PathBuf>,
    digests: HashMap<PathBuf, (Digest, u64)>,
}

impl Source {
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadArchive {
            path: self.archive.clone(),
            reason: reason.into(),
        }
    }

    /// Resolves a name inside the archive to a relative path, following the
    /// archive's own symlinks (docker save links layers to shared blobs).
    fn resolve(&self, name: &str) -> Result<PathBuf> {
        let mut relative = normalize_relative(Path::new(name))
            .ok_or_else(|| self.bad(format!("name {name:?} escapes the archive")))?;
        for _ in 0..ARCHIVE_LINK_HOPS_MAX {
            match self.links.get(&relative) {
                Some(target) => relative = target.clone(),
                None => return Ok(relative),
            }
        }
        Err(self.bad(format!("too many symlinks resolving {name:?}")))
    }

    /// The absolute path of a regular file in the archive.
    fn file(&self, name: &str) -> Result<PathBuf> {
        let relative = self.resolve(name)?;
        let path = self.root.join(&relative);
        let missing = || Error::MissingBlob {
            what: name.to_owned(),
        };
        if !self.staged {
            // A layout directory may hold symlinks of its own: they must not
            // lead outside it.
            let real = fs::canonicalize(&path).map_err(|_| missing())?;
            let root = fs::canonicalize(&self.root).ctx("resolve", &self.root)?;
            if !real.starts_with(&root) {
                return Err(self.bad(format!("{name:?} points outside the layout")));
            }
        }
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            _ => Err(missing()),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str, what: &str) -> Result<T> {
        let path = self.file(name)?;
        let mut bytes = Vec::new();
        File::open(&path)
            .ctx("open", &path)?
            .take(JSON_SIZE_MAX + 1)
            .read_to_end(&mut bytes)
            .ctx("read", &path)?;
        if bytes.len() as u64 > JSON_SIZE_MAX {
            return Err(self.bad(format!("{what} is larger than {JSON_SIZE_MAX} bytes")));
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("{what} in {}", self.archive.display()),
            source,
        })
    }

    /// Digest and size of a file, computed while staging or now.
    fn digest_of(&self, name: &str) -> Result<(PathBuf, Digest, u64)> {
        let path = self.file(name)?;
        let relative = self.resolve(name)?;
        if let Some((digest, size)) = self.digests.get(&relative) {
            return Ok((path, digest.clone(), *size));
        }
        let file = File::open(&path).ctx("open", &path)?;
        let (digest, size) = Digest::of_reader(BufReader::new(file)).ctx("read", &path)?;
        Ok((path, digest, size))
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// One image an import added: its id and the names the archive gave it
/// (which may be new names for content the store held already).
pub(super) struct Imported {
    pub(super) id: Digest,
    pub(super) refs: Vec<String>,
}

/// Runs an import; the caller holds the store lock.
pub(super) fn import(store: &ImageStore, path: &Path) -> Result<Vec<Imported>> {
    let limits = &store.limits;
    let mut disk = DiskBudget::new(&store.tmp_dir(), limits.disk_reserve_bytes);
    let meta = fs::metadata(path).ctx("stat", path)?;
    let staging = store.tmp_dir().join(unique_name("import"));
    let _staging_guard = StagingGuard(staging.clone());
    let source = if meta.is_dir() {
        Source {
            archive: path.to_owned(),
            root: path.to_owned(),
            staged: false,
            links: HashMap::new(),
            digests: HashMap::new(),
        }
    } else {
        fs::create_dir(&staging).ctx("create directory", &staging)?;
        extract_archive(path, &staging, limits, &mut disk)?
    };
    let mut txn = Txn {
        added: Vec::new(),
        committed: false,
    };
    let images = if source.root.join("index.json").is_file() {
        collect_oci(&source)?
    } else if source.root.join("manifest.json").is_file() {
        collect_docker(&source)?
    } else {
        return Err(source
            .bad("neither an OCI layout (index.json) nor a docker save archive (manifest.json)"));
    };
    if images.is_empty() {
        return Err(source.bad("the archive names no image"));
    }
    // Every image's blob sizes are known now: refuse before copying any.
    for image in &images {
        check_blob_sizes(limits, image)?;
    }
    for image in &images {
        for blob in &image.blobs {
            ingest_blob(store, &source, blob, &mut txn, &mut disk)?;
        }
        unpack_layers(store, image, &mut txn, &mut disk)?;
    }
    let mut index = store.read_index()?;
    for image in &images {
        add_to_index(&mut index, image);
    }
    store.write_index(&index)?;
    txn.committed = true;
    Ok(images
        .into_iter()
        .map(|i| Imported {
            id: i.id,
            refs: i.refs,
        })
        .collect())
}

/// Refuses an image with a layer or a total over the limits, from the
/// sizes its manifest gives (verified as each blob is ingested).
fn check_blob_sizes(limits: &ImportLimits, image: &PendingImage) -> Result<()> {
    let mut total = 0u64;
    for blob in &image.blobs {
        let size = blob.size.unwrap_or(0);
        if blob.is_layer {
            limits.check(Limit::LayerBytes, size, || {
                format!("image {} {} {}", image.id, blob.what, blob.digest)
            })?;
        }
        total = total.saturating_add(size);
    }
    limits.check(Limit::ImageBytes, total, || format!("image {}", image.id))
}

/// Adds an image whose manifest, config and layer blobs are all in the
/// store's blob directory already (fetched from a peer): the same checks as
/// an archive import (media types, sizes, digests, diff ids), then the
/// missing layers are unpacked and `index.json` names the image. The caller
/// holds the store lock. On error, the layers unpacked here are removed and
/// the index is untouched; the blobs stay (verified, unreferenced: reusable
/// by the next attempt, removed by gc).
pub(super) fn import_from_blobs(
    store: &ImageStore,
    manifest_digest: &Digest,
    refs: &[String],
) -> Result<Digest> {
    // The store's own image layout is a directory source like any other:
    // its blobs sit at `blobs/sha256/<hex>`, where the import code looks.
    let images_dir = store.images_dir();
    let source = Source {
        archive: images_dir.clone(),
        root: images_dir,
        staged: false,
        links: HashMap::new(),
        digests: HashMap::new(),
    };
    let manifest_path = store.blob_file(manifest_digest);
    let manifest_size = match fs::metadata(&manifest_path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::MissingBlob {
                what: format!("manifest {manifest_digest}"),
            })
        }
        Err(e) => return Err(e).ctx("stat blob", &manifest_path),
    };
    let descriptor = Descriptor {
        media_type: oci::MEDIA_MANIFEST.to_owned(),
        digest: manifest_digest.clone(),
        size: manifest_size,
        annotations: None,
        platform: None,
    };
    let manifest: Manifest = read_verified(&source, &descriptor, "manifest")?;
    if let Some(media_type) = &manifest.media_type {
        if oci::manifest_kind(media_type) != Some(ManifestKind::Manifest) {
            return Err(Error::UnknownMediaType {
                what: format!("manifest {manifest_digest}"),
                media_type: media_type.clone(),
            });
        }
    }
    let refs = refs.iter().map(|r| super::normalize_ref(r)).collect();
    let image = pending_from_manifest(
        &source,
        manifest_digest.clone(),
        manifest_size,
        refs,
        manifest,
        None,
    )?;
    check_blob_sizes(&store.limits, &image)?;
    let mut disk = DiskBudget::new(&store.tmp_dir(), store.limits.disk_reserve_bytes);
    let mut txn = Txn {
        added: Vec::new(),
        committed: false,
    };
    for blob in &image.blobs {
        // Every blob is in place already: this hashes it and checks digest
        // and size against the manifest, and copies nothing.
        ingest_blob(store, &source, blob, &mut txn, &mut disk)?;
    }
    unpack_layers(store, &image, &mut txn, &mut disk)?;
    let mut index = store.read_index()?;
    add_to_index(&mut index, &image);
    store.write_index(&index)?;
    txn.committed = true;
    Ok(image.id)
}

struct StagingGuard(PathBuf);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        let _ = fsutil::remove_dir_all_if_exists(&self.0);
    }
}

/// A blob to copy into the store: where it is in the archive and what it
/// must hash to.
struct PendingBlob {
    name: String,
    digest: Digest,
    size: Option<u64>,
    what: String,
    /// Held to the per-layer size limit.
    is_layer: bool,
    /// For blobs we wrote ourselves (a docker manifest converted to OCI).
    content: Option<Vec<u8>>,
}

/// One image found in the archive, verified but not yet stored.
struct PendingImage {
    id: Digest,
    manifest_size: u64,
    refs: Vec<String>,
    manifest: Manifest,
    config: ConfigFile,
    blobs: Vec<PendingBlob>,
}

fn extract_archive(
    path: &Path,
    staging: &Path,
    limits: &ImportLimits,
    disk: &mut DiskBudget,
) -> Result<Source> {
    let file = File::open(path).ctx("open", path)?;
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let head = buffered.fill_buf().ctx("read", path)?;
    let is_gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    let reader: Box<dyn Read> = if is_gzip {
        Box::new(GzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut source = Source {
        archive: path.to_owned(),
        root: staging.to_owned(),
        staged: true,
        links: HashMap::new(),
        digests: HashMap::new(),
    };
    let meter = StreamMeter::new(limits.archive_bytes_max, Limit::ArchiveBytes);
    let what = || format!("archive {}", path.display());
    let walked = extract_entries(meter.reader(reader), &meter, &mut source, limits, disk);
    if let Some(limit) = meter.exceeded() {
        return Err(limits.exceeded(limit, what()));
    }
    let entries_seen = walked?;
    if entries_seen == 0 {
        return Err(source.bad("the archive is empty"));
    }
    check_links(&source)?;
    Ok(source)
}

/// Writes the archive's files into the staging directory (hashing them as
/// they are written) and records its links; returns how many entries it had.
fn extract_entries<R: Read>(
    reader: R,
    meter: &StreamMeter,
    source: &mut Source,
    limits: &ImportLimits,
    disk: &mut DiskBudget,
) -> Result<u64> {
    let path = source.archive.clone();
    let staging = source.root.clone();
    let bad = |e: io::Error| Error::BadArchive {
        path: path.clone(),
        reason: format!("not a readable tar archive: {}", clip(&e.to_string())),
    };
    // No file of an archive is bigger than the biggest blob it may hold.
    let entry_bytes_max = limits.layer_bytes_max.max(JSON_SIZE_MAX);
    let mut archive = tar::Archive::new(reader);
    let mut entries_seen = 0u64;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        meter.entry_started();
        entries_seen += 1;
        let raw = entry.path().map_err(bad)?.into_owned();
        let name = || format!("archive entry {:?}", clip(&raw.to_string_lossy()));
        limits.check(Limit::ArchiveFiles, entries_seen, || {
            format!("archive {}", path.display())
        })?;
        limits.check_path(&raw, name)?;
        if !meter.fits(entry.size()) {
            return Err(limits.exceeded(meter.read_limit(), format!("archive {}", path.display())));
        }
        if entry.size() > entry_bytes_max {
            return Err(limits.exceeded(Limit::LayerBytes, name()));
        }
        let relative = normalize_relative(&raw)
            .ok_or_else(|| source.bad(format!("entry {} escapes the archive", raw.display())))?;
        if relative.as_os_str().is_empty() {
            // The archive's root directory: no data, nothing to stage.
            meter.entry_done();
            continue;
        }
        let target = staging.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                disk.claim(0)?;
                fs::create_dir_all(&target).ctx("create directory", &target)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                disk.claim(entry.size())?;
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).ctx("create directory", parent)?;
                }
                let mut out = File::create(&target).ctx("create", &target)?;
                let mut hashing = HashingReader::new(&mut entry);
                io::copy(&mut hashing, &mut out).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        bad(e)
                    } else {
                        Error::io("write", target.clone(), e)
                    }
                })?;
                let (digest, size) = hashing.finish();
                if size != entry.size() {
                    return Err(source.bad(format!("entry {} is truncated", raw.display())));
                }
                source.digests.insert(relative, (digest, size));
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(bad)?
                    .ok_or_else(|| source.bad("link without a target"))?
                    .into_owned();
                let is_symlink = entry.header().entry_type() == tar::EntryType::Symlink;
                if is_symlink && link.is_absolute() {
                    // Names the host's filesystem, not the archive's: docker
                    // save links layers with relative targets only.
                    return Err(source.bad(format!(
                        "symlink {} points at the absolute path {}: an archive's links must stay inside it",
                        raw.display(),
                        link.display()
                    )));
                }
                let joined = if is_symlink {
                    relative.parent().unwrap_or(Path::new("")).join(&link)
                } else {
                    link.strip_prefix("/").unwrap_or(&link).to_owned()
                };
                let resolved = normalize_relative(&joined).ok_or_else(|| {
                    source.bad(format!("link {} points outside the archive", raw.display()))
                })?;
                source.links.insert(relative, resolved);
            }
            // Pax defaults for the entries that follow: nothing of ours.
            tar::EntryType::XGlobalHeader => {}
            other => {
                return Err(source.bad(format!(
                    "entry {} is a {other:?}: an image archive holds only files, directories and links",
                    raw.display()
                )));
            }
        }
        io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
        meter.entry_done();
    }
    meter.entries_over();
    Ok(entries_seen)
}

/// Every link of the archive must lead, within the archive, to one of its
/// regular files: a link to nothing, to a directory or round in a loop is
/// refused here, by name, rather than met later as a "missing blob" or
/// never noticed when nothing reads it.
fn check_links(source: &Source) -> Result<()> {
    let mut names: Vec<&PathBuf> = source.links.keys().collect();
    names.sort();
    for name in names {
        let resolved = source.resolve(&name.to_string_lossy())?;
        if !source.digests.contains_key(&resolved) {
            return Err(source.bad(format!(
                "link {} leads to {}, which is not a file of the archive",
                name.display(),
                resolved.display()
            )));
        }
    }
    Ok(())
}

/// The tar reader quotes header bytes in its errors; a random file would
/// fill the terminal with them.
fn clip(message: &str) -> String {
    const REASON_CHARS_MAX: usize = 120;
    let first_line = message.lines().next().unwrap_or("");
    if first_line.chars().count() > REASON_CHARS_MAX || message.contains('\n') {
        let cut: String = first_line.chars().take(REASON_CHARS_MAX).collect();
        format!("{cut}...")
    } else {
        first_line.to_owned()
    }
}

fn verify(
    what: &str,
    expected: &Digest,
    actual: &Digest,
    size: Option<u64>,
    actual_size: u64,
) -> Result<()> {
    if expected != actual {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    if let Some(size) = size {
        if size != actual_size {
            return Err(Error::SizeMismatch {
                what: what.to_owned(),
                expected: size,
                actual: actual_size,
            });
        }
    }
    Ok(())
}

/// Reads and verifies a JSON blob named by a descriptor.
fn read_verified<T: serde::de::DeserializeOwned>(
    source: &Source,
    descriptor: &Descriptor,
    what: &str,
) -> Result<T> {
    let name = blob_name(&descriptor.digest);
    let (_, digest, size) = source.digest_of(&name).map_err(|e| match e {
        Error::MissingBlob { .. } => Error::MissingBlob {
            what: format!("{what} {}", descriptor.digest),
        },
        other => other,
    })?;
    verify(
        what,
        &descriptor.digest,
        &digest,
        Some(descriptor.size),
        size,
    )?;
    source.read_json(&name, what)
}

fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn refs_of(source: &Source, descriptor: &Descriptor) -> Vec<String> {
    let Some(annotations) = &descriptor.annotations else {
        return Vec::new();
    };
    if let Some(full) = annotations.get(oci::ANNOTATION_CONTAINERD_NAME) {
        return vec![super::normalize_ref(full)];
    }
    match annotations.get(oci::ANNOTATION_REF_NAME) {
        Some(name) if name.contains(':') || name.contains('/') => vec![super::normalize_ref(name)],
        Some(tag) => {
            // A bare tag: name the image after the archive file.
            let stem = source
                .archive
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".to_owned());
            vec![format!("{stem}:{tag}")]
        }
        None => Vec::new(),
    }
}

fn collect_oci(source: &Source) -> Result<Vec<PendingImage>> {
    let layout: serde_json::Value = source.read_json("oci-layout", "oci-layout")?;
    if layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(source.bad("oci-layout has no imageLayoutVersion"));
    }
    let index: Index = source.read_json("index.json", "index.json")?;
    let mut images = Vec::new();
    for top in &index.manifests {
        let refs = refs_of(source, top);
        let mut descriptor = top.clone();
        // Follow nested indexes (multi-platform images) to this host's manifest.
        for _depth in 0..4 {
            match oci::manifest_kind(&descriptor.media_type) {
                Some(ManifestKind::Manifest) => break,
                Some(ManifestKind::Index) => {
                    let nested: Index = read_verified(source, &descriptor, "image index")?;
                    let arch = host_architecture();
                    let pick = nested
                        .manifests
                        .iter()
                        .find(|d| {
                            d.platform
                                .as_ref()
                                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                        })
                        .or_else(|| nested.manifests.iter().find(|d| d.platform.is_none()))
                        .ok_or_else(|| {
                            source.bad(format!(
                                "no manifest for linux/{arch} in {}",
                                descriptor.digest
                            ))
                        })?;
                    descriptor = pick.clone();
                }
                None => {
                    return Err(Error::UnknownMediaType {
                        what: format!("manifest {}", descriptor.digest),
                        media_type: descriptor.media_type.clone(),
                    })
                }
            }
        }
        let manifest: Manifest = read_verified(source, &descriptor, "manifest")?;
        let image = pending_from_manifest(
            source,
            descriptor.digest.clone(),
            descriptor.size,
            refs,
            manifest,
            None,
        )?;
        images.push(image);
    }
    Ok(images)
}

/// Checks media types, verifies the config, and lists the blobs to store.
fn pending_from_manifest(
    source: &Source,
    id: Digest,
    manifest_size: u64,
    refs: Vec<String>,
    manifest: Manifest,
    manifest_bytes: Option<Vec<u8>>,
) -> Result<PendingImage> {
    if !oci::is_config_media(&manifest.config.media_type) {
        return Err(Error::UnknownMediaType {
            what: format!("config {}", manifest.config.digest),
            media_type: manifest.config.media_type.clone(),
        });
    }
    let config: ConfigFile = read_verified(source, &manifest.config, "config")?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(source.bad(format!(
            "image {id}: config lists {} diff ids for {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let mut blobs = vec![PendingBlob {
        name: blob_name(&id),
        digest: id.clone(),
        size: Some(manifest_size),
        what: "manifest".to_owned(),
        is_layer: false,
        content: manifest_bytes,
    }];
    blobs.push(PendingBlob {
        name: blob_name(&manifest.config.digest),
        digest: manifest.config.digest.clone(),
        size: Some(manifest.config.size),
        what: "config".to_owned(),
        is_layer: false,
        content: None,
    });
    for (i, layer) in manifest.layers.iter().enumerate() {
        if !oci::is_layer_media(&layer.media_type) {
            return Err(Error::UnknownMediaType {
                what: format!("layer {i} {}", layer.digest),
                media_type: layer.media_type.clone(),
            });
        }
        blobs.push(PendingBlob {
            name: blob_name(&layer.digest),
            digest: layer.digest.clone(),
            size: Some(layer.size),
            what: format!("layer {i}"),
            is_layer: true,
            content: None,
        });
    }
    Ok(PendingImage {
        id,
        manifest_size,
        refs,
        manifest,
        config,
        blobs,
    })
}

fn is_gzip_file(path: &Path) -> Result<bool> {
    let mut head = [0u8; 2];
    let mut file = File::open(path).ctx("open", path)?;
    let n = file.read(&mut head).ctx("read", path)?;
    Ok(n == 2 && head == [0x1f, 0x8b])
}

fn collect_docker(source: &Source) -> Result<Vec<PendingImage>> {
    let entries: Vec<DockerManifestEntry> = source.read_json("manifest.json", "manifest.json")?;
    let mut images = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let (config_path, config_digest, config_size) = source.digest_of(&entry.config)?;
        // The config's file name is its digest (`<hex>.json` or
        // `blobs/sha256/<hex>`): hold the content to that name.
        let stem = Path::new(&entry.config)
            .file_name()
            .map(|s| s.to_string_lossy().trim_end_matches(".json").to_owned())
            .unwrap_or_default();
        if stem.len() == 64 {
            let named: Digest = format!("sha256:{stem}").parse()?;
            verify(
                &format!("config of image {n}"),
                &named,
                &config_digest,
                None,
                config_size,
            )?;
        }
        let _ = config_path;
        let mut layers = Vec::new();
        for (i, layer_name) in entry.layers.iter().enumerate() {
            let (path, digest, size) = source.digest_of(layer_name)?;
            let media_type = if is_gzip_file(&path)? {
                oci::MEDIA_LAYER_GZIP
            } else {
                oci::MEDIA_LAYER_TAR
            };
            let _ = i;
            layers.push(Descriptor {
                media_type: media_type.to_owned(),
                digest,
                size,
                annotations: None,
                platform: None,
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_MANIFEST.to_owned()),
            config: Descriptor {
                media_type: oci::MEDIA_CONFIG.to_owned(),
                digest: config_digest.clone(),
                size: config_size,
                annotations: None,
                platform: None,
            },
            layers,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
            what: "converted manifest".to_owned(),
            source,
        })?;
        let id = Digest::of_bytes(&bytes);
        let refs = entry
            .repo_tags
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|t| super::normalize_ref(t))
            .collect();
        // Docker names blobs by path, not digest: point each pending blob at
        // the file it came from.
        let mut image = pending_from_manifest_docker(source, id, bytes, refs, manifest, entry)?;
        image.manifest_size = image.blobs[0]
            .content
            .as_ref()
            .map_or(0, |c| c.len() as u64);
        images.push(image);
    }
    Ok(images)
}

fn pending_from_manifest_docker(
    source: &Source,
    id: Digest,
    manifest_bytes: Vec<u8>,
    refs: Vec<String>,
    manifest: Manifest,
    entry: &DockerManifestEntry,
) -> Result<PendingImage> {
    let config: ConfigFile = source.read_json(&entry.config, "config")?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(source.bad(format!(
            "image {id}: config lists {} diff ids for {} layers",
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let mut blobs = vec![PendingBlob {
        name: String::new(),
        digest: id.clone(),
        size: Some(manifest_bytes.len() as u64),
        what: "manifest".to_owned(),
        is_layer: false,
        content: Some(manifest_bytes),
    }];
    blobs.push(PendingBlob {
        name: entry.config.clone(),
        digest: manifest.config.digest.clone(),
        size: Some(manifest.config.size),
        what: "config".to_owned(),
        is_layer: false,
        content: None,
    });
    for (i, (layer, name)) in manifest.layers.iter().zip(entry.layers.iter()).enumerate() {
        blobs.push(PendingBlob {
            name: name.clone(),
            digest: layer.digest.clone(),
            size: Some(layer.size),
            what: format!("layer {i}"),
            is_layer: true,
            content: None,
        });
    }
    Ok(PendingImage {
        id,
        manifest_size: 0,
        refs,
        manifest,
        config,
        blobs,
    })
}

fn ingest_blob(
    store: &ImageStore,
    source: &Source,
    blob: &PendingBlob,
    txn: &mut Txn,
    disk: &mut DiskBudget,
) -> Result<()> {
    let dest = store.blob_file(&blob.digest);
    if let Some(content) = &blob.content {
        if !dest.exists() {
            disk.claim(content.len() as u64)?;
            fsutil::write_atomic(&dest, content)?;
            txn.added.push(dest);
        }
        return Ok(());
    }
    let (path, digest, size) = source.digest_of(&blob.name).map_err(|e| match e {
        Error::MissingBlob { .. } => Error::MissingBlob {
            what: format!("{} {}", blob.what, blob.digest),
        },
        other => other,
    })?;
    verify(&blob.what, &blob.digest, &digest, blob.size, size)?;
    if dest.exists() {
        return Ok(());
    }
    let tmp = store.tmp_dir().join(unique_name("blob"));
    if source.staged {
        // Staged files are ours and were hashed while written: a rename is
        // enough. Copy when the same file backs two blobs names (links).
        if fs::rename(&path, &tmp).is_err() {
            disk.claim(size)?;
            fs::copy(&path, &tmp).ctx("copy blob", &tmp)?;
        }
    } else {
        // Hash again while copying so that what lands in the store is what
        // was verified, even if the source directory changes meanwhile.
        disk.claim(size)?;
        let input = File::open(&path).ctx("open", &path)?;
        let mut hashing = HashingReader::new(BufReader::new(input));
        let mut out = File::create(&tmp).ctx("create", &tmp)?;
        let copied = io::copy(&mut hashing, &mut out).ctx("copy blob", &tmp);
        let flushed = out.flush().ctx("write", &tmp);
        let (copied_digest, copied_size) = hashing.finish();
        let checked = copied.and(flushed).and_then(|_| {
            verify(
                &blob.what,
                &blob.digest,
                &copied_digest,
                blob.size,
                copied_size,
            )
        });
        if let Err(e) = checked {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_file(&tmp);
        return Err(e).ctx("move blob into store", &dest);
    }
    txn.added.push(dest);
    Ok(())
}

/// Unpacks the image's layers the store lacks, within the image's limits,
/// and checks every layer's diff id against the config, the layers the
/// store holds already included: a stored layer proves only that some
/// image once had it, not that this config describes it.
fn unpack_layers(
    store: &ImageStore,
    image: &PendingImage,
    txn: &mut Txn,
    disk: &mut DiskBudget,
) -> Result<()> {
    let limits = &store.limits;
    // What this import writes for the image: stored layers cost nothing.
    let mut bytes_left = limits.image_unpacked_bytes_max;
    let mut files_left = limits.image_files_max;
    for (i, (layer, diff_id)) in image
        .manifest
        .layers
        .iter()
        .zip(image.config.rootfs.diff_ids.iter())
        .enumerate()
    {
        let (bytes_max, bytes_limit) = if limits.layer_unpacked_bytes_max <= bytes_left {
            (limits.layer_unpacked_bytes_max, Limit::LayerUnpackedBytes)
        } else {
            (bytes_left, Limit::ImageUnpackedBytes)
        };
        let (files_max, files_limit) = if limits.layer_files_max <= files_left {
            (limits.layer_files_max, Limit::LayerFiles)
        } else {
            (files_left, Limit::ImageFiles)
        };
        let bounds = LayerBounds {
            limits,
            bytes_max,
            bytes_limit,
            files_max,
            files_limit,
            what: format!("layer {i} {}", layer.digest),
        };
        let what = format!("layer {i} diff id");
        let blob = store.blob_file(&layer.digest);
        let dest = store.layer_path(&layer.digest);
        if dest.is_dir() {
            let actual = diff_id_of(&blob, &layer.digest, &bounds)?;
            verify(&what, diff_id, &actual, None, 0)?;
            continue;
        }
        let tmp = store.tmp_dir().join(unique_name("layer"));
        fs::create_dir(&tmp).ctx("create directory", &tmp)?;
        let result = unpack_layer(&blob, &tmp, &layer.digest, &bounds, disk).and_then(|unpacked| {
            verify(&what, diff_id, &unpacked.diff_id, None, 0).map(|()| unpacked)
        });
        let unpacked = match result {
            Ok(unpacked) => unpacked,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        bytes_left = bytes_left.saturating_sub(unpacked.bytes);
        files_left = files_left.saturating_sub(unpacked.files);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e).ctx("move layer into store", &dest);
        }
        txn.added.push(dest);
    }
    Ok(())
}

fn add_to_index(index: &mut Index, image: &PendingImage) {
    let descriptor = |name: Option<&String>| Descriptor {
        media_type: oci::MEDIA_MANIFEST.to_owned(),
        digest: image.id.clone(),
        size: image.manifest_size,
        annotations: name.map(|n| {
            let mut map = std::collections::BTreeMap::new();
            map.insert(oci::ANNOTATION_REF_NAME.to_owned(), n.clone());
            map
        }),
        platform: None,
    };
    for name in &image.refs {
        // A name points at one image: importing it again moves the name.
        let (moved, kept): (Vec<Descriptor>, Vec<Descriptor>) =
            index.manifests.drain(..).partition(|d| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get(oci::ANNOTATION_REF_NAME))
                    == Some(name)
            });
        index.manifests = kept;
        for mut old in moved {
            // The image that lost its name stays in the store, unnamed, so
            // that gc never removes the layers of a container still using it.
            if old.digest != image.id && !index.manifests.iter().any(|d| d.digest == old.digest) {
                old.annotations = None;
                index.manifests.push(old);
            }
        }
        index.manifests.push(descriptor(Some(name)));
    }
    if image.refs.is_empty() && !index.manifests.iter().any(|d| d.digest == image.id) {
        index.manifests.push(descriptor(None));
    }
}

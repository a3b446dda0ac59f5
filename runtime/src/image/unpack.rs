//! Unpacks one layer tarball into its own directory, in the form overlayfs
//! reads as a lower layer: OCI whiteouts (`.wh.name`) become 0:0 character
//! devices and opaque markers (`.wh..wh..opq`) become the
//! `trusted.overlay.opaque` xattr. Every entry is checked so that nothing is
//! written outside the layer directory: no absolute paths, no `..`, and no
//! parent directory that is a symlink (the classic "symlink then write
//! through it" trick). This module does not merge layers; overlayfs does.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::EntryType;

use sha2::{Digest as _, Sha256};

use super::limits::{DiskBudget, ImportLimits, Limit, StreamMeter};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// How much one layer may hold: its share of the image's budget (what the
/// image's earlier layers left) when that is smaller than a layer's own.
#[derive(Debug, Clone)]
pub(crate) struct LayerBounds<'l> {
    pub(crate) limits: &'l ImportLimits,
    /// Decompressed bytes, and the limit they come from.
    pub(crate) bytes_max: u64,
    pub(crate) bytes_limit: Limit,
    /// Entries, and the limit they come from.
    pub(crate) files_max: u64,
    pub(crate) files_limit: Limit,
    /// Names the layer in refusals ("layer 0 sha256:…").
    pub(crate) what: String,
}

impl LayerBounds<'_> {
    fn exceeded(&self, limit: Limit) -> Error {
        let what = match limit {
            Limit::ImageUnpackedBytes | Limit::ImageFiles => {
                format!("the image (at {})", self.what)
            }
            _ => self.what.clone(),
        };
        self.limits.exceeded(limit, what)
    }
}

/// What unpacking a layer found.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// The digest of the uncompressed tar.
    pub(crate) diff_id: Digest,
    /// Decompressed bytes read.
    pub(crate) bytes: u64,
    /// Entries in the tar.
    pub(crate) files: u64,
}

fn open_layer(blob: &Path) -> Result<(Box<dyn Read>, bool)> {
    let file = fs::File::open(blob).ctx("open layer blob", blob)?;
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let is_gzip = {
        let head = io::BufRead::fill_buf(&mut buffered).ctx("read layer blob", blob)?;
        head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
    };
    let reader: Box<dyn Read> = if is_gzip {
        Box::new(GzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    Ok((reader, is_gzip))
}

/// Unpacks the layer blob at `blob` into `dest` (which must exist and be
/// empty) within `bounds`, claiming each entry's bytes from `disk` before
/// writing them, and returns the digest of the uncompressed tar (the diff
/// id). An uncompressed blob *is* its tar: its diff id is the blob digest
/// the caller already verified, so it is not hashed a second time.
pub(crate) fn unpack_layer(
    blob: &Path,
    dest: &Path,
    layer: &Digest,
    bounds: &LayerBounds<'_>,
    disk: &mut DiskBudget,
) -> Result<Unpacked> {
    let (reader, is_gzip) = open_layer(blob)?;
    let meter = StreamMeter::new(bounds.bytes_max, bounds.bytes_limit);
    let mut hashing = MaybeHashing {
        inner: meter.reader(reader),
        hasher: is_gzip.then(Sha256::new),
    };
    let bad_tar = |e: io::Error| Error::BadArchive {
        path: blob.to_owned(),
        reason: format!("layer {layer} is not a readable tar: {e}"),
    };
    let mut files = 0u64;
    let walked = (|| {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(bad_tar)? {
            let mut entry = entry.map_err(bad_tar)?;
            meter.entry_started();
            files += 1;
            if files > bounds.files_max {
                return Err(bounds.exceeded(bounds.files_limit));
            }
            // The header says how big the entry is: refuse it before any
            // of its bytes are read or written.
            if !meter.fits(entry.size()) {
                return Err(bounds.exceeded(meter.read_limit()));
            }
            disk.claim(entry.size())?;
            unpack_entry(&mut entry, dest, layer, bounds.limits).map_err(|e| match e {
                Error::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof => {
                    bad_tar(source)
                }
                other => other,
            })?;
            // Whatever the entry's kind, its data is consumed here, so what
            // the tar reader reads until the next entry is metadata only.
            io::copy(&mut entry, &mut io::sink()).map_err(bad_tar)?;
            meter.entry_done();
        }
        Ok(())
    })();
    meter.entries_over();
    // The tar end-of-archive blocks and any padding are part of the diff id.
    let drained = walked.and_then(|()| {
        io::copy(&mut hashing, &mut io::sink())
            .map(drop)
            .map_err(bad_tar)
    });
    if let Some(limit) = meter.exceeded() {
        return Err(bounds.exceeded(limit));
    }
    drained?;
    Ok(Unpacked {
        diff_id: match hashing.hasher {
            Some(hasher) => Digest::from_sha256(hasher),
            None => layer.clone(),
        },
        bytes: meter.read(),
        files,
    })
}

/// The diff id of a layer blob, computed within `bounds` without writing
/// anything: for a layer the store holds already, whose diff id must still
/// match what the importing image's config says.
pub(crate) fn diff_id_of(blob: &Path, layer: &Digest, bounds: &LayerBounds<'_>) -> Result<Digest> {
    let (reader, is_gzip) = open_layer(blob)?;
    if !is_gzip {
        return Ok(layer.clone());
    }
    let meter = StreamMeter::new(bounds.bytes_max, bounds.bytes_limit);
    meter.entries_over();
    let mut hashing = MaybeHashing {
        inner: meter.reader(reader),
        hasher: Some(Sha256::new()),
    };
    let copied = io::copy(&mut hashing, &mut io::sink());
    if let Some(limit) = meter.exceeded() {
        return Err(bounds.exceeded(limit));
    }
    copied.map_err(|e| Error::BadArchive {
        path: blob.to_owned(),
        reason: format!("layer {layer} does not decompress: {e}"),
    })?;
    Ok(match hashing.hasher {
        Some(hasher) => Digest::from_sha256(hasher),
        None => layer.clone(),
    })
}

/// A reader that hashes what passes through only when asked to.
struct MaybeHashing<R> {
    inner: R,
    hasher: Option<Sha256>,
}

impl<R: Read> Read for MaybeHashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

fn unsafe_entry(layer: &Digest, entry: &Path, reason: &'static str) -> Error {
    Error::UnsafeLayerEntry {
        layer: layer.to_string(),
        entry: entry.display().to_string(),
        reason,
    }
}

/// Checks an entry path and returns it relative to the layer root.
fn checked_relative(layer: &Digest, raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(unsafe_entry(layer, raw, "contains a .. component"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(layer, raw, "is an absolute path"))
            }
        }
    }
    Ok(out)
}

/// Creates the parents of `relative` under `root` as real directories,
/// refusing to walk through a symlink or a non-directory.
fn ensure_parents(root: &Path, relative: &Path, layer: &Digest, raw: &Path) -> Result<()> {
    let mut current = root.to_path_buf();
    let parent = match relative.parent() {
        Some(p) => p,
        None => return Ok(()),
    };
    for part in parent.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_entry(layer, raw, "a parent directory is a symlink"))
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(unsafe_entry(layer, raw, "a parent is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).ctx("create directory", &current)?;
            }
            Err(e) => return Err(e).ctx("stat", &current),
        }
    }
    Ok(())
}

/// Removes whatever sits at `path` (never following a symlink), unless both
/// it and the new entry are directories, which tar merges.
fn clear_target(path: &Path, new_is_dir: bool) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() && new_is_dir => Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).ctx("replace directory", path),
        Ok(_) => fs::remove_file(path).ctx("replace file", path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("stat", path),
    }
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Io {
        action: "encode path",
        path: path.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "nul byte in path"),
    })
}

fn make_whiteout(path: &Path) -> Result<()> {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o000),
        nix::sys::stat::makedev(0, 0),
    )
    .map_err(|e| io::Error::from_raw_os_error(e as i32))
    .ctx("create whiteout", path)
}

fn set_opaque(dir: &Path) -> Result<()> {
    let c_path = cstring(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both pointers are valid NUL-terminated strings and the value
    // pointer/length describe a live one-byte buffer.
    let rc = unsafe { libc::lsetxattr(c_path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).ctx("mark directory opaque", dir);
    }
    Ok(())
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    layer: &Digest,
    limits: &ImportLimits,
) -> Result<()> {
    let raw = entry
        .path()
        .map_err(|e| Error::BadArchive {
            path: root.to_owned(),
            reason: format!("layer {layer} has an unreadable entry name: {e}"),
        })?
        .into_owned();
    let kind = entry.header().entry_type();
    if !matches!(
        kind,
        EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo
    ) {
        // Pax/GNU metadata entries are consumed by the tar reader; anything
        // else (sparse files, global headers) carries no file of its own.
        return Ok(());
    }
    limits.check_path(&raw, || {
        format!("layer {layer} entry {:?}", clip_path(&raw))
    })?;
    let relative = checked_relative(layer, &raw)?;
    if relative.as_os_str().is_empty() {
        // The layer root itself ("./"): its mode is the rootfs's, already set.
        return Ok(());
    }
    let device = match kind {
        EntryType::Char | EntryType::Block => Some(device_numbers(entry, layer, &raw)?),
        _ => None,
    };
    // A device node is refused (see DeviceNodeInLayer) unless it is the
    // 0:0 character device overlayfs itself uses as a whiteout: layers
    // written in overlay form carry those instead of `.wh.` files.
    let is_overlay_whiteout = kind == EntryType::Char && device == Some((0, 0));
    if let (Some((major, minor)), false) = (device, is_overlay_whiteout) {
        return Err(Error::DeviceNodeInLayer {
            layer: layer.to_string(),
            entry: raw.display().to_string(),
            kind: if kind == EntryType::Char {
                "character"
            } else {
                "block"
            },
            major,
            minor,
        });
    }
    ensure_parents(root, &relative, layer, &raw)?;
    let file_name = relative
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = root.join(&relative);

    if file_name == WHITEOUT_OPAQUE {
        let dir = target.parent().unwrap_or(root);
        return set_opaque(dir);
    }
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(unsafe_entry(layer, &raw, "whiteout names no file"));
        }
        let hidden_path = target.with_file_name(hidden);
        clear_target(&hidden_path, false)?;
        return make_whiteout(&hidden_path);
    }

    clear_target(&target, kind == EntryType::Directory)?;
    if is_overlay_whiteout {
        return make_whiteout(&target);
    }
    if kind == EntryType::Link {
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .ok_or_else(|| unsafe_entry(layer, &raw, "hard link without a target"))?
            .into_owned();
        limits.check_path(&link, || {
            format!("layer {layer} link target of {:?}", clip_path(&raw))
        })?;
        let link_relative = checked_relative(layer, &link)?;
        ensure_parents(root, &link_relative, layer, &link)?;
        let source = root.join(&link_relative);
        // A hard link to a symlink links the symlink itself (linkat without
        // AT_SYMLINK_FOLLOW), so this never reaches outside the root.
        fs::hard_link(&source, &target).ctx("hard link", &target)?;
        return Ok(());
    }
    if kind == EntryType::Symlink {
        if let Ok(Some(link)) = entry.link_name() {
            limits.check_path(&link, || {
                format!("layer {layer} symlink target of {:?}", clip_path(&raw))
            })?;
        }
    }
    let mode = entry.header().mode().unwrap_or(0o644);
    if kind == EntryType::Fifo {
        // The tar crate would write a FIFO as an empty regular file.
        nix::unistd::mkfifo(
            &target,
            nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
        .ctx("create fifo", &target)?;
    } else {
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        entry.unpack(&target).ctx("unpack entry", &target)?;
    }
    let uid = entry.header().uid().unwrap_or(0) as u32;
    let gid = entry.header().gid().unwrap_or(0) as u32;
    if uid != 0 || gid != 0 {
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).ctx("chown", &target)?;
    }
    if kind == EntryType::Fifo {
        // mkfifo applied the umask; chown cleared set-id bits: set the mode last.
        fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o7777))
            .ctx("chmod", &target)?;
    }
    Ok(())
}

/// The major and minor numbers of a device entry.
fn device_numbers<R: Read>(
    entry: &tar::Entry<'_, R>,
    layer: &Digest,
    raw: &Path,
) -> Result<(u32, u32)> {
    let header = entry.header();
    let bad = |e: io::Error| Error::BadArchive {
        path: raw.to_owned(),
        reason: format!("layer {layer} device entry {}: {e}", raw.display()),
    };
    let major = header.device_major().map_err(bad)?.unwrap_or(0);
    let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
    Ok((major, minor))
}

/// A path for a message: a hostile one may be kilobytes long.
fn clip_path(path: &Path) -> String {
    const PATH_CHARS_SHOWN_MAX: usize = 80;
    let text = path.to_string_lossy();
    if text.chars().count() <= PATH_CHARS_SHOWN_MAX {
        return text.into_owned();
    }
    let head: String = text.chars().take(PATH_CHARS_SHOWN_MAX).collect();
    format!("{head}... ({} bytes)", path.as_os_str().len())
}

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
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::EntryType;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the layer blob at `blob` into `dest` (which must exist and be
/// empty) and returns the digest of the uncompressed tar (the diff id).
/// An uncompressed blob *is* its tar: its diff id is the blob digest the
/// caller already verified, so it is not hashed a second time.
pub(crate) fn unpack_layer(blob: &Path, dest: &Path, layer: &Digest) -> Result<Digest> {
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
    let mut hashing = MaybeHashing {
        inner: reader,
        hasher: is_gzip.then(Sha256::new),
    };
    let bad_tar = |e: io::Error| Error::BadArchive {
        path: blob.to_owned(),
        reason: format!("layer {layer} is not a readable tar: {e}"),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(bad_tar)? {
            let entry = entry.map_err(bad_tar)?;
            unpack_entry(entry, dest, layer).map_err(|e| match e {
                Error::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof => {
                    bad_tar(source)
                }
                other => other,
            })?;
        }
    }
    // The tar end-of-archive blocks and any padding are part of the diff id.
    io::copy(&mut hashing, &mut io::sink()).map_err(bad_tar)?;
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

fn unpack_entry<R: Read>(mut entry: tar::Entry<'_, R>, root: &Path, layer: &Digest) -> Result<()> {
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
    let relative = checked_relative(layer, &raw)?;
    if relative.as_os_str().is_empty() {
        // The layer root itself ("./"): its mode is the rootfs's, already set.
        return Ok(());
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
    if kind == EntryType::Link {
        let link = entry
            .link_name()
            .ok()
            .flatten()
            .ok_or_else(|| unsafe_entry(layer, &raw, "hard link without a target"))?
            .into_owned();
        let link_relative = checked_relative(layer, &link)?;
        ensure_parents(root, &link_relative, layer, &link)?;
        let source = root.join(&link_relative);
        // A hard link to a symlink links the symlink itself (linkat without
        // AT_SYMLINK_FOLLOW), so this never reaches outside the root.
        fs::hard_link(&source, &target).ctx("hard link", &target)?;
        return Ok(());
    }
    entry.set_preserve_permissions(true);
    entry.set_preserve_mtime(true);
    entry.set_unpack_xattrs(false);
    entry.unpack(&target).ctx("unpack entry", &target)?;
    let uid = entry.header().uid().unwrap_or(0) as u32;
    let gid = entry.header().gid().unwrap_or(0) as u32;
    if uid != 0 || gid != 0 {
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).ctx("chown", &target)?;
    }
    Ok(())
}

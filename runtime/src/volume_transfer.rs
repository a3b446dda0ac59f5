//! Moving a named volume between nodes: its files packed into one tar
//! blob in the image store (so the blob path serves it to the target with
//! the same resume, digest check and upload cap as image layers), unpacked
//! on the target into a fresh volume, and the old copy removed.
//!
//! Called only while no container uses the volume (the controller stopped
//! its tasks): the packed copy is consistent.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::error::IoContext;
use crate::spec::Mount;
use crate::{sized_volume, Digest, Error, Result, Runtime};

impl Runtime {
    /// Whether an existing container (any state) mounts volume `name`.
    pub fn volume_in_use(&self, name: &str) -> Result<bool> {
        Ok(self.list()?.iter().any(|container| {
            container
                .spec
                .mounts
                .iter()
                .any(|mount| matches!(mount, Mount::Volume { name: n, .. } if n == name))
        }))
    }

    /// Packs volume `name` (a sized one is mounted first) into a tar blob
    /// in the image store; returns its digest and size.
    pub fn export_volume(&self, name: &str, size_bytes: Option<u64>) -> Result<(Digest, u64)> {
        let dir = self.volume_dir(name, size_bytes)?;
        let tmp = self.root().join("tmp");
        fs::create_dir_all(&tmp).ctx("create directory", &tmp)?;
        let packed = tmp.join(format!("volume-export-{name}.tar"));
        {
            let file = File::create(&packed).ctx("create", &packed)?;
            let mut builder = tar::Builder::new(BufWriter::new(file));
            builder.follow_symlinks(false);
            builder.append_dir_all(".", &dir).ctx("pack volume", &dir)?;
            let mut out = builder.into_inner().ctx("finish packing", &packed)?;
            out.flush().ctx("write", &packed)?;
        }
        let (digest, size) =
            Digest::of_reader(BufReader::new(File::open(&packed).ctx("open", &packed)?))
                .ctx("hash", &packed)?;
        if self.images().blob_path(&digest).is_none() {
            let mut partial = self.images().partial_blob(&digest)?;
            if !partial.is_empty() {
                partial.discard()?;
                partial = self.images().partial_blob(&digest)?;
            }
            let mut input = File::open(&packed).ctx("open", &packed)?;
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = input.read(&mut buffer).ctx("read", &packed)?;
                if n == 0 {
                    break;
                }
                partial.append(&buffer[..n])?;
            }
            partial.finish()?;
        }
        fs::remove_file(&packed).ctx("remove", &packed)?;
        Ok((digest, size))
    }

    /// Unpacks blob `digest` (a volume packed by `export_volume`) as volume
    /// `name`, replacing whatever an earlier, unfinished import left.
    pub fn import_volume(
        &self,
        name: &str,
        digest: &Digest,
        size_bytes: Option<u64>,
    ) -> Result<()> {
        let blob = self.images().blob_path(digest).ok_or_else(|| Error::Io {
            action: "find the packed volume",
            path: self.root().join("images"),
            source: std::io::Error::other(format!("blob {digest} is not in the store")),
        })?;
        let dir = self.volume_dir(name, size_bytes)?;
        clear_dir(&dir)?;
        let mut archive = tar::Archive::new(BufReader::new(File::open(&blob).ctx("open", &blob)?));
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_overwrite(true);
        archive.unpack(&dir).ctx("unpack volume into", &dir)?;
        // The copy is what the controller will call the volume: on disk
        // before the import is reported.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .ctx("sync", &dir)?;
        nix::unistd::sync();
        Ok(())
    }

    /// Deletes volume `name` here: unmounted, its image and directory gone.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        sized_volume::release(self.root(), name)?;
        let dir = self.root().join("volumes").join(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove volume", &dir, e)),
        }
        let image = sized_volume::image_path(self.root(), name);
        match fs::remove_file(&image) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove volume image", &image, e)),
        }
    }

    /// The volume's directory, made (and for a sized one, mounted).
    fn volume_dir(&self, name: &str, size_bytes: Option<u64>) -> Result<std::path::PathBuf> {
        if !crate::spec::valid_volume_name(name) {
            return Err(Error::InvalidSpec(format!(
                "volume name {name:?} is not [A-Za-z0-9_.-]+"
            )));
        }
        let dir = self.root().join("volumes").join(name);
        match size_bytes {
            Some(size) => sized_volume::ensure(self.root(), name, &dir, size)?,
            None => fs::create_dir_all(&dir).ctx("create volume", &dir)?,
        }
        Ok(dir)
    }
}

/// Empties `dir` (kept: it may be a mount point).
fn clear_dir(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).ctx("read", dir)? {
        let entry = entry.ctx("read", dir)?;
        let path = entry.path();
        let is_dir = entry.file_type().ctx("stat", &path)?.is_dir();
        if is_dir {
            fs::remove_dir_all(&path).ctx("remove", &path)?;
        } else {
            fs::remove_file(&path).ctx("remove", &path)?;
        }
    }
    Ok(())
}

//! A named volume with a size limit: an ext4 filesystem in a sparse image
//! file (`volume-images/<name>.img`), attached to a loop device and mounted
//! at the volume's directory (`volumes/<name>`). A task writing past the
//! limit gets ENOSPC from its own filesystem; the node's disk holds only
//! the blocks written (the image is sparse).
//!
//! The mount is made in the node process's mount namespace and containers
//! bind the directory as for any volume. A node restarted in a new mount
//! namespace (an `ip netns exec` shell, a new systemd unit) no longer sees
//! its old mount: it finds the loop device that already backs the image
//! (`/sys/block/loop*/loop/backing_file`) and mounts that same device, so
//! the kernel shares one superblock between both mounts; attaching a second
//! loop device to the same image would mount the filesystem twice and
//! corrupt it.
//!
//! `mkfs.ext4` (e2fsprogs) and `losetup` (util-linux) are Debian's own
//! tools, on every install; the Rust loop-device crates need bindgen and
//! libclang at build time for two ioctls.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags};

use crate::error::IoContext;
use crate::{Error, Result};

/// The smallest size mkfs.ext4 makes a usable filesystem of (with its
/// journal); smaller limits are refused with this figure.
pub const MIN_SIZE_BYTES: u64 = 8 * 1024 * 1024;

/// Where a volume's image lives under the runtime root.
pub fn image_path(root: &Path, name: &str) -> PathBuf {
    root.join("volume-images").join(format!("{name}.img"))
}

/// Makes `dir` the mount of volume `name`'s image of `size_bytes`,
/// creating and formatting the image on first use. Idempotent.
pub(crate) fn ensure(root: &Path, name: &str, dir: &Path, size_bytes: u64) -> Result<()> {
    if size_bytes < MIN_SIZE_BYTES {
        return Err(Error::InvalidSpec(format!(
            "volume {name}: size {size_bytes} bytes is below the smallest sized volume \
             ({MIN_SIZE_BYTES} bytes, 8Mi)"
        )));
    }
    fs::create_dir_all(dir).ctx("create volume", dir)?;
    if is_mount_point(dir)? {
        return Ok(());
    }
    let image = image_path(root, name);
    match fs::metadata(&image) {
        Ok(meta) if meta.len() != size_bytes => {
            return Err(Error::InvalidSpec(format!(
                "volume {name} was made with {} bytes, and {size_bytes} are asked: \
                 resizing a volume is not supported; keep its size or remove it",
                meta.len()
            )))
        }
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if fs::read_dir(dir).ctx("read volume", dir)?.next().is_some() {
                return Err(Error::InvalidSpec(format!(
                    "volume {name} already holds data without a size limit; a limit \
                     cannot be put on it in place: remove `size` or use a new volume"
                )));
            }
            create_image(&image, size_bytes)?;
        }
        Err(error) => return Err(Error::io("read", &image, error)),
    }
    let device = match backing_device(&image)? {
        Some(device) => device,
        None => attach(&image)?,
    };
    nix::mount::mount(
        Some(device.as_path()),
        dir,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|source| Error::Sys {
        action: format!(
            "mount volume {name} ({} on {}) at {}",
            image.display(),
            device.display(),
            dir.display()
        ),
        source,
    })
}

/// Unmounts volume `name` here and detaches its loop device. Blocking;
/// nothing mounted is fine.
pub fn release(root: &Path, name: &str) -> Result<()> {
    let dir = root.join("volumes").join(name);
    match nix::mount::umount2(&dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(Error::Sys {
                action: format!("unmount volume {name} at {}", dir.display()),
                source,
            })
        }
    }
    if let Some(device) = backing_device(&image_path(root, name))? {
        // A device still mounted in another namespace detaches when that
        // mount goes (the kernel sets autoclear on a busy device).
        run("losetup", &["-d".as_ref(), device.as_os_str()])?;
    }
    Ok(())
}

/// The limit and the bytes used of a mounted sized volume (None when `dir`
/// is not a mount point).
pub fn usage(dir: &Path) -> Option<(u64, u64)> {
    if !is_mount_point(dir).ok()? {
        return None;
    }
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    let block = stats.fragment_size();
    let total = stats.blocks() * block;
    let free = stats.blocks_free() * block;
    Some((total, total.saturating_sub(free)))
}

fn is_mount_point(dir: &Path) -> Result<bool> {
    let own = fs::metadata(dir).ctx("stat", dir)?;
    let parent_path = dir.parent().unwrap_or(dir);
    let parent = fs::metadata(parent_path).ctx("stat", parent_path)?;
    Ok(own.dev() != parent.dev())
}

fn create_image(image: &Path, size_bytes: u64) -> Result<()> {
    let parent = image.parent().unwrap_or(image);
    fs::create_dir_all(parent).ctx("create directory", parent)?;
    // Formatted under a temporary name: a crash mid-mkfs leaves no image
    // that looks ready.
    let partial = image.with_extension("img.partial");
    let file = fs::File::create(&partial).ctx("create", &partial)?;
    file.set_len(size_bytes).ctx("size", &partial)?;
    drop(file);
    // No reserved blocks (a volume is all the task's), no discard pass over
    // a fresh sparse file, root-owned root directory.
    run(
        "mkfs.ext4",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-E".as_ref(),
            "nodiscard,lazy_itable_init=1,lazy_journal_init=1".as_ref(),
            partial.as_os_str(),
        ],
    )?;
    fs::rename(&partial, image).ctx("rename", image)
}

fn attach(image: &Path) -> Result<PathBuf> {
    let out = run(
        "losetup",
        &["--find".as_ref(), "--show".as_ref(), image.as_os_str()],
    )?;
    let device = out.trim();
    if device.is_empty() {
        return Err(Error::Io {
            action: "attach a loop device to",
            path: image.to_path_buf(),
            source: std::io::Error::other("losetup printed no device"),
        });
    }
    Ok(PathBuf::from(device))
}

/// The loop device already backed by `image`, from sysfs.
fn backing_device(image: &Path) -> Result<Option<PathBuf>> {
    let image = match fs::canonicalize(image) {
        Ok(path) => path,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("resolve", image, error)),
    };
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim()) == image {
            return Ok(Some(PathBuf::from("/dev").join(name)));
        }
    }
    Ok(None)
}

fn run(program: &'static str, args: &[&std::ffi::OsStr]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            action: "run",
            path: PathBuf::from(program),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Io {
            action: "run",
            path: PathBuf::from(program),
            source: std::io::Error::other(format!(
                "{} ({})",
                String::from_utf8_lossy(&output.stderr).trim(),
                output.status
            )),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real loop device and ext4: the suite runs as root (a failure, not a
    /// skip, otherwise).
    #[test]
    fn a_sized_volume_refuses_writes_past_its_size_and_survives_a_remount() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "loop devices need root: run the tests as root"
        );
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("volumes/data");
        ensure(root.path(), "data", &dir, 16 * 1024 * 1024).expect("first ensure");
        ensure(root.path(), "data", &dir, 16 * 1024 * 1024).expect("idempotent");
        let (limit, _) = usage(&dir).expect("mounted");
        assert!(limit <= 16 * 1024 * 1024, "{limit}");
        fs::write(dir.join("kept"), b"hello").expect("small write");
        let big = vec![7u8; 32 * 1024 * 1024];
        let error = fs::write(dir.join("big"), &big).expect_err("past the size");
        assert_eq!(error.raw_os_error(), Some(nix::libc::ENOSPC), "{error}");
        // Another size is refused; the data is still there after a remount.
        assert!(ensure(root.path(), "data", &dir, 32 * 1024 * 1024).is_ok());
        nix::mount::umount2(&dir, MntFlags::MNT_DETACH).expect("umount");
        let error = ensure(root.path(), "data", &dir, 32 * 1024 * 1024).expect_err("resize");
        assert!(error.to_string().contains("resizing"), "{error}");
        ensure(root.path(), "data", &dir, 16 * 1024 * 1024).expect("remount");
        assert_eq!(fs::read(dir.join("kept")).expect("kept"), b"hello");
        release(root.path(), "data").expect("release");
        assert!(backing_device(&image_path(root.path(), "data"))
            .expect("sysfs")
            .is_none());
    }
}

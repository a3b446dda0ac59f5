//! Create: resolve the image, mount the overlay rootfs, write the OCI bundle
//! (user, volumes, devices, network, /etc files), make the log FIFOs, record
//! the container, build its init through libcontainer (on the clone guard's
//! thread) and hand it to the monitor. On any error nothing is left behind.

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::clone_guard::on_clone_thread;
use super::{executor, open_fifo, Record};
use crate::cgroup::process_start_ticks;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::monitor::{pidfd_open, Watch};
use crate::network;
use crate::spec::{self, ContainerSpec, Mount, NetworkMode};
use crate::Runtime;

/// The image a container is created from, resolved under the images lock.
struct ResolvedImage {
    id: Digest,
    layer_dirs: Vec<PathBuf>,
    plan: spec::ProcessPlan,
}

/// The log FIFOs' ends: the daemon's (read by the monitor) and the init's
/// standard streams.
struct LogFifos {
    monitor_out: OwnedFd,
    monitor_err: OwnedFd,
    init_stdin: File,
    init_out: OwnedFd,
    init_err: OwnedFd,
}

impl Runtime {
    /// Creates a container: overlay rootfs, OCI bundle, cgroup, namespaces;
    /// its init waits for `start`. On any error nothing is left behind.
    pub fn create(&self, spec: ContainerSpec) -> Result<String> {
        spec::validate(&spec)?;
        let (_guard, _file_lock) = self.containers_lock()?;
        let id = spec.id.clone();
        let dir = self.container_dir(&id);
        if dir.exists() || self.state_root().join(&id).exists() {
            return Err(Error::ContainerExists { id });
        }
        // Held until the record naming the image is on disk, so that an
        // image removal cannot slip between our resolve and that record.
        let images_lock = self.images.lock()?;
        let image = self.resolve_image(&spec)?;

        fs::create_dir(&dir).ctx("create directory", &dir)?;
        let mut undo = CreateUndo {
            runtime: self,
            id: id.clone(),
            armed: true,
        };
        let rootfs = mount_rootfs(&image.layer_dirs, &dir)?;
        self.write_bundle(&spec, &image.plan, &dir, &rootfs)?;
        let fifos = LogFifos::create(&dir)?;
        let record = Record {
            spec: spec.clone(),
            image_id: image.id,
            created_unix_ms: now_ms(),
            pid: None,
            pid_start_ticks: None,
            started: false,
        };
        self.write_record(&record)?;
        drop(images_lock);

        let pid = self.build_init(&id, &dir, fifos.init_stdin, fifos.init_out, fifos.init_err)?;
        self.watch_init(record, pid, fifos.monitor_out, fifos.monitor_err)?;
        undo.armed = false;
        self.created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        Ok(id)
    }

    /// The image's id, layers and the process the spec runs in it.
    fn resolve_image(&self, spec: &ContainerSpec) -> Result<ResolvedImage> {
        let id = self.images.resolve(&spec.image)?;
        let image = self.images.inspect(id.to_string().as_str())?;
        let layer_dirs = self.images.layer_dirs(&id)?;
        let plan = spec::plan_process(spec, &image.config)?;
        Ok(ResolvedImage {
            id,
            layer_dirs,
            plan,
        })
    }

    /// Checks the command and user against the rootfs, resolves volumes,
    /// devices and the network, writes /etc files and `config.json`.
    fn write_bundle(
        &self,
        spec: &ContainerSpec,
        plan: &spec::ProcessPlan,
        dir: &Path,
        rootfs: &Path,
    ) -> Result<()> {
        check_command(rootfs, plan, &spec.image)?;
        let (uid, gid) = resolve_user(rootfs, plan.user.as_deref())?;
        let volume_dirs = self.volume_dirs(spec)?;
        let devices = device_numbers(spec)?;
        let attachment = match &spec.network {
            NetworkMode::Bridge {
                bridge,
                subnet,
                mtu,
            } => Some(network::attach(
                &self.root, dir, &spec.id, bridge, subnet, *mtu,
            )?),
            NetworkMode::None | NetworkMode::Host => None,
        };
        let etc_files = self.write_etc_files(spec, dir, attachment.as_ref())?;
        let resolved = spec::Resolved {
            rootfs,
            uid,
            gid,
            cgroups_path: self.cgroup_path(&spec.id),
            volume_dirs,
            devices,
            etc_files,
            netns: attachment.as_ref().map(|_| dir.join("netns")),
        };
        let oci = spec::build_oci_spec(spec, plan, &resolved)?;
        oci.save(dir.join("config.json"))?;
        Ok(())
    }

    /// Builds the container's init, which waits for `start`; returns its pid.
    fn build_init(
        &self,
        id: &str,
        dir: &Path,
        stdin: File,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32> {
        let built = on_clone_thread(|| {
            libcontainer::container::builder::ContainerBuilder::new(
                id.to_owned(),
                libcontainer::syscall::syscall::SyscallType::default(),
            )
            .with_root_path(self.state_root())
            .and_then(|b| {
                b.with_executor(executor::EnvFreeExecutor)
                    .with_stdin(OwnedFd::from(stdin))
                    .with_stdout(stdout)
                    .with_stderr(stderr)
                    .validate_id()
            })
            .and_then(|b| b.as_init(dir).with_systemd(false).with_detach(true).build())
        });
        let container = built.map_err(|source| Error::Libcontainer {
            id: id.to_owned(),
            action: "create",
            source: Box::new(source),
        })?;
        container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| Error::InvalidState {
                id: id.to_owned(),
                state: "without a pid".to_owned(),
                action: "create",
            })
    }

    /// Records the init's pid and start time and hands it to the monitor.
    fn watch_init(&self, record: Record, pid: i32, stdout: OwnedFd, stderr: OwnedFd) -> Result<()> {
        let ticks = process_start_ticks(pid);
        let pidfd = pidfd_open(pid).ctx("pidfd_open", format!("/proc/{pid}"))?;
        let record = Record {
            pid: Some(pid),
            pid_start_ticks: ticks,
            ..record
        };
        self.write_record(&record)?;
        let id = record.spec.id;
        let log = self.open_log(&id)?;
        self.monitor.watch(Watch {
            pid,
            pidfd,
            stdout,
            stderr,
            log,
            cgroup_path: self.cgroup_path(&id),
            exit_file: self.container_dir(&id).join("exit.json"),
            id,
        });
        Ok(())
    }

    fn volume_dirs(&self, spec: &ContainerSpec) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for mount in &spec.mounts {
            if let Mount::Volume {
                name, size_bytes, ..
            } = mount
            {
                let dir = self.root.join("volumes").join(name);
                match size_bytes {
                    Some(size) => crate::sized_volume::ensure(&self.root, name, &dir, *size)?,
                    None => fs::create_dir_all(&dir).ctx("create volume", &dir)?,
                }
                dirs.push(dir);
            }
        }
        Ok(dirs)
    }

    fn write_etc_files(
        &self,
        spec: &ContainerSpec,
        dir: &Path,
        attachment: Option<&network::Attachment>,
    ) -> Result<Vec<(PathBuf, &'static str)>> {
        let hostname = spec.hostname.clone().unwrap_or_else(|| spec.id.clone());
        let own_address = attachment.map_or_else(|| "127.0.1.1".to_owned(), |a| a.ip.to_string());
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own_address}\t{hostname}\n"
        );
        let hosts_path = dir.join("hosts");
        fsutil::write_replace_nosync(&hosts_path, hosts.as_bytes())?;
        let resolv_path = dir.join("resolv.conf");
        let resolv = match spec.network {
            // The host's resolvers are reachable only from the host netns.
            NetworkMode::Host => fs::read("/etc/resolv.conf").unwrap_or_default(),
            // A loopback resolver (systemd-resolved's 127.0.0.53) is not
            // reachable from the container's namespace: keep the others.
            NetworkMode::Bridge { .. } if spec.dns.is_some() => spec
                .dns
                .as_ref()
                .map(|dns| dns.resolv_conf().into_bytes())
                .unwrap_or_default(),
            NetworkMode::Bridge { .. } => fs::read_to_string("/etc/resolv.conf")
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1")))
                })
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into_bytes(),
            NetworkMode::None => Vec::new(),
        };
        fsutil::write_replace_nosync(&resolv_path, &resolv)?;
        Ok(vec![
            (hosts_path, "/etc/hosts"),
            (resolv_path, "/etc/resolv.conf"),
        ])
    }
}

impl LogFifos {
    fn create(dir: &Path) -> Result<LogFifos> {
        let stdout_fifo = dir.join("stdout.fifo");
        let stderr_fifo = dir.join("stderr.fifo");
        for fifo in [&stdout_fifo, &stderr_fifo] {
            nix::unistd::mkfifo(
                fifo.as_path(),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
            .ctx("create fifo", fifo)?;
        }
        // The daemon's ends are opened first and read/write: the FIFO then
        // always has a reader, so a container never gets SIGPIPE while the
        // daemon restarts (its writes block once the pipe buffer is full).
        let (monitor_out, monitor_err) = (
            open_fifo(&stdout_fifo, true)?,
            open_fifo(&stderr_fifo, true)?,
        );
        let (init_out, init_err) = (
            open_fifo(&stdout_fifo, false)?,
            open_fifo(&stderr_fifo, false)?,
        );
        let init_stdin = File::open("/dev/null").ctx("open", "/dev/null")?;
        Ok(LogFifos {
            monitor_out,
            monitor_err,
            init_stdin,
            init_out,
            init_err,
        })
    }
}

/// Undoes a create that failed part-way.
struct CreateUndo<'a> {
    runtime: &'a Runtime,
    id: String,
    armed: bool,
}

impl Drop for CreateUndo<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.runtime.teardown(&self.id, false) {
                tracing::warn!(id = %self.id, error = %e, "cleaning up a failed create");
            }
            self.runtime.remove_cgroup_parent_if_unused();
        }
    }
}

/// Makes `rootfs`, `upper` and `work` under `dir` and mounts the overlay;
/// returns the rootfs path.
fn mount_rootfs(layer_dirs: &[PathBuf], dir: &Path) -> Result<PathBuf> {
    for sub in ["rootfs", "upper", "work"] {
        fs::create_dir(dir.join(sub)).ctx("create directory", dir.join(sub))?;
    }
    mount_overlay(layer_dirs, dir)?;
    Ok(dir.join("rootfs"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn mount_overlay(layer_dirs: &[PathBuf], dir: &Path) -> Result<()> {
    let mut lower: Vec<String> = layer_dirs
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    if lower.is_empty() {
        let empty = dir.join("empty");
        fs::create_dir_all(&empty).ctx("create directory", &empty)?;
        lower.push(empty.display().to_string());
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let rootfs = dir.join("rootfs");
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| Error::Sys {
        action: format!("mount overlay rootfs at {}", rootfs.display()),
        source,
    })
}

/// Looks up a path inside the rootfs without following the final symlink
/// (busybox applets are symlinks; what they point at is resolved inside the
/// container, not here).
fn exists_in_rootfs(rootfs: &Path, path: &str) -> bool {
    fs::symlink_metadata(rootfs.join(path.trim_start_matches('/'))).is_ok_and(|m| !m.is_dir())
}

fn check_command(rootfs: &Path, plan: &spec::ProcessPlan, image: &str) -> Result<()> {
    let argv0 = plan.args.first().map(String::as_str).unwrap_or("");
    let found = if argv0.contains('/') {
        let absolute = if argv0.starts_with('/') {
            argv0.to_owned()
        } else {
            format!("{}/{}", plan.cwd.trim_end_matches('/'), argv0)
        };
        exists_in_rootfs(rootfs, &absolute)
    } else {
        let path_var = plan
            .env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/bin:/usr/bin");
        !argv0.is_empty()
            && path_var
                .split(':')
                .any(|dir| exists_in_rootfs(rootfs, &format!("{dir}/{argv0}")))
    };
    if found {
        Ok(())
    } else {
        Err(Error::CommandNotFound {
            command: argv0.to_owned(),
            image: image.to_owned(),
        })
    }
}

/// Reads a file of the image without following a symlink planted in place
/// of it (it would point into the host).
fn read_image_file(rootfs: &Path, path: &str) -> Option<String> {
    let full = rootfs.join(path);
    let meta = fs::symlink_metadata(&full).ok()?;
    if !meta.is_file()
        || fs::symlink_metadata(rootfs.join("etc"))
            .ok()?
            .file_type()
            .is_symlink()
    {
        return None;
    }
    fs::read_to_string(full).ok()
}

fn lookup_id(rootfs: &Path, file: &str, name: &str, field: usize) -> Option<u32> {
    read_image_file(rootfs, file)?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| fields.get(field)?.parse().ok())
            .flatten()
    })
}

/// `uid`, `uid:gid`, `name` or `name:group`, names looked up in the image.
fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<(u32, u32)> {
    let Some(user) = user else { return Ok((0, 0)) };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let not_found = || Error::UserNotFound {
        user: user.to_owned(),
    };
    let uid = match user_part.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => lookup_id(rootfs, "etc/passwd", user_part, 2).ok_or_else(not_found)?,
    };
    let gid = match group_part {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup_id(rootfs, "etc/group", g, 2).ok_or_else(not_found)?,
        },
        None if user_part.parse::<u32>().is_ok() => 0,
        None => lookup_id(rootfs, "etc/passwd", user_part, 3).ok_or_else(not_found)?,
    };
    Ok((uid, gid))
}

fn device_numbers(spec: &ContainerSpec) -> Result<Vec<(i64, i64, bool)>> {
    let mut out = Vec::new();
    for mount in &spec.mounts {
        if let Mount::Device { host_path, .. } = mount {
            let meta = fs::metadata(host_path).ctx("stat device", host_path)?;
            let kind = meta.file_type();
            if !kind.is_char_device() && !kind.is_block_device() {
                return Err(Error::InvalidSpec(format!(
                    "{} is not a device node",
                    host_path.display()
                )));
            }
            let rdev = meta.rdev();
            out.push((
                nix::sys::stat::major(rdev) as i64,
                nix::sys::stat::minor(rdev) as i64,
                kind.is_char_device(),
            ));
        }
    }
    Ok(out)
}

//! Containers: create (overlay rootfs + OCI bundle + libcontainer), start,
//! stop, kill, wait, delete, exec, list, logs, and adoption of containers
//! left by an earlier daemon. Every container's durable state is
//! `containers/<id>/record.json` (spec, image, pid and pid start time) plus
//! `exit.json` once it has exited; libcontainer keeps its own `state/<id>`.
//!
//! Fork safety: libcontainer clones with raw `clone3` and `chdir`s the
//! process during create/start/exec. All of those run under
//! `LIBCONTAINER_LOCK`, one process-wide mutex, so only one clone is ever in
//! flight; see runtime-arch notes for why that is enough beside tokio.

mod exec;
mod executor;
mod lifecycle;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use exec::{ExecOutput, EXEC_OUTPUT_BYTES_MAX};

use crate::cgroup::process_start_ticks;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, FileLock};
use crate::logs::{self, LogLine, RotatingLog};
use crate::monitor::{pidfd_open, ExitStatus, Watch};
use crate::network;
use crate::spec::{self, ContainerSpec, Mount, NetworkMode};
use crate::Runtime;

/// One process-wide lock around every libcontainer call that clones or
/// `chdir`s (build, start, tenant build). FACTS: concurrent creates hang or
/// fail; serialised, they run at ~100/s.
pub(crate) static LIBCONTAINER_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn libcontainer_lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = LIBCONTAINER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    CHILD_EXIT_GUARD.call_once(install_child_exit_guard);
    guard
}

/// Runs a libcontainer call that clones (`build` of an init or a tenant) on a
/// fresh thread of its own, under `LIBCONTAINER_LOCK`.
///
/// The cloned child is a copy of the calling thread alone. A glibc malloc
/// arena whose lock another thread held at that instant stays locked in the
/// child forever (raw `clone3` skips glibc's fork handlers, which would reset
/// them); seen as a create hanging in `realloc` inside a node, one time in a
/// few dozen. A fresh thread gets an arena no other thread uses (arenas are
/// shared only past `M_ARENA_MAX`, which the guard raises), and everything
/// the builder allocates before the clone lives in that arena.
pub(crate) fn on_clone_thread<R: Send>(call: impl FnOnce() -> R + Send) -> R {
    let _guard = libcontainer_lock();
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("libcontainer-clone".into())
            .spawn_scoped(scope, call)
        {
            Ok(thread) => match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread to be had (resource limits): clone from this one.
            Err(_) => panic!("cannot spawn the libcontainer clone thread"),
        }
    })
}

static CHILD_EXIT_GUARD: std::sync::Once = std::sync::Once::new();
/// Arenas glibc may create before threads start sharing them: enough that
/// every thread, the clone threads above all, has one of its own.
const MALLOC_ARENAS_MAX: libc::c_int = 4096;
/// The pid of the process that installed the guard: the daemon.
static GUARDED_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// libcontainer's cloned children (the intermediate and init processes)
/// leave through `std::process::exit`, which runs the C exit handlers the
/// daemon registered: C++ static destructors of libraries linked in beside
/// us. RocksDB's joins its timer thread, which does not exist in a clone, and
/// the child hangs forever (seen: every create in a node hung). This handler,
/// registered after those (handlers run last-registered first, and the
/// daemon opens its store before its first container), ends a cloned child
/// with `_exit` before any of them runs; in the daemon itself it does nothing.
fn install_child_exit_guard() {
    extern "C" fn exit_child_immediately(status: libc::c_int, _arg: *mut libc::c_void) {
        let daemon = GUARDED_PID.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: getpid and _exit are async-signal-safe and touch no state.
        if unsafe { libc::getpid() } != daemon {
            unsafe { libc::_exit(status) };
        }
    }
    extern "C" {
        // glibc: like atexit, and the handler receives the exit status.
        fn on_exit(
            function: extern "C" fn(libc::c_int, *mut libc::c_void),
            arg: *mut libc::c_void,
        ) -> libc::c_int;
    }
    GUARDED_PID.store(
        std::process::id() as i32,
        std::sync::atomic::Ordering::SeqCst,
    );
    // SAFETY: mallopt only changes a tuning value of the allocator.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX) } != 1 {
        tracing::warn!(
            "cannot raise M_ARENA_MAX; a container create may hang on a shared malloc arena"
        );
    }
    // SAFETY: registers a handler that only reads an atomic and may _exit.
    let registered = unsafe { on_exit(exit_child_immediately, std::ptr::null_mut()) };
    if registered != 0 {
        tracing::warn!(
            "cannot register the cloned-child exit guard; containers may hang at create"
        );
    }
}

/// The persisted record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) spec: ContainerSpec,
    pub(crate) image_id: Digest,
    pub(crate) created_unix_ms: u64,
    pub(crate) pid: Option<i32>,
    pub(crate) pid_start_ticks: Option<u64>,
    pub(crate) started: bool,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, its init waiting for `start`.
    Created,
    /// Started and alive.
    Running,
    /// Its init has exited.
    Exited,
}

/// What `list` and `info` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The id.
    pub id: String,
    /// The image id it runs.
    pub image_id: Digest,
    /// The spec it was created from.
    pub spec: ContainerSpec,
    /// Its state.
    pub state: ContainerState,
    /// The init's host pid while it lives.
    pub pid: Option<i32>,
    /// How it ended, once it has.
    pub exit: Option<ExitStatus>,
    /// Creation time, milliseconds since the epoch.
    pub created_unix_ms: u64,
    /// True when an earlier process created it and this one adopted it.
    pub adopted: bool,
    /// Its address on the bridge (bridge mode only).
    pub ip: Option<std::net::Ipv4Addr>,
}

impl Runtime {
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
    pub(crate) fn state_root(&self) -> PathBuf {
        self.root.join("state")
    }
    fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// The container's log, appended to, rotated as the options say.
    fn open_log(&self, id: &str) -> Result<RotatingLog> {
        RotatingLog::open(
            &self.log_path(id),
            self.options.log_size_max_bytes,
            self.options.log_files_max,
        )
    }
    pub(crate) fn containers_lock(&self) -> Result<(std::sync::MutexGuard<'_, ()>, FileLock)> {
        let guard = self
            .containers_mutex
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let file_lock = FileLock::acquire(&self.containers_dir().join(".lock"))?;
        Ok((guard, file_lock))
    }

    pub(crate) fn read_record(&self, id: &str) -> Result<Record> {
        if !spec::valid_id(id) {
            return Err(Error::ContainerNotFound { id: id.to_owned() });
        }
        let path = self.container_dir(id).join("record.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::ContainerNotFound { id: id.to_owned() })
            }
            Err(e) => return Err(e).ctx("read", &path),
        };
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })
    }

    pub(crate) fn write_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
            what: "container record".to_owned(),
            source,
        })?;
        fsutil::write_replace_nosync(
            &self.container_dir(&record.spec.id).join("record.json"),
            &bytes,
        )
    }

    fn read_exit_file(&self, id: &str) -> Option<ExitStatus> {
        let bytes = fs::read(self.container_dir(id).join("exit.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The container's init is alive and is the process we started (same
    /// pid *and* start time).
    pub(crate) fn init_alive(record: &Record) -> bool {
        match (record.pid, record.pid_start_ticks) {
            (Some(pid), Some(ticks)) => process_start_ticks(pid) == Some(ticks) && !is_zombie(pid),
            _ => false,
        }
    }

    /// The exit status if the container has exited.
    pub(crate) fn exit_status(&self, id: &str) -> Option<ExitStatus> {
        self.monitor.exit_of(id).or_else(|| self.read_exit_file(id))
    }

    fn info_from_record(&self, record: Record, created_here: &HashSet<String>) -> ContainerInfo {
        let id = record.spec.id.clone();
        let exit = self.exit_status(&id);
        let alive = exit.is_none() && Self::init_alive(&record);
        let state = match (exit.is_some() || !alive, record.started) {
            (true, _) => ContainerState::Exited,
            (false, true) => ContainerState::Running,
            (false, false) => ContainerState::Created,
        };
        let ip = fs::read(self.container_dir(&id).join("network.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<network::Attachment>(&b).ok())
            .map(|a| a.ip);
        ContainerInfo {
            ip,
            adopted: !created_here.contains(&id),
            id,
            image_id: record.image_id,
            pid: if alive { record.pid } else { None },
            exit,
            state,
            created_unix_ms: record.created_unix_ms,
            spec: record.spec,
        }
    }

    /// Details of one container.
    pub fn info(&self, id: &str) -> Result<ContainerInfo> {
        let record = self.read_record(id)?;
        let created_here = self
            .created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(self.info_from_record(record, &created_here))
    }

    /// Every container of this data dir, adopted ones included, by id.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        let created_here = self
            .created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = Vec::new();
        let dir = self.containers_dir();
        for entry in fs::read_dir(&dir).ctx("list", &dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !spec::valid_id(&name) {
                continue;
            }
            if let Ok(record) = self.read_record(&name) {
                out.push(self.info_from_record(record, &created_here));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The captured stdout/stderr lines of a container, oldest first.
    pub fn logs(&self, id: &str) -> Result<Vec<LogLine>> {
        self.read_record(id)?;
        logs::read_logs(&self.log_path(id), self.options.log_files_max)
    }

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
        let image_id = self.images.resolve(&spec.image)?;
        let image = self.images.inspect(image_id.to_string().as_str())?;
        let layer_dirs = self.images.layer_dirs(&image_id)?;
        let plan = spec::plan_process(&spec, &image.config)?;

        fs::create_dir(&dir).ctx("create directory", &dir)?;
        let mut undo = CreateUndo {
            runtime: self,
            id: id.clone(),
            armed: true,
        };
        let rootfs = dir.join("rootfs");
        for sub in ["rootfs", "upper", "work"] {
            fs::create_dir(dir.join(sub)).ctx("create directory", dir.join(sub))?;
        }
        mount_overlay(&layer_dirs, &dir)?;

        check_command(&rootfs, &plan, &spec.image)?;
        let (uid, gid) = resolve_user(&rootfs, plan.user.as_deref())?;
        let volume_dirs = self.volume_dirs(&spec)?;
        let devices = device_numbers(&spec)?;
        let attachment = match &spec.network {
            NetworkMode::Bridge { bridge, subnet } => {
                Some(network::attach(&self.root, &dir, &id, bridge, subnet)?)
            }
            NetworkMode::None | NetworkMode::Host => None,
        };
        let etc_files = self.write_etc_files(&spec, &dir, attachment.as_ref())?;
        let resolved = spec::Resolved {
            rootfs: &rootfs,
            uid,
            gid,
            cgroups_path: self.cgroup_path(&id),
            volume_dirs,
            devices,
            etc_files,
            netns: attachment.as_ref().map(|_| dir.join("netns")),
        };
        let oci = spec::build_oci_spec(&spec, &plan, &resolved)?;
        oci.save(dir.join("config.json"))?;

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
        let (container_out, container_err) = (
            open_fifo(&stdout_fifo, false)?,
            open_fifo(&stderr_fifo, false)?,
        );
        let dev_null = File::open("/dev/null").ctx("open", "/dev/null")?;

        let record = Record {
            spec: spec.clone(),
            image_id: image_id.clone(),
            created_unix_ms: now_ms(),
            pid: None,
            pid_start_ticks: None,
            started: false,
        };
        self.write_record(&record)?;
        drop(images_lock);

        let built = on_clone_thread(|| {
            libcontainer::container::builder::ContainerBuilder::new(
                id.clone(),
                libcontainer::syscall::syscall::SyscallType::default(),
            )
            .with_root_path(self.state_root())
            .and_then(|b| {
                b.with_executor(executor::EnvFreeExecutor)
                    .with_stdin(OwnedFd::from(dev_null))
                    .with_stdout(container_out)
                    .with_stderr(container_err)
                    .validate_id()
            })
            .and_then(|b| {
                b.as_init(&dir)
                    .with_systemd(false)
                    .with_detach(true)
                    .build()
            })
        });
        let container = built.map_err(|source| Error::Libcontainer {
            id: id.clone(),
            action: "create",
            source: Box::new(source),
        })?;
        let pid = container
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| Error::InvalidState {
                id: id.clone(),
                state: "without a pid".to_owned(),
                action: "create",
            })?;
        let ticks = process_start_ticks(pid);
        let pidfd = pidfd_open(pid).ctx("pidfd_open", format!("/proc/{pid}"))?;
        let record = Record {
            pid: Some(pid),
            pid_start_ticks: ticks,
            ..record
        };
        self.write_record(&record)?;
        let log = self.open_log(&id)?;
        self.monitor.watch(Watch {
            id: id.clone(),
            pid,
            pidfd,
            stdout: monitor_out,
            stderr: monitor_err,
            log,
            cgroup_path: self.cgroup_path(&id),
            exit_file: dir.join("exit.json"),
        });
        undo.armed = false;
        self.created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        Ok(id)
    }

    fn volume_dirs(&self, spec: &ContainerSpec) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for mount in &spec.mounts {
            if let Mount::Volume { name, .. } = mount {
                let dir = self.root.join("volumes").join(name);
                fs::create_dir_all(&dir).ctx("create volume", &dir)?;
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

    /// Tears down whatever exists of a container: libcontainer state (which
    /// kills its processes and removes its cgroup), the overlay mount, the
    /// directory. Each step tolerates the thing being already gone.
    ///
    /// `init_reaped`: its init is known to have exited, so when its cgroups
    /// turn out empty they are removed directly, without loading
    /// libcontainer's state (whose delete reparses mountinfo and re-checks
    /// /proc through pathrs: about a millisecond per container). A cgroup
    /// that still holds a process takes the libcontainer path, which kills it.
    pub(crate) fn teardown(&self, id: &str, init_reaped: bool) -> Result<()> {
        let state_dir = self.state_root().join(id);
        let remove_cgroups = || {
            self.layout
                .as_ref()
                .is_some_and(|layout| layout.remove_if_empty(&self.cgroup_path(id)))
        };
        let mut cgroups_gone = false;
        if state_dir.exists() {
            cgroups_gone = init_reaped && remove_cgroups();
            if !cgroups_gone {
                match libcontainer::container::Container::load(state_dir.clone()) {
                    Ok(mut container) => {
                        if let Err(source) = container.delete(true) {
                            tracing::warn!(id, error = %source, "libcontainer delete");
                        }
                    }
                    Err(e) => tracing::warn!(id, error = %e, "loading libcontainer state"),
                }
            }
            fsutil::remove_dir_all_if_exists(&state_dir)?;
        }
        if !cgroups_gone {
            remove_cgroups();
        }
        let dir = self.container_dir(id);
        network::detach(&self.root, &dir, id)?;
        // The overlay unmount and the removal of the writable layer happen
        // on the janitor thread (see janitor.rs); the id is free from here.
        self.janitor.discard(&dir)?;
        self.monitor.forget(id);
        self.created_here
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    /// Removes our cgroup parent once no container of ours is left.
    pub(crate) fn remove_cgroup_parent_if_unused(&self) {
        let any_left = fs::read_dir(self.containers_dir())
            .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
            .unwrap_or(true);
        if !any_left {
            if let Some(layout) = &self.layout {
                layout.remove_if_empty(&format!(
                    "/{}",
                    self.options.cgroup_parent.trim_matches('/')
                ));
            }
        }
    }

    /// Re-attaches to every container on disk: live ones are watched again
    /// (their logs keep flowing, their exit is noticed), dead ones get an
    /// exit record, half-created ones are removed.
    pub(crate) fn adopt_all(&self) -> Result<()> {
        let (_guard, _file_lock) = self.containers_lock()?;
        let dir = self.containers_dir();
        for entry in fs::read_dir(&dir).ctx("list", &dir)?.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !spec::valid_id(&id) || !entry.path().is_dir() {
                continue;
            }
            let record = match self.read_record(&id) {
                Ok(r) if r.pid.is_some() => r,
                // Crashed between mkdir and build: nothing ran, nothing to keep.
                _ => {
                    tracing::warn!(id, "removing a half-created container");
                    self.teardown(&id, false)?;
                    continue;
                }
            };
            if self.read_exit_file(&id).is_some() {
                continue;
            }
            if !Self::init_alive(&record) {
                // It died while no daemon watched; if it was our child it is
                // a zombie we can still reap for its code.
                let (code, signal) = record.pid.map(reap_now).unwrap_or((None, None));
                let status = ExitStatus {
                    code,
                    signal,
                    oom_killed: self
                        .layout
                        .as_ref()
                        .and_then(|l| l.oom_kills(&self.cgroup_path(&id)))
                        .is_some_and(|n| n > 0),
                };
                let bytes = serde_json::to_vec(&status).map_err(|source| Error::Json {
                    what: "exit status".to_owned(),
                    source,
                })?;
                fsutil::write_replace_nosync(&self.container_dir(&id).join("exit.json"), &bytes)?;
                continue;
            }
            let Some(pid) = record.pid else { continue };
            let pidfd = match pidfd_open(pid) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!(id, error = %e, "pidfd_open for adoption");
                    continue;
                }
            };
            // The pidfd pins the process; check once more it is ours.
            if !Self::init_alive(&record) {
                continue;
            }
            let dir = self.container_dir(&id);
            let (stdout, stderr) = (
                open_fifo(&dir.join("stdout.fifo"), true)?,
                open_fifo(&dir.join("stderr.fifo"), true)?,
            );
            let log = self.open_log(&id)?;
            self.monitor.watch(Watch {
                id: id.clone(),
                pid,
                pidfd,
                stdout,
                stderr,
                log,
                cgroup_path: self.cgroup_path(&id),
                exit_file: dir.join("exit.json"),
            });
        }
        Ok(())
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn reap_now(pid: i32) -> (Option<i32>, Option<i32>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    match waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
    ) {
        Ok(WaitStatus::Exited(_, code)) => (Some(code), None),
        Ok(WaitStatus::Signaled(_, signal, _)) => (None, Some(signal as i32)),
        _ => (None, None),
    }
}

/// Opens a log FIFO. The daemon's end is non-blocking; the container's end
/// blocks so that a full pipe slows the writer instead of failing it.
fn open_fifo(path: &Path, daemon_end: bool) -> Result<OwnedFd> {
    let mut flags = libc::O_CLOEXEC;
    if daemon_end {
        flags |= libc::O_NONBLOCK;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
        .ctx("open fifo", path)?;
    Ok(OwnedFd::from(file))
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

/// The id of a container (of any `Runtime` over this root) using the image.
pub(crate) fn container_using_image(runtime_root: &Path, image: &Digest) -> Result<Option<String>> {
    let dir = runtime_root.join("containers");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("list", &dir),
    };
    for entry in entries.flatten() {
        let path = entry.path().join("record.json");
        let Ok(bytes) = fs::read(&path) else { continue };
        if let Ok(record) = serde_json::from_slice::<Record>(&bytes) {
            if &record.image_id == image {
                return Ok(Some(record.spec.id));
            }
        }
    }
    Ok(None)
}

//! The monitor: one thread per `Runtime` that watches every container with
//! `poll(2)` — a pidfd per container init (readable when it exits) and the
//! container's stdout/stderr FIFOs (copied into the rotating log). When an
//! init exits, the monitor drains its logs, reaps it (`waitpid` with
//! `__WALL`: libcontainer clones the init with no exit signal), reads the
//! cgroup's OOM-kill counter, writes `exit.json`, and wakes `wait`ers.
//!
//! One thread for all containers keeps the cost per container to three file
//! descriptors, not three threads. It never calls `waitpid(-1)`, so it never
//! steals the exit status of a process someone else spawned.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupLayout;
use crate::fsutil;
use crate::logs::{RotatingLog, Stream, LINE_BYTES_MAX};

/// How a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, when it exited normally and we could reap it. `None`
    /// for a container adopted from another process: only its parent could
    /// read the code.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The code a shell would report: the exit code, or 128 + signal, or 255
    /// when unknown.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        }
    }
}

/// What the monitor needs to watch one container.
pub(crate) struct Watch {
    pub(crate) id: String,
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
    pub(crate) log: RotatingLog,
    pub(crate) cgroup_path: String,
    pub(crate) exit_file: PathBuf,
}

enum Command {
    Watch(Box<Watch>),
}

/// Called on the monitor thread with a container's id once its exit status
/// is recorded. Must not block.
pub(crate) type ExitHook = Arc<dyn Fn(&str) + Send + Sync>;

struct Shared {
    pending: Mutex<Vec<Command>>,
    exits: Mutex<HashMap<String, ExitStatus>>,
    exited: Condvar,
    stop: AtomicBool,
    exit_hook: Mutex<Option<ExitHook>>,
}

pub(crate) struct Monitor {
    shared: Arc<Shared>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

/// The monitor thread's stack: it only polls and copies, so 256 KiB is
/// plenty and keeps the daemon's memory small.
const MONITOR_STACK_BYTES: usize = 256 * 1024;

fn pipe_cloexec_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `pidfd_open(2)`: a descriptor that names the process itself, immune to
/// pid reuse, and becomes readable when the process exits.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl Monitor {
    pub(crate) fn start(layout: Option<CgroupLayout>) -> io::Result<Monitor> {
        let (wake_read, wake_write) = pipe_cloexec_nonblock()?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            exits: Mutex::new(HashMap::new()),
            exited: Condvar::new(),
            stop: AtomicBool::new(false),
            exit_hook: Mutex::new(None),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("runtime-monitor".to_owned())
            .stack_size(MONITOR_STACK_BYTES)
            .spawn(move || run(thread_shared, wake_read, layout))?;
        Ok(Monitor {
            shared,
            wake: wake_write,
            thread: Some(thread),
        })
    }

    pub(crate) fn set_exit_hook(&self, hook: ExitHook) {
        *lock(&self.shared.exit_hook) = Some(hook);
    }

    fn poke(&self) {
        // A full pipe already means "wake up": ignore EAGAIN.
        let _ = nix::unistd::write(&self.wake, &[1u8]);
    }

    pub(crate) fn watch(&self, watch: Watch) {
        lock(&self.shared.pending).push(Command::Watch(Box::new(watch)));
        self.poke();
    }

    /// The exit status, if the monitor has seen the container exit.
    pub(crate) fn exit_of(&self, id: &str) -> Option<ExitStatus> {
        lock(&self.shared.exits).get(id).copied()
    }

    /// Blocks until the container exits or `timeout` passes.
    pub(crate) fn wait(&self, id: &str, timeout: Option<Duration>) -> Option<ExitStatus> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut exits = lock(&self.shared.exits);
        loop {
            if let Some(status) = exits.get(id) {
                return Some(*status);
            }
            match deadline {
                None => {
                    exits = self
                        .shared
                        .exited
                        .wait(exits)
                        .unwrap_or_else(|p| p.into_inner());
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    exits = self
                        .shared
                        .exited
                        .wait_timeout(exits, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Drops the remembered exit status of a deleted container.
    pub(crate) fn forget(&self, id: &str) {
        lock(&self.shared.exits).remove(id);
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.poke();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The monitor's tables stay consistent across a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Watched {
    watch: Watch,
    partial: [Vec<u8>; 2],
}

impl Watched {
    /// Reads what the stream holds right now and logs complete lines.
    fn drain(&mut self, stream: Stream) {
        let Watched { watch, partial } = self;
        let partial = &mut partial[stream as usize];
        let fd = match stream {
            Stream::Stdout => watch.stdout.as_raw_fd(),
            Stream::Stderr => watch.stderr.as_raw_fd(),
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(id = %watch.id, error = %e, "reading container output");
                    break;
                }
                Ok(n) => {
                    partial.extend_from_slice(&buf[..n]);
                    while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=pos).collect();
                        log_line(watch, stream, &line[..line.len() - 1]);
                    }
                    while partial.len() >= LINE_BYTES_MAX {
                        let chunk: Vec<u8> = partial.drain(..LINE_BYTES_MAX).collect();
                        log_line(watch, stream, &chunk);
                    }
                }
            }
        }
    }

    fn flush_partial(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                log_line(&mut self.watch, stream, &rest);
            }
        }
    }
}

fn log_line(watch: &mut Watch, stream: Stream, line: &[u8]) {
    if let Err(e) = watch.log.write_line(stream, line) {
        tracing::warn!(id = %watch.id, error = %e, "writing container log");
    }
}

fn reap(pid: i32) -> (Option<i32>, Option<i32>) {
    loop {
        match waitpid(
            Pid::from_raw(pid),
            Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => return (Some(code), None),
            Ok(WaitStatus::Signaled(_, signal, _)) => return (None, Some(signal as i32)),
            // The pidfd said it exited; a zombie is reapable at once, but be
            // patient with a scheduler that has not caught up.
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            // Not our child (adopted from an earlier daemon): code unknown.
            Err(_) => return (None, None),
        }
    }
}

fn run(shared: Arc<Shared>, wake: OwnedFd, layout: Option<CgroupLayout>) {
    let mut watched: HashMap<String, Watched> = HashMap::new();
    loop {
        for command in lock(&shared.pending).drain(..) {
            match command {
                Command::Watch(watch) => {
                    let id = watch.id.clone();
                    watched.insert(
                        id,
                        Watched {
                            watch: *watch,
                            partial: [Vec::new(), Vec::new()],
                        },
                    );
                }
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            // Flush what we have; the FIFOs keep the rest for the next daemon.
            for w in watched.values_mut() {
                w.drain(Stream::Stdout);
                w.drain(Stream::Stderr);
            }
            return;
        }
        let ids: Vec<String> = watched.keys().cloned().collect();
        let mut pollfds = Vec::with_capacity(1 + ids.len() * 3);
        pollfds.push(libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for id in &ids {
            let w = &watched[id];
            for fd in [&w.watch.pidfd, &w.watch.stdout, &w.watch.stderr] {
                pollfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // SAFETY: `pollfds` is a live, correctly sized array of pollfd.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            continue; // EINTR; anything else would recur and is retried.
        }
        if pollfds[0].revents != 0 {
            let mut buf = [0u8; 64];
            while matches!(nix::unistd::read(wake.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
        }
        for (i, id) in ids.iter().enumerate() {
            let base = 1 + i * 3;
            let exited = pollfds[base].revents != 0;
            let Some(w) = watched.get_mut(id) else {
                continue;
            };
            if pollfds[base + 1].revents != 0 || exited {
                w.drain(Stream::Stdout);
            }
            if pollfds[base + 2].revents != 0 || exited {
                w.drain(Stream::Stderr);
            }
            if !exited {
                continue;
            }
            w.flush_partial();
            let (code, signal) = reap(w.watch.pid);
            let oom_killed = layout
                .as_ref()
                .and_then(|l| l.oom_kills(&w.watch.cgroup_path))
                .is_some_and(|n| n > 0);
            let status = ExitStatus {
                code,
                signal,
                oom_killed,
            };
            match serde_json::to_vec(&status) {
                Ok(bytes) => {
                    if let Err(e) = fsutil::write_replace_nosync(&w.watch.exit_file, &bytes) {
                        tracing::warn!(id = %id, error = %e, "persisting exit status");
                    }
                }
                Err(e) => tracing::warn!(id = %id, error = %e, "encoding exit status"),
            }
            watched.remove(id);
            lock(&shared.exits).insert(id.clone(), status);
            shared.exited.notify_all();
            let hook = lock(&shared.exit_hook).clone();
            if let Some(hook) = hook {
                hook(id);
            }
        }
    }
}

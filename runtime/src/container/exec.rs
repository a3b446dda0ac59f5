//! `exec`: runs another process in a running container's namespaces and
//! cgroup (libcontainer's "tenant" container) and collects its output.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::Runtime;

/// Output kept per stream; the rest is read and dropped so the process never
/// blocks on a full pipe.
pub const EXEC_OUTPUT_BYTES_MAX: usize = 1024 * 1024;

/// The result of `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Its stdout (at most `EXEC_OUTPUT_BYTES_MAX`).
    pub stdout: Vec<u8>,
    /// Its stderr (at most `EXEC_OUTPUT_BYTES_MAX`).
    pub stderr: Vec<u8>,
    /// It was still running at the deadline and was killed (SIGKILL).
    #[serde(default)]
    pub timed_out: bool,
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; both descriptors are ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Output read from the exec'd process, and whether it had to be killed.
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

/// How long output is still read once the process is gone (or killed):
/// children it left behind may hold the pipes open.
const DRAIN_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads both pipes and waits for `pid` to end (without reaping it) on the
/// calling thread, killing it (SIGKILL) at `timeout`. No reader threads:
/// a thread that starts or exits while libcontainer clones its next child
/// can leave a lock of std's (its per-thread stack-overflow registry)
/// held in that child, whose `std::process::exit` then waits on it
/// forever, and with it every later exec and container start (they share
/// the clone lock). One exec in a hundred did, with a 100 ms exec probe.
fn collect(
    pid: nix::unistd::Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
    timeout: Option<std::time::Duration>,
) -> Collected {
    use std::os::fd::AsRawFd;
    use std::time::Instant;
    let started = Instant::now();
    let mut streams = [
        (Some(File::from(stdout)), Vec::new()),
        (Some(File::from(stderr)), Vec::new()),
    ];
    // None once it ended (or cannot be watched).
    let mut pidfd = crate::monitor::pidfd_open(pid.as_raw()).ok();
    let mut ended_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut buf = [0u8; 8192];
    loop {
        if pidfd.is_none() && ended_at.is_none() {
            ended_at = Some(Instant::now());
        }
        let open = streams.iter().any(|(file, _)| file.is_some());
        if !open && ended_at.is_some() {
            break;
        }
        let now = Instant::now();
        let limit = match ended_at {
            Some(at) => Some(at + DRAIN_AFTER_EXIT),
            None => timeout.map(|t| started + t),
        };
        if let Some(limit) = limit {
            if now >= limit {
                if ended_at.is_some() {
                    break;
                }
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                timed_out = true;
                pidfd = None;
                continue;
            }
        }
        let wait_ms = limit.map_or(-1, |limit| {
            libc::c_int::try_from(limit.saturating_duration_since(now).as_millis().max(1))
                .unwrap_or(libc::c_int::MAX)
        });
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .filter_map(|(file, _)| file.as_ref())
            .map(|file| libc::pollfd {
                fd: file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if let Some(pidfd) = &pidfd {
            fds.push(libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of pollfds owned by this frame.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let fired = |fd: RawFd| {
            fds.iter().any(|p| {
                p.fd == fd && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
            })
        };
        for (file, kept) in streams.iter_mut() {
            let Some(open_file) = file.as_mut() else {
                continue;
            };
            if !fired(open_file.as_raw_fd()) {
                continue;
            }
            match open_file.read(&mut buf) {
                Ok(0) => *file = None,
                Ok(n) => {
                    let room = EXEC_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => *file = None,
            }
        }
        if pidfd.as_ref().is_some_and(|fd| fired(fd.as_raw_fd())) {
            pidfd = None;
        }
    }
    let [(_, stdout), (_, stderr)] = streams;
    Collected {
        stdout,
        stderr,
        timed_out,
    }
}

impl Runtime {
    /// Runs `argv` inside the running container and waits for it.
    pub fn exec(&self, id: &str, argv: &[String]) -> Result<ExecOutput> {
        self.exec_until(id, argv, None)
    }

    /// `exec` that kills the process (SIGKILL) if it is still running after
    /// `timeout`, and says so in `timed_out`: a health check or a remote
    /// `edgectl exec` must not hold a thread forever.
    pub fn exec_until(
        &self,
        id: &str,
        argv: &[String],
        timeout: Option<std::time::Duration>,
    ) -> Result<ExecOutput> {
        let record = self.read_record(id)?;
        if argv.is_empty() {
            return Err(Error::InvalidSpec("exec needs a command".to_owned()));
        }
        if !record.started || self.exit_status(id).is_some() || !Self::init_alive(&record) {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                state: "not running".to_owned(),
                action: "exec",
            });
        }
        let (out_read, out_write) = pipe_cloexec().ctx("create pipe", "exec stdout")?;
        let (err_read, err_write) = pipe_cloexec().ctx("create pipe", "exec stderr")?;
        let dev_null = File::open("/dev/null").ctx("open", "/dev/null")?;
        let built = super::on_clone_thread(|| {
            libcontainer::container::builder::ContainerBuilder::new(
                id.to_owned(),
                libcontainer::syscall::syscall::SyscallType::default(),
            )
            .with_root_path(self.state_root())
            .and_then(|b| {
                b.with_executor(super::executor::EnvFreeExecutor)
                    .with_stdin(OwnedFd::from(dev_null))
                    .with_stdout(out_write)
                    .with_stderr(err_write)
                    .as_tenant()
                    .with_container_args(argv.to_vec())
                    .with_detach(true)
                    .build()
            })
        });
        let pid = built.map_err(|source| Error::Libcontainer {
            id: id.to_owned(),
            action: "exec in",
            source: Box::new(source),
        })?;
        // The builder owned (and dropped) the write ends, so EOF arrives
        // when the exec'd process closes its copies.
        let collected = collect(pid, out_read, err_read, timeout);
        let (code, signal) = loop {
            match waitpid(pid, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Exited(_, code)) => break (Some(code), None),
                Ok(WaitStatus::Signaled(_, signal, _)) => break (None, Some(signal as i32)),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(source) => {
                    return Err(Error::Sys {
                        action: format!("wait for exec in {id}"),
                        source,
                    })
                }
            }
        };
        Ok(ExecOutput {
            code,
            signal,
            stdout: collected.stdout,
            stderr: collected.stderr,
            timed_out: collected.timed_out,
        })
    }
}

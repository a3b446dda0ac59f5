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

fn read_capped(fd: OwnedFd) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut file = File::from(fd);
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let room = EXEC_OUTPUT_BYTES_MAX.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        kept
    })
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
        // Readers start only now: the builder owned (and dropped) the write
        // ends, so EOF arrives when the exec'd process closes its copies.
        let stdout = read_capped(out_read);
        let stderr = read_capped(err_read);
        let pid = built.map_err(|source| Error::Libcontainer {
            id: id.to_owned(),
            action: "exec in",
            source: Box::new(source),
        })?;
        let timed_out = match timeout {
            Some(timeout) => kill_after(pid, timeout),
            None => false,
        };
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
        // A killed process's children may still hold the pipes open: after
        // a timeout, take what the readers have within a second, no more.
        let collect = |reader: std::thread::JoinHandle<Vec<u8>>| {
            if timed_out {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
                while !reader.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                if !reader.is_finished() {
                    return Vec::new();
                }
            }
            reader.join().unwrap_or_default()
        };
        Ok(ExecOutput {
            code,
            signal,
            stdout: collect(stdout),
            stderr: collect(stderr),
            timed_out,
        })
    }
}

/// Waits up to `timeout` for `pid` to exit (without reaping it) and
/// SIGKILLs it if it has not; true when it had to.
fn kill_after(pid: nix::unistd::Pid, timeout: std::time::Duration) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(pidfd) = crate::monitor::pidfd_open(pid.as_raw()) else {
        // Already reaped or gone: nothing to wait for.
        return false;
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, owned by this frame, for the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) };
        match ready {
            0 => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return true;
            }
            n if n > 0 => return false,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return false,
        }
    }
}

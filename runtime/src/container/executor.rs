//! The workload executor handed to libcontainer. It replaces the default one
//! for one reason: the default `setup_envs` rewrites the process environment
//! with `std::env::remove_var`/`set_var` inside the freshly cloned container
//! init. Those take std's process-wide environment lock for writing; if any
//! other thread of the daemon held it for reading at the instant of the
//! clone (`std::env::var`, `Command::spawn`, `env::temp_dir`...), the lock
//! is copied held into the child, whose only thread then waits forever. (Seen
//! here: one hang in ~50 test runs, init stuck in `RwLock::write_contended`.)
//!
//! This executor never touches the environment: it passes the spec's env to
//! `execve` directly and searches the spec's PATH itself.
//!
//! It also gives the workload default signal dispositions and an empty
//! signal mask. The init is a clone of the daemon, and `execve` keeps
//! ignored signals ignored: every container inherited SIGPIPE ignored (Rust
//! ignores it in every program), and SIGHUP too under `nohup`, where a
//! shell's `trap … HUP` then silently does nothing. For the same reason it
//! gives the workload the kernel's default OOM score adjustment: an
//! operator who shields the daemon from the OOM killer must not shield
//! every container with it (libcontainer's `oomScoreAdj` writes the
//! daemon's own score, not the container's). A workload must behave the
//! same whoever started the daemon, as under Docker or Kubernetes. This
//! executor runs for the init and for every exec'd process alike.

use std::collections::HashMap;
use std::ffi::CString;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};

#[derive(Clone)]
pub(crate) struct EnvFreeExecutor;

fn cstring(s: &str) -> Result<CString, ExecutorError> {
    CString::new(s.as_bytes()).map_err(|_| ExecutorError::InvalidArg)
}

/// Every catchable signal to its default action, none blocked. Runs in the
/// container's init, single-threaded, right before `execve`.
fn reset_signals() -> Result<(), ExecutorError> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // The kernel's own `struct sigaction`, all zero: SIG_DFL (0), no flags,
    // an empty mask, whatever the architecture's field order. The raw call,
    // because glibc's wrappers refuse its internal signals (32 and 33), and
    // the daemon leaves 32 ignored.
    let default_action = [0u64; 4];
    const KERNEL_SIGSET_BYTES: usize = 8;
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: the kernel reads a zeroed sigaction (SIG_DFL, no handler
        // to run) and writes nothing back (no old-action pointer).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_SIGSET_BYTES,
            );
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| ExecutorError::Execution(format!("clearing the signal mask: {e}").into()))
}

/// The kernel's default OOM score adjustment, for every workload process.
const WORKLOAD_OOM_SCORE_ADJ: &str = "0";

/// Sets this process's OOM score adjustment to the workload's. Best effort:
/// it is refused only where something privileged raised the daemon's floor
/// above 0, and the workload then runs with the daemon's score.
fn reset_oom_score_adj() {
    let _ = std::fs::write("/proc/self/oom_score_adj", WORKLOAD_OOM_SCORE_ADJ);
}

impl Executor for EnvFreeExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let process = spec.process().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let args = process.args().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let program = args.first().ok_or(ExecutorError::InvalidArg)?;
        let argv = args
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<Vec<_>, _>>()?;
        let env: Vec<String> = process.env().clone().unwrap_or_default();
        let envp = env
            .iter()
            .map(|e| cstring(e))
            .collect::<Result<Vec<_>, _>>()?;
        let candidates: Vec<String> = if program.contains('/') {
            vec![program.clone()]
        } else {
            let path = env
                .iter()
                .rev()
                .find_map(|e| e.strip_prefix("PATH="))
                .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            path.split(':')
                .filter(|dir| !dir.is_empty())
                .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
                .collect()
        };
        reset_signals()?;
        reset_oom_score_adj();
        let mut last_error = nix::errno::Errno::ENOENT;
        for candidate in candidates {
            let c_path = cstring(&candidate)?;
            // execve returns only on failure; try the next PATH entry like
            // execvp does for "not here" errors.
            match nix::unistd::execve(&c_path, &argv, &envp) {
                Err(
                    e @ (nix::errno::Errno::ENOENT
                    | nix::errno::Errno::ENOTDIR
                    | nix::errno::Errno::EACCES),
                ) => {
                    last_error = e;
                }
                Err(e) => {
                    return Err(ExecutorError::Execution(
                        format!("executing {candidate:?}: {e}").into(),
                    ))
                }
                Ok(never) => match never {},
            }
        }
        Err(ExecutorError::Execution(
            format!("executing {program:?}: {last_error}").into(),
        ))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(&self, _envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        // Deliberately nothing: see the module comment. `exec` passes the
        // environment to execve instead.
        Ok(())
    }
}

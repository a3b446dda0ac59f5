use std::fs;
use std::time::Duration;

use runtime::{ContainerState, Mount, Stream};

use crate::support::Env;

#[test]
fn exit_codes_and_signals() {
    let env = Env::new("exit");
    env.import_busybox();
    let (status, _) = env.run(env.spec("ok", &["/bin/true"]));
    assert_eq!(
        (status.code, status.signal, status.oom_killed),
        (Some(0), None, false)
    );
    let (status, _) = env.run(env.spec("seven", &["/bin/sh", "-c", "exit 7"]));
    assert_eq!(status.code, Some(7));
    // The container's own init cannot SIGKILL itself (PID 1): kill it from outside.
    env.rt()
        .create(env.spec("killed", &["/bin/sleep", "100"]))
        .unwrap();
    env.rt().start("killed").unwrap();
    env.rt()
        .kill("killed", nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let status = env.rt().wait("killed").unwrap();
    assert_eq!((status.code, status.signal), (None, Some(9)));
    assert_eq!(status.shell_code(), 137);
    // Waiting again returns the same status (it was persisted).
    assert_eq!(env.rt().wait("seven").unwrap().code, Some(7));
    assert_eq!(
        env.rt().info("seven").unwrap().state,
        ContainerState::Exited
    );
    env.finish();
}

#[test]
fn a_deleted_id_is_free_at_once_while_its_dir_is_reclaimed_behind() {
    let env = Env::new("reuse");
    env.import_busybox();
    for round in 0..3 {
        let (status, lines) = env.run(env.spec("again", &["/bin/sh", "-c", "echo round; exit 4"]));
        assert_eq!((status.code, lines), (Some(4), vec!["round".to_owned()]));
        // The writable layer of this round must not show in the next one.
        let (_, seen) = env.run(env.spec(
            "peek",
            &[
                "/bin/sh",
                "-c",
                "ls /left-behind 2>/dev/null; touch /left-behind",
            ],
        ));
        assert!(
            seen.is_empty(),
            "round {round} saw an earlier writable layer"
        );
        env.rt().delete("again").unwrap();
        env.rt().delete("peek").unwrap();
        assert!(
            env.rt().info("again").is_err(),
            "a deleted container is still listed"
        );
        assert!(!env.dir.path().join("runtime/containers/again").exists());
    }
    env.finish();
}

#[test]
fn the_exit_hook_names_each_container_that_exits() {
    let env = Env::new("hook");
    env.import_busybox();
    let (sender, exits) = std::sync::mpsc::channel::<String>();
    let sender = std::sync::Mutex::new(sender);
    env.rt().set_exit_hook(move |id| {
        let _ = sender.lock().unwrap().send(id.to_owned());
    });
    env.rt()
        .create(env.spec("hooked", &["/bin/sh", "-c", "exit 3"]))
        .unwrap();
    env.rt().start("hooked").unwrap();
    let id = exits
        .recv_timeout(Duration::from_secs(30))
        .expect("the hook is called when the container exits");
    assert_eq!(id, "hooked");
    // The status is recorded before the hook runs.
    assert_eq!(env.rt().info("hooked").unwrap().exit.unwrap().code, Some(3));
    env.rt().delete("hooked").unwrap();
    env.finish();
}

#[test]
fn env_args_workdir_user_and_etc_files() {
    let env = Env::new("envargs");
    env.import_busybox();
    let mut spec = env.spec(
        "envargs",
        &["/bin/sh", "-c", "echo \"$FOO|$0|$1|$(pwd)|$(id -u):$(id -g)|$(hostname)\"; grep -c localhost /etc/hosts", "first", "second"],
    );
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.workdir = Some("/tmp".into());
    spec.user = Some("nobody".into());
    spec.hostname = Some("edge-box".into());
    let (status, out) = env.run(spec);
    assert_eq!(status.code, Some(0));
    assert_eq!(
        out,
        vec![
            "bar baz|first|second|/tmp|65534:65534|edge-box".to_string(),
            "2".to_string()
        ]
    );
    env.finish();
}

#[test]
fn cgroup_limits_are_applied() {
    let env = Env::new("limits");
    env.import_busybox();
    let rt = env.rt();
    let mut spec = env.spec("limits", &["/bin/sleep", "30"]);
    spec.resources.memory_bytes = Some(64 * 1024 * 1024);
    spec.resources.pids_max = Some(32);
    spec.resources.cpu_shares = Some(512);
    spec.resources.cpu_quota_us = Some(50_000);
    rt.create(spec).unwrap();
    rt.start("limits").unwrap();
    let layout = rt.cgroup_layout().unwrap().clone();
    let path = rt.cgroup_path("limits");
    let read = |controller: &str, file: &str| {
        let dir = layout.controller_dir(controller, &path).unwrap();
        fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    match layout {
        runtime::CgroupLayout::V1 { .. } => {
            assert_eq!(
                read("memory", "memory.limit_in_bytes"),
                (64 * 1024 * 1024).to_string()
            );
            assert_eq!(read("pids", "pids.max"), "32");
            assert_eq!(read("cpu", "cpu.shares"), "512");
            assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
        }
        runtime::CgroupLayout::V2 { .. } => {
            assert_eq!(read("memory", "memory.max"), (64 * 1024 * 1024).to_string());
            assert_eq!(read("pids", "pids.max"), "32");
            assert_eq!(read("cpu", "cpu.max"), "50000 100000");
        }
    }
    // The container's init is in that cgroup.
    let pid = rt.info("limits").unwrap().pid.unwrap();
    let procs = read("pids", "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init {pid} not in {procs}"
    );
    env.finish();
}

#[test]
fn oom_kill_is_reported() {
    let env = Env::new("oom");
    env.import_busybox();
    let mut spec = env.spec(
        "oom",
        &[
            "/bin/sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived",
        ],
    );
    spec.resources.memory_bytes = Some(16 * 1024 * 1024);
    let (status, out) = env.run(spec);
    assert!(status.oom_killed, "{status:?} {out:?}");
    let (ok, _) = env.run(env.spec("fine", &["/bin/true"]));
    assert!(!ok.oom_killed);
    env.finish();
}

#[test]
fn logs_are_captured_with_timestamps_and_rotated() {
    let env = Env::with_options("logs", |o| {
        o.log_size_max_bytes = 8 * 1024;
        o.log_files_max = 3;
    });
    env.import_busybox();
    let script =
        "i=0; while [ $i -lt 1000 ]; do echo line $i; i=$((i+1)); done; echo oops >&2; printf tail";
    let (status, _) = env.run(env.spec("logs", &["/bin/sh", "-c", script]));
    assert_eq!(status.code, Some(0));
    let lines = env.rt().logs("logs").unwrap();
    let last = lines
        .iter()
        .rev()
        .find(|l| l.stream == Stream::Stdout)
        .unwrap();
    assert_eq!(last.text, "tail", "an unterminated last line is kept");
    assert!(lines
        .iter()
        .any(|l| l.stream == Stream::Stderr && l.text == "oops"));
    assert!(lines.iter().any(|l| l.text == "line 999"));
    // Rotation dropped the oldest lines and kept every file bounded.
    assert!(!lines.iter().any(|l| l.text == "line 0"));
    let dir = env.rt().root().join("containers/logs");
    for name in ["container.log", "container.log.1", "container.log.2"] {
        let len = fs::metadata(dir.join(name)).unwrap().len();
        assert!(len <= 8 * 1024, "{name} is {len} bytes");
    }
    assert!(!dir.join("container.log.3").exists());
    // RFC 3339 UTC timestamps, in order.
    assert!(lines
        .iter()
        .all(|l| l.time.len() == 30 && l.time.ends_with('Z') && l.time.as_bytes()[10] == b'T'));
    assert!(lines.windows(2).all(|w| w[0].time <= w[1].time));
    env.finish();
}

#[test]
fn exec_runs_inside_the_container() {
    let env = Env::new("exec");
    env.import_busybox();
    let rt = env.rt();
    let mut spec = env.spec("exec", &["/bin/sleep", "60"]);
    spec.hostname = Some("inside".into());
    rt.create(spec).unwrap();
    assert!(
        matches!(
            rt.exec("exec", &["/bin/true".into()]),
            Err(runtime::Error::InvalidState { .. })
        ),
        "not started yet"
    );
    rt.start("exec").unwrap();
    let out = rt
        .exec(
            "exec",
            &[
                "/bin/sh".into(),
                "-c".into(),
                "hostname; echo err >&2; exit 3".into(),
            ],
        )
        .unwrap();
    assert_eq!(out.code, Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // It shares the init's pid namespace: pid 1 is the sleep.
    let out = rt
        .exec("exec", &["/bin/cat".into(), "/proc/1/cmdline".into()])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/bin/sleep\u{0}60\u{0}"
    );
    assert!(!out.timed_out);
    // A process that outlives its deadline is killed, and said to be.
    let out = rt
        .exec_until(
            "exec",
            &[
                "/bin/sh".into(),
                "-c".into(),
                "echo before; sleep 60".into(),
            ],
            Some(std::time::Duration::from_millis(300)),
        )
        .unwrap();
    assert!(out.timed_out);
    assert_eq!((out.code, out.signal), (None, Some(9)));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    assert_eq!(rt.info("exec").unwrap().state, ContainerState::Running);
    env.finish();
}

#[test]
fn stop_sends_term_then_kill_after_grace() {
    let env = Env::new("stop");
    env.import_busybox();
    let rt = env.rt();
    // PID 1 with no handler ignores SIGTERM: only SIGKILL ends it.
    rt.create(env.spec("stubborn", &["/bin/sleep", "600"]))
        .unwrap();
    rt.start("stubborn").unwrap();
    let status = rt.stop("stubborn", Duration::from_millis(300)).unwrap();
    assert_eq!(status.signal, Some(9));
    // A process that handles SIGTERM exits by itself with its own code.
    rt.create(env.spec(
        "polite",
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    ))
    .unwrap();
    rt.start("polite").unwrap();
    crate::support::wait_for_line(rt, "polite", "ready");
    let status = rt.stop("polite", Duration::from_secs(30)).unwrap();
    assert_eq!(status.code, Some(42));
    // kill() with another signal.
    rt.create(env.spec(
        "hup",
        &[
            "/bin/sh",
            "-c",
            "trap 'exit 5' HUP; echo ready; while true; do sleep 0.05; done",
        ],
    ))
    .unwrap();
    rt.start("hup").unwrap();
    crate::support::wait_for_line(rt, "hup", "ready");
    rt.kill("hup", nix::sys::signal::Signal::SIGHUP).unwrap();
    assert_eq!(rt.wait("hup").unwrap().code, Some(5));
    env.finish();
}

/// Runs test `name` again in a child copy of this test binary with `CHILD`
/// set, and checks that it passed there: for tests that change
/// process-wide state (signal dispositions, umask, OOM score) the other
/// tests must not see.
fn passes_in_a_child_copy(name: &str) {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && report.contains("1 passed"),
        "{report}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

/// Set in the child copy of [`passes_in_a_child_copy`].
const CHILD: &str = "EDGECTL_TEST_CHILD_COPY";

fn in_child_copy() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// The workload starts with no signal ignored or blocked, whatever the
/// daemon's own dispositions: this test process ignores SIGPIPE (as every
/// Rust program does) and SIGHUP (as under `nohup`).
#[test]
fn workloads_start_with_default_signal_dispositions() {
    if !in_child_copy() {
        return passes_in_a_child_copy(
            "containers::workloads_start_with_default_signal_dispositions",
        );
    }
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler.
    unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) }.unwrap();
    let env = Env::new("signals");
    env.import_busybox();
    let (status, out) = env.run(env.spec(
        "signals",
        &["/bin/grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"],
    ));
    assert_eq!(status.code, Some(0), "{out:?}");
    assert_eq!(
        out,
        vec![
            "SigBlk:\t0000000000000000".to_string(),
            "SigIgn:\t0000000000000000".to_string()
        ]
    );
    env.finish();
}

/// The workload's umask is 022 whatever the daemon's: here 077, as in a
/// hardened service unit.
#[test]
fn workloads_start_with_the_usual_umask() {
    if !in_child_copy() {
        return passes_in_a_child_copy("containers::workloads_start_with_the_usual_umask");
    }
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077));
    let env = Env::new("umask");
    env.import_busybox();
    let (status, out) = env.run(env.spec("umask", &["/bin/sh", "-c", "umask"]));
    assert_eq!(status.code, Some(0), "{out:?}");
    assert_eq!(out, vec!["0022".to_string()]);
    env.finish();
}

/// A workload, and a process exec'd into it, get the kernel's default OOM
/// score adjustment (0), not the daemon's. Here the daemon's is 500: only
/// a privileged process can lower its own (as a daemon shielding itself
/// would), and this sandbox has no CAP_SYS_RESOURCE.
#[test]
fn workloads_do_not_inherit_the_daemons_oom_score() {
    if !in_child_copy() {
        return passes_in_a_child_copy(
            "containers::workloads_do_not_inherit_the_daemons_oom_score",
        );
    }
    fs::write("/proc/self/oom_score_adj", "500").unwrap();
    let env = Env::new("oom");
    env.import_busybox();
    let rt = env.rt();
    rt.create(env.spec(
        "oom",
        &[
            "/bin/sh",
            "-c",
            "cat /proc/self/oom_score_adj; echo ready; sleep 600",
        ],
    ))
    .unwrap();
    rt.start("oom").unwrap();
    crate::support::wait_for_line(rt, "oom", "ready");
    let lines: Vec<String> = rt
        .logs("oom")
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(lines.first().map(String::as_str), Some("0"), "{lines:?}");
    let exec = rt
        .exec(
            "oom",
            &[
                "/bin/cat".to_string(),
                "/proc/self/oom_score_adj".to_string(),
            ],
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "0");
    rt.stop("oom", Duration::from_millis(100)).unwrap();
    env.finish();
}

#[test]
fn mounts_bind_volume_tmpfs() {
    let env = Env::new("mounts");
    env.import_busybox();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("in.txt"), "from host").unwrap();
    let mut spec = env.spec(
        "mounts",
        &["/bin/sh", "-c", "cat /host/in.txt; echo; touch /host/x 2>/dev/null && echo rw || echo ro; echo saved > /data/out.txt; mount | grep -c ' /scratch type tmpfs'"],
    );
    spec.mounts = vec![
        Mount::Bind {
            source: host.path().to_owned(),
            target: "/host".into(),
            read_only: true,
        },
        Mount::Volume {
            name: "vol1".into(),
            target: "/data".into(),
            read_only: false,
            size_bytes: None,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size_bytes: Some(1 << 20),
        },
        Mount::Device {
            host_path: "/dev/null".into(),
            container_path: Some("/dev/passthrough".into()),
        },
    ];
    let (status, out) = env.run(spec);
    assert_eq!(status.code, Some(0), "{out:?}");
    assert_eq!(
        out,
        vec!["from host".to_string(), "ro".to_string(), "1".to_string()]
    );
    assert_eq!(
        fs::read_to_string(env.rt().root().join("volumes/vol1/out.txt")).unwrap(),
        "saved\n"
    );
    env.finish();
}

use std::time::Duration;

use runtime::{ContainerState, Runtime};

use crate::support::{self, Env};

#[test]
fn a_restarted_runtime_adopts_running_containers() {
    let mut env = Env::new("adopt");
    env.import_busybox();
    let ticker = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done";
    {
        let rt = env.rt();
        rt.create(env.spec("ticker", &["/bin/sh", "-c", ticker]))
            .unwrap();
        rt.start("ticker").unwrap();
        rt.create(env.spec("short", &["/bin/sh", "-c", "sleep 0.3; exit 4"]))
            .unwrap();
        rt.start("short").unwrap();
        assert!(!rt.info("ticker").unwrap().adopted);
    }
    let pid_before = env.rt().info("ticker").unwrap().pid.unwrap();
    let short_pid = env.rt().info("short").unwrap().pid.unwrap();
    support::wait_for_line(env.rt(), "ticker", "tick 2");
    // The "daemon" goes away; its containers keep running.
    drop(env.rt.take());
    // "short" exits while no runtime watches (it stays our zombie).
    support::wait_until("short to exit", || {
        std::fs::read_to_string(format!("/proc/{short_pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    });
    let rt = Runtime::open(env.dir.path(), env.options()).unwrap();
    let list = rt.list().unwrap();
    assert_eq!(list.len(), 2, "no duplicates, no losses");
    let ticker_info = list.iter().find(|c| c.id == "ticker").unwrap();
    assert_eq!(ticker_info.state, ContainerState::Running);
    assert!(ticker_info.adopted);
    assert_eq!(
        ticker_info.pid,
        Some(pid_before),
        "the same process, not a new one"
    );
    // The one that exited while no runtime watched has its code (it is
    // still our zombie child in this process).
    let short = list.iter().find(|c| c.id == "short").unwrap();
    assert_eq!(short.state, ContainerState::Exited);
    assert_eq!(rt.wait("short").unwrap().code, Some(4));
    // Creating the same id again is refused.
    assert!(matches!(
        rt.create(env.spec("ticker", &["/bin/true"])),
        Err(runtime::Error::ContainerExists { .. })
    ));
    // Logs keep flowing through the new runtime.
    let before = rt.logs("ticker").unwrap().len();
    support::wait_until("new log lines after adoption", || {
        rt.logs("ticker").unwrap().len() > before + 3
    });
    let after = rt.logs("ticker").unwrap();
    let numbers: Vec<u64> = after.iter().map(|l| l.text[5..].parse().unwrap()).collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "lines lost or duplicated across the restart"
    );
    // And it can be stopped and deleted.
    let status = rt.stop("ticker", Duration::from_millis(200)).unwrap();
    assert_eq!(status.signal, Some(9));
    env.rt = Some(rt);
    env.finish();
}

const HELPER_ENV: &str = "EDGECTL_RT_ADOPT_HELPER_DIR";

/// A real daemon restart: a second process (this test binary re-run as a
/// helper) creates and starts containers and exits; this process then
/// adopts them. Not being their parent, it cannot learn their exit codes:
/// they come back as unknown, which is the documented limitation.
#[test]
fn containers_of_an_exited_process_are_adopted() {
    if let Ok(dir) = std::env::var(HELPER_ENV) {
        // Helper role: play the daemon that dies with containers running.
        let options = runtime::RuntimeOptions {
            cgroup_parent: std::env::var("EDGECTL_RT_ADOPT_HELPER_CGROUP").unwrap(),
            ..runtime::RuntimeOptions::default()
        };
        let rt = Runtime::open(std::path::Path::new(&dir), options).unwrap();
        let spec = |id: &str, script: &str| runtime::ContainerSpec {
            id: id.into(),
            image: "busybox:latest".into(),
            command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
            ..Default::default()
        };
        rt.create(spec("long", "while true; do echo alive; sleep 0.05; done"))
            .unwrap();
        rt.start("long").unwrap();
        rt.create(spec("brief", "sleep 0.5; exit 3")).unwrap();
        rt.start("brief").unwrap();
        std::process::exit(0);
    }
    let mut env = Env::new("xproc");
    env.import_busybox();
    drop(env.rt.take());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "adoption::containers_of_an_exited_process_are_adopted",
            "--exact",
            "--nocapture",
        ])
        .env(HELPER_ENV, env.dir.path())
        .env("EDGECTL_RT_ADOPT_HELPER_CGROUP", &env.cgroup_parent)
        .status()
        .unwrap();
    assert!(status.success());
    let rt = Runtime::open(env.dir.path(), env.options()).unwrap();
    let list = rt.list().unwrap();
    assert_eq!(list.len(), 2, "no duplicates, no losses");
    assert!(list.iter().all(|c| c.adopted));
    assert_eq!(rt.info("long").unwrap().state, ContainerState::Running);
    support::wait_for_line(&rt, "long", "alive");
    // "brief" exits on its own after the helper is gone: noticed, code unknown.
    let brief = rt.wait("brief").unwrap();
    assert_eq!((brief.code, brief.signal), (None, None));
    assert_eq!(brief.shell_code(), 255);
    let long = rt.stop("long", Duration::from_millis(200)).unwrap();
    assert_eq!((long.code, long.signal), (None, None));
    assert_eq!(rt.info("long").unwrap().state, ContainerState::Exited);
    env.rt = Some(rt);
    env.finish();
}

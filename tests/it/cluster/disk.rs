//! A node whose disk fills up: writes that grow the store are refused with
//! the reason while its reserve is short, the node keeps serving reads and
//! deletes, and writes pass again once space is freed; a disk full at start
//! is a clear error, not RocksDB aborting, and the data is intact after.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{EdgeCluster, CONVERGE};
use crate::support::{wait_until, ProcessStatus};

/// A tmpfs of `mib` MiB at `dir`, unmounted (lazily, so even with the node
/// still in it) when dropped. Drop it before the cluster that owns `dir`.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, mib: u64) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs at {}", dir.display());
        SmallDisk(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    edgectl::node::disk::free_bytes(dir).unwrap()
}

/// Writes zeros into `path` until at most `leave` bytes are free on its
/// filesystem (or it is full).
fn fill(path: &Path, leave: u64) {
    let mut file = fs::File::create(path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while free_bytes(path.parent().unwrap()) > leave + chunk.len() as u64 {
        if file.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

/// Waits for node 1 to stop, then checks its log says every one of `words`
/// and shows no RocksDB assertion abort.
fn stopped_saying(cluster: &EdgeCluster, words: &[&str]) {
    let log = wait_until(CONVERGE, "node 1 to stop", || {
        match cluster.net.status("node1") {
            ProcessStatus::Running(_) => None,
            _ => Some(cluster.net.log("node1")),
        }
    })
    .unwrap();
    for word in words {
        assert!(log.contains(word), "{word:?} missing from the log:\n{log}");
    }
    assert!(!log.contains("Assertion"), "RocksDB aborted:\n{log}");
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_filling_disk_refuses_growing_writes_then_recovers() {
    let mut cluster = EdgeCluster::with_flags("cdk", 1, &["--no-agent", "--disk-reserve", "64Mi"]);
    let data = cluster.data_dir(1);
    // RocksDB preallocates 16 MiB for its write-ahead log at once, and the
    // reserve must stay clear of that.
    let disk = SmallDisk::mount(&data, 192);
    let filler = data.join("filler");
    cluster.form(1);
    cluster.wait_voters(1, 1, 1);
    let first = cluster.put(1, "/kv/keep", "before");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(cluster.put(1, "/kv/gone", "x").status.success());

    // Below the reserve: a put is refused, saying why and what to do.
    fill(&filler, 32 << 20);
    let refused = cluster.put(1, "/kv/new", "v");
    assert!(
        !refused.status.success(),
        "a put passed on a nearly full disk"
    );
    let reason = stderr(&refused);
    assert!(
        reason.contains("nearly full") && reason.contains("free space"),
        "unclear refusal: {reason}"
    );
    // Reads and deletes still work, and the node is alive.
    assert_eq!(cluster.get(1, "/kv/keep", false).as_deref(), Some("before"));
    let deleted = cluster.cli(1, &["kv", "del", "/kv/gone"]);
    assert!(
        deleted.status.success(),
        "delete refused: {}",
        stderr(&deleted)
    );
    assert!(matches!(
        cluster.net.status("node1"),
        ProcessStatus::Running(_)
    ));

    // Space back: the same put passes.
    fs::remove_file(&filler).unwrap();
    let accepted = cluster.put(1, "/kv/new", "v");
    assert!(accepted.status.success(), "{}", stderr(&accepted));

    // A disk full at start: the node exits with the reason instead of
    // letting RocksDB abort, and starts once there is room again.
    cluster.kill(1);
    fill(&filler, 0);
    cluster.serve(1);
    stopped_saying(&cluster, &["is full", "intact"]);
    fs::remove_file(&filler).unwrap();
    cluster.serve(1);
    wait_until(CONVERGE, "the data after the restart", || {
        (cluster.get(1, "/kv/new", false).as_deref() == Some("v")).then_some(())
    })
    .unwrap();
    assert_eq!(cluster.get(1, "/kv/gone", false), None);
    // The disk first (as on a panic: it was declared last): the cluster
    // then removes an empty directory instead of failing on a mount point.
    drop(disk);
    drop(cluster);
}

/// Text that compresses badly, so the store really fills its disk.
fn noise_text(len: usize, seed: u64) -> String {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

#[test]
fn with_no_reserve_a_full_disk_stops_the_node_with_the_reason_not_an_abort() {
    let mut cluster = EdgeCluster::with_flags("cdz", 1, &["--no-agent", "--disk-reserve", "0"]);
    let data = cluster.data_dir(1);
    let disk = SmallDisk::mount(&data, 64);
    cluster.form(1);
    cluster.wait_voters(1, 1, 1);
    assert!(cluster.put(1, "/kv/first", "kept").status.success());
    // Nothing holds writes back: they go on until the store hits ENOSPC.
    let mut refused = None;
    for i in 0..2000 {
        let put = cluster.put(1, &format!("/kv/fill/{i}"), &noise_text(60_000, i + 1));
        if !put.status.success() {
            refused = Some(i);
            break;
        }
    }
    assert!(refused.is_some(), "64 MiB never filled up");
    stopped_saying(&cluster, &["the replicated store stopped", "No space left"]);
    // With room again the node starts, and what was acknowledged is there.
    let status = std::process::Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    cluster.serve(1);
    wait_until(CONVERGE, "the data after the restart", || {
        (cluster.get(1, "/kv/first", false).as_deref() == Some("kept")).then_some(())
    })
    .unwrap();
    // The disk first (as on a panic: it was declared last): the cluster
    // then removes an empty directory instead of failing on a mount point.
    drop(disk);
    drop(cluster);
}

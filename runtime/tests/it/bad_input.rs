use std::fs;
use std::path::Path;

use runtime::Error;

use crate::support::{self, Entry, Env, LayoutImage};

fn layout_with(dir: &Path, layers: Vec<Vec<u8>>, media: &str) -> std::path::PathBuf {
    support::write_layout(
        dir,
        &LayoutImage {
            layers,
            process: serde_json::json!({"Cmd": ["/bin/true"]}),
            layer_media_type: media.into(),
            name: "bad:1".into(),
        },
    )
}

/// Imports `path`, expects an error matching `check`, and proves the store
/// did not change.
pub(crate) fn refused(env: &Env, path: &Path, check: impl Fn(&Error) -> bool) {
    let before = support::store_snapshot(env.rt());
    let err = env.rt().images().import(path).unwrap_err();
    assert!(check(&err), "unexpected error: {err}");
    assert!(!err.to_string().is_empty());
    assert_eq!(
        support::store_snapshot(env.rt()),
        before,
        "store changed after: {err}"
    );
    assert_eq!(
        fs::read_dir(env.rt().root().join("tmp")).unwrap().count(),
        0,
        "staging left after: {err}"
    );
}

#[test]
fn bad_archives_are_refused_and_leave_the_store_alone() {
    let env = Env::new("badimg");
    env.import_busybox();
    let work = tempfile::tempdir().unwrap();
    let good = fs::read(support::busybox_tar()).unwrap();

    let truncated = work.path().join("truncated.tar");
    fs::write(&truncated, &good[..good.len() / 2 + 100]).unwrap();
    refused(&env, &truncated, |e| {
        matches!(e, Error::BadArchive { .. } | Error::MissingBlob { .. })
    });

    let garbage = work.path().join("garbage.tar");
    fs::write(
        &garbage,
        b"this is not a tar archive at all, not even close..........",
    )
    .unwrap();
    refused(&env, &garbage, |e| matches!(e, Error::BadArchive { .. }));

    // A layer whose bytes do not match its digest.
    let dir = work.path().join("corrupt");
    let layout = layout_with(
        &dir,
        vec![support::layer_tar(&[Entry::File("f", b"hello")])],
        "application/vnd.oci.image.layer.v1.tar",
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&manifest_hex)).unwrap())
            .unwrap();
    let layer_hex = manifest["layers"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let layer_path = layout.join("blobs/sha256").join(&layer_hex);
    let mut bytes = fs::read(&layer_path).unwrap();
    bytes[600] ^= 0xff;
    fs::write(&layer_path, &bytes).unwrap();
    refused(&env, &layout, |e| matches!(e, Error::DigestMismatch { .. }));
    let tarred = work.path().join("corrupt.tar");
    support::tar_dir(&layout, &tarred);
    refused(&env, &tarred, |e| matches!(e, Error::DigestMismatch { .. }));

    // A missing layer.
    fs::remove_file(&layer_path).unwrap();
    refused(&env, &layout, |e| matches!(e, Error::MissingBlob { .. }));

    // Unknown layer media type.
    let dir = work.path().join("zstd");
    let layout = layout_with(
        &dir,
        vec![support::layer_tar(&[Entry::File("f", b"x")])],
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );
    refused(&env, &layout, |e| {
        matches!(e, Error::UnknownMediaType { .. })
    });
    env.finish();
}

#[test]
fn layer_entries_escaping_the_rootfs_are_refused() {
    let env = Env::new("escape");
    let work = tempfile::tempdir().unwrap();
    let victim = work.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    let cases: Vec<(&str, Vec<Entry<'_>>)> = vec![
        (
            "dotdot",
            vec![Entry::File("../../../../../../../tmp/edgectl-escape", b"x")],
        ),
        (
            "absolute",
            vec![Entry::File("/tmp/edgectl-escape-abs", b"x")],
        ),
        (
            "symlink-parent",
            vec![
                Entry::Symlink("link", victim.to_str().unwrap()),
                Entry::File("link/pwned", b"x"),
            ],
        ),
        (
            "symlink-dotdot",
            vec![
                Entry::Symlink("up", "../../../../.."),
                Entry::File("up/tmp/edgectl-escape-up", b"x"),
            ],
        ),
    ];
    for (name, entries) in cases {
        let dir = work.path().join(name);
        let layout = layout_with(
            &dir,
            vec![support::layer_tar(&entries)],
            "application/vnd.oci.image.layer.v1.tar",
        );
        refused(&env, &layout, |e| {
            matches!(e, Error::UnsafeLayerEntry { .. })
        });
    }
    assert!(!Path::new("/tmp/edgectl-escape").exists());
    assert!(!Path::new("/tmp/edgectl-escape-abs").exists());
    assert!(!Path::new("/tmp/edgectl-escape-up").exists());
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
    env.finish();
}

#[test]
fn bad_container_specs_are_refused_without_leftovers() {
    let env = Env::new("badspec");
    env.import_busybox();
    let rt = env.rt();
    let err = rt
        .create(env.spec("nocmd", &["/bin/does-not-exist"]))
        .unwrap_err();
    assert!(matches!(err, Error::CommandNotFound { .. }), "{err}");
    let err = rt
        .create(env.spec("nocmd2", &["no-such-applet"]))
        .unwrap_err();
    assert!(matches!(err, Error::CommandNotFound { .. }), "{err}");

    let mut tiny = env.spec("tiny", &["/bin/true"]);
    tiny.resources.memory_bytes = Some(64 * 1024);
    let err = rt.create(tiny).unwrap_err();
    assert!(matches!(err, Error::MemoryLimitTooSmall { .. }), "{err}");

    let mut missing = env.spec("noimg", &["/bin/true"]);
    missing.image = "nope:latest".into();
    assert!(matches!(
        rt.create(missing),
        Err(Error::ImageNotFound { .. })
    ));

    rt.create(env.spec("dup", &["/bin/sleep", "30"])).unwrap();
    let err = rt.create(env.spec("dup", &["/bin/true"])).unwrap_err();
    assert!(matches!(err, Error::ContainerExists { .. }), "{err}");
    // The first container is unharmed by the refused duplicate.
    rt.start("dup").unwrap();
    assert_eq!(
        rt.info("dup").unwrap().state,
        runtime::ContainerState::Running
    );

    assert!(matches!(
        rt.create(env.spec("../x", &["/bin/true"])),
        Err(Error::InvalidContainerId { .. })
    ));
    let ids: Vec<String> = rt.list().unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec!["dup".to_string()]);
    env.finish();
}

/// A tmpfs of a few MiB mounted for one test, unmounted even if it fails.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u64) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("edgectl-rt-fulldisk-")
            .tempdir()
            .unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={mib}m").as_str()),
        )
        .unwrap();
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Incompressible bytes (xorshift), so no filesystem can store them smaller.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn is_disk_full(error: &Error) -> bool {
    matches!(error, Error::DiskFull { .. })
        && error.to_string().contains("the disk is full")
        && error.to_string().contains("free space")
}

#[test]
fn a_full_disk_is_named_as_such_and_loses_nothing() {
    let disk = SmallDisk::new(16);
    let data = disk.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let cgroup_parent = format!("edgectl-test-fulldisk-{}", std::process::id());
    let options = runtime::RuntimeOptions {
        cgroup_parent: cgroup_parent.clone(),
        // This test is about the disk really filling: no reserve.
        import_limits: runtime::ImportLimits {
            disk_reserve_bytes: 0,
            ..runtime::ImportLimits::default()
        },
        ..runtime::RuntimeOptions::default()
    };
    let rt = runtime::Runtime::open(&data, options).unwrap();
    rt.images().import(&support::busybox_tar()).unwrap();

    // An image bigger than the space left: refused as a full disk, and the
    // store (busybox still usable) and staging are as before.
    let work = tempfile::tempdir().unwrap();
    let big = layout_with(
        &work.path().join("big"),
        vec![support::layer_tar(&[Entry::File(
            "blob.bin",
            &noise(12 << 20),
        )])],
        "application/vnd.oci.image.layer.v1.tar",
    );
    let before = support::store_snapshot(&rt);
    let err = rt.images().import(&big).unwrap_err();
    assert!(is_disk_full(&err), "unexpected error: {err}");
    assert_eq!(
        support::store_snapshot(&rt),
        before,
        "store changed after: {err}"
    );
    assert_eq!(fs::read_dir(rt.root().join("tmp")).unwrap().count(), 0);

    // Fill what is left: a container cannot be created, says why, and
    // leaves no directory, cgroup or mount behind.
    let filler = disk.dir.path().join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    let spec = runtime::ContainerSpec {
        id: "squeezed".to_owned(),
        image: "busybox:latest".to_owned(),
        command: Some(vec!["/bin/true".to_owned()]),
        ..Default::default()
    };
    let err = rt.create(spec.clone()).unwrap_err();
    assert!(is_disk_full(&err), "unexpected error: {err}");
    assert!(rt.list().unwrap().is_empty());

    // Space back: the same container runs.
    fs::remove_file(&filler).unwrap();
    rt.create(spec).unwrap();
    rt.start("squeezed").unwrap();
    assert_eq!(rt.wait("squeezed").unwrap().code, Some(0));
    rt.delete("squeezed").unwrap();
    let layout = rt.cgroup_layout().cloned();
    drop(rt);
    support::assert_no_leftovers(&data, &cgroup_parent, layout.as_ref());
}

#[test]
fn an_import_that_would_eat_the_disk_reserve_is_refused() {
    let disk = SmallDisk::new(64);
    let data = disk.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let cgroup_parent = format!("edgectl-test-reserve-{}", std::process::id());
    let open = |reserve_mib: u64| {
        let options = runtime::RuntimeOptions {
            cgroup_parent: cgroup_parent.clone(),
            import_limits: runtime::ImportLimits {
                disk_reserve_bytes: reserve_mib << 20,
                ..runtime::ImportLimits::default()
            },
            ..runtime::RuntimeOptions::default()
        };
        runtime::Runtime::open(&data, options).unwrap()
    };
    let rt = open(16);
    rt.images().import(&support::busybox_tar()).unwrap();
    // 24 MiB, copied in as a blob (leaves ~30 MiB free) then unpacked
    // (would leave ~6): refused as the layer is written, not up front.
    let work = tempfile::tempdir().unwrap();
    let big = layout_with(
        &work.path().join("big"),
        vec![support::layer_tar(&[Entry::File(
            "blob.bin",
            // tmpfs neither compresses nor dedups: zeros take their size.
            &vec![0u8; 24 << 20],
        )])],
        "application/vnd.oci.image.layer.v1.tar",
    );
    let before = support::store_snapshot(&rt);
    let err = rt.images().import(&big).unwrap_err();
    assert!(
        matches!(err, Error::DiskReserve { reserve, .. } if reserve == 16 << 20),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("--disk-reserve"), "{err}");
    assert_eq!(
        support::store_snapshot(&rt),
        before,
        "store changed after: {err}"
    );
    assert_eq!(fs::read_dir(rt.root().join("tmp")).unwrap().count(), 0);
    let layout = rt.cgroup_layout().cloned();

    // A blob fetched from a peer is held to the same reserve, chunk by
    // chunk: what was received before the refusal stays for a resume.
    // Refused long before the end, so the digest is never checked.
    let blob = vec![0u8; 56 << 20];
    let digest: runtime::Digest = format!("sha256:{}", support::sha256_hex(b"some blob"))
        .parse()
        .unwrap();
    let mut partial = rt.images().partial_blob(&digest).unwrap();
    let chunk = 1 << 20;
    let mut sent = 0;
    let err = loop {
        match partial.append(&blob[sent..sent + chunk]) {
            Ok(()) => sent += chunk,
            Err(err) => break err,
        }
        assert!(sent < blob.len(), "the whole blob was accepted");
    };
    assert!(
        matches!(err, Error::DiskReserve { .. }),
        "unexpected error: {err}"
    );
    assert_eq!(partial.len(), sent as u64);
    assert!(sent > 32 << 20, "refused too early, after {sent} bytes");
    partial.discard().unwrap();
    drop(rt);

    // With a smaller reserve the same image fits.
    let rt = open(4);
    rt.images().import(&big).unwrap();
    drop(rt);
    support::assert_no_leftovers(&data, &cgroup_parent, layout.as_ref());
}

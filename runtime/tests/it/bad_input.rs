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
fn refused(env: &Env, path: &Path, check: impl Fn(&Error) -> bool) {
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

use std::fs;

use crate::support::{self, Entry, Env, LayoutImage};

#[test]
fn import_list_inspect_remove_gc() {
    let env = Env::new("img");
    let rt = env.rt();
    let busybox = env.import_busybox();
    assert_eq!(busybox.refs, vec!["busybox:latest".to_string()]);
    assert_eq!(busybox.config.cmd, vec!["/bin/sh".to_string()]);
    let httpd = rt.images().import(&support::httpd_tar()).unwrap().remove(0);
    // Importing again changes nothing and returns the same id.
    let again = rt
        .images()
        .import(&support::busybox_tar())
        .unwrap()
        .remove(0);
    assert_eq!(again.id, busybox.id);
    let list = rt.images().list().unwrap();
    assert_eq!(
        list.iter().map(|i| i.refs[0].as_str()).collect::<Vec<_>>(),
        ["busybox:latest", "httpd:latest"]
    );
    // The two images share the busybox layer: one unpacked copy.
    assert_eq!(httpd.layers[0].digest, busybox.layers[0].digest);
    assert_eq!(fs::read_dir(rt.root().join("layers")).unwrap().count(), 2);
    assert_eq!(rt.images().inspect("busybox").unwrap().id, busybox.id);
    assert_eq!(
        rt.images().inspect(&busybox.id.to_string()).unwrap().id,
        busybox.id
    );
    assert_eq!(
        rt.images().inspect(&busybox.id.hex()[..12]).unwrap().id,
        busybox.id
    );
    assert!(rt
        .root()
        .join("layers")
        .join(busybox.layers[0].digest.hex())
        .join("bin/busybox")
        .is_file());

    // Removing httpd frees only its own layer and blobs.
    let report = rt.images().remove("httpd:latest").unwrap();
    assert_eq!(report.layers_removed, 1);
    assert_eq!(report.blobs_removed, 3, "manifest, config, www layer");
    assert!(rt
        .root()
        .join("layers")
        .join(busybox.layers[0].digest.hex())
        .is_dir());
    assert!(matches!(
        rt.images().inspect("httpd"),
        Err(runtime::Error::ImageNotFound { .. })
    ));

    // Refused while a container uses it, allowed after.
    rt.create(env.spec("user", &["/bin/true"])).unwrap();
    assert!(matches!(
        rt.images().remove("busybox"),
        Err(runtime::Error::ImageInUse { .. })
    ));
    rt.delete("user").unwrap();
    rt.images().remove("busybox").unwrap();
    assert!(rt.images().list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(rt.root().join("images/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(rt.root().join("layers")).unwrap().count(), 0);
    env.finish();
}

#[test]
fn imports_docker_save_tarball() {
    let env = Env::new("dsave");
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    let layer = support::busybox_layer();
    let layer_hex = support::sha256_hex(&layer);
    fs::create_dir_all(tree.join(&layer_hex)).unwrap();
    fs::write(tree.join(&layer_hex).join("layer.tar"), &layer).unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/echo", "from docker"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]}
    }))
    .unwrap();
    let config_hex = support::sha256_hex(&config);
    fs::write(tree.join(format!("{config_hex}.json")), &config).unwrap();
    fs::write(
        tree.join("manifest.json"),
        serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{config_hex}.json"),
            "RepoTags": ["docker.io/library/dbox:1.0"],
            "Layers": [format!("{layer_hex}/layer.tar")]
        }]))
        .unwrap(),
    )
    .unwrap();
    let archive = work.path().join("dbox.tar");
    support::tar_dir(&tree, &archive);
    let info = env.rt().images().import(&archive).unwrap().remove(0);
    assert_eq!(info.refs, vec!["docker.io/library/dbox:1.0".to_string()]);
    assert_eq!(info.layers[0].diff_id.hex(), layer_hex);
    let mut spec = env.spec("d1", &[]);
    spec.command = None;
    spec.image = "docker.io/library/dbox:1.0".into();
    let (status, out) = env.run(spec);
    assert_eq!(status.code, Some(0));
    assert_eq!(out, vec!["from docker".to_string()]);
    env.finish();
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_layers() {
    let env = Env::new("wh");
    let work = tempfile::tempdir().unwrap();
    let lower = support::layer_tar(&[
        Entry::Dir("a/"),
        Entry::File("a/gone", b"x"),
        Entry::File("a/kept", b"x"),
        Entry::Dir("b/"),
        Entry::File("b/old", b"x"),
    ]);
    let upper = support::layer_tar(&[
        Entry::Dir("a/"),
        Entry::File("a/.wh.gone", b""),
        Entry::Dir("b/"),
        Entry::File("b/.wh..wh..opq", b""),
        Entry::File("b/new", b"y"),
    ]);
    let layout = support::write_layout(
        work.path(),
        &LayoutImage {
            layers: vec![support::busybox_layer(), lower, upper],
            process: serde_json::json!({"Env": ["PATH=/bin"]}),
            layer_media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            name: "wh:1".into(),
        },
    );
    env.rt().images().import(&layout).unwrap();
    let mut spec = env.spec("w1", &["/bin/sh", "-c", "ls /a /b | tr '\\n' ' '"]);
    spec.image = "wh:1".into();
    let (status, out) = env.run(spec);
    assert_eq!(status.code, Some(0));
    assert_eq!(out, vec!["/a: kept  /b: new ".to_string()]);
    env.finish();
}

//! Blob-by-blob ingest (what a node does when it fetches an image from a
//! peer): `partial_blob` + `finish`, then `import_from_blobs`, all without
//! an archive. Two stores stand for the two nodes.

use std::fs;
use std::path::Path;

use runtime::{Digest, ImageStore};

use crate::support::Env;

/// Copies `bytes[from..to]` of a blob of `source` into `dest`'s partial file.
fn copy_range(source: &ImageStore, dest: &ImageStore, digest: &Digest, from: usize, to: usize) {
    let bytes = fs::read(source.blob_path(digest).unwrap()).unwrap();
    let mut partial = dest.partial_blob(digest).unwrap();
    assert_eq!(partial.len(), from as u64, "resumes where it stopped");
    partial.append(&bytes[from..to]).unwrap();
}

fn blob_count(root: &Path) -> usize {
    fs::read_dir(root.join("images/blobs/sha256"))
        .unwrap()
        .count()
}

fn tmp_entries(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn blobs_copied_in_two_halves_import_and_run() {
    let a = Env::new("ingest-a");
    let b = Env::new("ingest-b");
    let info = a.import_busybox();
    let (sa, sb) = (a.rt().images(), b.rt().images());
    let blobs = sa.blobs_of(&info.id).unwrap();
    assert_eq!(blobs.len(), 2 + info.layers.len());
    assert_eq!(blobs[0].0, info.id);
    assert_eq!(blobs[1].0, info.config_digest);
    assert_eq!(blobs.iter().map(|b| b.1).sum::<u64>(), info.size_bytes);
    assert!(sb.blob_path(&info.id).is_none(), "b holds nothing yet");

    for (digest, size) in &blobs {
        let half = (*size / 2) as usize;
        // The first half, then the partial is dropped (a cut transfer)...
        copy_range(sa, sb, digest, 0, half);
        assert!(sb.blob_path(digest).is_none(), "not a blob until verified");
        // ... and a new handle resumes from its length.
        copy_range(sa, sb, digest, half, *size as usize);
        let stored = sb.partial_blob(digest).unwrap().finish().unwrap();
        assert_eq!(Some(stored), sb.blob_path(digest));
    }
    assert!(
        tmp_entries(b.rt().root()).is_empty(),
        "{:?}",
        tmp_entries(b.rt().root())
    );
    let imported = sb
        .import_from_blobs(&info.id, &["busybox".to_string()])
        .unwrap();
    assert_eq!(imported.id, info.id);
    assert_eq!(imported.refs, vec!["busybox:latest".to_string()]);
    assert_eq!(imported.layers, info.layers);
    assert_eq!(sb.resolve("busybox:latest").unwrap(), info.id);
    // The image is whole: a container runs from it.
    let (status, out) = b.run(b.spec("from-blobs", &["/bin/echo", "fetched"]));
    assert_eq!(status.code, Some(0));
    assert_eq!(out, vec!["fetched".to_string()]);
    // Importing again is a no-op that keeps the name.
    let again = sb.import_from_blobs(&info.id, &[]).unwrap();
    assert_eq!(again.refs, vec!["busybox:latest".to_string()]);
    a.finish();
    b.finish();
}

#[test]
fn partial_blobs_survive_reopen_and_wrong_bytes_are_refused() {
    let a = Env::new("ingest-bad-a");
    let mut b = Env::new("ingest-bad-b");
    let info = a.import_busybox();
    let layer = info.layers[0].digest.clone();
    let bytes = fs::read(a.rt().images().blob_path(&layer).unwrap()).unwrap();
    let half = bytes.len() / 2;

    // A partial file outlives the runtime (a daemon restart).
    b.rt()
        .images()
        .partial_blob(&layer)
        .unwrap()
        .append(&bytes[..half])
        .unwrap();
    let options = b.options();
    drop(b.rt.take());
    b.rt = Some(runtime::Runtime::open(b.dir.path(), options).unwrap());
    let store = b.rt().images();
    assert_eq!(store.partial_blob(&layer).unwrap().len(), half as u64);

    // Corrupt one byte of what was received: the finished file is refused,
    // the partial is gone, and no blob appears.
    let partial_path = store.partial_blob(&layer).unwrap().path().to_owned();
    let mut corrupted = fs::read(&partial_path).unwrap();
    corrupted[half / 2] ^= 0xff;
    fs::write(&partial_path, &corrupted).unwrap();
    let mut partial = store.partial_blob(&layer).unwrap();
    partial.append(&bytes[half..]).unwrap();
    let err = partial.finish().unwrap_err();
    assert!(
        matches!(err, runtime::Error::DigestMismatch { ref expected, .. } if *expected == layer.to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(!partial_path.exists(), "a wrong partial is deleted");
    assert!(store.blob_path(&layer).is_none());
    assert_eq!(blob_count(b.rt().root()), 0);

    // Too many bytes hash wrong too.
    let mut partial = store.partial_blob(&layer).unwrap();
    assert!(partial.is_empty(), "starts again from zero");
    partial.append(&bytes).unwrap();
    partial.append(b"x").unwrap();
    assert!(partial.finish().is_err());
    assert!(store.blob_path(&layer).is_none());
    a.finish();
    b.finish();
}

#[test]
fn import_from_blobs_is_all_or_nothing() {
    let a = Env::new("ingest-txn-a");
    let b = Env::new("ingest-txn-b");
    let info = a.import_busybox();
    let (sa, sb) = (a.rt().images(), b.rt().images());
    let blobs = sa.blobs_of(&info.id).unwrap();
    let copy_whole = |digest: &Digest| {
        let bytes = fs::read(sa.blob_path(digest).unwrap()).unwrap();
        let mut partial = sb.partial_blob(digest).unwrap();
        partial.append(&bytes).unwrap();
        partial.finish().unwrap();
    };
    let index_before = fs::read(b.rt().root().join("images/index.json")).unwrap();

    // Nothing there: the manifest is missing.
    let err = sb.import_from_blobs(&info.id, &[]).unwrap_err();
    assert!(matches!(err, runtime::Error::MissingBlob { .. }), "{err}");

    // Manifest and config only: a layer is missing, nothing is unpacked.
    copy_whole(&blobs[0].0);
    copy_whole(&blobs[1].0);
    let err = sb.import_from_blobs(&info.id, &[]).unwrap_err();
    assert!(matches!(err, runtime::Error::MissingBlob { .. }), "{err}");
    assert_eq!(
        fs::read_dir(b.rt().root().join("layers")).unwrap().count(),
        0
    );

    // A layer blob whose bytes changed on disk after it was stored: the
    // import re-verifies and refuses it, leaving index and layers as they were.
    let layer = &blobs[2].0;
    copy_whole(layer);
    let path = sb.blob_path(layer).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = sb.import_from_blobs(&info.id, &[]).unwrap_err();
    assert!(
        matches!(err, runtime::Error::DigestMismatch { .. }),
        "{err}"
    );
    assert_eq!(
        fs::read(b.rt().root().join("images/index.json")).unwrap(),
        index_before
    );
    assert_eq!(
        fs::read_dir(b.rt().root().join("layers")).unwrap().count(),
        0
    );
    assert!(sb.list().unwrap().is_empty());

    // A manifest digest that names a config blob is not a manifest.
    let err = sb.import_from_blobs(&blobs[1].0, &[]).unwrap_err();
    assert!(
        !matches!(err, runtime::Error::Io { .. }),
        "a clear refusal, not an io error: {err}"
    );
    assert!(sb.list().unwrap().is_empty());
    a.finish();
    b.finish();
}

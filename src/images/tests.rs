use super::*;

fn digest(fill: char) -> Digest {
    format!("sha256:{}", fill.to_string().repeat(64))
        .parse()
        .unwrap()
}

fn image(fill: char, refs: &[&str], holders: &[NodeId]) -> ClusterImage {
    ClusterImage {
        id: digest(fill),
        refs: refs.iter().map(|r| r.to_string()).collect(),
        blobs: vec![BlobRef {
            digest: digest(fill),
            size: 10,
        }],
        size_bytes: 10,
        holders: holders.to_vec(),
    }
}

fn info(fill: char, refs: &[&str]) -> runtime::ImageInfo {
    runtime::ImageInfo {
        id: digest(fill),
        refs: refs.iter().map(|r| r.to_string()).collect(),
        config_digest: digest('c'),
        layers: Vec::new(),
        size_bytes: 0,
        created: None,
        architecture: None,
        os: None,
        config: runtime::ImageConfig::default(),
    }
}

#[test]
fn find_by_name_id_and_prefix() {
    let images = vec![
        image('a', &["busybox:latest"], &[1]),
        image('b', &["httpd:1"], &[2]),
    ];
    assert_eq!(find(&images, "busybox").unwrap().id, digest('a'));
    assert_eq!(find(&images, "busybox:latest").unwrap().id, digest('a'));
    assert_eq!(find(&images, "httpd:1").unwrap().id, digest('b'));
    assert_eq!(
        find(&images, &digest('b').to_string()).unwrap().id,
        digest('b')
    );
    assert_eq!(find(&images, "bbbb").unwrap().id, digest('b'));
    // A name without its tag means :latest, which httpd does not have.
    assert!(matches!(
        find(&images, "httpd"),
        Err(ImageError::NotInCluster { .. })
    ));
}

#[test]
fn unknown_reference_names_what_the_cluster_has() {
    let images = vec![image('a', &["busybox:latest"], &[1])];
    let err = find(&images, "nginx:1.25").unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("image nginx:1.25 is not in the cluster; import it with `edgectl image import FILE` on any node"), "{message}");
    assert!(
        message.contains("busybox:latest (aaaaaaaaaaaa)"),
        "{message}"
    );
    let err = find(&[], "nginx").unwrap_err();
    assert!(
        err.to_string().contains("the cluster has no image"),
        "{err}"
    );
}

#[test]
fn ambiguous_prefix_is_refused() {
    let mut second = image('a', &["other:1"], &[1]);
    let mut hex = "a".repeat(63);
    hex.push('b');
    second.id = format!("sha256:{hex}").parse().unwrap();
    let images = vec![image('a', &["busybox:latest"], &[1]), second];
    assert!(matches!(
        find(&images, "aaaa"),
        Err(ImageError::Ambiguous { .. })
    ));
}

#[test]
fn merge_adds_holder_and_names_once() {
    let blobs = vec![BlobRef {
        digest: digest('a'),
        size: 7,
    }];
    let fresh = merge(None, &info('a', &["x:1"]), &blobs, 3);
    assert_eq!(fresh.holders, vec![3]);
    assert_eq!(fresh.refs, vec!["x:1".to_string()]);
    assert_eq!(fresh.size_bytes, 7);
    let again = merge(Some(&fresh), &info('a', &["x:1", "a:2"]), &blobs, 1);
    assert_eq!(again.holders, vec![1, 3]);
    assert_eq!(again.refs, vec!["a:2".to_string(), "x:1".to_string()]);
    // Folding the same view in twice changes nothing: register writes nothing.
    assert_eq!(merge(Some(&again), &info('a', &["x:1"]), &blobs, 3), again);
}

#[test]
fn record_round_trips_as_json() {
    let record = image('a', &["busybox:latest"], &[1, 2]);
    let json = crate::cluster::records::to_json(&record);
    assert_eq!(decode_record(b"k", &json).unwrap(), record);
    assert!(matches!(
        decode_record(b"k", b"{"),
        Err(ImageError::BadRecord { .. })
    ));
}

use std::collections::{BTreeMap, BTreeSet};

use super::crypto::{self, CryptoError, DataKey, NodeKey};
use super::plan::{plan, reseal_all, reseal_ca_key, CaKeyStored, KeyringAction, KeyringView};
use super::records::{KeyringRecord, ObjectMeta, ObjectRecord, StoredValue};
use super::{check_object, ObjectError, ObjectKind, ObjectValue};

fn bytes(seed: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    out
}

fn nonce(seed: u8) -> [u8; 12] {
    [seed; 12]
}

#[test]
fn a_wrap_opens_only_for_its_node_key_node_id_and_untouched() {
    let data_key = DataKey::new(3, bytes(1));
    let node = NodeKey::from_bytes(bytes(2));
    let other = NodeKey::from_bytes(bytes(3));
    let wrapped = crypto::wrap_data_key(&data_key, 7, node.public_key(), bytes(4)).unwrap();
    assert_eq!(crypto::unwrap_data_key(&wrapped, 7, &node), Ok(data_key));

    let refused = Err(CryptoError::UnwrapFailed {
        generation: 3,
        node_id: 7,
    });
    assert_eq!(crypto::unwrap_data_key(&wrapped, 7, &other), refused);
    let mut moved = wrapped.clone();
    moved.node_id = 8;
    assert!(crypto::unwrap_data_key(&moved, 8, &node).is_err());
    let mut older = wrapped.clone();
    older.generation = 2;
    assert!(crypto::unwrap_data_key(&older, 7, &node).is_err());
    for i in 0..wrapped.ciphertext.len() {
        let mut tampered = wrapped.clone();
        tampered.ciphertext[i] ^= 1;
        assert_eq!(crypto::unwrap_data_key(&tampered, 7, &node), refused);
    }
    // The wrap does not hold the data key in the clear.
    assert!(!wrapped.ciphertext.windows(32).any(|w| w == bytes(1)));
}

#[test]
fn a_low_order_public_key_is_refused() {
    let data_key = DataKey::new(1, bytes(1));
    assert_eq!(
        crypto::wrap_data_key(&data_key, 5, [0; 32], bytes(4)),
        Err(CryptoError::WeakPublicKey { node_id: 5 })
    );
}

#[test]
fn sealed_values_open_only_under_their_name_version_and_key() {
    let key = DataKey::new(1, bytes(1));
    let marker = bytes(9);
    let sealed = crypto::seal(&key, "db-password", 2, &marker, nonce(1));
    assert!(!sealed.ciphertext.windows(32).any(|w| w == marker));
    assert_eq!(
        crypto::open(&key, "db-password", 2, &sealed),
        Ok(marker.to_vec())
    );
    let refused = |name: &str, version| {
        Err(CryptoError::OpenFailed {
            name: name.to_string(),
            version,
            generation: 1,
        })
    };
    assert_eq!(
        crypto::open(&key, "api-token", 2, &sealed),
        refused("api-token", 2)
    );
    assert_eq!(
        crypto::open(&key, "db-password", 1, &sealed),
        refused("db-password", 1)
    );
    let other_key = DataKey::new(1, bytes(2));
    assert_eq!(
        crypto::open(&other_key, "db-password", 2, &sealed),
        refused("db-password", 2)
    );
    let mut relabelled = sealed.clone();
    relabelled.generation = 2;
    assert!(crypto::open(&DataKey::new(2, bytes(1)), "db-password", 2, &relabelled).is_err());
    for i in 0..sealed.ciphertext.len() {
        let mut tampered = sealed.clone();
        tampered.ciphertext[i] ^= 0x80;
        assert_eq!(
            crypto::open(&key, "db-password", 2, &tampered),
            refused("db-password", 2)
        );
    }
    let mut other_nonce = sealed.clone();
    other_nonce.nonce[0] ^= 1;
    assert!(crypto::open(&key, "db-password", 2, &other_nonce).is_err());
}

#[test]
fn the_keyed_digest_tells_values_apart_and_changes_with_the_key() {
    let key = DataKey::new(1, bytes(1));
    let a = crypto::keyed_digest(&key, b"hunter2");
    assert_eq!(a, crypto::keyed_digest(&key, b"hunter2"));
    assert_ne!(a, crypto::keyed_digest(&key, b"hunter3"));
    assert_ne!(
        a,
        crypto::keyed_digest(&DataKey::new(2, bytes(2)), b"hunter2")
    );
    assert!(a.starts_with("hmac-sha256:"));
}

fn secret_record(key: &DataKey, name: &str, version: u64, value: &[u8], seed: u8) -> ObjectRecord {
    ObjectRecord {
        meta: ObjectMeta {
            kind: ObjectKind::Secret,
            name: name.to_string(),
            version,
            size_bytes: value.len() as u64,
            digest: crypto::keyed_digest(key, value),
            created_unix: 1,
            updated_unix: 2,
            used_by: vec![],
        },
        value: StoredValue::from_sealed(&crypto::seal(key, name, version, value, nonce(seed))),
    }
}

#[test]
fn a_rotation_re_encrypts_every_secret_and_the_old_key_opens_none() {
    let old = DataKey::new(1, bytes(1));
    let new = DataKey::new(2, bytes(2));
    let config = ObjectRecord {
        meta: ObjectMeta {
            kind: ObjectKind::Config,
            ..secret_record(&old, "app.conf", 1, b"x", 0).meta
        },
        value: StoredValue::Plain {
            bytes: hex::encode(b"listen 80"),
        },
    };
    let records = vec![
        secret_record(&old, "a", 1, b"first", 1),
        secret_record(&old, "b", 4, b"second", 2),
        config.clone(),
    ];
    let mut counter = 10u8;
    let rotated = reseal_all(&old, &new, &records, || {
        counter += 1;
        nonce(counter)
    })
    .unwrap();
    assert_eq!(rotated[2], config);
    for (record, plain) in rotated[..2].iter().zip([&b"first"[..], b"second"]) {
        let sealed = record.value.to_sealed().unwrap();
        assert_eq!(sealed.generation, 2);
        let name = &record.meta.name;
        assert_eq!(
            crypto::open(&new, name, record.meta.version, &sealed).unwrap(),
            plain
        );
        assert!(crypto::open(&old, name, record.meta.version, &sealed).is_err());
        assert_eq!(record.meta.digest, crypto::keyed_digest(&new, plain));
    }
    // A secret that does not open stops the whole rotation.
    let foreign = secret_record(&DataKey::new(1, bytes(5)), "c", 1, b"x", 3);
    assert!(reseal_all(&old, &new, &[foreign], || nonce(0)).is_err());
}

#[test]
fn the_ca_key_is_sealed_apart_from_secrets_and_follows_every_rotation() {
    let pem = b"-----BEGIN PRIVATE KEY-----\nca\n-----END PRIVATE KEY-----\n";
    let first = DataKey::new(1, bytes(1));
    let second = DataKey::new(2, bytes(2));

    // A plain key (a cluster from before sealing) is sealed and deleted.
    let migrated = reseal_ca_key(
        None,
        &first,
        &CaKeyStored {
            plain: Some(pem.to_vec()),
            sealed: None,
        },
        nonce(1),
    )
    .unwrap();
    assert!(migrated.delete_plain);
    let sealed = migrated.put_sealed.unwrap();
    assert_eq!(sealed.generation, 1);
    assert!(!sealed.ciphertext.windows(pem.len()).any(|w| w == pem));
    assert_eq!(crypto::open_ca_key(&first, &sealed).unwrap(), pem);
    // Its associated data names it: it does not open as a secret of any
    // name, nor under another key.
    assert!(crypto::open(&first, "ca", 0, &sealed).is_err());
    assert_eq!(
        crypto::open_ca_key(&DataKey::new(1, bytes(9)), &sealed),
        Err(CryptoError::CaKeyOpenFailed { generation: 1 })
    );

    // Already under the current key: nothing to write.
    let stored = CaKeyStored {
        plain: None,
        sealed: Some(sealed.clone()),
    };
    assert_eq!(
        reseal_ca_key(Some(&first), &first, &stored, nonce(2)).unwrap(),
        Default::default()
    );

    // A rotation seals it again under the new key; the old opens it no more.
    let rotated = reseal_ca_key(Some(&first), &second, &stored, nonce(3))
        .unwrap()
        .put_sealed
        .unwrap();
    assert_eq!(crypto::open_ca_key(&second, &rotated).unwrap(), pem);
    assert!(crypto::open_ca_key(&first, &rotated).is_err());

    // Without the key it was sealed under, the rotation stops.
    assert!(reseal_ca_key(None, &second, &stored, nonce(4)).is_err());
    let stale = CaKeyStored {
        plain: Some(b"stale".to_vec()),
        sealed: Some(sealed),
    };
    let both = reseal_ca_key(Some(&first), &second, &stale, nonce(5)).unwrap();
    assert!(both.delete_plain);
    assert_eq!(
        crypto::open_ca_key(&second, &both.put_sealed.unwrap()).unwrap(),
        pem,
        "the sealed copy wins over a stale plain one"
    );
}

fn view(current: Option<(u64, &[u64])>, members: &[u64], published: &[u64]) -> KeyringView {
    KeyringView {
        current: current.map(|(generation, holders)| KeyringRecord {
            generation,
            holders: holders.to_vec(),
            changed_unix: 0,
            reason: String::new(),
        }),
        members: members.iter().copied().collect::<BTreeSet<_>>(),
        node_keys: published
            .iter()
            .map(|id| (*id, bytes(*id as u8)))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn the_leader_creates_wraps_and_rotates_when_a_holder_leaves() {
    let check = |view: KeyringView, expected: KeyringAction| assert_eq!(plan(&view, 1), expected);
    check(
        view(None, &[1, 2], &[2]),
        KeyringAction::Wait {
            why: "leader 1 has not published its keyring key yet".into(),
        },
    );
    check(
        view(None, &[1, 2, 3], &[1, 2]),
        KeyringAction::Create {
            holders: vec![1, 2],
        },
    );
    check(
        view(Some((1, &[1, 2])), &[1, 2, 3], &[1, 2, 3]),
        KeyringAction::Wrap { for_nodes: vec![3] },
    );
    check(
        view(Some((1, &[1, 2, 3])), &[1, 2, 3], &[1, 2, 3]),
        KeyringAction::Nothing,
    );
    // A published key of a node that is no longer a member is not wrapped for.
    check(
        view(Some((4, &[1, 2, 3])), &[1, 2, 4], &[1, 2, 3, 4]),
        KeyringAction::Rotate {
            holders: vec![1, 2, 4],
            departed: vec![3],
        },
    );
    check(
        view(Some((4, &[2, 3])), &[1, 2, 3], &[1, 2, 3]),
        KeyringAction::Wait {
            why: "leader 1 holds no wrap of keyring generation 4".into(),
        },
    );
}

#[test]
fn names_and_sizes_are_checked_with_the_limit_named() {
    assert_eq!(
        check_object(ObjectKind::Secret, "db.password_2", 10),
        Ok(())
    );
    for bad in ["", "-x", "Upper", "a/b", "a b", &"x".repeat(64)] {
        assert!(matches!(
            check_object(ObjectKind::Config, bad, 1),
            Err(ObjectError::BadName { .. })
        ));
    }
    assert_eq!(
        check_object(ObjectKind::Secret, "s", super::SECRET_BYTES_MAX),
        Ok(())
    );
    let error = check_object(ObjectKind::Secret, "s", super::SECRET_BYTES_MAX + 1).unwrap_err();
    assert!(
        error.to_string().contains("SECRET_BYTES_MAX (512 KiB)"),
        "{error}"
    );
    let error = check_object(ObjectKind::Config, "c", super::CONFIG_BYTES_MAX + 1).unwrap_err();
    assert!(
        error.to_string().contains("CONFIG_BYTES_MAX (1 MiB)"),
        "{error}"
    );
}

#[test]
fn a_value_never_shows_in_debug_output() {
    let value = ObjectValue(b"hunter2".to_vec());
    assert_eq!(format!("{value:?}"), "ObjectValue(7 bytes, redacted)");
    assert!(!format!(
        "{:?}",
        DataKey::new(1, *b"0123456789abcdef0123456789abcdef")
    )
    .contains("0123"));
}

mod deliver {
    use super::*;
    use crate::secrets::deliver::{
        config_bytes, delivered_versions, env_lines, files, merged_env, open_secret, swaps_due,
        tmpfs_size_bytes, DeliveryError,
    };

    #[test]
    fn only_in_place_files_behind_the_replica_are_swapped_each_signal_once() {
        let spec = crate::model::parse_service(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  image: busybox\n  secrets:\n    - {name: a, onChange: {signal: SIGHUP}}\n    - {name: b}\n    - {name: c, onChange: {signal: hup}}\n  configs:\n    - name: d\n      onChange:\n        signal: USR1\n",
        )
        .expect("valid");
        let plans = files(&spec.spec);
        let signals: Vec<Option<&str>> = plans.iter().map(|p| p.signal).collect();
        assert_eq!(
            signals,
            vec![Some("SIGHUP"), None, Some("SIGHUP"), Some("SIGUSR1")]
        );
        assert_eq!(plans[0].versioned_file_name(3), "secret-0.v3");
        // a: behind; b: not in place; c: up to date; d: not noted yet.
        let (due, signals) = swaps_due(&plans, &[Some(1), Some(1), Some(2), None], &[2, 2, 2, 1]);
        assert_eq!(due, vec![0, 3]);
        assert_eq!(signals, vec!["SIGHUP", "SIGUSR1"]);
        let (due, signals) =
            swaps_due(&plans, &[Some(2), Some(1), Some(1), Some(1)], &[2, 2, 2, 1]);
        assert_eq!(due, vec![2]);
        assert_eq!(signals, vec!["SIGHUP"]);
        assert!(
            swaps_due(&plans, &[Some(2), Some(1), Some(2), Some(1)], &[2, 2, 2, 1])
                .0
                .is_empty()
        );
    }

    #[test]
    fn delivered_versions_come_from_the_notes_oldest_target_first() {
        let spec = crate::model::parse_service(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  image: busybox\n  secrets:\n    - {name: a, onChange: {signal: SIGHUP}}\n    - {name: a, target: /etc/a, onChange: {signal: SIGHUP}}\n  configs:\n    - {name: d, onChange: {signal: USR1}}\n    - {name: e, onChange: {signal: USR1}}\n",
        )
        .expect("valid");
        let plans = files(&spec.spec);
        // a is noted at 3 at one target and 2 at the other (a swap cut
        // short): the container holds 2 somewhere. e is not noted.
        let versions = delivered_versions(&plans, &[Some(3), Some(2), Some(5), None]);
        assert_eq!(
            versions,
            std::collections::BTreeMap::from([
                ("config/d".to_string(), 5),
                ("secret/a".to_string(), 2),
            ])
        );
        assert!(delivered_versions(&plans, &[None, None, None, None]).is_empty());
    }
    use crate::secrets::records::StoredWrap;

    fn record(name: &str, version: u64, value: StoredValue) -> ObjectRecord {
        ObjectRecord {
            meta: ObjectMeta {
                kind: ObjectKind::Secret,
                name: name.into(),
                version,
                size_bytes: 0,
                digest: String::new(),
                created_unix: 0,
                updated_unix: 0,
                used_by: vec![],
            },
            value,
        }
    }

    #[test]
    fn files_are_named_by_position_with_their_defaults() {
        let body = crate::model::parse_service(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  image: b\n  secrets:\n    - name: pw\n    - {name: ../etc, target: /k, uid: 7, gid: 8, mode: 0400}\n  configs:\n    - name: app.conf\n",
        );
        // `../etc` is not a valid name: it never reaches a host path.
        assert!(body.is_err());
        let body = crate::model::parse_service(
            "apiVersion: edgectl/v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  image: b\n  secrets:\n    - name: pw\n    - {name: key, target: /k, uid: 7, gid: 8, mode: 0400}\n  configs:\n    - name: app.conf\n",
        )
        .unwrap()
        .spec;
        let plans = files(&body);
        let summary: Vec<(ObjectKind, &str, &str, &str, u32, u32, u32)> = plans
            .iter()
            .map(|p| {
                (
                    p.kind,
                    p.name.as_str(),
                    p.file_name.as_str(),
                    p.target.as_str(),
                    p.uid,
                    p.gid,
                    p.mode,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    ObjectKind::Secret,
                    "pw",
                    "secret-0",
                    "/run/secrets/pw",
                    0,
                    0,
                    0o444
                ),
                (ObjectKind::Secret, "key", "secret-1", "/k", 7, 8, 0o400),
                (
                    ObjectKind::Config,
                    "app.conf",
                    "config-0",
                    "/run/configs/app.conf",
                    0,
                    0,
                    0o444
                ),
            ]
        );
        assert_eq!(tmpfs_size_bytes([]), 4 * 4096);
        assert_eq!(tmpfs_size_bytes([1, 4096, 4097]), (2 + 2 + 3 + 4) * 4096);
    }

    #[test]
    fn a_secret_opens_only_with_this_nodes_wrap_of_its_generation() {
        let data_key = DataKey::new(2, bytes(1));
        let node = NodeKey::from_bytes(bytes(2));
        let other = NodeKey::from_bytes(bytes(3));
        let sealed = crypto::seal(&data_key, "pw", 3, b"hunter2", nonce(1));
        let secret = record("pw", 3, StoredValue::from_sealed(&sealed));
        let wrap = StoredWrap::from(
            &crypto::wrap_data_key(&data_key, 5, node.public_key(), bytes(4)).unwrap(),
        );
        assert_eq!(
            open_secret(&secret, Some(&wrap), 5, &node).unwrap(),
            b"hunter2"
        );
        assert!(matches!(
            open_secret(&secret, Some(&wrap), 5, &other),
            Err(DeliveryError::Crypto { .. })
        ));
        assert!(matches!(
            open_secret(&secret, None, 5, &node),
            Err(DeliveryError::NoKey { .. })
        ));
        let newer = DataKey::new(3, bytes(5));
        let newer_wrap = StoredWrap::from(
            &crypto::wrap_data_key(&newer, 5, node.public_key(), bytes(4)).unwrap(),
        );
        let error = open_secret(&secret, Some(&newer_wrap), 5, &node).unwrap_err();
        assert!(error.to_string().contains("generation 2"), "{error}");
        // No reason ever carries the value.
        assert!(!format!("{error:?}").contains("hunter2"));
        let plain = record("pw", 3, StoredValue::Plain { bytes: "00".into() });
        assert!(matches!(
            open_secret(&plain, Some(&wrap), 5, &node),
            Err(DeliveryError::Corrupt { .. })
        ));
        assert_eq!(config_bytes(&plain).unwrap(), vec![0]);
    }

    #[test]
    fn env_lines_are_key_value_and_env_wins() {
        let lines = env_lines("app.env", b"# comment\n\nA=1\nB=x=y\r\nC=\n").unwrap();
        assert_eq!(
            lines,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ]
        );
        assert_eq!(
            env_lines("app.env", b"A=1\nnot a pair\n"),
            Err(DeliveryError::EnvLine {
                config: "app.env".into(),
                line: 2
            })
        );
        let env = BTreeMap::from([("A".to_string(), "explicit".to_string())]);
        let merged = merged_env(vec![lines, vec![("B".into(), "later".into())]], &env);
        assert_eq!(merged["A"], "explicit");
        assert_eq!(merged["B"], "later");
        assert_eq!(merged["C"], "");
    }
}

//! The API's secrets and configs, on the leader: a secret's value is sealed
//! here, under the keyring's current data key, before it is proposed, so
//! the Raft log, the snapshots and every replica hold only ciphertext.

use raft::{Compare, KvOp, KvRequest, Txn};
use sha2::{Digest, Sha256};

use super::api::internal;
use super::keyring::fresh_nonce;
use super::Node;
use crate::api::{ApiError, ApiRequest, ApiResponse, ApiResult, ObjectView, ReadConsistency};
use crate::clock::now_unix;
use crate::cluster::records::to_json;
use crate::model::ServiceBody;
use crate::orchestrator::records::{self, ServiceRecord};
use crate::secrets::records::{
    object_key, object_prefix, ObjectMeta, ObjectRecord, StoredValue, KEYRING_CURRENT,
};
use crate::secrets::usage::{used_by, version_key};
use crate::secrets::{check_object, crypto, ObjectKind, ObjectValue};

impl Node {
    pub(super) async fn execute_objects(&self, request: ApiRequest) -> ApiResult {
        // Checked before any leader round trip: a refused value costs nothing.
        if let ApiRequest::ObjectPut {
            kind, name, value, ..
        } = &request
        {
            check_object(*kind, name, value.0.len())
                .map_err(|e| ApiError::Invalid(e.to_string()))?;
        }
        self.ensure_leader()?;
        self.read_barrier(ReadConsistency::Linearizable).await?;
        match request {
            ApiRequest::ObjectPut {
                kind,
                name,
                value,
                create,
            } => self.put_object(kind, &name, value, create).await,
            ApiRequest::ObjectRemove { kind, name } => self.remove_object(kind, &name).await,
            ApiRequest::ObjectList { kind } => {
                let services = self.service_bodies()?;
                let mut metas: Vec<ObjectMeta> = self
                    .read_records::<ObjectRecord>(object_prefix(kind))?
                    .into_iter()
                    .map(|record| with_users(record.meta, &services))
                    .collect();
                metas.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(ApiResponse::Objects(metas))
            }
            ApiRequest::ObjectInspect {
                kind,
                name,
                show_value,
            } => self.inspect_object(kind, &name, show_value),
            ApiRequest::SecretRotateKey => {
                let (generation, secrets) = self.rotate_key_now().await?;
                Ok(ApiResponse::KeyRotated {
                    generation,
                    secrets,
                })
            }
            other => Err(ApiError::Internal(format!(
                "{other:?} is not a secret or config request"
            ))),
        }
    }

    fn object_record(&self, kind: ObjectKind, name: &str) -> Result<(ObjectRecord, u64), ApiError> {
        self.record_at(&object_key(kind, name), || {
            ApiError::NotFound(format!(
                "{} {name:?}; {} lists them",
                kind.noun(),
                kind.list_command()
            ))
        })
    }

    async fn put_object(
        &self,
        kind: ObjectKind,
        name: &str,
        value: ObjectValue,
        create: bool,
    ) -> ApiResult {
        self.check_disk_room(&format!("writing {} {name}", kind.noun()))?;
        let key = object_key(kind, name);
        let existing = self.inner.kv.get(key.as_bytes()).map_err(internal)?;
        let now = now_unix();
        let (version, created_unix, mod_revision) = match (&existing, create) {
            (Some(_), true) => {
                return Err(ApiError::Invalid(format!(
                    "{noun} {name:?} already exists; {update} makes a new version of it",
                    noun = kind.noun(),
                    update = kind.update_command()
                )))
            }
            (None, false) => {
                return Err(ApiError::NotFound(format!(
                    "{noun} {name:?}; {create} makes it",
                    noun = kind.noun(),
                    create = kind.create_command()
                )))
            }
            (None, true) => (1, now, 0),
            (Some(kv), false) => {
                let old: ObjectRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
                (old.meta.version + 1, old.meta.created_unix, kv.mod_revision)
            }
        };
        let mut compares = vec![Compare {
            key: key.clone().into_bytes(),
            mod_revision,
        }];
        let (digest, stored) = match kind {
            ObjectKind::Config => (
                format!("sha256:{}", hex::encode(Sha256::digest(&value.0))),
                StoredValue::Plain {
                    bytes: hex::encode(&value.0),
                },
            ),
            ObjectKind::Secret => {
                let (data_key, keyring_revision) = self.current_data_key()?;
                // Sealed under the generation this compare pins: a rotation
                // in between makes the write fail rather than land under
                // a key that was just retired.
                compares.push(Compare {
                    key: KEYRING_CURRENT.as_bytes().to_vec(),
                    mod_revision: keyring_revision,
                });
                let sealed = crypto::seal(&data_key, name, version, &value.0, fresh_nonce());
                (
                    crypto::keyed_digest(&data_key, &value.0),
                    StoredValue::from_sealed(&sealed),
                )
            }
        };
        let meta = ObjectMeta {
            kind,
            name: name.to_string(),
            version,
            size_bytes: value.0.len() as u64,
            digest,
            created_unix,
            updated_unix: now,
            // Filled in from the services whenever it is read.
            used_by: Vec::new(),
        };
        let record = ObjectRecord {
            meta: meta.clone(),
            value: stored,
        };
        let mut success = vec![KvOp::Put {
            key: key.into_bytes(),
            value: to_json(&record),
        }];
        if !create {
            self.roll_users(kind, name, version, now, &mut compares, &mut success)?;
        }
        let txn = Txn {
            compares,
            success,
            failure: vec![],
        };
        self.write_object(txn, kind, name).await?;
        let meta = with_users(meta, &self.service_bodies()?);
        Ok(ApiResponse::Object(ObjectView { meta, value: None }))
    }

    /// A new version of an object makes a new generation of every service
    /// that uses it (in the object's own transaction, each service guarded
    /// by its mod revision), so their tasks roll by their update policy and
    /// the new tasks read the new version. A service whose every use of it
    /// is `onChange: {signal}` is left as it is: the agents running its
    /// tasks swap the file in place and signal them.
    fn roll_users(
        &self,
        kind: ObjectKind,
        name: &str,
        version: u64,
        now: u64,
        compares: &mut Vec<Compare>,
        success: &mut Vec<KvOp>,
    ) -> Result<(), ApiError> {
        let (kvs, _) = self
            .inner
            .kv
            .range(records::SERVICES_PREFIX.as_bytes())
            .map_err(internal)?;
        for kv in kvs {
            let mut service: ServiceRecord = serde_json::from_slice(&kv.value).map_err(internal)?;
            let body = &service.spec.spec;
            let uses = match kind {
                ObjectKind::Secret => body.secret_names().contains(name),
                ObjectKind::Config => body.config_names().contains(name),
            };
            if !uses || body.follows_in_place(kind == ObjectKind::Secret, name) {
                continue;
            }
            let before = (
                service.generation,
                service.spec.clone(),
                service.updated_unix,
            );
            service.generation += 1;
            service.updated_unix = now;
            service.objects.insert(version_key(kind, name), version);
            crate::orchestrator::revisions::push_revision(
                &mut service,
                Some((before.0, &before.1, before.2)),
                format!("{} {name} updated to version {version}", kind.noun()),
                now,
            );
            compares.push(Compare {
                key: kv.key.clone(),
                mod_revision: kv.mod_revision,
            });
            success.push(KvOp::Put {
                key: kv.key,
                value: to_json(&service),
            });
        }
        Ok(())
    }

    /// Every service's name and spec body, for who-uses-what.
    fn service_bodies(&self) -> Result<Vec<(String, ServiceBody)>, ApiError> {
        Ok(self
            .read_keyed_records::<ServiceRecord>(records::SERVICES_PREFIX)?
            .into_iter()
            .map(|(name, record)| (name, record.spec.spec))
            .collect())
    }

    /// Refused while a service's spec names it: its tasks could not be
    /// started again (a restart, a new node) without it.
    async fn remove_object(&self, kind: ObjectKind, name: &str) -> ApiResult {
        let (_, mod_revision) = self.object_record(kind, name)?;
        let services = self.service_bodies()?;
        let users = used_by(
            kind,
            name,
            services
                .iter()
                .map(|(service, body)| (service.as_str(), body)),
        );
        if !users.is_empty() {
            return Err(ApiError::Invalid(format!(
                "{noun} {name:?} is used by service(s) {users}; remove it from their specs \
                 (or delete them) first",
                noun = kind.noun(),
                users = users.join(", ")
            )));
        }
        let key = object_key(kind, name).into_bytes();
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                mod_revision,
            }],
            success: vec![KvOp::Delete { key }],
            failure: vec![],
        };
        self.write_object(txn, kind, name).await?;
        Ok(ApiResponse::ObjectRemoved)
    }

    fn inspect_object(&self, kind: ObjectKind, name: &str, show_value: bool) -> ApiResult {
        if show_value && kind == ObjectKind::Secret {
            return Err(ApiError::Forbidden(
                "a secret's value is never shown; only the tasks that use it read it".into(),
            ));
        }
        let (record, _) = self.object_record(kind, name)?;
        let meta = with_users(record.meta, &self.service_bodies()?);
        let value = match (&record.value, show_value) {
            (StoredValue::Plain { bytes }, true) => {
                Some(ObjectValue(hex::decode(bytes).map_err(|e| {
                    ApiError::Internal(format!("config {name}: {e}"))
                })?))
            }
            _ => None,
        };
        Ok(ApiResponse::Object(ObjectView { meta, value }))
    }

    async fn write_object(&self, txn: Txn, kind: ObjectKind, name: &str) -> Result<(), ApiError> {
        let response = self.write(KvRequest::Txn(txn)).await?;
        if response.succeeded {
            Ok(())
        } else {
            Err(ApiError::Invalid(format!(
                "{} {name} (or the keyring) was changed by someone else meanwhile; nothing was written: retry",
                kind.noun()
            )))
        }
    }
}

fn with_users(mut meta: ObjectMeta, services: &[(String, ServiceBody)]) -> ObjectMeta {
    meta.used_by = used_by(
        meta.kind,
        &meta.name,
        services
            .iter()
            .map(|(service, body)| (service.as_str(), body)),
    );
    meta
}

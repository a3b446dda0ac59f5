//! Delivery of secrets and configs into a task's container: the IO edge of
//! `secrets::deliver`. Everything is read from this node's own replica and
//! opened with its own keyring key, so a node cut off from the leader (or
//! restarted while cut off) still starts its tasks with their secrets.
//!
//! - Secrets: a tmpfs per container at `<run>/secrets/<container id>/`
//!   (`runtime::private_tmpfs`: mode 0700, size capped, private), one file
//!   per secret with the asked uid/gid/mode; never on a disk.
//! - Configs: a directory per container at `<run>/configs/<container id>/`,
//!   written anew for every container (so per task version).
//!
//! Each file is bound read-only at its target. Both directories go when
//! the container is deleted, and a pass removes any left by a container
//! that no longer exists (a crash between the two).
//!
//! A file with `onChange: {signal}` has its delivered version noted beside
//! it (`<file>.version`). When the replica holds a newer version, the new
//! file is written under a new name (`<file>.v<version>`) and bound over
//! the target inside the running container (`runtime::Runtime::
//! rebind_file`: the first bind pins the old inode, so renaming over the
//! source would change nothing the container sees), then the signal goes
//! to the container's init. No restart, same container. Every version's
//! file stays until the container goes (unlinking one would detach the
//! mount stacked on it); a secret's tmpfs grows by each new version.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use raft::store::KvReader;
use tracing::warn;

use crate::model::ServiceBody;
use crate::secrets::deliver::{self, DeliveryError, FilePlan};
use crate::secrets::records::{object_key, wrap_key, ObjectRecord, StoredWrap};
use crate::secrets::ObjectKind;

use super::NodeKeySlot;

/// What delivery needs of the node, cloned into each start.
#[derive(Clone)]
pub(super) struct Deliverer {
    pub(super) node_id: u64,
    pub(super) replica: KvReader,
    pub(super) node_key: NodeKeySlot,
    pub(super) run_dir: PathBuf,
}

/// A task's objects, read and opened, waiting to be written. Holds
/// plaintext: no `Debug`, and dropped as soon as the files are written.
pub(super) struct Delivery {
    /// Each file with its object's version and its bytes.
    files: Vec<(FilePlan, u64, Vec<u8>)>,
    env_from: Vec<Vec<(String, String)>>,
}

impl Deliverer {
    fn secrets_dir(&self, container_id: &str) -> PathBuf {
        self.run_dir.join("secrets").join(container_id)
    }

    fn configs_dir(&self, container_id: &str) -> PathBuf {
        self.run_dir.join("configs").join(container_id)
    }

    fn record(&self, kind: ObjectKind, name: &str) -> Result<ObjectRecord, DeliveryError> {
        let read = self
            .replica
            .get(object_key(kind, name).as_bytes())
            .map_err(|e| DeliveryError::Corrupt {
                kind: kind.noun(),
                name: name.to_string(),
                why: format!("cannot read the local replica: {e}"),
            })?;
        let kv = read.ok_or_else(|| DeliveryError::Missing {
            kind: kind.noun(),
            name: name.to_string(),
        })?;
        serde_json::from_slice(&kv.value).map_err(|e| DeliveryError::Corrupt {
            kind: kind.noun(),
            name: name.to_string(),
            why: e.to_string(),
        })
    }

    /// Reads every object `body` names and opens its secrets. Err is why
    /// the task cannot start here now (reported, retried).
    pub(super) fn gather(&self, body: &ServiceBody) -> Result<Delivery, DeliveryError> {
        let mut files = Vec::new();
        for plan in deliver::files(body) {
            let record = self.record(plan.kind, &plan.name)?;
            let bytes = self.bytes_of(plan.kind, &record)?;
            files.push((plan, record.meta.version, bytes));
        }
        let mut env_from = Vec::new();
        for from in &body.env_from {
            let record = self.record(ObjectKind::Config, &from.config)?;
            env_from.push(deliver::env_lines(
                &from.config,
                &deliver::config_bytes(&record)?,
            )?);
        }
        Ok(Delivery { files, env_from })
    }

    fn bytes_of(&self, kind: ObjectKind, record: &ObjectRecord) -> Result<Vec<u8>, DeliveryError> {
        match kind {
            ObjectKind::Config => deliver::config_bytes(record),
            ObjectKind::Secret => self.open_secret(record),
        }
    }

    fn file_dir(&self, kind: ObjectKind, container_id: &str) -> PathBuf {
        match kind {
            ObjectKind::Secret => self.secrets_dir(container_id),
            ObjectKind::Config => self.configs_dir(container_id),
        }
    }

    /// Swaps into running container `container_id` every `onChange` file of
    /// `body` whose object has a newer version than the one delivered, then
    /// sends the signals. Blocking. Returns how many files were swapped.
    pub(super) fn swap_in_place(
        &self,
        runtime: &runtime::Runtime,
        container_id: &str,
        body: &ServiceBody,
    ) -> Result<usize, String> {
        let plans: Vec<FilePlan> = deliver::files(body)
            .into_iter()
            .filter(|plan| plan.signal.is_some())
            .collect();
        if plans.is_empty() {
            return Ok(0);
        }
        let mut delivered = Vec::with_capacity(plans.len());
        let mut records = Vec::with_capacity(plans.len());
        for plan in &plans {
            delivered.push(self.delivered_note(container_id, plan));
            records.push(
                self.record(plan.kind, &plan.name)
                    .map_err(|e| e.to_string())?,
            );
        }
        let current: Vec<u64> = records.iter().map(|r| r.meta.version).collect();
        let (due, signals) = deliver::swaps_due(&plans, &delivered, &current);
        if due.is_empty() {
            return Ok(0);
        }
        for &index in &due {
            let (plan, record) = (&plans[index], &records[index]);
            let bytes = self
                .bytes_of(plan.kind, record)
                .map_err(|e| e.to_string())?;
            self.swap_one(runtime, container_id, plan, record.meta.version, &bytes)?;
        }
        for signal in signals {
            let signal: nix::sys::signal::Signal = signal
                .parse()
                .map_err(|e| format!("signal {signal}: {e}"))?;
            runtime
                .kill(container_id, signal)
                .map_err(|e| format!("cannot send {signal} to {container_id}: {e}"))?;
        }
        Ok(due.len())
    }

    /// The version of each object whose files follow it in place
    /// (`onChange`), as delivered into running container `container_id`
    /// (`secret/NAME`, `config/NAME`): what `get tasks` shows, since such
    /// a change makes no new generation. Blocking.
    pub(super) fn delivered_versions(
        &self,
        container_id: &str,
        body: &ServiceBody,
    ) -> BTreeMap<String, u64> {
        let plans: Vec<FilePlan> = deliver::files(body)
            .into_iter()
            .filter(|plan| plan.signal.is_some())
            .collect();
        let notes: Vec<Option<u64>> = plans
            .iter()
            .map(|plan| self.delivered_note(container_id, plan))
            .collect();
        deliver::delivered_versions(&plans, &notes)
    }

    /// The version noted beside an in-place file (None: not noted).
    fn delivered_note(&self, container_id: &str, plan: &FilePlan) -> Option<u64> {
        let dir = self.file_dir(plan.kind, container_id);
        std::fs::read_to_string(dir.join(plan.version_file_name()))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    }

    fn swap_one(
        &self,
        runtime: &runtime::Runtime,
        container_id: &str,
        plan: &FilePlan,
        version: u64,
        bytes: &[u8],
    ) -> Result<(), String> {
        let dir = self.file_dir(plan.kind, container_id);
        let what = |e: &dyn std::fmt::Display| {
            format!(
                "cannot swap {} {:?} (version {version}) into {container_id}: {e}",
                plan.kind.noun(),
                plan.name
            )
        };
        if plan.kind == ObjectKind::Secret {
            runtime::private_tmpfs::grow(&dir, bytes.len() as u64).map_err(|e| what(&e))?;
        }
        // A swap cut short before its note was written left its file (maybe
        // mounted): a fresh name, never a delete (below).
        let mut path = dir.join(plan.versioned_file_name(version));
        for attempt in 1.. {
            if !path.exists() {
                break;
            }
            path = dir.join(format!("{}.{attempt}", plan.versioned_file_name(version)));
        }
        write_file(&path, bytes, plan).map_err(|e| what(&e))?;
        runtime
            .rebind_file(container_id, &path, &plan.target)
            .map_err(|e| what(&e))?;
        // Older versions stay until the container goes: each is the
        // mountpoint of the next one's mount in the container, and the
        // kernel detaches every mount on a dentry that is unlinked (seen:
        // deleting the first file silently undid the swap on top of it).
        write_version_note(&dir, plan, version).map_err(|e| what(&e))
    }

    fn open_secret(&self, record: &ObjectRecord) -> Result<Vec<u8>, DeliveryError> {
        let no_key = |why: String| DeliveryError::NoKey {
            name: record.meta.name.clone(),
            why,
        };
        let node_key = match self.node_key.get() {
            Some(Ok(key)) => key.clone(),
            Some(Err(why)) => return Err(no_key(why.clone())),
            None => return Err(no_key("this node's keyring key is not loaded yet".into())),
        };
        let wrap: Option<StoredWrap> = self
            .replica
            .get(wrap_key(self.node_id).as_bytes())
            .map_err(|e| no_key(format!("cannot read the local replica: {e}")))?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok());
        deliver::open_secret(record, wrap.as_ref(), self.node_id, &node_key)
    }

    /// Writes the task's files and adds their read-only binds and the
    /// `envFrom` variables to `spec`. Blocking. On error nothing is left.
    pub(super) fn install(
        &self,
        delivery: Delivery,
        spec: &mut runtime::ContainerSpec,
    ) -> Result<(), String> {
        self.remove(&spec.id)?;
        let installed = self.write_files(delivery, spec);
        if installed.is_err() {
            if let Err(error) = self.remove(&spec.id) {
                warn!(container = %spec.id, "cannot remove a failed delivery: {error}");
            }
        }
        installed
    }

    fn write_files(
        &self,
        delivery: Delivery,
        spec: &mut runtime::ContainerSpec,
    ) -> Result<(), String> {
        let Delivery { files, env_from } = delivery;
        spec.env = deliver::merged_env(env_from, &spec.env);
        // An in-place secret's version note is one more (small) file.
        let secret_sizes: Vec<usize> = files
            .iter()
            .filter(|(plan, _, _)| plan.kind == ObjectKind::Secret)
            .flat_map(|(plan, _, bytes)| {
                let note = plan.signal.map(|_| 0);
                std::iter::once(bytes.len()).chain(note)
            })
            .collect();
        if !secret_sizes.is_empty() {
            let dir = self.secrets_dir(&spec.id);
            runtime::private_tmpfs::mount(&dir, deliver::tmpfs_size_bytes(secret_sizes))
                .map_err(|e| format!("cannot mount the secrets tmpfs: {e}"))?;
        }
        for (plan, version, bytes) in files {
            let dir = match plan.kind {
                ObjectKind::Secret => self.secrets_dir(&spec.id),
                ObjectKind::Config => {
                    let dir = self.configs_dir(&spec.id);
                    create_private_dir(&dir)?;
                    dir
                }
            };
            let path = dir.join(&plan.file_name);
            write_file(&path, &bytes, &plan).map_err(|e| {
                format!(
                    "cannot write {} {:?} for the container: {e}",
                    plan.kind.noun(),
                    plan.name
                )
            })?;
            if plan.signal.is_some() {
                write_version_note(&dir, &plan, version)
                    .map_err(|e| format!("cannot note the version of {:?}: {e}", plan.name))?;
            }
            spec.mounts.push(runtime::Mount::Bind {
                source: path,
                target: plan.target.clone(),
                read_only: true,
            });
        }
        Ok(())
    }

    /// Unmounts and removes the container's secrets and its configs.
    pub(super) fn remove(&self, container_id: &str) -> Result<(), String> {
        runtime::private_tmpfs::remove(&self.secrets_dir(container_id))
            .map_err(|e| format!("cannot remove the secrets of {container_id}: {e}"))?;
        match std::fs::remove_dir_all(self.configs_dir(container_id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove the configs of {container_id}: {e}")),
        }
    }

    /// Removes what is left for containers not in `keep` (a crash between
    /// a container's delete and its cleanup, or an agent restarted after
    /// its containers went). Blocking.
    pub(super) fn sweep(&self, keep: &BTreeSet<String>) {
        for parent in [self.run_dir.join("secrets"), self.run_dir.join("configs")] {
            for id in dir_names(&parent) {
                if !keep.contains(&id) {
                    if let Err(error) = self.remove(&id) {
                        warn!("{error}");
                    }
                }
            }
        }
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Notes `version` as the delivered one of `plan`'s file (write, rename).
fn write_version_note(dir: &Path, plan: &FilePlan, version: u64) -> std::io::Result<()> {
    let note = dir.join(plan.version_file_name());
    let partial = dir.join(format!("{}.partial", plan.version_file_name()));
    std::fs::write(&partial, version.to_string())?;
    std::fs::rename(&partial, &note)
}

/// A new file with the plan's owner and mode (set after the write, so the
/// umask does not narrow it).
fn write_file(path: &Path, bytes: &[u8], plan: &FilePlan) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    std::os::unix::fs::fchown(&file, Some(plan.uid), Some(plan.gid))?;
    file.set_permissions(std::fs::Permissions::from_mode(plan.mode))?;
    Ok(())
}

//! This node's part in volume moves and removals, read from its own
//! replica once a second:
//!
//! - the holder of a moving volume, once no container uses it, packs it into
//!   a blob and writes the export record (`/sys/volume-exports/<name>`);
//! - the target fetches that blob from the holder over the blob path
//!   (resumable, digest-checked, under the holder's upload cap), unpacks it
//!   into a fresh volume and writes the import record; the controller then
//!   records the target as the holder;
//! - a node keeps a ledger file (`volume-images/<name>.held`) for every
//!   recorded volume it holds; when the record is gone (`volume rm`) or
//!   names another node (a finished move), the unused copy is deleted.
//!   Directories without a ledger (volumes made before records existed)
//!   are never deleted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft::{KvOp, Txn};
use tracing::{info, warn};

use super::AgentHandles;
use crate::cluster::records::to_json;
use crate::volumes::{
    export_key, import_key, VolumeExport, VolumeImport, VolumeRecord, EXPORTS_PREFIX,
    IMPORTS_PREFIX, VOLUMES_PREFIX,
};

const PASS_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until the node shuts down.
pub(super) async fn run(handles: AgentHandles) {
    let mut shutdown = handles.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PASS_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = pass(&handles).await {
            warn!("volume pass: {error}");
        }
    }
}

fn read<T: serde::de::DeserializeOwned>(
    handles: &AgentHandles,
    prefix: &str,
) -> Result<BTreeMap<String, T>, String> {
    let (kvs, _) = handles
        .replica
        .range(prefix.as_bytes())
        .map_err(|e| format!("cannot read the local replica: {e}"))?;
    Ok(kvs
        .iter()
        .filter_map(|kv| {
            let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
            Some((name, serde_json::from_slice(&kv.value).ok()?))
        })
        .collect())
}

async fn pass(handles: &AgentHandles) -> Result<(), String> {
    let me = handles.node_id;
    let records: BTreeMap<String, VolumeRecord> = read(handles, VOLUMES_PREFIX)?;
    let exports: BTreeMap<String, VolumeExport> = read(handles, EXPORTS_PREFIX)?;
    let imports: BTreeMap<String, VolumeImport> = read(handles, IMPORTS_PREFIX)?;
    for (name, record) in &records {
        if record.node == Some(me) {
            note_held(handles, name)?;
        }
        let Some(moving) = record.moving else {
            continue;
        };
        let export = exports
            .get(name)
            .filter(|e| e.move_started_unix_ms == moving.started_unix_ms);
        if record.node == Some(me) && export.is_none() {
            export_volume(handles, record, moving.started_unix_ms).await?;
        }
        let imported = imports.get(name).is_some_and(|i| {
            i.move_started_unix_ms == moving.started_unix_ms
                && export.is_some_and(|e| e.digest == i.digest)
        });
        if moving.to == me && !imported {
            if let Some(export) = export {
                import_volume(handles, record, export).await?;
            }
        }
    }
    sweep(handles, &records).await
}

/// Packs the volume once no container uses it, and says so.
async fn export_volume(
    handles: &AgentHandles,
    record: &VolumeRecord,
    started_unix_ms: u64,
) -> Result<(), String> {
    let runtime = handles.runtime.clone();
    let (name, size) = (record.name.clone(), record.size_bytes);
    let packed = tokio::task::spawn_blocking(move || {
        if runtime.volume_in_use(&name).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        runtime
            .export_volume(&name, size)
            .map(Some)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot pack volume {} for its move: {e}", record.name))?;
    let Some((digest, size_bytes)) = packed else {
        return Ok(());
    };
    info!(volume = %record.name, %digest, size_bytes, "volume packed for its move");
    let export = VolumeExport {
        from: handles.node_id,
        move_started_unix_ms: started_unix_ms,
        digest: digest.to_string(),
        size_bytes,
    };
    write(handles, export_key(&record.name), to_json(&export)).await
}

/// Fetches the holder's packed copy and unpacks it here, then says so.
async fn import_volume(
    handles: &AgentHandles,
    record: &VolumeRecord,
    export: &VolumeExport,
) -> Result<(), String> {
    let digest: runtime::Digest = export
        .digest
        .parse()
        .map_err(|e| format!("volume {}: bad digest in its export: {e}", record.name))?;
    let fetched =
        crate::images::fetch_blob(&handles.images, &digest, export.size_bytes, &[export.from])
            .await
            .map_err(|e| {
                format!(
                    "cannot fetch volume {} from node {}: {e}; retrying",
                    record.name, export.from
                )
            })?;
    let runtime = handles.runtime.clone();
    let (name, size) = (record.name.clone(), record.size_bytes);
    let unpack_digest = digest.clone();
    tokio::task::spawn_blocking(move || runtime.import_volume(&name, &unpack_digest, size))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot unpack volume {}: {e}", record.name))?;
    info!(
        volume = %record.name,
        bytes = fetched.bytes_received,
        resumed_from = fetched.resumed_from,
        "volume copied here for its move"
    );
    let import = VolumeImport {
        node: handles.node_id,
        move_started_unix_ms: export.move_started_unix_ms,
        digest: export.digest.clone(),
    };
    write(handles, import_key(&record.name), to_json(&import)).await
}

/// Deletes the unused copies this node held of volumes that are gone or
/// now held elsewhere.
async fn sweep(
    handles: &AgentHandles,
    records: &BTreeMap<String, VolumeRecord>,
) -> Result<(), String> {
    let me = handles.node_id;
    for name in held(handles) {
        let keep = records
            .get(&name)
            .is_some_and(|r| r.node == Some(me) || r.moving.is_some_and(|m| m.to == me));
        if keep {
            continue;
        }
        let runtime = handles.runtime.clone();
        let ledger = ledger_path(handles, &name);
        let volume = name.clone();
        let removed = tokio::task::spawn_blocking(move || {
            if runtime.volume_in_use(&volume).map_err(|e| e.to_string())? {
                return Ok(false);
            }
            runtime.remove_volume(&volume).map_err(|e| e.to_string())?;
            std::fs::remove_file(&ledger).map_err(|e| e.to_string())?;
            Ok::<bool, String>(true)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot delete volume {name}'s old copy: {e}"))?;
        if removed {
            info!(volume = %name, "deleted this node's copy (volume removed or moved away)");
        }
    }
    Ok(())
}

fn ledger_path(handles: &AgentHandles, name: &str) -> PathBuf {
    handles
        .runtime
        .root()
        .join("volume-images")
        .join(format!("{name}.held"))
}

fn note_held(handles: &AgentHandles, name: &str) -> Result<(), String> {
    let ledger = ledger_path(handles, name);
    if ledger.exists() {
        return Ok(());
    }
    if let Some(parent) = ledger.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(&ledger, b"").map_err(|e| format!("cannot write {}: {e}", ledger.display()))
}

fn held(handles: &AgentHandles) -> Vec<String> {
    let dir = handles.runtime.root().join("volume-images");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".held")
                .map(str::to_string)
        })
        .collect()
}

async fn write(handles: &AgentHandles, key: String, value: Vec<u8>) -> Result<(), String> {
    let system: Arc<dyn crate::api::SystemWriter> = handles.system.clone();
    let txn = Txn {
        compares: vec![],
        success: vec![KvOp::Put {
            key: key.clone().into_bytes(),
            value,
        }],
        failure: vec![],
    };
    system
        .write_system(txn)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot write {key}: {e}"))
}

//! Image import throughput: a ~100 MB single-layer OCI archive imported by
//! the runtime crate (extract archive, verify every digest, unpack the
//! layer, diff-id check) vs a plain `tar -x` of the same layer: the floor
//! for writing those files at all.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use runtime::{Runtime, RuntimeOptions};

#[derive(Parser)]
struct Args {
    /// Layer size in MiB.
    #[arg(long, default_value_t = 100)]
    size_mib: usize,
    /// Repetitions (best of).
    #[arg(long, default_value_t = 3)]
    repeat: usize,

    /// A run of seconds that proves the bench still works (scripts/test.sh):
    /// replaces the sizes above with tiny ones. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

impl Args {
    /// The sizes of a smoke run.
    fn shrink_for_smoke(&mut self) {
        self.size_mib = 2;
        self.repeat = 1;
    }
}

fn sha256_hex(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// A layer of 1 MiB files of pseudo-random (incompressible) bytes plus a
/// few thousand small files, like a real application layer.
fn make_layer(dir: &Path, size_mib: usize) -> anyhow::Result<()> {
    let tree = dir.join("tree");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut chunk = vec![0u8; 1024 * 1024];
    for i in 0..size_mib {
        let sub = tree.join(format!("data/{:02}", i % 10));
        fs::create_dir_all(&sub)?;
        for b in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b.copy_from_slice(&state.to_le_bytes()[..b.len()]);
        }
        fs::File::create(sub.join(format!("blob{i}")))?.write_all(&chunk)?;
    }
    for i in 0..2000 {
        let sub = tree.join(format!("small/{:02}", i % 50));
        fs::create_dir_all(&sub)?;
        fs::write(
            sub.join(format!("f{i}.txt")),
            format!("file {i}\n").repeat(20),
        )?;
    }
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&tree)
        .args(["-cf"])
        .arg(dir.join("layer.tar"))
        .arg(".")
        .status()?;
    if !status.success() {
        bail!("tar -c failed");
    }
    fs::remove_dir_all(&tree)?;
    Ok(())
}

fn make_archive(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let layer = dir.join("layer.tar");
    let layer_hex = sha256_hex(&layer)?;
    let layer_size = fs::metadata(&layer)?.len();
    fs::copy(&layer, blobs.join(&layer_hex))?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]}
    }))?;
    let config_path = dir.join("config.json");
    fs::write(&config_path, &config)?;
    let config_hex = sha256_hex(&config_path)?;
    fs::write(blobs.join(&config_hex), &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": layer_size}]
    }))?;
    let manifest_path = dir.join("manifest.json");
    fs::write(&manifest_path, &manifest)?;
    let manifest_hex = sha256_hex(&manifest_path)?;
    fs::write(blobs.join(&manifest_hex), &manifest)?;
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_hex}"),
            "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "big:1"}}]}))?,
    )?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let archive = dir.join("big.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()?;
    if !status.success() {
        bail!("tar -c of the layout failed");
    }
    fs::remove_dir_all(&layout)?;
    Ok(archive)
}

fn sync_and_drop_caches() {
    // Each contender starts with its writes of the previous one flushed, so
    // nobody pays for someone else's writeback.
    let _ = Command::new("sync").status();
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.shrink_for_smoke();
    }
    let work = tempfile::Builder::new()
        .prefix("edgectl-bench-import-")
        .tempdir()?;
    make_layer(work.path(), args.size_mib)?;
    let archive = make_archive(work.path())?;
    let archive_mb = fs::metadata(&archive)?.len() as f64 / 1e6;
    let layer = work.path().join("layer.tar");
    let layer_mb = fs::metadata(&layer)?.len() as f64 / 1e6;
    let mut ours = f64::MAX;
    let mut floor = f64::MAX;
    for i in 0..args.repeat {
        sync_and_drop_caches();
        let data = work.path().join(format!("rt{i}"));
        fs::create_dir_all(&data)?;
        let rt = Runtime::open(&data, RuntimeOptions::default())?;
        let start = Instant::now();
        rt.images().import(&archive)?;
        ours = ours.min(start.elapsed().as_secs_f64());
        drop(rt);
        fs::remove_dir_all(&data)?;

        sync_and_drop_caches();
        let out = work.path().join(format!("tar{i}"));
        fs::create_dir_all(&out)?;
        let start = Instant::now();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&layer)
            .arg("-C")
            .arg(&out)
            .status()?;
        floor = floor.min(start.elapsed().as_secs_f64());
        if !status.success() {
            bail!("tar -x failed");
        }
        fs::remove_dir_all(&out)?;
    }
    println!(
        "image import, best of {}: archive {archive_mb:.1} MB, layer {layer_mb:.1} MB",
        args.repeat
    );
    println!(
        "edgectl import (verify + unpack): {:.3} s = {:.0} MB/s of archive",
        ours,
        archive_mb / ours
    );
    println!(
        "plain tar -x of the layer:        {:.3} s = {:.0} MB/s of layer",
        floor,
        layer_mb / floor
    );
    println!("ratio edgectl / tar -x (time): {:.2}x", ours / floor);
    Ok(())
}

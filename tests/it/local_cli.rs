//! End-to-end test of the node-local CLI verbs (`edgectl image ...`,
//! `edgectl run`) through the real binary, real images and real containers
//! (needs root).

use std::path::Path;
use std::process::{Command, Output};

fn edgectl(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgectl"))
        .env("EDGECTL_DATA_DIR", data_dir)
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn image_import_ls_run_rm() {
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-images.sh");
    assert!(Command::new("bash")
        .arg(script)
        .arg(&images)
        .status()
        .unwrap()
        .success());
    let data = work.path().join("data");
    let busybox = images.join("busybox.tar");

    let out = edgectl(&data, &["image", "import", busybox.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("imported busybox:latest sha256:"));

    let out = edgectl(&data, &["image", "ls"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("busybox:latest"));
    let out = edgectl(&data, &["image", "ls", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["refs"][0], "busybox:latest");

    let out = edgectl(
        &data,
        &[
            "run",
            "busybox",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"));

    let out = edgectl(&data, &["run", "busybox", "--", "/no/such/binary"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found in image"),
        "{}",
        text(&out.stderr)
    );

    let garbage = work.path().join("garbage.tar");
    std::fs::write(&garbage, b"not an archive").unwrap();
    let out = edgectl(&data, &["image", "import", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("bad image archive"),
        "{}",
        text(&out.stderr)
    );

    let out = edgectl(&data, &["image", "rm", "busybox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = edgectl(&data, &["image", "ls", "-o", "json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    // `run` deletes its container: nothing is left.
    assert_eq!(
        std::fs::read_dir(data.join("runtime/containers"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count(),
        0
    );
}

/// A client configuration outlives the cluster it was written for (the demo's
/// `down` deletes its admin files): a command then says which configuration
/// names which missing file, and how to fix it, whether the configuration
/// was found in ~/.config/edgectl or passed with --config.
#[test]
fn a_config_naming_missing_files_says_which_and_how_to_fix_it() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let config_dir = home.join(".config/edgectl");
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = config_dir.join("config.json");
    let gone = work.path().join("gone-cluster/admin");
    let ca_cert = gone.join("ca.crt");
    let written = serde_json::json!({
        "cluster_id": "c0ffee",
        "endpoints": [[1, "127.0.0.1:7440"]],
        "ca_cert": ca_cert,
        "cert": gone.join("admin.crt"),
        "key": gone.join("admin.key"),
    });
    std::fs::write(&config, written.to_string()).unwrap();

    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgectl"))
            .env("HOME", &home)
            // No node here: the CLI falls back to the user's configuration.
            .env("EDGECTL_DATA_DIR", work.path().join("no-node-here"))
            .env("RUST_LOG", "error")
            .args(extra)
            .args(["node", "ls"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let explicit = config.to_str().unwrap();
    for stderr in [run(&[]), run(&["--config", explicit])] {
        for wanted in [
            explicit,
            ca_cert.to_str().unwrap(),
            "does not exist",
            &format!("delete {explicit}"),
            "--config",
        ] {
            assert!(stderr.contains(wanted), "{wanted:?} not in: {stderr}");
        }
    }
}

/// Every `edgectl ...` command line that an error message or a hint in the
/// code tells the user to run is a real command: its words and flags parse
/// (run with `--help`, which stops before doing anything). Placeholders
/// (`FILE`, `{name}`) stand for one argument; a flag family (`--import-*`)
/// is left out.
#[test]
fn every_command_a_message_suggests_exists() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut suggested = std::collections::BTreeSet::new();
    for dir in ["src", "raft/src", "runtime/src"] {
        collect_suggestions(&repo.join(dir), &mut suggested);
    }
    assert!(
        suggested.len() >= 10,
        "the scan found too few suggestions to be working: {suggested:?}"
    );
    let scratch = tempfile::tempdir().unwrap();
    for line in &suggested {
        let mut args: Vec<&str> = line
            .split_whitespace()
            .skip(1)
            .filter(|word| !word.ends_with('*'))
            .map(|word| {
                let placeholder = word.starts_with('{')
                    || (word.len() > 1 && word.chars().all(|c| c.is_ascii_uppercase()));
                if placeholder {
                    "x"
                } else {
                    word
                }
            })
            .collect();
        args.push("--help");
        let out = edgectl(scratch.path(), &args);
        assert!(
            out.status.success(),
            "a message suggests `{line}`, which is not a command: {}",
            text(&out.stderr)
        );
    }
}

/// The backquoted `edgectl ...` spans of every line of code (not comments)
/// under `dir`.
fn collect_suggestions(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_suggestions(&path, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for line in source.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(start) = rest.find("`edgectl ") {
                let after = &rest[start + 1..];
                let Some(end) = after.find('`') else { break };
                out.insert(after[..end].to_string());
                rest = &after[end + 1..];
            }
        }
    }
}

//! A cluster of `edgectl` processes on 127.0.0.1: node `i` listens on
//! `port + i`, keeps its data dir and log under one temporary dir, and is
//! killed when the `Cluster` is dropped, so a bench that fails half-way
//! leaves no node behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgectl::api::client::AdminConfig;

/// Joins tried per node before `form` gives up.
const JOIN_ATTEMPTS: usize = 5;
/// How long a node has to print the line a step waits for. Generous: debug
/// builds in the smoke runs, on two cores shared with other builds.
const LOG_LINE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    edgectl: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    children: Vec<Option<Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// Room for `nodes` nodes of `edgectl`, none started yet, in a new dir
    /// named `dir_prefix...` under `$BENCH_DIR` (default /var/tmp: disk,
    /// as a device's store would be, not tmpfs).
    pub fn new(
        edgectl: &Path,
        dir_prefix: &str,
        port: u16,
        nodes: usize,
    ) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            edgectl: edgectl.to_path_buf(),
            dir: tempfile::Builder::new()
                .prefix(dir_prefix)
                .tempdir_in(bench_parent())?,
            port,
            children: (0..nodes).map(|_| None).collect(),
        })
    }

    pub fn nodes(&self) -> usize {
        self.children.len()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}"))
    }

    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.port + i as u16)
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    /// Starts `edgectl --data-dir <node i> VERB...` for node `i`, its output
    /// appended to node `i`'s log.
    pub fn spawn(&mut self, i: usize, verb: &[String]) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))?;
        // init writes ~/.config/edgectl when absent: keep it in the bench's dir.
        let child = Command::new(&self.edgectl)
            .env("HOME", self.dir.path())
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(verb)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.edgectl.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// The rest of the first line of node `i`'s log that starts with
    /// `prefix`; an error as soon as the node exits without printing it.
    pub fn wait_log_line(&mut self, i: usize, prefix: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + LOG_LINE_TIMEOUT;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(self.log(i)).unwrap_or_default();
            if let Some(line) = text.lines().find_map(|l| l.strip_prefix(prefix)) {
                return Ok(line.to_string());
            }
            if let Some(child) = self.children[i].as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("node {i} exited ({status}) before printing {prefix:?}; log: {text}");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "node {i} never printed {prefix:?}; log: {}",
            std::fs::read_to_string(self.log(i)).unwrap_or_default()
        )
    }

    /// Forms the cluster: init on node 0, then every other node joins
    /// through it. Nodes are named `<names>0`, `<names>1`...; `flags` go to
    /// every `init` and `join`. Node ids follow the index: id 1 is node 0.
    pub fn form(&mut self, names: &str, flags: &[String]) -> anyhow::Result<()> {
        let mut init = vec![
            "init".into(),
            "--listen".into(),
            self.addr(0),
            "--name".into(),
            format!("{names}0"),
        ];
        init.extend_from_slice(flags);
        self.spawn(0, &init)?;
        let token = self.wait_log_line(0, "join token: ")?;
        for i in 1..self.nodes() {
            let mut join = vec![
                "join".into(),
                self.addr(0),
                "--token".into(),
                token.clone(),
                "--listen".into(),
                self.addr(i),
                "--name".into(),
                format!("{names}{i}"),
            ];
            join.extend_from_slice(flags);
            // A join refused while the cluster elects (a loaded machine) is
            // tried again, as an operator would.
            let mut attempt = 0;
            loop {
                attempt += 1;
                self.spawn(i, &join)?;
                match self.wait_log_line(i, "joined cluster") {
                    Ok(_) => break,
                    Err(err) if attempt >= JOIN_ATTEMPTS => return Err(err),
                    Err(err) => {
                        eprintln!("node {i}: join attempt {attempt} failed, retrying: {err}");
                        self.kill(i);
                        let _ = std::fs::remove_dir_all(self.data_dir(i));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a power cut would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The admin credentials `init` or `join` left in node `i`'s data dir.
    pub fn admin(&self, i: usize) -> anyhow::Result<AdminConfig> {
        Ok(AdminConfig::from_node_data_dir(
            &edgectl::paths::DataDir::new(self.data_dir(i)),
        )?)
    }
}

fn bench_parent() -> PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/var/tmp").to_path_buf())
}

//! The traffic and the polling of scripts/bench-network.sh, one binary so
//! that the same client talks to the same server over every path measured
//! (task to task across nodes, and node to node directly):
//!
//! - `serve --port P`: a TCP server. A connection that starts with `GET `
//!   is HTTP/1.1 with keep-alive (a fixed small page per request; the
//!   connection closes when the client says `Connection: close`); any other
//!   is a sink that reads and discards.
//! - `client --target IP:P`: one TCP stream's throughput, then the HTTP
//!   request rate over keep-alive connections and with a new connection per
//!   request; prints one `key=value` line.
//! - `steady --target IP:P --until FILE`: HTTP/1.0 requests, a new
//!   connection each, from `--concurrency` threads until FILE exists;
//!   prints how many succeeded (status 200, whole body) and how many failed,
//!   with the first failures' reasons. Any HTTP server will do (busybox
//!   httpd in the rolling-restart measurement).
//! - `join-routes --netns PATH... --log FILE`: polls, by netlink in each
//!   given network namespace, for an edgectl route (protocol 236) that was
//!   not there at start, and the node log FILE for the join's
//!   acknowledgement ("joined cluster"); prints the milliseconds from the
//!   acknowledgement to the route in each namespace, and from the joining
//!   process's start (its log appearing) to the route.
//!
//! Not a load generator of record (no wrk, no iperf3 on a fresh Debian
//! without --bench): small and the same on both sides of every ratio.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    Serve {
        #[arg(long)]
        port: u16,
    },
    Client {
        #[arg(long)]
        target: SocketAddr,
        /// Seconds of each of the three measurements.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Connections in parallel for the request rates.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    Steady {
        #[arg(long)]
        target: SocketAddr,
        /// Stop once this file exists.
        #[arg(long)]
        until: PathBuf,
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
    },
    JoinRoutes {
        /// Network namespace files (/run/netns/NAME) of the nodes watched.
        #[arg(long, num_args = 1..)]
        netns: Vec<PathBuf>,
        /// The joining node's log.
        #[arg(long)]
        log: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
}

/// The page: small, so that the request rate measures the path, not bytes.
const PAGE: &[u8] = b"edgectl bench\n";
const STREAM_BUFFER_BYTES: usize = 128 * 1024;
/// How often the route and log are polled: the resolution of the figure.
const POLL: Duration = Duration::from_millis(1);
const JOIN_ACKNOWLEDGEMENT: &str = "joined cluster";

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Verb::Serve { port } => serve(port),
        Verb::Client {
            target,
            seconds,
            concurrency,
        } => client(target, Duration::from_secs_f64(seconds), concurrency),
        Verb::Steady {
            target,
            until,
            concurrency,
        } => steady(target, &until, concurrency),
        Verb::JoinRoutes {
            netns,
            log,
            timeout_s,
        } => join_routes(&netns, &log, Duration::from_secs(timeout_s)),
    }
}

fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("bind {port}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let _ = serve_connection(stream);
        });
    }
    Ok(())
}

fn serve_connection(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let head = reader.fill_buf()?;
    if !head.starts_with(b"GET ") {
        let mut sink = vec![0u8; STREAM_BUFFER_BYTES];
        while reader.read(&mut sink)? > 0 {}
        return Ok(());
    }
    let mut writer = stream;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        PAGE.len()
    );
    let mut line = String::new();
    loop {
        // One request: its lines up to the blank one.
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line.eq_ignore_ascii_case("connection: close\r\n") {
                close = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        writer.write_all(response.as_bytes())?;
        writer.write_all(PAGE)?;
        if close {
            return writer.shutdown(Shutdown::Both);
        }
    }
}

fn client(target: SocketAddr, duration: Duration, concurrency: usize) -> anyhow::Result<()> {
    let throughput_mbit = stream_throughput(target, duration)?;
    let keepalive_rps = request_rate(target, duration, concurrency, true)?;
    let new_connection_rps = request_rate(target, duration, concurrency, false)?;
    println!(
        "throughput_mbit={throughput_mbit:.0} keepalive_rps={keepalive_rps:.0} \
         newconn_rps={new_connection_rps:.0}"
    );
    Ok(())
}

/// One TCP stream for `duration`: megabits per second the server took
/// (the sink drains; the socket buffers still in flight at the end are a
/// few MB, noise over seconds at these rates).
fn stream_throughput(target: SocketAddr, duration: Duration) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect(target).with_context(|| format!("connect {target}"))?;
    let buffer = vec![0x5au8; STREAM_BUFFER_BYTES];
    let started = Instant::now();
    let mut bytes: u64 = 0;
    while started.elapsed() < duration {
        stream.write_all(&buffer)?;
        bytes += buffer.len() as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    // Wait for the sink to close: every byte written has been read.
    let mut rest = [0u8; 16];
    while stream.read(&mut rest)? > 0 {}
    let seconds = started.elapsed().as_secs_f64();
    Ok(bytes as f64 * 8.0 / seconds / 1e6)
}

/// Requests per second over `concurrency` connections for `duration`.
fn request_rate(
    target: SocketAddr,
    duration: Duration,
    concurrency: usize,
    keep_alive: bool,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (done, count) = (done.clone(), count.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let request: &[u8] = if keep_alive {
                    b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
                } else {
                    b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
                };
                let mut connection: Option<BufReader<TcpStream>> = None;
                while !done.load(Ordering::Relaxed) {
                    let reader = match connection.as_mut() {
                        Some(reader) => reader,
                        None => {
                            let stream = TcpStream::connect(target)?;
                            stream.set_nodelay(true)?;
                            connection.insert(BufReader::new(stream))
                        }
                    };
                    reader.get_mut().write_all(request)?;
                    read_response(reader)?;
                    count.fetch_add(1, Ordering::Relaxed);
                    if !keep_alive {
                        connection = None;
                    }
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(duration);
    done.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    for worker in workers {
        match worker.join() {
            Ok(result) => result.context("request")?,
            Err(_) => bail!("a request thread panicked"),
        }
    }
    Ok(count.load(Ordering::Relaxed) as f64 / seconds)
}

/// A request that gives up rather than hang: a connection that neither
/// answers nor refuses is a failure too.
const STEADY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many failure reasons are printed.
const FAILURES_SHOWN: usize = 5;

fn steady(target: SocketAddr, until: &std::path::Path, concurrency: usize) -> anyhow::Result<()> {
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (ok, failures, until) = (ok.clone(), failures.clone(), until.to_path_buf());
            std::thread::spawn(move || {
                while !until.exists() {
                    match one_request(target) {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(why) => {
                            if let Ok(mut failures) = failures.lock() {
                                failures.push(why);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        if worker.join().is_err() {
            bail!("a request thread panicked");
        }
    }
    let failures = failures
        .lock()
        .map_err(|_| anyhow::anyhow!("a request thread panicked"))?;
    let shown: Vec<&str> = failures
        .iter()
        .take(FAILURES_SHOWN)
        .map(String::as_str)
        .collect();
    println!(
        "ok={} failed={} first_failures={:?}",
        ok.load(Ordering::Relaxed),
        failures.len(),
        shown
    );
    Ok(())
}

/// One GET on a new connection, read to its end.
fn one_request(target: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&target, STEADY_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(STEADY_TIMEOUT))
        .map_err(|e| format!("set timeout: {e}"))?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("answer: {head:?}"));
    }
    Ok(())
}

fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let mut line = String::new();
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(value) = line.strip_prefix("Content-Length: ") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)
}

/// The edgectl routes of the calling thread's namespace, as destinations.
fn route_destinations() -> anyhow::Result<BTreeSet<String>> {
    Ok(runtime::routes::list_routes()?
        .into_iter()
        .map(|route| format!("{}/{}", route.destination, route.prefix_len))
        .collect())
}

fn join_routes(
    namespaces: &[PathBuf],
    log: &std::path::Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // One thread per namespace: setns moves only the calling thread.
    let watchers: Vec<_> = namespaces
        .iter()
        .cloned()
        .map(|path| {
            std::thread::spawn(move || -> anyhow::Result<Option<Instant>> {
                let file = std::fs::File::open(&path)
                    .with_context(|| format!("open {}", path.display()))?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("setns {}", path.display()))?;
                let before = route_destinations()?;
                while started.elapsed() < timeout {
                    if route_destinations()?.difference(&before).next().is_some() {
                        return Ok(Some(Instant::now()));
                    }
                    std::thread::sleep(POLL);
                }
                Ok(None)
            })
        })
        .collect();
    // The node's start: the harness creates its log as it starts it.
    let mut launched = None;
    let mut acknowledged = None;
    while started.elapsed() < timeout && acknowledged.is_none() {
        if let Ok(text) = std::fs::read_to_string(log) {
            launched.get_or_insert_with(Instant::now);
            if text.contains(JOIN_ACKNOWLEDGEMENT) {
                acknowledged = Some(Instant::now());
            }
        }
        std::thread::sleep(POLL);
    }
    let launched = launched.context("the joining node was not started")?;
    let acknowledged = acknowledged.context("the joining node printed no acknowledgement")?;
    let mut from_ack = Vec::new();
    let mut from_launch = Vec::new();
    for watcher in watchers {
        let routed = match watcher.join() {
            Ok(result) => result?,
            Err(_) => bail!("a route watcher panicked"),
        };
        let routed = routed.context("no new route appeared")?;
        // A route in place before the acknowledgement was seen counts as 0
        // ms (the joiner prints it only once its own start-up is done).
        from_ack.push(routed.saturating_duration_since(acknowledged).as_secs_f64() * 1e3);
        from_launch.push(routed.saturating_duration_since(launched).as_secs_f64() * 1e3);
    }
    let text = |figures: &[f64]| {
        figures
            .iter()
            .map(|ms| format!("{ms:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("join_route_ms={}", text(&from_ack));
    println!("launch_route_ms={}", text(&from_launch));
    Ok(())
}

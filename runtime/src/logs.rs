//! Container logs: stdout and stderr lines, each prefixed with an RFC 3339
//! UTC timestamp and the stream name, appended to `container.log` and
//! rotated by size (`container.log.1` is the newest rotated file). This is
//! the only place that formats or parses the log file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};

/// A line longer than this is split, so that one runaway line cannot hold an
/// unbounded buffer in the daemon.
pub(crate) const LINE_BYTES_MAX: usize = 16 * 1024;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC time with nanoseconds, when the daemon read the line.
    pub time: String,
    /// Which stream.
    pub stream: Stream,
    /// The text, without the newline.
    pub text: String,
}

/// An append-only log file with size-based rotation.
#[derive(Debug)]
pub(crate) struct RotatingLog {
    path: PathBuf,
    size_max_bytes: u64,
    files_max: u32,
    file: File,
    size: u64,
}

impl RotatingLog {
    pub(crate) fn open(path: &Path, size_max_bytes: u64, files_max: u32) -> Result<RotatingLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ctx("open log", path)?;
        let size = file.metadata().ctx("stat log", path)?.len();
        Ok(RotatingLog {
            path: path.to_owned(),
            size_max_bytes: size_max_bytes.max(1024),
            files_max: files_max.max(1),
            file,
            size,
        })
    }

    pub(crate) fn write_line(&mut self, stream: Stream, text: &[u8]) -> io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 48);
        line.extend_from_slice(format_time(SystemTime::now()).as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.name().as_bytes());
        line.push(b' ');
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.size_max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        // container.log.(N-1) -> .N, ..., container.log -> .1; the oldest
        // falls off the end. files_max counts the live file too.
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let keep = self.files_max - 1;
        if keep == 0 {
            self.file = File::create(&self.path)?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(rotated(keep));
        for n in (1..keep).rev() {
            let _ = fs::rename(rotated(n), rotated(n + 1));
        }
        fs::rename(&self.path, rotated(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Reads every kept log file, oldest line first.
pub(crate) fn read_logs(path: &Path, files_max: u32) -> Result<Vec<LogLine>> {
    let mut files: Vec<PathBuf> = (1..files_max.max(1))
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .collect();
    files.push(path.to_owned());
    let mut lines = Vec::new();
    for file in files {
        let handle = match File::open(&file) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("open log", &file),
        };
        for raw in BufReader::new(handle).split(b'\n') {
            let raw = raw.ctx("read log", &file)?;
            let text = String::from_utf8_lossy(&raw);
            let mut parts = text.splitn(3, ' ');
            let (Some(time), Some(stream), rest) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let stream = match stream {
                "stdout" => Stream::Stdout,
                "stderr" => Stream::Stderr,
                _ => continue,
            };
            lines.push(LogLine {
                time: time.to_owned(),
                stream,
                text: rest.unwrap_or("").to_owned(),
            });
        }
    }
    Ok(lines)
}

/// RFC 3339 in UTC with nanoseconds, without a date crate.
pub(crate) fn format_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        since.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let check = |secs: u64, expected: &str| {
            assert_eq!(
                format_time(UNIX_EPOCH + Duration::from_secs(secs)),
                expected
            );
        };
        check(0, "1970-01-01T00:00:00.000000000Z");
        check(951_782_400, "2000-02-29T00:00:00.000000000Z");
        check(1_795_000_000, "2026-11-18T11:06:40.000000000Z");
    }

    #[test]
    fn rotates_by_size_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut log = RotatingLog::open(&path, 1024, 3).unwrap();
        for i in 0..100 {
            log.write_line(Stream::Stdout, format!("line {i:03}").as_bytes())
                .unwrap();
        }
        assert!(path.with_extension("log.1").exists());
        assert!(path.with_extension("log.2").exists());
        assert!(!path.with_extension("log.3").exists());
        for file in [&path, &path.with_extension("log.1")] {
            assert!(fs::metadata(file).unwrap().len() <= 1024);
        }
        let lines = read_logs(&path, 3).unwrap();
        assert_eq!(lines.last().unwrap().text, "line 099");
        let numbers: Vec<u32> = lines.iter().map(|l| l.text[5..].parse().unwrap()).collect();
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "lines out of order"
        );
        assert!(numbers[0] > 0, "oldest lines were rotated away");
    }
}

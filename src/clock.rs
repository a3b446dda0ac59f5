//! The wall clock, read at the IO edges (the node daemon, the CLI) and handed
//! to the pure cores (`cluster`, `orchestrator`, ...) as a number, so that
//! they stay deterministic and testable with any time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 for a clock set before 1970 (records then
/// look old, which is what a broken clock deserves, rather than failing).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since_epoch| since_epoch.as_secs())
        .unwrap_or(0)
}

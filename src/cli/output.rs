//! Output for people (tables that fit the terminal) and for scripts (JSON, YAML).

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde::Serialize;

use super::args::OutputFormat;

/// Prints `value` as JSON or YAML, or as the table `to_table` builds.
pub fn print<T: Serialize>(
    format: OutputFormat,
    value: &T,
    to_table: impl FnOnce(&T) -> Table,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
        OutputFormat::Yaml => print!("{}", serde_yaml::to_string(value)?),
        OutputFormat::Table => println!("{}", to_table(value)),
    }
    Ok(())
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

pub fn ago_ms(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 1_000 => format!("{ms}ms ago"),
        Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
    }
}

pub fn unix_time(secs: u64) -> String {
    if secs == 0 {
        return "never".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

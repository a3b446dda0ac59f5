//! The `edgectl` command line: argument types (args), one handler module per
//! group of verbs, and output formatting.

#[cfg(feature = "wip-cluster")]
pub mod admin;
pub mod args;
#[cfg(feature = "wip-cluster")]
pub mod daemon;
pub mod local;
pub mod output;

//! The `edgectl` command line: argument types (args), one handler module per
//! group of verbs, and output formatting.

pub mod admin;
pub mod args;
mod connect;
pub mod daemon;
pub mod errors;
pub mod local;
pub mod objects;
pub mod orchestration;
pub mod output;
pub mod reset;
pub mod rollout;
pub mod volumes;

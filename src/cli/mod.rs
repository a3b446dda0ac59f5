//! The `edgectl` command line: argument types and one handler per verb.

pub mod local;

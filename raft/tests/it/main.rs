//! The raft crate's one integration-test binary: one module per area.

mod store;
mod transport;

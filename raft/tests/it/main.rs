//! The raft crate's one integration-test binary: one module per area.

mod store;
mod store_raft;
mod transport;

//! The cluster's own bookkeeping: join tokens, member records, the system keys,
//! and autopilot's decisions. Pure: the node (src/node) does the IO.

pub mod autopilot;
pub mod keys;
pub mod records;
pub mod token;

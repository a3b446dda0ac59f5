//! What more than one bench binary needs. Each binary stays the whole of
//! its measurement; only the set-up they share lives here.

pub mod loopback;

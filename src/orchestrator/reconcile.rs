//! The controller's pure decision (filled in next).

//! Where lines come from.
pub mod file;

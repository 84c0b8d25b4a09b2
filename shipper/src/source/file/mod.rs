//! Container log files.
pub mod discover;
pub mod format;
pub mod tail;

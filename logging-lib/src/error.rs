//! What can go wrong while setting up logging. Everything after set-up is infallible for the
//! caller: a failing output is reported on stderr, never returned to the code that logs.

use std::path::PathBuf;

/// A set-up error from [`crate::Config::init`] and friends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid log level in {source_name}=\"{value}\": {reason}")]
    InvalidLevel {
        source_name: &'static str,
        value: String,
        reason: String,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
    #[error("a `log` logger is already installed; disable tailrace-log's with capture_log(false)")]
    LogAlreadyInitialized,
    #[error("cannot open log file {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the log writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    #[error(
        "key name \"{0}\" is written twice in a line, is empty, starts with `fields.` or is a \
         span line's key: give each key its own name"
    )]
    KeyClash(String),
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

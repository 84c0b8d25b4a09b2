//! Stages between a source and a sink.
pub mod entry;
pub mod json_fields;

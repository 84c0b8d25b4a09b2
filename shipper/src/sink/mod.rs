//! Where entries go.
pub mod loki;

//! Grafana Loki.
pub mod client;
pub mod encode;

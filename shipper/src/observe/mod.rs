//! What the shipper tells about itself.
//!
//! In: figures from every part of a run (the reader, the Loki sink's report, the positions
//! writer). Out: Prometheus metrics ([`metrics`]), the health behind `/ready` and `/status`
//! ([`server`]), and one shared [`telemetry::Telemetry`] that holds them, so a part never
//! needs to know who reads what it reports. Imports nothing of the pipeline's parts.

pub mod metrics;
pub mod server;
pub mod telemetry;

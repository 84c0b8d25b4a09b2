//! What the shipper tells about itself.
pub mod metrics;
pub mod server;
pub mod telemetry;

//! The double on its own, for experiments by hand (memory under a backlog, a rate limit):
//!
//! ```sh
//! cargo run --release -p loki-double --example serve            # Loki's default limits
//! cargo run --release -p loki-double --example serve -- unlimited
//! ```
//!
//! Prints its push URL, then the entries stored and the answers given every 5 seconds. It
//! counts without keeping lines, so it can take any volume.

use std::time::Duration;

use loki_double::{Limits, LokiDouble};

fn main() {
    let unlimited = std::env::args().any(|a| a == "unlimited");
    let mut limits = Limits::default();
    if unlimited {
        let lifted = 1 << 40;
        limits.ingestion_rate_bytes_per_second = lifted;
        limits.ingestion_burst_bytes = lifted;
        limits.per_stream_rate_bytes_per_second = lifted;
        limits.per_stream_burst_bytes = lifted;
    }
    let loki = LokiDouble::builder()
        .count_only(true)
        .limits(limits)
        .start();
    println!("{}", loki.url());
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let requests = loki.requests();
        println!(
            "entries {} answered {} (429: {}, 400: {})",
            loki.entry_count(),
            requests.answered(),
            requests.count(429),
            requests.count(400)
        );
    }
}

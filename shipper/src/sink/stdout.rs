//! The dry run's sink: each entry as one JSON line on stdout, nothing sent.
//!
//! In: batches, as the Loki sink would receive them. Out: `{"tenant", "labels",
//! "timestamp", "structured_metadata", "line"}` per entry on stdout, the timestamp in RFC
//! 3339 (`tailrace run --dry-run`). Every batch is done at once; the run writes no
//! positions, so nothing moves for the next start.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::model::{BatchId, Stream};
use crate::sink::{Progress, Sink};

/// Prints what would be pushed.
#[derive(Debug, Clone, Default)]
pub struct StdoutSink {
    tenant: String,
}

impl StdoutSink {
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
        }
    }

    fn print(&self, streams: &[Stream]) {
        let mut out = std::io::stdout().lock();
        for stream in streams {
            let labels: serde_json::Map<String, serde_json::Value> = stream
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().into()))
                .collect();
            for entry in &stream.entries {
                let metadata: serde_json::Map<String, serde_json::Value> = entry
                    .metadata()
                    .map(|(k, v)| (k.to_owned(), v.into()))
                    .collect();
                let line = serde_json::json!({
                    "tenant": self.tenant,
                    "labels": labels,
                    "timestamp": rfc3339(entry.timestamp_ns),
                    "structured_metadata": metadata,
                    "line": entry.line,
                });
                // stdout closed (a pipe to `head`): nothing more to print to.
                if writeln!(out, "{line}").is_err() {
                    return;
                }
            }
        }
    }
}

/// Unix nanoseconds as RFC 3339 (before 1970: the number as it is).
fn rfc3339(ns: i64) -> String {
    let mut text = [0u8; tailrace_log::timestamp::RFC3339_LEN];
    let seconds = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    match u64::try_from(seconds) {
        Ok(secs) => {
            tailrace_log::timestamp::write_rfc3339(
                UNIX_EPOCH + Duration::new(secs, nanos),
                &mut text,
            );
            String::from_utf8_lossy(&text).into_owned()
        }
        Err(_) => ns.to_string(),
    }
}

impl Sink for StdoutSink {
    fn for_tenant(&self, tenant: &str) -> Self {
        Self::new(tenant)
    }

    async fn deliver(&mut self, id: BatchId, streams: Vec<Stream>, progress: &Arc<dyn Progress>) {
        self.print(&streams);
        progress.done(id);
    }

    async fn finish(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_and_before_1970_as_numbers() {
        assert_eq!(
            rfc3339(1_795_341_601_250_000_000),
            "2026-11-22T10:00:01.250000000Z"
        );
        assert_eq!(rfc3339(-5), "-5");
    }
}

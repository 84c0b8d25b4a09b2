//! A service stand-in for the end-to-end tests: logs through `tailrace_log::init`, exactly
//! as a real service's `main` does.
//!
//! `log-writer <lines> [panic]`: writes `<lines>` events inside a request span (with
//! `LOG_FILE` set, to that file with rotation by `LOG_ROTATE_BYTES`), then exits, or panics
//! when asked so the test can see the panic's line survive the process's death.

use tailrace_log::{Config, RollingPolicy};
use tracing::{info, info_span};

fn main() {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let panic = args.next().as_deref() == Some("panic");

    let mut config = Config::new("checkout").version("1.4.2");
    if let Ok(path) = std::env::var("LOG_FILE") {
        let max_bytes = std::env::var("LOG_ROTATE_BYTES")
            .ok()
            .and_then(|b| b.parse().ok());
        config = config.file(path).rotate(RollingPolicy {
            max_bytes,
            every: None,
            max_files: None,
        });
    }
    let _guard = match config.init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("log-writer: {e}");
            std::process::exit(2);
        }
    };
    for i in 0..lines {
        let span = info_span!("http_request", "http.method" = "POST", request = i);
        let _e = span.enter();
        info!(seq = i, order_id = 42, "order placed");
    }
    if panic {
        let span = info_span!("http_request", request = lines);
        let _e = span.enter();
        panic!("payment service unreachable");
    }
}

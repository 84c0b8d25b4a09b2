//! A logger composed by hand from [`Config::layer`] (as the `service` example does with
//! OpenTelemetry) still writes a panic as one JSON line, with `Guard::install_panic_hook`.
//! Its own test binary: the panic hook and the global subscriber are process-wide.

mod common;

use tailrace_log::Config;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

#[test]
fn a_hand_built_logger_logs_a_panic_as_one_error_line() {
    let capture = common::Buffer::default();
    let (json, guard) = Config::new("checkout")
        .ignore_env()
        .writer(capture.clone())
        // A long delay: the line must be there because the hook flushed, not by luck.
        .write_delay(std::time::Duration::from_secs(5))
        .layer()
        .unwrap();
    tracing::subscriber::set_global_default(
        Registry::default().with(EnvFilter::new("info")).with(json),
    )
    .unwrap();
    guard.install_panic_hook();
    let span = tracing::info_span!("http_request");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _e = span.enter();
        panic!("card {} declined", 42);
    }));
    assert!(result.is_err());
    // No flush here: the hook must have done it.
    let lines = capture.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["target"], "panic");
    assert_eq!(line["level"], "error");
    assert_eq!(line["message"], "panicked: card 42 declined");
    assert!(
        line["location"]
            .as_str()
            .unwrap()
            .contains("tests/panic_layer.rs:"),
        "{line:?}"
    );
    assert_eq!(line["span"], "http_request");
    assert!(line["trace_id"].is_string());
}

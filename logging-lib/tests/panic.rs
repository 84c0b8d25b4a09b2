//! A panic produces its `error` line, flushed before the hook returns. Its own test binary:
//! the panic hook and the global subscriber are process-wide.

mod common;

use tailrace_log::Config;

#[test]
fn a_panic_is_logged_as_one_error_line() {
    let capture = common::Buffer::default();
    let _guard = Config::new("checkout")
        .ignore_env()
        .writer(capture.clone())
        // A long delay: the line must be there because the hook flushed, not by luck.
        .write_delay(std::time::Duration::from_secs(5))
        .init()
        .unwrap();
    let span = tracing::info_span!("http_request");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _e = span.enter();
        panic!("card {} declined", 42);
    }));
    assert!(result.is_err());
    // No flush here: the hook must have done it.
    let lines = capture.lines();
    let line = lines
        .iter()
        .find(|l| l["target"] == "panic")
        .expect("a panic line");
    assert_eq!(line["level"], "error");
    assert_eq!(line["message"], "panicked: card 42 declined");
    assert!(
        line["location"]
            .as_str()
            .unwrap()
            .contains("tests/panic.rs:"),
        "{line:?}"
    );
    assert_eq!(
        line["span"], "http_request",
        "the panic is tied to its trace"
    );
    assert!(line["trace_id"].is_string());

    // A second subscriber cannot be installed: a clear error, not a panic.
    let err = Config::new("x")
        .ignore_env()
        .writer(std::io::sink())
        .init()
        .err()
        .unwrap();
    assert!(err.to_string().contains("already installed"), "{err}");
}

//! Records from the `log` crate (used by many dependencies) come out as the same JSON lines.
//! Its own test binary: the `log` logger is process-wide.

mod common;

use tailrace_log::Config;

#[test]
fn log_records_are_json_lines() {
    let capture = common::Buffer::default();
    let guard = Config::new("checkout")
        .ignore_env()
        .level("info,noisy_dep=error")
        .writer(capture.clone())
        .panic_hook(false)
        .init()
        .unwrap();
    let span = tracing::info_span!("job", job_id = 7);
    let _e = span.enter();
    log::info!(target: "hyper::client", "connected to {}", "db:5432");
    log::debug!(target: "hyper::client", "hidden: below the level");
    log::warn!(target: "noisy_dep", "hidden: the directive for this target says error");
    log::error!(target: "noisy_dep", "shown");
    guard.flush();
    let lines = capture.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["message"], "connected to db:5432");
    assert_eq!(l["target"], "hyper::client");
    assert_eq!(l["level"], "info");
    assert_eq!(l["service"], "checkout");
    assert_eq!(l["job_id"], 7, "log records get the span context too");
    assert!(
        l.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("log.")),
        "{l:?}"
    );
    assert_eq!(lines[1]["message"], "shown");
    // `log`'s own fast check follows our filter, so disabled dependency logs are cheap.
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    guard.level().unwrap().set("debug").unwrap();
    assert_eq!(log::max_level(), log::LevelFilter::Debug);
}

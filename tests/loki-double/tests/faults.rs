//! Injected faults: failures, outages, slow and odd answers, set while the double runs.

mod common;

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use loki_double::{LokiDouble, Reply};

fn one_line(line: &str) -> loki_double::proto::PushRequest {
    proto_request(&[(r#"{job="api"}"#, &[(at(0, 0), line)])])
}

#[test]
fn fail_for_answers_with_the_status_then_lets_pushes_through() {
    let loki = double_at_sample_time();
    loki.fail_for(Duration::from_millis(300), 503);
    let answer = push_proto(&loki, None, &one_line("during"));
    assert_eq!(answer.status, 503);
    assert!(
        answer
            .body
            .contains("<title>503 Service Unavailable</title>"),
        "{}",
        answer.body
    );
    assert_eq!(answer.header("content-type"), Some("text/html"));
    assert_eq!(loki.entry_count(), 0, "a failed push stores nothing");

    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(push_proto(&loki, None, &one_line("after")).status, 204);
    assert_eq!(lines_of(&loki, "fake"), vec!["after"]);
    let stats = loki.requests();
    assert_eq!((stats.count(503), stats.count(204)), (1, 1));
}

#[test]
fn fail_next_fails_exactly_that_many_pushes() {
    let loki = double_at_sample_time();
    loki.fail_next(2, 500);
    loki.fail_next(1, 429);
    let first = push_proto(&loki, None, &one_line("x"));
    assert_eq!(first.status, 500);
    assert!(first.body.contains("at least 1 live replicas required"));
    assert_eq!(push_proto(&loki, None, &one_line("x")).status, 500);
    let third = push_proto(&loki, None, &one_line("x"));
    assert_eq!(third.status, 429);
    assert_eq!(
        third.body,
        "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting \
         to ingest '1' lines totaling '1' bytes, reduce log volume or contact your Loki \
         administrator to see if the limit can be increased\n"
    );
    assert_eq!(push_proto(&loki, None, &one_line("x")).status, 204);
    assert_eq!(loki.entry_count(), 1);
}

#[test]
fn refuse_is_a_real_outage_and_resume_listens_on_the_same_port() {
    let loki = double_at_sample_time();
    assert_eq!(push_proto(&loki, None, &one_line("before")).status, 204);
    // An idle keep-alive connection is closed by the outage too.
    let idle = TcpStream::connect(loki.addr()).expect("connects");

    loki.refuse();
    let refused = TcpStream::connect(loki.addr()).expect_err("nobody listens");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    let mut buf = [0u8; 1];
    let read = io::Read::read(&mut &idle, &mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the open connection is closed: {read:?}"
    );

    loki.resume().expect("the port is still free");
    assert_eq!(push_proto(&loki, None, &one_line("after")).status, 204);
    assert_eq!(lines_of(&loki, "fake"), vec!["before", "after"]);
}

#[test]
fn dropped_connections_get_no_answer_and_store_nothing() {
    let loki = double_at_sample_time();
    loki.drop_connections_for(Duration::from_millis(300));
    let error = try_push_proto(&loki, None, &one_line("lost")).expect_err("no answer");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
    assert_eq!(loki.entry_count(), 0);
    assert!(loki.requests().dropped_connections >= 1);

    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(push_proto(&loki, None, &one_line("through")).status, 204);
}

#[test]
fn lost_answers_leave_the_entries_stored() {
    let loki = double_at_sample_time();
    loki.lose_answers_for(Duration::from_secs(60));
    assert!(try_push_proto(&loki, None, &one_line("stored anyway")).is_err());
    assert_eq!(lines_of(&loki, "fake"), vec!["stored anyway"]);
    assert_eq!(loki.requests().lost_answers, 1);

    // The client retries once the answers come back: the repeat is stored once.
    loki.clear_faults();
    assert_eq!(
        push_proto(&loki, None, &one_line("stored anyway")).status,
        204
    );
    assert_eq!(loki.entry_count(), 1);
}

#[test]
fn delay_holds_answers_back() {
    let loki = double_at_sample_time();
    loki.delay(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(push_proto(&loki, None, &one_line("slow")).status, 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
    loki.delay(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(push_proto(&loki, None, &one_line("fast")).status, 204);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[test]
fn respond_with_gives_odd_answers_until_cleared() {
    let loki = double_at_sample_time();
    loki.respond_with(200, "");
    let answer = push_proto(&loki, None, &one_line("x"));
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));

    loki.respond_with_reply(Reply::redirect(302, "http://elsewhere.invalid/push"));
    let answer = push_proto(&loki, None, &one_line("x"));
    assert_eq!(answer.status, 302);
    assert_eq!(
        answer.header("location"),
        Some("http://elsewhere.invalid/push")
    );

    loki.respond_with(413, vec![b'z'; 1 << 20]);
    let answer = push_proto(&loki, None, &one_line("x"));
    assert_eq!((answer.status, answer.body.len()), (413, 1 << 20));
    assert_eq!(loki.entry_count(), 0);

    loki.clear_faults();
    assert_eq!(push_proto(&loki, None, &one_line("x")).status, 204);
}

#[test]
fn waits_see_entries_pushed_from_another_thread() {
    let loki = double_at_sample_time();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            for i in 0..3 {
                let line = format!("line {i}");
                let push = proto_request(&[(r#"{job="api"}"#, &[(at(0, i), line.as_str())])]);
                assert_eq!(push_proto(&loki, None, &push).status, 204);
            }
        });
        assert!(loki.wait_for_entries(3, Duration::from_secs(10)));
    });
    assert!(!loki.wait_for_entries(4, Duration::from_millis(20)));
}

#[tokio::test]
async fn works_from_a_tokio_test() {
    let loki = double_at_sample_time();
    let addr = loki.addr();
    let pusher = tokio::task::spawn_blocking(move || {
        let push = loki_double::proto::encode_push_body(&one_line("from tokio"));
        request(
            addr,
            "POST",
            "/loki/api/v1/push",
            &[("Content-Type", "application/x-protobuf")],
            &push,
        )
        .map(|answer| answer.status)
    });
    assert!(
        loki.wait_for_entries_async(1, Duration::from_secs(10))
            .await
    );
    assert_eq!(pusher.await.expect("joins").expect("answered"), 204);
    drop(loki); // Dropping inside a runtime is fine.
}

#[test]
fn dropping_the_double_closes_its_port() {
    let loki = LokiDouble::start();
    let addr = loki.addr();
    assert!(loki.url().ends_with("/loki/api/v1/push"));
    drop(loki);
    assert!(TcpStream::connect(addr).is_err());
}

//! What the Loki sink's tests share: Loki's real answers, a tiny HTTP/1.1 server that gives
//! canned ones, and the configuration, client and body the tests push with.
//!
//! **In:** a script of `(status, body)` answers. **Out:** a local push URL, and every request
//! the server was sent (headers and body), for the tests to check.
//!
//! Why: the client and the retry loop are tested over real HTTP, the way a Loki or a proxy in
//! front of it answers, without a Loki to run; the `400` bodies are the ones Loki 3 writes
//! (docs: shared/loki-push-api.md), so the parser is checked against the real texts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::{BackoffConfig, Encoding, HumanDuration, LokiConfig};
use crate::model::{Entry, Metadata, Stream};
use crate::sink::loki::answer::{RejectReason, Rejection};
use crate::sink::loki::backoff::Backoff;
use crate::sink::loki::client::PushClient;
use crate::sink::loki::encode::{EncodedBody, Encoder};

// ---- Loki's real answers (docs: shared/loki-push-api.md) ------------------------------------

pub(crate) const TOO_FAR_BEHIND: &str = "entry with timestamp 2026-11-22 01:49:03.407368199 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-22T01:49:03Z, oldest acceptable timestamp is: 2026-11-22T02:49:03Z',\nuser 'fake', total ignored: 1 out of 1 for stream: {job=\"probe\", run=\"1\"}\n";
pub(crate) const TOO_OLD: &str = "entry for stream '{job=\"probe\", run=\"1\"}' has timestamp too old: 2026-10-23T02:49:03Z, oldest acceptable timestamp is: 2026-11-15T02:49:03Z\n";
pub(crate) const TOO_NEW: &str =
    "entry for stream '{job=\"probe\", run=\"1\"}' has timestamp too new: 2026-11-22T03:49:03Z\n";
pub(crate) const MAX_ENTRY_SIZE: &str = "Max entry size '262144' bytes exceeded for stream '{job=\"probe\", run=\"1\"}' while adding an entry with length '300000' bytes\n";
pub(crate) const TOO_MANY_LABELS: &str = "entry for stream '{a=\"1\", b=\"2\", c=\"3\", d=\"4\", e=\"5\", f=\"6\", g=\"7\", h=\"8\", i=\"9\", j=\"10\", k=\"11\", l=\"12\", m=\"13\", n=\"14\", o=\"15\", p=\"16\", q=\"17\", r=\"18\", s=\"19\", t=\"20\", u=\"21\", v=\"22\"}' has 22 label names; limit 15\n";
pub(crate) const PARSE_ERROR: &str =
    "couldn't parse labels: 1:5: parse error: unexpected character inside braces: '-'\n";

pub(crate) fn one(reason: RejectReason, count: usize, body: &str) -> Vec<Rejection> {
    vec![Rejection {
        reason,
        message: body.trim().to_string(),
        count,
    }]
}

// ---- A tiny HTTP/1.1 server with canned answers --------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `(status, body)`; status 0 never answers. The last answer repeats.
pub(crate) type Script = Vec<(u16, &'static str)>;

pub(crate) struct ScriptedServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ScriptedServer {
    pub(crate) async fn start(script: Script) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ScriptedServer::serve(listener, script)
    }

    pub(crate) async fn start_on(addr: SocketAddr, script: Script) -> ScriptedServer {
        let listener = TcpListener::bind(addr).await.unwrap();
        ScriptedServer::serve(listener, script)
    }

    fn serve(listener: TcpListener, script: Script) -> ScriptedServer {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, script.clone(), seen2.clone()));
            }
        });
        ScriptedServer { addr, seen }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(mut conn: TcpStream, script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 65536];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(Seen { headers, body });
            seen.len() - 1
        };
        let (status, text) = script[index.min(script.len() - 1)];
        let answer = match status {
            0 => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            204 => "HTTP/1.1 204 No Content\r\n\r\n".to_string(),
            _ => format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            ),
        };
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A `loki` section for `url` with every other setting at its default, as a configuration
/// file that gives only the URL would have it. The URL is set as given, unchecked, so that the
/// client's own checks can be tested.
pub(crate) fn loki_config(url: impl Into<String>) -> LokiConfig {
    let mut config: LokiConfig =
        serde_yaml_ng::from_str("url: http://127.0.0.1:3100/loki/api/v1/push").unwrap();
    config.url = url.into();
    config
}

pub(crate) fn fast(max_retries: Option<u32>) -> Backoff {
    Backoff {
        min: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_retries,
    }
}

pub(crate) fn client(url: String, backoff: Backoff) -> PushClient {
    let mut config = loki_config(url);
    config.backoff = BackoffConfig {
        min: HumanDuration(backoff.min),
        max: HumanDuration(backoff.max),
        max_retries: backoff.max_retries,
    };
    config.timeout = HumanDuration(Duration::from_secs(5));
    PushClient::new(&config).unwrap()
}

pub(crate) fn body() -> EncodedBody {
    Encoder::new(Encoding::Protobuf)
        .encode(&[Stream {
            labels: vec![("job".into(), "api".into())],
            entries: vec![Entry {
                timestamp_ns: 1_795_315_743_407_368_199,
                line: "hello".into(),
                structured_metadata: Metadata::from_pairs(vec![("trace_id".into(), "abc".into())]),
            }],
        }])
        .unwrap()
}

pub(crate) fn no_shutdown() -> (CancellationToken, CancellationToken) {
    let token = CancellationToken::new();
    (token.clone(), token)
}

pub(crate) fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tailrace-push-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

//! A Kubernetes API double: `GET /api/v1/pods` list and watch, scripted by the test.
//!
//! In: pods the test adds and deletes, and faults it asks for. Out: what a real API server
//! answers kube's `watcher`: a list (`PodList` with its `resourceVersion`, filtered by a
//! `spec.nodeName=` field selector), then watches from a `resourceVersion` as
//! newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`), replaying
//! what happened since that version; an `ERROR` event with a 410 Gone for a version older
//! than the kept history (a relist follows); watches that drop; and an API that is down
//! (503 to everything). Every request's query is kept for the test to look at.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The double, serving on its own thread until dropped.
pub struct KubeDouble {
    addr: SocketAddr,
    state: Arc<Mutex<ApiState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ApiState {
    /// Current pods by uid (every node's).
    pods: BTreeMap<String, Value>,
    /// The last resource version given out.
    version: u64,
    /// Events after `compacted`, in order: (version, type, pod).
    history: Vec<(u64, &'static str, Value)>,
    /// A watch from a version below this gets 410 Gone.
    compacted: u64,
    down: bool,
    /// Open watches: the node they select and where their events go.
    watches: Vec<(Option<String>, mpsc::UnboundedSender<String>)>,
    /// Every request's query string, in order.
    requests: Vec<String>,
}

/// One pod, as the test describes it.
pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub node: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub annotations: &'a [(&'a str, &'a str)],
}

impl KubeDouble {
    pub fn start() -> KubeDouble {
        let state = Arc::new(Mutex::new(ApiState::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let served = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).ok();
                let app = Router::new()
                    .route("/api/v1/pods", get(pods))
                    .with_state(served);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().expect("the double's address");
        KubeDouble {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`, for `kubernetes.api`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a pod, or changes it (same uid): an `ADDED` or `MODIFIED` event.
    pub fn apply(&self, pod: &PodSpec<'_>) {
        let map = |pairs: &[(&str, &str)]| -> serde_json::Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), json!(v)))
                .collect()
        };
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": pod.namespace,
                "uid": pod.uid,
                "labels": map(pod.labels),
                "annotations": map(pod.annotations),
            },
            "spec": { "nodeName": pod.node, "containers": [{ "name": "app" }] },
        });
        let mut state = self.lock();
        let kind = match state.pods.contains_key(pod.uid) {
            true => "MODIFIED",
            false => "ADDED",
        };
        state.event(kind, object);
    }

    /// Deletes the pod `uid`: a `DELETED` event.
    pub fn delete(&self, uid: &str) {
        let mut state = self.lock();
        if let Some(object) = state.pods.get(uid).cloned() {
            state.event("DELETED", object);
        }
    }

    /// Sends a `BOOKMARK` at the current version to every open watch.
    pub fn bookmark(&self) {
        let mut state = self.lock();
        let line = json!({
            "type": "BOOKMARK",
            "object": { "apiVersion": "v1", "kind": "Pod",
                        "metadata": { "resourceVersion": state.version.to_string() } },
        })
        .to_string();
        state
            .watches
            .retain(|(_, tx)| tx.send(line.clone()).is_ok());
    }

    /// Ends every open watch (the connection closes, as when an API server restarts).
    pub fn drop_watches(&self) {
        self.lock().watches.clear();
    }

    /// Forgets the history, so that every watch resuming from a version it had gets a 410
    /// Gone, and ends the open watches: their clients must list again.
    pub fn expire_history(&self) {
        let mut state = self.lock();
        state.version += 1;
        state.compacted = state.version;
        state.history.clear();
        state.watches.clear();
    }

    /// While down, every request gets a 503 and open watches end.
    pub fn set_down(&self, down: bool) {
        let mut state = self.lock();
        state.down = down;
        if down {
            state.watches.clear();
        }
    }

    /// The query strings of the requests so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// How many lists (requests without `watch`) were answered so far.
    pub fn lists(&self) -> usize {
        self.requests()
            .iter()
            .filter(|q| !q.contains("watch=true"))
            .count()
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        let mut state = self.lock();
        state.watches.retain(|(_, tx)| !tx.is_closed());
        state.watches.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApiState> {
        self.state.lock().expect("api state")
    }
}

impl Drop for KubeDouble {
    fn drop(&mut self) {
        self.lock().watches.clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ApiState {
    fn event(&mut self, kind: &'static str, mut object: Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match kind {
            "DELETED" => self.pods.remove(&uid),
            _ => self.pods.insert(uid, object.clone()),
        };
        let node = node_of(&object).to_owned();
        let line = json!({ "type": kind, "object": object }).to_string();
        self.watches.retain(|(selected, tx)| {
            if selected.as_deref().is_some_and(|n| n != node) {
                return !tx.is_closed();
            }
            tx.send(line.clone()).is_ok()
        });
        self.history.push((self.version, kind, object));
    }
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// `spec.nodeName=<node>` of a field selector.
fn selected_node(query: &BTreeMap<String, String>) -> Option<String> {
    query
        .get("fieldSelector")?
        .split(',')
        .find_map(|term| term.strip_prefix("spec.nodeName="))
        .map(str::to_owned)
}

async fn pods(
    State(state): State<Arc<Mutex<ApiState>>>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut state = state.lock().expect("api state");
    let text: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    state.requests.push(text.join("&"));
    if state.down {
        let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "message": "the double is down", "reason": "ServiceUnavailable", "code": 503 });
        return (StatusCode::SERVICE_UNAVAILABLE, status.to_string()).into_response();
    }
    let node = selected_node(&query);
    let on_node = |pod: &Value| node.as_deref().is_none_or(|n| node_of(pod) == n);
    if query.get("watch").map(String::as_str) != Some("true") {
        let items: Vec<&Value> = state.pods.values().filter(|p| on_node(p)).collect();
        let list = json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": { "resourceVersion": state.version.to_string() },
            "items": items,
        });
        return ([("content-type", "application/json")], list.to_string()).into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    if from < state.compacted {
        let gone = json!({
            "type": "ERROR",
            "object": { "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": format!("too old resource version: {from} ({})", state.compacted),
                        "reason": "Expired", "code": 410 },
        });
        let _ = tx.send(gone.to_string());
        drop(tx);
    } else {
        for (_, kind, object) in state
            .history
            .iter()
            .filter(|(v, _, o)| *v > from && on_node(o))
        {
            let _ = tx.send(json!({ "type": kind, "object": object }).to_string());
        }
        state.watches.push((node, tx));
    }
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(format!("{line}\n")), rx))
    });
    (
        [("content-type", "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

//! The one watch on this node's pods that keeps the [`PodCache`].
//!
//! In: where the API is (in-cluster, or a URL), the node's name, and a stop signal. Out:
//! the cache kept up to date (a list, then a watch from its `resourceVersion`; after a 410
//! Gone, or when the watch cannot resume, a new list that also deletes what it no longer
//! has), and every change of state told to a [`WatchObserver`]: up (listed and watching)
//! or down (why). kube's `watcher` does the list, the watch, bookmarks and relisting; its
//! default backoff (exponential from 0.8 s to 30 s, with jitter) spaces the retries.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::cache::{PodCache, PodInfo};

/// Told when the watch goes up or down.
pub trait WatchObserver: Send + Sync {
    /// The pods are listed and watched.
    fn up(&self, pods: usize);
    /// The watch failed (it retries); `error` says why.
    fn down(&self, error: &str);
}

/// Where the API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEndpoint {
    /// The pod's service account, `KUBERNETES_SERVICE_HOST` and `_PORT`.
    InCluster,
    /// A URL, used without credentials.
    Url(String),
}

impl ApiEndpoint {
    /// Empty: in-cluster.
    pub fn of(api: &str) -> Self {
        match api {
            "" => Self::InCluster,
            url => Self::Url(url.to_owned()),
        }
    }
}

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("no in-cluster Kubernetes configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    #[error("kubernetes.api `{url}` is not a URI: {source}")]
    Url {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("cannot make a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client for `endpoint`.
pub fn client(endpoint: &ApiEndpoint) -> Result<Client, WatchError> {
    // kube's rustls takes the process's provider: the same as the Loki client's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match endpoint {
        ApiEndpoint::InCluster => kube::Config::incluster().map_err(WatchError::InCluster)?,
        ApiEndpoint::Url(url) => {
            kube::Config::new(url.parse().map_err(|source| WatchError::Url {
                url: url.clone(),
                source,
            })?)
        }
    };
    Client::try_from(config).map_err(WatchError::Client)
}

/// How often deleted pods are looked at for forgetting.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Watches the pods of `node` until `stop`, keeping `cache` and telling `observer`. A
/// client that cannot be made is told as down and tried again with the same backoff.
pub async fn run(
    endpoint: ApiEndpoint,
    node: String,
    cache: std::sync::Arc<PodCache>,
    observer: std::sync::Arc<dyn WatchObserver>,
    stop: CancellationToken,
) {
    let mut retry = Duration::from_millis(800);
    let client = loop {
        match client(&endpoint) {
            Ok(client) => break client,
            Err(e) => {
                cache.set_up(false);
                observer.down(&e.to_string());
                tracing::warn!(error = %e, retry_in = ?retry, "kubernetes: pod metadata unavailable");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        }
    };
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher::watcher(pods, config).default_backoff().boxed();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut was_up = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            _ = sweep.tick() => {
                cache.sweep(Instant::now());
                continue;
            }
            event = events.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => cache.relist_begin(),
            Ok(Event::InitApply(pod)) => cache.apply(&info(&pod)),
            Ok(Event::InitDone) => {
                cache.relist_done(Instant::now());
                cache.set_up(true);
                if !was_up {
                    tracing::info!(node = %node, pods = cache.len(), "kubernetes: watching this node's pods");
                }
                was_up = true;
                observer.up(cache.len());
            }
            Ok(Event::Apply(pod)) => {
                cache.apply(&info(&pod));
                observer.up(cache.len());
            }
            Ok(Event::Delete(pod)) => {
                cache.delete(&info(&pod), Instant::now());
                observer.up(cache.len());
            }
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                // The watch fell too far behind: the watcher lists again, which is no outage.
                tracing::debug!(message = %status.message, "kubernetes: watch expired (410); listing again");
            }
            Err(e) => {
                cache.set_up(false);
                if was_up {
                    tracing::warn!(error = %e, "kubernetes: the pod watch failed; retrying");
                }
                was_up = false;
                observer.down(&e.to_string());
            }
        }
    }
}

/// What the cache needs of a pod.
fn info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    PodInfo {
        uid: meta.uid.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        controller: meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.name.clone()),
    }
}

//! Pod metadata from the Kubernetes API: which of a pod's labels and annotations go with
//! its lines.
//!
//! In: this node's pods, from one watch on the API (`spec.nodeName=<node>`, list then
//! watch, relisting after a 410 Gone), and the records of each file in kubelet's layouts.
//! Out: the records with their pod's configured labels and structured metadata, or
//! dropped for a pod with the exclude annotation. No API call per line: the watch keeps a
//! cache keyed by the pod's uid, which kubelet's path carries.
//!
//! - [`cache`]: the pods by uid, each made into its labels once, kept after deletion for
//!   its last lines.
//! - [`watch`]: the one watch that feeds the cache, retrying with backoff, saying whether it
//!   is up.
//! - [`stage`]: the [`Stage`](super::Stage) of each file: holds its records at most the
//!   configured wait while the pod is unknown, then pins the pod's metadata for the file.
//!
//! Why here: it is a stage (it changes records); the watch is its source of truth, kept
//! beside it and started by the pipeline.

pub mod cache;
pub mod stage;
pub mod watch;

pub use cache::{PodCache, PodInfo};
pub use stage::{PodMetadata, PodMetadataStage};

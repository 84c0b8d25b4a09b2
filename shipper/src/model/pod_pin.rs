//! A pod's metadata as one file's lines went out with it, kept with the file's position.
//!
//! In: what the `pod_metadata` stage resolved for a file's pod ([`ResolvedPod`]: labels,
//! structured metadata, the exclude annotation, the stage list it picked) and where in the
//! file the first line that carried it starts. Out: a [`PodPin`] the runtime writes into the
//! positions file before any line carrying it may be pushed, and hands back to the stage
//! ([`Resumed`]) when the file is read again after a restart.
//!
//! Why: after a crash the lines between the accepted offset and the promise (`sent_to`) are
//! looked up in Loki on the stream they went to. If the pod's labels changed meanwhile, or
//! the pod is gone from the API, the same lines would be made with other labels, land on
//! another stream, and be stored twice. With the pin they are made as they were the first
//! time.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One pod's metadata as the configuration wants it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPod {
    /// Label candidates, in configured order, empty values left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<(String, String)>,
    /// The exclude annotation is `"true"`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
    /// The stage list the pod's stages annotation names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<String>,
}

/// The pod metadata one file's records carry from `from` on; records before `from` went
/// with the labels of the path alone (the pod was not known in time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPin {
    /// Where the first record that carried it starts in the file.
    pub from: u64,
    #[serde(flatten)]
    pub pod: Arc<ResolvedPod>,
}

/// What a file's stages are told when the file is read again after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    /// No byte at or past this offset was ever sent (the positions' `sent_to`).
    pub sent_to: u64,
    /// The pod metadata its records carried, if they carried any.
    pub pod: Option<Arc<PodPin>>,
}

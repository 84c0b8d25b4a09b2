//! The neutral vocabulary every part of the pipeline speaks: what a source hands out, what
//! a stage changes, what a sink receives, and where a source is in its input.
//!
//! In: nothing (this folder imports no other folder of the shipper). Out: the types the
//! source, transform and sink folders meet at, so that none of them imports another:
//! - [`Record`]: a log line as a source decoded it (text, own timestamp, stdout/stderr,
//!   truncated).
//! - [`Entry`] and [`Stream`]: a line as it goes to a sink, and the entries of one label
//!   set; [`LabelSet`]: stream labels, always valid for Loki.
//! - [`Fields`]: what the stages extracted from a record's line, by name.
//! - [`FileKey`] and [`FileId`]: the cursor of the file source (which file; the offset
//!   beside it says how far).
//! - [`rfc3339`], [`json_scan`] and [`text`]: the timestamp and JSON scanners and the
//!   bytes-to-text rules that the file formats and the stages both use; [`time_format`]:
//!   the configured time formats and zones that the configuration checks and the
//!   `timestamp` stage reads with.
//! - [`kubelet_path`]: which pod a container log file belongs to, from kubelet's paths;
//!   [`pod_pin`]: the pod metadata a file's lines went out with, kept with its position so a
//!   replay after a crash carries the same labels.

pub mod cursor;
pub mod entry;
pub mod fields;
pub mod json_scan;
pub mod kubelet_path;
pub mod labels;
pub mod pod_pin;
pub mod record;
pub mod rfc3339;
pub mod text;
pub mod time_format;

pub use cursor::{FileId, FileKey};
pub use entry::{Entry, Line, Metadata, Stream, Text};
pub use fields::Fields;
pub use labels::LabelSet;
pub use pod_pin::{PodPin, ResolvedPod, Resumed};
pub use record::{Record, Split, Stdio};

/// Names one batch from the batcher to the sink and back: unique across a run's tenants.
pub type BatchId = u64;

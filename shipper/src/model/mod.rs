//! The neutral vocabulary every part of the pipeline speaks.
pub mod json_scan;
pub mod labels;
pub mod rfc3339;

//! Threads, tasks, batching, the memory bound, acknowledgements and checkpoints.
pub mod batch;
pub mod checkpoint;
pub mod positions_sync;
pub mod recovery;

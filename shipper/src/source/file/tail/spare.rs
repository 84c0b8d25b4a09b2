//! Spare read buffers: buffers given back by readers that read to the end in, a buffer
//! for the next reader that has data out.
//!
//! Why: most log files are written a little at a time: without these, each write would cost
//! a new 64 KiB buffer, allocated and zeroed (a tenth of the reader's CPU time in the soak,
//! 50 files written every 100 ms). Per thread, as the tailer reads on one; at most
//! [`MAX_SPARE`] of them, a fixed cost outside the memory bound.

use std::cell::RefCell;

pub(super) const MAX_SPARE: usize = 4;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A spare buffer of `len` bytes (they stay initialised: no zeroing), or an empty one.
pub(super) fn take(len: usize) -> Vec<u8> {
    SPARE
        .with(|s| {
            let mut spare = s.borrow_mut();
            let i = spare.iter().position(|b| b.len() == len)?;
            Some(spare.swap_remove(i))
        })
        .unwrap_or_default()
}

/// Keeps `buf` for the next reader as a buffer of `len` bytes, or frees it when enough
/// are kept, or when it is shorter or over twice as long (grown for a long line).
pub(super) fn give_back(mut buf: Vec<u8>, len: usize) {
    if buf.len() < len || buf.len() > 2 * len {
        return;
    }
    buf.truncate(len);
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < MAX_SPARE {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
pub(super) fn count() -> usize {
    SPARE.with(|s| s.borrow().len())
}

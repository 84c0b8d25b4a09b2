//! Moves finished lines off the caller's thread: callers copy each line into a shared block,
//! a dedicated writer thread writes whole blocks to the real output.
//!
//! In: complete lines (`&[u8]` ending in `\n`). Out: the same bytes, in order, on the
//! destination (stdout, a file, anything `Write`).
//!
//! Why not `tracing-appender`'s `non_blocking`: it allocates a `Vec` per line and offers no
//! report of what it dropped. Here memory is bounded by a fixed number of recycled blocks, so
//! steady state allocates nothing. When every block is full the caller waits (lossless, the
//! default) or, in lossy mode, the line is dropped and counted, and the writer thread later
//! writes one line saying how many were dropped.
//!
//! Wake-ups are batched: a caller signals the writer only when the writer is asleep, and the
//! writer lingers briefly after each round, so a busy process pays for a futex wake a few
//! thousand times a second at most, not once per line.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the writer thread calls to render the "N lines dropped" report as a log line.
pub type DropReport = Box<dyn Fn(u64, &mut Vec<u8>) + Send>;

/// How the output behaves under pressure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// Callers wait for room: no line is ever lost (the default).
    Block,
    /// Lines that find no room are dropped and counted; the count is reported in one line.
    Drop,
}

/// Sizing of the in-memory buffer between callers and the writer thread.
#[derive(Clone, Copy, Debug)]
pub struct BufferConfig {
    /// Lines are gathered into blocks of about this size before being written.
    pub block_bytes: usize,
    /// The most memory held in blocks; at least two blocks.
    pub max_bytes: usize,
    pub backpressure: Backpressure,
    /// After writing, the writer waits this long before sleeping on the condition variable,
    /// gathering more lines per write and sparing callers a wake-up system call.
    pub linger: Duration,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            block_bytes: 64 * 1024,
            max_bytes: 4 * 1024 * 1024,
            backpressure: Backpressure::Block,
            linger: Duration::from_micros(500),
        }
    }
}

struct State {
    /// The block callers append to.
    current: Vec<u8>,
    /// Sealed blocks waiting for the writer, oldest first.
    full: VecDeque<Vec<u8>>,
    /// Empty blocks ready for reuse.
    free: Vec<Vec<u8>>,
    /// Blocks in existence (current + full + free + the one being written).
    blocks: usize,
    max_blocks: usize,
    /// Lines dropped in lossy mode and not yet reported.
    dropped: u64,
    /// Bytes ever appended and ever written: `flush` waits for the second to reach the first.
    appended: u64,
    written: u64,
    writer_asleep: bool,
    shutdown: bool,
    /// After shutdown, lines are written here directly (the writer thread is gone).
    after_shutdown: Option<Box<dyn Write + Send>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signals the writer: data (or shutdown) is there.
    data: Condvar,
    /// Signals callers: a block came back, or bytes were written.
    room: Condvar,
    block_bytes: usize,
    backpressure: Backpressure,
}

/// The callers' side: cheap to clone, shared by the layer, the panic hook and the guard.
#[derive(Clone)]
pub struct NonBlocking {
    shared: Arc<Shared>,
}

/// Joins the writer thread when dropped, after every line handed over has been written.
pub struct WriterGuard {
    handle: NonBlocking,
    thread: Option<JoinHandle<Box<dyn Write + Send>>>,
}

thread_local! {
    /// Set on the writer thread: it must never wait on itself.
    static IS_WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl NonBlocking {
    /// Starts the writer thread for `out`.
    pub fn spawn(
        out: Box<dyn Write + Send>,
        config: BufferConfig,
        report: DropReport,
    ) -> io::Result<(NonBlocking, WriterGuard)> {
        let block_bytes = config.block_bytes.max(1024);
        let max_blocks = (config.max_bytes / block_bytes).max(2);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                current: Vec::with_capacity(block_bytes),
                full: VecDeque::with_capacity(max_blocks),
                free: Vec::with_capacity(max_blocks),
                blocks: 1,
                max_blocks,
                dropped: 0,
                appended: 0,
                written: 0,
                writer_asleep: false,
                shutdown: false,
                after_shutdown: None,
            }),
            data: Condvar::new(),
            room: Condvar::new(),
            block_bytes,
            backpressure: config.backpressure,
        });
        let worker = Arc::clone(&shared);
        let linger = config.linger;
        let thread = thread::Builder::new()
            .name("tailrace-log-writer".into())
            .spawn(move || {
                IS_WRITER.with(|w| w.set(true));
                run_writer(&worker, out, linger, &report)
            })?;
        let handle = NonBlocking { shared };
        let guard = WriterGuard {
            handle: handle.clone(),
            thread: Some(thread),
        };
        Ok((handle, guard))
    }

    /// Hands one complete line to the writer thread.
    pub fn write_line(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        if st.shutdown {
            if let Some(out) = st.after_shutdown.as_mut() {
                // Late lines (after the guard dropped) are written directly: nothing is lost.
                let _ = out.write_all(line).and_then(|()| out.flush());
            }
            return;
        }
        while !st.current.is_empty() && st.current.len() + line.len() > shared.block_bytes {
            if let Some(block) = take_free_block(&mut st, shared.block_bytes) {
                let sealed = mem::replace(&mut st.current, block);
                st.full.push_back(sealed);
                wake_writer(shared, &mut st);
                break;
            }
            match shared.backpressure {
                Backpressure::Drop => {
                    st.dropped += 1;
                    wake_writer(shared, &mut st);
                    return;
                }
                Backpressure::Block => {
                    wake_writer(shared, &mut st);
                    if IS_WRITER.with(|w| w.get()) {
                        break; // the writer logging about itself: grow rather than deadlock
                    }
                    st = shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
                    if st.shutdown {
                        drop(st);
                        return self.write_line(line);
                    }
                }
            }
        }
        st.current.extend_from_slice(line);
        st.appended += line.len() as u64;
        wake_writer(shared, &mut st);
    }

    /// Waits until every line handed over before this call is written and flushed.
    pub fn flush(&self) {
        if IS_WRITER.with(|w| w.get()) {
            return;
        }
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        let target = st.appended;
        while st.written < target && !st.shutdown {
            // Unconditional: the writer may be lingering, not asleep.
            st.writer_asleep = false;
            shared.data.notify_one();
            st = shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding this lock can only come from an allocation failure; the state
    // is still consistent, so keep going rather than lose the rest of the log.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake_writer(shared: &Shared, st: &mut State) {
    if st.writer_asleep {
        st.writer_asleep = false;
        shared.data.notify_one();
    }
}

fn take_free_block(st: &mut State, block_bytes: usize) -> Option<Vec<u8>> {
    if let Some(b) = st.free.pop() {
        return Some(b);
    }
    if st.blocks < st.max_blocks {
        st.blocks += 1;
        return Some(Vec::with_capacity(block_bytes));
    }
    None
}

fn run_writer(
    shared: &Shared,
    mut out: Box<dyn Write + Send>,
    linger: Duration,
    report: &DropReport,
) -> Box<dyn Write + Send> {
    let mut report_line = Vec::new();
    loop {
        let mut st = lock(&shared.state);
        let block = loop {
            if let Some(b) = st.full.pop_front() {
                break Some(b);
            }
            if !st.current.is_empty() {
                // Take the partly filled block too: lines should not wait for a block to fill.
                let fresh = take_free_block(&mut st, shared.block_bytes).unwrap_or_default();
                break Some(mem::replace(&mut st.current, fresh));
            }
            if st.dropped > 0 {
                break None;
            }
            if st.shutdown {
                return out;
            }
            st.writer_asleep = true;
            st = shared.data.wait(st).unwrap_or_else(|e| e.into_inner());
        };
        let dropped = mem::take(&mut st.dropped);
        drop(st);

        let mut len = 0;
        if let Some(b) = &block {
            len = b.len() as u64;
            write_or_report(&mut out, b);
        }
        if dropped > 0 {
            report_line.clear();
            report(dropped, &mut report_line);
            write_or_report(&mut out, &report_line);
        }
        let _ = out.flush();

        let mut st = lock(&shared.state);
        st.written += len;
        if let Some(mut b) = block {
            b.clear();
            if b.capacity() > 4 * shared.block_bytes {
                // One huge line grew this block: give the memory back.
                b.shrink_to(shared.block_bytes);
            }
            st.free.push(b);
        }
        shared.room.notify_all();
        if st.full.is_empty() && !st.shutdown && !linger.is_zero() {
            // Linger without `writer_asleep` set, so callers do not pay for a wake-up;
            // `flush` and shutdown still interrupt it.
            let _ = shared.data.wait_timeout(st, linger);
        }
    }
}

/// A failing destination (stdout closed, disk full) must not stop the process or the
/// writer: say so on stderr, keep going.
fn write_or_report(out: &mut Box<dyn Write + Send>, bytes: &[u8]) {
    if let Err(e) = out.write_all(bytes) {
        eprintln!("tailrace-log: writing log output failed: {e}");
    }
}

impl WriterGuard {
    pub(crate) fn handle(&self) -> &NonBlocking {
        &self.handle
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let shared = &*self.handle.shared;
        {
            let mut st = lock(&shared.state);
            st.shutdown = true;
            st.writer_asleep = false;
            shared.data.notify_one();
        }
        shared.room.notify_all();
        if let Some(t) = self.thread.take()
            && let Ok(out) = t.join()
        {
            lock(&shared.state).after_shutdown = Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A destination that blocks until released, to fill the buffer deterministically.
    #[derive(Clone)]
    struct Gate {
        open: Arc<AtomicBool>,
        inner: Shared,
    }
    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            while !self.open.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn report() -> DropReport {
        Box::new(|n, out| out.extend_from_slice(format!("dropped {n}\n").as_bytes()))
    }

    #[test]
    fn every_line_arrives_in_order_across_threads() {
        let sink = Shared::default();
        let cfg = BufferConfig {
            block_bytes: 1024,
            max_bytes: 4096,
            ..BufferConfig::default()
        };
        let (nb, guard) = NonBlocking::spawn(Box::new(sink.clone()), cfg, report()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let nb = nb.clone();
                thread::spawn(move || {
                    for i in 0..5000 {
                        nb.write_line(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0; 4];
        for line in out.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(
                i.parse::<usize>().unwrap(),
                next[t],
                "thread {t} out of order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [5000; 4]);
    }

    #[test]
    fn flush_waits_for_the_lines_before_it() {
        let sink = Shared::default();
        let cfg = BufferConfig {
            linger: Duration::from_millis(50),
            ..BufferConfig::default()
        };
        let (nb, _guard) = NonBlocking::spawn(Box::new(sink.clone()), cfg, report()).unwrap();
        nb.write_line(b"one\n");
        nb.flush();
        assert_eq!(&*sink.0.lock().unwrap(), b"one\n");
    }

    #[test]
    fn lossy_mode_counts_and_reports_drops() {
        let open = Arc::new(AtomicBool::new(false));
        let sink = Shared::default();
        let gate = Gate {
            open: open.clone(),
            inner: sink.clone(),
        };
        let cfg = BufferConfig {
            block_bytes: 1024,
            max_bytes: 2048,
            backpressure: Backpressure::Drop,
            linger: Duration::ZERO,
        };
        let (nb, guard) = NonBlocking::spawn(Box::new(gate), cfg, report()).unwrap();
        let line = [b'x'; 99];
        let mut line = line.to_vec();
        line.push(b'\n');
        // 2 blocks of 1024 bytes hold 10 lines each; the writer holds at most one more block.
        for _ in 0..1000 {
            nb.write_line(&line);
        }
        open.store(true, Ordering::SeqCst);
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let kept = out.lines().filter(|l| l.starts_with('x')).count() as u64;
        let reported: u64 = out
            .lines()
            .filter_map(|l| l.strip_prefix("dropped "))
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(
            kept + reported,
            1000,
            "every line is either written or counted"
        );
        // At most three blocks of ten lines each can be held: nearly all were dropped.
        assert!(reported > 900, "{reported}");
    }

    #[test]
    fn blocking_mode_loses_nothing_when_the_output_is_slow() {
        let open = Arc::new(AtomicBool::new(false));
        let sink = Shared::default();
        let gate = Gate {
            open: open.clone(),
            inner: sink.clone(),
        };
        let cfg = BufferConfig {
            block_bytes: 1024,
            max_bytes: 2048,
            backpressure: Backpressure::Block,
            linger: Duration::ZERO,
        };
        let (nb, guard) = NonBlocking::spawn(Box::new(gate), cfg, report()).unwrap();
        let opener = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            open.store(true, Ordering::SeqCst);
        });
        for i in 0..2000 {
            nb.write_line(format!("{i:099}\n").as_bytes());
        }
        opener.join().unwrap();
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 2000);
        assert!(!out.contains("dropped"));
    }

    #[test]
    fn lines_after_shutdown_are_written_directly() {
        let sink = Shared::default();
        let (nb, guard) =
            NonBlocking::spawn(Box::new(sink.clone()), BufferConfig::default(), report()).unwrap();
        drop(guard);
        nb.write_line(b"late\n");
        assert_eq!(&*sink.0.lock().unwrap(), b"late\n");
    }
}

//! A log file that rotates by size and by time and keeps a bounded number of old files.
//!
//! In: whole blocks of complete lines (each ending in `\n`) from the single writer thread,
//! through [`Write`]. Out: the same bytes, in order, in the active file `path`. When the
//! active file would grow past `max_bytes`, or a write arrives in a later UTC period than the
//! one the file was opened in, the active file is renamed to
//! `<file name>.<YYYYMMDD-HHMMSS>` (UTC time of rotation, `.1`, `.2`, ... appended on a name
//! collision, like kubelet's `0.log.20261122-095959`) and a fresh active file is opened. The
//! oldest rotated files beyond `max_files` are then deleted.
//!
//! Why: `tracing-appender` rotates only by time. Here rotation is also by size, always at a
//! line boundary (no line is ever split across two files; a line longer than `max_bytes`
//! gets a file of its own), and always by rename, never copy+truncate, so shippers that
//! follow files across renames lose nothing.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::timestamp::civil_from_unix;

/// A UTC period: a write in a later period than the one the active file was opened in
/// rotates the file first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Rotate when the UTC minute changes.
    Minutely,
    /// Rotate when the UTC hour changes.
    Hourly,
    /// Rotate when the UTC day changes (at midnight UTC).
    Daily,
}

impl Rotation {
    fn seconds(self) -> i64 {
        match self {
            Rotation::Minutely => 60,
            Rotation::Hourly => 3_600,
            Rotation::Daily => 86_400,
        }
    }

    /// Index of the period `time` falls in (UTC has no leap seconds in Unix time, so periods
    /// are plain multiples of their length since the epoch).
    fn period(self, time: SystemTime) -> i64 {
        unix_secs(time).div_euclid(self.seconds())
    }
}

/// When to rotate and how many rotated files to keep. The default never rotates.
#[derive(Clone, Debug, Default)]
pub struct RollingPolicy {
    /// Rotate before a write would make the active file larger than this many bytes.
    /// `None`: no size limit.
    pub max_bytes: Option<u64>,
    /// Rotate before a write that happens in a later UTC period than the active file's.
    /// `None`: no time-based rotation.
    pub every: Option<Rotation>,
    /// After each rotation, delete the oldest rotated files so that at most this many remain
    /// (the active file does not count). `None`: keep them all.
    pub max_files: Option<usize>,
}

/// Where the current time comes from (injected in tests).
pub(crate) type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// After a failed rotation, writes go on to the current file and rotation is not tried again
/// for this long, so a persistent failure costs no system call per write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Length of the `YYYYMMDD-HHMMSS` stamp in rotated file names.
const STAMP_LEN: usize = 15;

/// A log file output that rotates by size and by time; see the [module docs](self).
pub struct RollingFile {
    /// The active file.
    path: PathBuf,
    /// Its directory, where rotated files live.
    dir: PathBuf,
    /// Its file name, the prefix of rotated file names.
    name: OsString,
    policy: RollingPolicy,
    file: File,
    /// Bytes in the active file.
    size: u64,
    /// The period the active file was opened in (when rotating by time).
    period: Option<i64>,
    /// The last byte written was not `\n`: the rest of that line goes to the same file.
    mid_line: bool,
    /// No rotation attempt before this time (set after a failure).
    retry_at: Option<SystemTime>,
    /// A rotation failure has been reported and no rotation has succeeded since.
    failing: bool,
    clock: Clock,
}

impl RollingFile {
    /// Opens (creating it and its parent directories if missing) the active file `path` in
    /// append mode. An existing file is continued: its size counts toward `max_bytes` and its
    /// modification time sets its period for `every`.
    pub fn open(path: impl Into<PathBuf>, policy: RollingPolicy) -> io::Result<Self> {
        Self::with_clock(path, policy, Box::new(SystemTime::now))
    }

    /// [`RollingFile::open`] with the current time taken from `clock`.
    pub(crate) fn with_clock(
        path: impl Into<PathBuf>,
        policy: RollingPolicy,
        clock: Clock,
    ) -> io::Result<Self> {
        let path = path.into();
        let Some(name) = path.file_name().map(OsString::from) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("opening {}: not a file path", path.display()),
            ));
        };
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| context("creating", &dir, e))?;
        let file = open_append(&path).map_err(|e| context("opening", &path, e))?;
        let meta = file.metadata().map_err(|e| context("opening", &path, e))?;
        let size = meta.len();
        let period = policy.every.map(|every| {
            let opened = match meta.modified() {
                Ok(modified) if size > 0 => modified,
                _ => clock(),
            };
            every.period(opened)
        });
        Ok(Self {
            path,
            dir,
            name,
            policy,
            file,
            size,
            period,
            mid_line: false,
            retry_at: None,
            failing: false,
            clock,
        })
    }

    /// Writes `buf`, rotating first by time and at line boundaries by size. `done` counts the
    /// bytes written even when an error is returned.
    fn write_lines(&mut self, buf: &[u8], done: &mut usize) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if self.mid_line {
            // The previous write ended inside a line: finish it in the same file.
            self.put(&buf[..line_end(buf)], done)?;
        }
        if *done < buf.len() {
            self.rotate_if_new_period();
        }
        let Some(max) = self.policy.max_bytes else {
            return self.put(&buf[*done..], done);
        };
        // Each round fills the active file with whole lines, then rotates.
        loop {
            let rest = &buf[*done..];
            let room = max.saturating_sub(self.size);
            if rest.len() as u64 <= room {
                return self.put(rest, done);
            }
            // `room < rest.len()`, so it fits in `usize`.
            match rest[..room as usize].iter().rposition(|&b| b == b'\n') {
                Some(last) => self.put(&rest[..=last], done)?,
                // A line longer than `max_bytes` goes alone into a file of its own.
                None if self.size == 0 => self.put(&rest[..line_end(rest)], done)?,
                None => {}
            }
            if *done == buf.len() {
                return Ok(());
            }
            let now = (self.clock)();
            if !self.rotate(now) {
                return self.put(&buf[*done..], done);
            }
        }
    }

    /// Rotates when `every` is set and the current time is in a later period than the active
    /// file's. An empty active file is not rotated, only moved to the new period.
    fn rotate_if_new_period(&mut self) {
        let (Some(every), Some(period)) = (self.policy.every, self.period) else {
            return;
        };
        let now = (self.clock)();
        let current = every.period(now);
        if current <= period {
            return;
        }
        if self.size == 0 {
            self.period = Some(current);
        } else {
            self.rotate(now);
        }
    }

    /// Writes all of `chunk` to the active file, adding what was written to `done`.
    fn put(&mut self, chunk: &[u8], done: &mut usize) -> io::Result<()> {
        let mut written = 0;
        while written < chunk.len() {
            match self.file.write(&chunk[written..]) {
                Ok(0) => {
                    let err = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(context("writing", &self.path, err));
                }
                Ok(n) => {
                    written += n;
                    *done += n;
                    self.size += n as u64;
                    self.mid_line = chunk[written - 1] != b'\n';
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(context("writing", &self.path, e)),
            }
        }
        Ok(())
    }

    /// Rotates and prunes. Returns false, after reporting the error, when the active file
    /// could not be rotated: writing then goes on to the current file.
    fn rotate(&mut self, now: SystemTime) -> bool {
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        match self.rename_and_reopen(now) {
            Ok((new, older)) => {
                self.retry_at = None;
                self.failing = false;
                if let Err(err) = self.prune(new, older) {
                    self.report(&err);
                }
                true
            }
            Err(err) => {
                self.retry_at = now.checked_add(RETRY_AFTER);
                self.report(&context("rotating", &self.path, err));
                false
            }
        }
    }

    /// Renames the active file to its rotated name and opens a fresh one. Returns the new
    /// rotated file and the ones that were already there.
    fn rename_and_reopen(&mut self, now: SystemTime) -> io::Result<(Rotated, Vec<Rotated>)> {
        let stamp = format_stamp(now);
        let stamp_key = parse_stamp(stamp.as_bytes()).unwrap_or_default();
        let older = self.rotated_files()?;
        // Continue after the highest counter already used for this second, so a newer file
        // never sorts before an older one, even when some of them were deleted.
        let mut counter = older
            .iter()
            .filter(|r| r.stamp == stamp_key)
            .map(|r| r.counter + 1)
            .max()
            .unwrap_or(0);
        let (name, target) = loop {
            let name = self.rotated_name(&stamp, counter);
            let target = self.dir.join(&name);
            match fs::symlink_metadata(&target) {
                Ok(_) => counter += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break (name, target),
                Err(e) => return Err(e),
            }
        };
        fs::rename(&self.path, &target)?;
        let file = match open_append(&self.path) {
            Ok(file) => file,
            Err(err) => {
                // Put the active file back; if that fails too, the handle still writes to
                // the renamed file, so nothing is lost either way.
                let _ = fs::rename(&target, &self.path);
                return Err(err);
            }
        };
        self.file = file;
        self.size = 0;
        self.mid_line = false;
        self.period = self.policy.every.map(|every| every.period(now));
        let new = Rotated {
            stamp: stamp_key,
            counter,
            name,
        };
        Ok((new, older))
    }

    /// Deletes the oldest rotated files so that at most `max_files` remain. The file just
    /// rotated is kept (unless `max_files` is 0) even if a clock step back made it sort
    /// before older ones.
    fn prune(&self, new: Rotated, mut older: Vec<Rotated>) -> io::Result<()> {
        let Some(max_files) = self.policy.max_files else {
            return Ok(());
        };
        if max_files == 0 {
            older.push(new);
        }
        let keep = max_files.saturating_sub(1);
        if older.len() <= keep {
            return Ok(());
        }
        older.sort_unstable();
        let excess = older.len() - keep;
        let mut first_err = None;
        for old in &older[..excess] {
            let path = self.dir.join(&old.name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(context("deleting", &path, e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The regular files in the directory named `<name>.<YYYYMMDD-HHMMSS>[.<n>]`.
    fn rotated_files(&self) -> io::Result<Vec<Rotated>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some((stamp, counter)) = parse_rotated(&self.name, &name) else {
                continue;
            };
            if entry.file_type()?.is_file() {
                found.push(Rotated {
                    stamp,
                    counter,
                    name,
                });
            }
        }
        Ok(found)
    }

    fn rotated_name(&self, stamp: &str, counter: u64) -> OsString {
        let mut name = self.name.clone();
        name.push(".");
        name.push(stamp);
        if counter > 0 {
            name.push(format!(".{counter}"));
        }
        name
    }

    /// Reports a rotation problem on stderr, once until a rotation succeeds again: the data
    /// itself was written, so the error cannot be returned from `write`.
    fn report(&mut self, err: &io::Error) {
        if !self.failing {
            self.failing = true;
            eprintln!(
                "tailrace-log: {err}; still writing to {}",
                self.path.display()
            );
        }
    }
}

impl Write for RollingFile {
    /// Writes the whole buffer unless an I/O error stops it; returns the bytes written, or
    /// the error if none were.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        match self.write_lines(buf, &mut done) {
            Err(err) if done == 0 => Err(err),
            _ => Ok(done),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file
            .flush()
            .map_err(|e| context("flushing", &self.path, e))
    }
}

impl fmt::Debug for RollingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollingFile")
            .field("path", &self.path)
            .field("policy", &self.policy)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A rotated file; ordered oldest first by stamp, then counter.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rotated {
    /// `YYYYMMDDHHMMSS` as a number.
    stamp: u64,
    /// 0 for no suffix, `n` for `.n`.
    counter: u64,
    name: OsString,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn context(what: &str, path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

/// Length of the line starting `buf`, `\n` included (all of `buf` if it has no `\n`).
fn line_end(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| i + 1)
}

/// Whole seconds since the Unix epoch, rounded down (negative before 1970).
fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -secs - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// `time` as `YYYYMMDD-HHMMSS` in UTC.
fn format_stamp(time: SystemTime) -> String {
    let c = civil_from_unix(unix_secs(time));
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        c.year.clamp(0, 9999),
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second
    )
}

/// `YYYYMMDD-HHMMSS` as the number `YYYYMMDDHHMMSS`.
fn parse_stamp(stamp: &[u8]) -> Option<u64> {
    if stamp.len() != STAMP_LEN || stamp[8] != b'-' {
        return None;
    }
    Some(parse_digits(&stamp[..8])? * 1_000_000 + parse_digits(&stamp[9..])?)
}

/// A run of 1 to 19 ASCII digits as a number.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// `(stamp, counter)` when `name` is `<base>.<YYYYMMDD-HHMMSS>` or
/// `<base>.<YYYYMMDD-HHMMSS>.<n>`.
fn parse_rotated(base: &OsStr, name: &OsStr) -> Option<(u64, u64)> {
    let rest = name
        .as_encoded_bytes()
        .strip_prefix(base.as_encoded_bytes())?
        .strip_prefix(b".")?;
    if rest.len() < STAMP_LEN {
        return None;
    }
    let (stamp, tail) = rest.split_at(STAMP_LEN);
    let stamp = parse_stamp(stamp)?;
    let counter = match tail {
        [] => 0,
        [b'.', digits @ ..] => parse_digits(digits)?,
        _ => return None,
    };
    Some((stamp, counter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// 2026-11-22T09:59:59Z.
    const T0: u64 = 1_795_341_599;

    /// A clock the test moves by hand; `step` is added after every reading.
    fn clock(secs: &Arc<AtomicU64>, step: u64) -> Clock {
        let secs = Arc::clone(secs);
        Box::new(move || UNIX_EPOCH + Duration::from_secs(secs.fetch_add(step, Ordering::SeqCst)))
    }

    fn open_at(path: &Path, policy: RollingPolicy, secs: &Arc<AtomicU64>) -> RollingFile {
        RollingFile::with_clock(path, policy, clock(secs, 0)).unwrap()
    }

    fn by_size(max_bytes: u64) -> RollingPolicy {
        RollingPolicy {
            max_bytes: Some(max_bytes),
            ..RollingPolicy::default()
        }
    }

    /// Names of the rotated files of `path`, oldest first.
    fn rotated_names(path: &Path) -> Vec<String> {
        let base = path.file_name().unwrap().to_os_string();
        let mut found: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .filter_map(|e| {
                let name = e.file_name();
                parse_rotated(&base, &name).map(|key| (key, name.into_string().unwrap()))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect()
    }

    /// Contents of the rotated files, oldest first, then of the active file.
    fn contents(path: &Path) -> Vec<Vec<u8>> {
        let dir = path.parent().unwrap();
        let mut all: Vec<_> = rotated_names(path)
            .iter()
            .map(|name| fs::read(dir.join(name)).unwrap())
            .collect();
        all.push(fs::read(path).unwrap());
        all
    }

    fn line(i: usize, pad: usize) -> Vec<u8> {
        format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(pad)).into_bytes()
    }

    /// A 10-byte line.
    fn short(i: usize) -> Vec<u8> {
        format!("line{i:05}\n").into_bytes()
    }

    #[test]
    fn size_rotation_keeps_lines_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let mut out = open_at(&path, by_size(100), &secs);
        let (mut all, mut block) = (Vec::new(), Vec::new());
        for i in 0..300 {
            block.extend(line(i, i * 7 % 40));
            if i % 7 == 3 || i == 299 {
                out.write_all(&block).unwrap();
                all.append(&mut block);
            }
        }
        out.flush().unwrap();
        let files = contents(&path);
        assert!(files.len() > 20, "only {} files", files.len());
        assert_eq!(files.concat(), all);
        for (i, file) in files.iter().enumerate() {
            assert!(file.len() <= 100, "{} bytes", file.len());
            assert!(file.ends_with(b"\n") && file.starts_with(b"{\"i\":"));
            if let Some(next) = files.get(i + 1) {
                // Rotated only because the next line did not fit.
                assert!(file.len() + line_end(next) > 100, "rotated early");
            }
        }
    }

    #[test]
    fn a_line_longer_than_max_bytes_sits_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let mut out = open_at(&path, by_size(50), &secs);
        let (long0, long1, long2) = (line(0, 100), line(1, 120), line(2, 60));
        out.write_all(&long0).unwrap();
        out.write_all(b"a\n").unwrap();
        out.write_all(&[&b"b\n"[..], &long1, b"c\n"].concat())
            .unwrap();
        out.write_all(&long2).unwrap();
        let expected: Vec<Vec<u8>> = vec![long0, b"a\nb\n".to_vec(), long1, b"c\n".to_vec(), long2];
        assert_eq!(contents(&path), expected);
    }

    #[test]
    fn an_unterminated_write_is_written_whole_and_its_line_finished_in_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let mut out = open_at(&path, by_size(10), &secs);
        assert_eq!(out.write(b"abcdefghijklmnop").unwrap(), 16);
        assert_eq!(out.write(b"qr\ns\n").unwrap(), 5);
        assert_eq!(out.write(b"tuvw").unwrap(), 4);
        assert_eq!(out.write(b"xyz0123\n").unwrap(), 8);
        let expected: Vec<Vec<u8>> = vec![
            b"abcdefghijklmnopqr\n".to_vec(),
            b"s\ntuvwxyz0123\n".to_vec(),
        ];
        assert_eq!(contents(&path), expected);
    }

    #[test]
    fn time_rotation_crosses_minute_hour_and_day_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        for (every, name, first, same, next, stamp) in [
            (
                Rotation::Minutely,
                "m.log",
                T0 - 59,
                T0,
                T0 + 1,
                "20261122-100000",
            ),
            (
                Rotation::Hourly,
                "h.log",
                T0 - 3599,
                T0,
                T0 + 1,
                "20261122-100000",
            ),
            // 2026-11-22T00:00:00Z .. 23:59:59Z, then 2026-11-23T00:00:00Z
            (
                Rotation::Daily,
                "d.log",
                T0 - 35_999,
                T0 + 50_400,
                T0 + 50_401,
                "20261123-000000",
            ),
        ] {
            let path = dir.path().join(name);
            let secs = Arc::new(AtomicU64::new(first));
            let policy = RollingPolicy {
                every: Some(every),
                ..RollingPolicy::default()
            };
            let mut out = open_at(&path, policy, &secs);
            out.write_all(b"a\n").unwrap();
            secs.store(same, Ordering::SeqCst);
            out.write_all(b"b\n").unwrap();
            assert!(rotated_names(&path).is_empty(), "{every:?}");
            secs.store(next, Ordering::SeqCst);
            out.write_all(b"c\nd\n").unwrap();
            out.write_all(b"e\n").unwrap();
            assert_eq!(rotated_names(&path), [format!("{name}.{stamp}")]);
            assert_eq!(
                fs::read(dir.path().join(format!("{name}.{stamp}"))).unwrap(),
                b"a\nb\n"
            );
            assert_eq!(fs::read(&path).unwrap(), b"c\nd\ne\n");
        }
    }

    #[test]
    fn an_existing_file_takes_its_period_from_its_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        fs::write(&path, b"old\n").unwrap();
        let yesterday = UNIX_EPOCH + Duration::from_secs(T0 - 86_400);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(yesterday)
            .unwrap();
        let secs = Arc::new(AtomicU64::new(T0));
        let policy = RollingPolicy {
            every: Some(Rotation::Daily),
            ..RollingPolicy::default()
        };
        let mut out = open_at(&path, policy, &secs);
        out.write_all(b"new\n").unwrap();
        assert_eq!(rotated_names(&path), ["app.log.20261122-095959"]);
        assert_eq!(contents(&path), [b"old\n".to_vec(), b"new\n".to_vec()]);
    }

    #[test]
    fn an_empty_file_is_not_rotated_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let policy = RollingPolicy {
            every: Some(Rotation::Minutely),
            ..RollingPolicy::default()
        };
        let mut out = open_at(&path, policy, &secs);
        secs.store(T0 + 1, Ordering::SeqCst);
        out.write_all(b"a\n").unwrap();
        assert!(rotated_names(&path).is_empty());
        secs.store(T0 + 61, Ordering::SeqCst);
        out.write_all(b"b\n").unwrap();
        assert_eq!(rotated_names(&path), ["app.log.20261122-100100"]);
    }

    #[test]
    fn max_files_keeps_the_newest_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let policy = RollingPolicy {
            max_bytes: Some(10),
            max_files: Some(3),
            ..RollingPolicy::default()
        };
        // One second later at every reading of the clock.
        let mut out = RollingFile::with_clock(&path, policy, clock(&secs, 1)).unwrap();
        for i in 0..12 {
            out.write_all(&short(i)).unwrap();
        }
        assert_eq!(
            rotated_names(&path),
            [
                "app.log.20261122-100007",
                "app.log.20261122-100008",
                "app.log.20261122-100009"
            ]
        );
        assert_eq!(contents(&path), [short(8), short(9), short(10), short(11)]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn rotations_within_one_second_get_counters_ordered_numerically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let policy = RollingPolicy {
            max_bytes: Some(10),
            max_files: Some(5),
            ..RollingPolicy::default()
        };
        let mut out = open_at(&path, policy, &secs);
        for i in 0..3 {
            out.write_all(&short(i)).unwrap();
        }
        let stamp = "app.log.20261122-095959";
        assert_eq!(
            rotated_names(&path),
            [stamp.to_string(), format!("{stamp}.1")]
        );
        for i in 3..13 {
            out.write_all(&short(i)).unwrap();
        }
        // String order would keep .5 to .9 and delete .10 and .11.
        let kept: Vec<String> = (7..12).map(|n| format!("{stamp}.{n}")).collect();
        assert_eq!(rotated_names(&path), kept);
        let expected: Vec<Vec<u8>> = (7..13).map(short).collect();
        assert_eq!(contents(&path), expected);
    }

    #[test]
    fn an_existing_file_is_appended_to_and_its_size_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let old: Vec<u8> = (0..8).flat_map(short).collect();
        fs::write(&path, &old).unwrap();
        let secs = Arc::new(AtomicU64::new(T0));
        let mut out = open_at(&path, by_size(100), &secs);
        out.write_all(&[short(8), short(9)].concat()).unwrap();
        assert!(rotated_names(&path).is_empty());
        out.write_all(&short(10)).unwrap();
        let first: Vec<u8> = (0..10).flat_map(short).collect();
        assert_eq!(contents(&path), [first, short(10)]);
    }

    #[test]
    fn files_not_named_like_rotated_files_are_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let unrelated = [
            "app.log.old",
            "app.log.20261122",
            "app.log.20261122-10000",
            "app.log.20261122_100000",
            "app.log.20261122-1000000",
            "app.log.20261122-100000.",
            "app.log.20261122-100000.x",
            "app.log.20261122-100000.1.gz",
            "app.log20261122-100000",
            "xapp.log.20261122-100000",
            "other.log.20261122-100000",
        ];
        for name in unrelated {
            fs::write(dir.path().join(name), b"keep\n").unwrap();
        }
        // Named like a rotated file but a directory: not touched either.
        fs::create_dir(dir.path().join("app.log.20200101-000000")).unwrap();
        // An old rotated file: deleted.
        fs::write(dir.path().join("app.log.20200101-000000.3"), b"old\n").unwrap();
        let secs = Arc::new(AtomicU64::new(T0));
        let policy = RollingPolicy {
            max_bytes: Some(10),
            max_files: Some(1),
            ..RollingPolicy::default()
        };
        let mut out = RollingFile::with_clock(&path, policy, clock(&secs, 1)).unwrap();
        for i in 0..10 {
            out.write_all(&short(i)).unwrap();
        }
        for name in unrelated {
            assert_eq!(
                fs::read(dir.path().join(name)).unwrap(),
                b"keep\n",
                "{name}"
            );
        }
        assert!(dir.path().join("app.log.20200101-000000").is_dir());
        assert!(!dir.path().join("app.log.20200101-000000.3").exists());
        assert_eq!(contents(&path), [short(8), short(9)]);
    }

    #[test]
    fn max_files_zero_keeps_only_the_active_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let policy = RollingPolicy {
            max_bytes: Some(10),
            max_files: Some(0),
            ..RollingPolicy::default()
        };
        let mut out = open_at(&path, policy, &secs);
        for i in 0..3 {
            out.write_all(&short(i)).unwrap();
        }
        assert_eq!(contents(&path), [short(2)]);
    }

    #[test]
    fn a_failed_rotation_keeps_writing_to_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, moved) = (dir.path().join("logs"), dir.path().join("moved"));
        let path = logs.join("app.log");
        let secs = Arc::new(AtomicU64::new(T0));
        let mut out = open_at(&path, by_size(10), &secs);
        out.write_all(&short(0)).unwrap();
        // With the directory gone, rotation fails, but the open file still takes the data.
        fs::rename(&logs, &moved).unwrap();
        out.write_all(&short(1)).unwrap();
        out.write_all(&short(2)).unwrap();
        fs::rename(&moved, &logs).unwrap();
        // Within a second of the failure: not retried yet.
        out.write_all(&short(3)).unwrap();
        assert!(rotated_names(&path).is_empty());
        secs.store(T0 + 1, Ordering::SeqCst);
        out.write_all(&short(4)).unwrap();
        let first: Vec<u8> = (0..4).flat_map(short).collect();
        assert_eq!(contents(&path), [first, short(4)]);
    }

    #[test]
    fn rotated_names_are_parsed_strictly() {
        let base = OsString::from("0.log");
        let parse = |name: &str| parse_rotated(&base, &OsString::from(name));
        assert_eq!(
            parse("0.log.20261122-095959"),
            Some((20_261_122_095_959, 0))
        );
        assert_eq!(
            parse("0.log.20261122-095959.10"),
            Some((20_261_122_095_959, 10))
        );
        assert!(parse("0.log.20261122-095959.9") < parse("0.log.20261122-095959.10"));
        assert!(parse("0.log.20261122-095959.10") < parse("0.log.20261122-100000"));
        for bad in [
            "0.log",
            "0.log.",
            "0.log.2026112-095959",
            "0.log.20261122-09595a",
            "0.log.20261122-095959.",
            "0.log.20261122-095959.-1",
            "0.log.20261122-095959.99999999999999999999",
            "1.log.20261122-095959",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            format_stamp(UNIX_EPOCH + Duration::from_secs(T0)),
            "20261122-095959"
        );
    }

    #[test]
    fn open_rejects_a_path_without_a_file_name() {
        let err = RollingFile::open("/", RollingPolicy::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn nothing_is_lost_split_or_oversized(
                blocks in prop::collection::vec(prop::collection::vec(0usize..60, 1..6), 1..40),
                max_bytes in 1u64..120,
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("app.log");
                let secs = Arc::new(AtomicU64::new(T0));
                let mut out = open_at(&path, by_size(max_bytes), &secs);
                let mut all = Vec::new();
                for (b, block) in blocks.iter().enumerate() {
                    let mut bytes = Vec::new();
                    for (i, &len) in block.iter().enumerate() {
                        bytes.extend((0..len).map(|j| b'a' + ((b + i + j) % 26) as u8));
                        bytes.push(b'\n');
                    }
                    out.write_all(&bytes).unwrap();
                    all.extend(bytes);
                }
                let files = contents(&path);
                prop_assert_eq!(files.concat(), all);
                for file in &files[..files.len() - 1] {
                    prop_assert!(file.ends_with(b"\n"));
                    let lines = file.iter().filter(|&&b| b == b'\n').count();
                    prop_assert!(file.len() as u64 <= max_bytes || lines == 1);
                }
                let active = &files[files.len() - 1];
                let lines = active.iter().filter(|&&b| b == b'\n').count();
                prop_assert!(active.len() as u64 <= max_bytes || lines == 1);
            }
        }
    }
}

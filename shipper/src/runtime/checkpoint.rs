//! Read positions that survive restarts, and that only ever move past accepted lines.
//!
//! In: "these bytes of this file were read and are in batch N" and "batch N was accepted"
//! (a 2xx, or a 400 whose rejections are final). Out: per file, the offset up to which every
//! line was accepted by Loki ([`AckTracker`]), and the positions file on disk ([`Positions`]),
//! written atomically (temp file, fsync, rename, fsync of the directory).
//!
//! Promtail saves the offset of what it *read*, so a batch dropped after its retries is
//! lost for good; here a position never passes a line Loki has not taken.
//!
//! Beside each offset the file keeps a promise the other way round, `sent_to`: no byte past
//! it was ever handed to a push. It is made durable *before* a push may send those bytes
//! (see `positions_sync.rs`), so after a crash the lines between `offset` and `sent_to` are
//! exactly the ones Loki may hold already, and only those are checked against Loki before
//! they are sent again (see `recovery.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{BatchId, FileId, FileKey, PodPin, Resumed};

/// The positions file format this build writes. Versions 1 (no `sent_to`) and 2 (no `pod`)
/// are still read.
pub const POSITIONS_VERSION: u32 = 3;

/// One file's saved position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    /// The watched path the file was read through (a rotated file keeps its stream's path).
    pub path: PathBuf,
    /// Who the file is, independent of its name: a renamed file keeps its position.
    pub id: FileId,
    /// Every byte before this offset was accepted by Loki.
    pub offset: u64,
    /// No byte at or past this offset was ever sent (at least `offset`): after a crash, the
    /// lines between `offset` and here may be in Loki already.
    pub sent_to: u64,
    /// The pod metadata the file's records carried (see `model/pod_pin.rs`).
    pub pod: Option<Arc<PodPin>>,
}

impl FilePosition {
    /// What the file's stages are told when it is read again.
    pub fn resumed(&self) -> Resumed {
        Resumed {
            sent_to: self.sent_to,
            pod: self.pod.clone(),
        }
    }
}

/// The on-disk form of one position: plain integers, one object per file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedPosition {
    path: PathBuf,
    dev: u64,
    ino: u64,
    fingerprint: u64,
    offset: u64,
    /// Only written when above `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<Arc<PodPin>>,
}

#[derive(Serialize, Deserialize)]
struct PositionsFile {
    version: u32,
    files: Vec<SavedPosition>,
    /// Written once, when positions were taken over from Promtail (see `takeover.rs`). A
    /// top-level key older builds ignore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    takeover: Option<TakeoverNote>,
}

/// What a takeover of Promtail's positions did, kept in the positions file: it says the
/// takeover is done (it is never made again) and `tailrace positions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverNote {
    /// Promtail's positions file.
    pub from: PathBuf,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// The files continued from Promtail's offset.
    #[serde(default)]
    pub taken: Vec<TakenOver>,
    /// The entries not taken over, each with why.
    #[serde(default)]
    pub refused: Vec<RefusedEntry>,
}

/// A file continued from Promtail's offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenOver {
    pub path: PathBuf,
    pub offset: u64,
}

/// A Promtail entry not taken over: its key and value as Promtail wrote them, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEntry {
    pub entry: String,
    pub value: String,
    pub reason: String,
}

/// What went wrong with a positions file; the shipper reports it and carries on.
#[derive(Debug, thiserror::Error)]
pub enum PositionsError {
    #[error(
        "positions file {path} is unusable ({reason}); moved aside to {moved_to} and starting without positions"
    )]
    Corrupt {
        path: PathBuf,
        reason: String,
        moved_to: PathBuf,
    },
    #[error("cannot read positions file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write positions file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The saved positions of every known file, keyed by identity.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Positions {
    files: BTreeMap<FileId, FilePosition>,
    takeover: Option<TakeoverNote>,
}

impl Positions {
    /// Loads `path`. A missing file is an empty start. An empty, truncated, corrupt or
    /// wrong-version file is moved aside and reported in the second value: the shipper must
    /// start (a crash loop on a bad positions file helps nobody) and say so.
    pub fn load(path: &Path) -> (Self, Option<PositionsError>) {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Self::default(), None),
            Err(source) => {
                let err = PositionsError::Read {
                    path: path.to_owned(),
                    source,
                };
                return (Self::default(), Some(err));
            }
        };
        match Self::parse(&bytes) {
            Ok(p) => (p, None),
            Err(reason) => {
                let moved_to = aside_name(path);
                let moved_to = match fs::rename(path, &moved_to) {
                    Ok(()) => moved_to,
                    Err(_) => path.to_owned(), // unwritable dir: leave it, still start
                };
                let err = PositionsError::Corrupt {
                    path: path.to_owned(),
                    reason,
                    moved_to,
                };
                (Self::default(), Some(err))
            }
        }
    }

    /// Reads `path` without changing anything (for `tailrace positions`): a missing file is
    /// empty, a bad one an error saying why.
    pub fn read(path: &Path) -> Result<Self, String> {
        match fs::read(path) {
            Ok(bytes) => Self::parse(&bytes).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
            return Err("empty".into());
        }
        let file: PositionsFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        if !(1..=POSITIONS_VERSION).contains(&file.version) {
            return Err(format!(
                "version {} (this build reads versions 1 to {POSITIONS_VERSION})",
                file.version
            ));
        }
        let files = file
            .files
            .into_iter()
            .map(|f| {
                let id = FileId {
                    dev: f.dev,
                    ino: f.ino,
                    fingerprint: f.fingerprint,
                };
                let position = FilePosition {
                    path: f.path,
                    id,
                    offset: f.offset,
                    sent_to: f.sent_to.unwrap_or(0).max(f.offset),
                    pod: f.pod,
                };
                (id, position)
            })
            .collect();
        Ok(Self {
            files,
            takeover: file.takeover,
        })
    }

    /// Writes atomically: a crash at any moment leaves either the old or the new file.
    pub fn save(&self, path: &Path) -> Result<(), PositionsError> {
        let err = |source| PositionsError::Write {
            path: path.to_owned(),
            source,
        };
        let file = PositionsFile {
            version: POSITIONS_VERSION,
            files: self
                .files
                .values()
                .map(|p| SavedPosition {
                    path: p.path.clone(),
                    dev: p.id.dev,
                    ino: p.id.ino,
                    fingerprint: p.id.fingerprint,
                    offset: p.offset,
                    sent_to: (p.sent_to > p.offset).then_some(p.sent_to),
                    pod: p.pod.clone(),
                })
                .collect(),
            takeover: self.takeover.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("positions serialize");
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(err)?;
        drop(f);
        fs::rename(&tmp, path).map_err(err)?;
        // The rename itself must reach the disk too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }

    /// What the takeover of Promtail's positions did, if one was made.
    pub fn takeover(&self) -> Option<&TakeoverNote> {
        self.takeover.as_ref()
    }

    /// Records the takeover (once: see `takeover.rs`).
    pub fn set_takeover(&mut self, note: TakeoverNote) {
        self.takeover = Some(note);
    }

    pub fn get(&self, id: &FileId) -> Option<&FilePosition> {
        self.files.get(id)
    }

    /// Records that everything before `offset` of this file was accepted.
    pub fn set(&mut self, path: &Path, id: FileId, offset: u64) {
        let entry = self.entry(path, id);
        entry.offset = offset;
        entry.sent_to = entry.sent_to.max(offset);
    }

    /// Records that bytes of this file before `to` may be sent (never lowers it).
    pub fn promise_sent_to(&mut self, path: &Path, id: FileId, to: u64) {
        let entry = self.entry(path, id);
        entry.sent_to = entry.sent_to.max(to);
    }

    /// Records the pod metadata this file's records carry (see `model/pod_pin.rs`).
    pub fn pin(&mut self, path: &Path, id: FileId, pin: Arc<PodPin>) {
        self.entry(path, id).pod = Some(pin);
    }

    /// Sets every file's `sent_to` to what was really sent, `sent(id)` (at shutdown, when
    /// the promises made ahead are no longer needed): a file with nothing in flight keeps
    /// none.
    pub fn settle_sent_to(&mut self, mut sent: impl FnMut(&FileId) -> Option<u64>) {
        for (id, p) in &mut self.files {
            p.sent_to = sent(id).unwrap_or(0).clamp(p.offset, p.sent_to);
        }
    }

    fn entry(&mut self, path: &Path, id: FileId) -> &mut FilePosition {
        let entry = self.files.entry(id).or_insert_with(|| FilePosition {
            path: path.to_owned(),
            id,
            offset: 0,
            sent_to: 0,
            pod: None,
        });
        if entry.path != path {
            entry.path = path.to_owned();
        }
        entry
    }

    /// Forgets files that are gone, so the positions file does not grow forever.
    pub fn retain(&mut self, mut keep: impl FnMut(&FilePosition) -> bool) {
        self.files.retain(|_, p| keep(p));
    }

    /// Forgets files that no longer exist: neither at their path nor renamed in its
    /// directory (matched by device and inode), nor with their content in another file
    /// there (a `.gz` of it, a copy). Returns how many were dropped.
    pub fn prune_missing(&mut self) -> usize {
        use std::os::unix::fs::MetadataExt;
        let before = self.files.len();
        let same = |meta: &fs::Metadata, id: &FileId| meta.dev() == id.dev && meta.ino() == id.ino;
        self.files.retain(|id, p| {
            if fs::metadata(&p.path).is_ok_and(|m| same(&m, id)) {
                return true;
            }
            let dir = p.path.parent().unwrap_or(Path::new("."));
            let dir = fs::canonicalize(&p.path)
                .ok()
                .and_then(|real| real.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| dir.to_path_buf());
            let renamed = fs::read_dir(&dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| fs::metadata(e.path()).is_ok_and(|m| same(&m, id)))
            });
            // Gzipped (kubelet, logrotate's `compress`) or copied: the lines are still
            // there, and the position says where reading goes on in them.
            renamed || crate::source::file::tail::content_still_present(&p.path, *id)
        });
        before - self.files.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FilePosition> {
        self.files.values()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

fn aside_name(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{secs}"));
    path.with_file_name(name)
}

/// Tracks, per file, which read segments are in which batch, and yields the offset below
/// which every batch was accepted.
///
/// A file's lines enter batches in read order, so each batch holds one contiguous segment
/// of each file it touches; batches may be accepted in any order (one stream's batch may
/// wait on a retry while another's succeeds), and the committed offset only moves over a
/// prefix of accepted segments.
#[derive(Debug, Default)]
pub struct AckTracker {
    files: BTreeMap<FileKey, VecDeque<Segment>>,
}

#[derive(Debug)]
struct Segment {
    batch: BatchId,
    end: u64,
    accepted: bool,
}

impl AckTracker {
    /// Records that bytes of `file` up to `end` went into `batch`. Calls for one file must
    /// come in read order.
    pub fn add(&mut self, file: FileKey, batch: BatchId, end: u64) {
        let segments = self.files.entry(file).or_default();
        match segments.back_mut() {
            Some(last) if last.batch == batch => last.end = last.end.max(end),
            _ => segments.push_back(Segment {
                batch,
                end,
                accepted: false,
            }),
        }
    }

    /// Marks `batch` accepted and returns the files whose committed offset moved, with the
    /// new offset.
    pub fn accept(&mut self, batch: BatchId) -> Vec<(FileKey, u64)> {
        let mut moved = Vec::new();
        for (file, segments) in &mut self.files {
            let mut touched = false;
            for s in segments.iter_mut().filter(|s| s.batch == batch) {
                s.accepted = true;
                touched = true;
            }
            if !touched {
                continue;
            }
            let mut committed = None;
            while segments.front().is_some_and(|s| s.accepted) {
                committed = segments.pop_front().map(|s| s.end);
            }
            if let Some(offset) = committed {
                moved.push((file.clone(), offset));
            }
        }
        self.files.retain(|_, s| !s.is_empty());
        moved
    }

    /// Whether any segment of `file` still waits for Loki.
    pub fn pending(&self, file: &FileKey) -> bool {
        self.files.get(file).is_some_and(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u64) -> FileId {
        FileId {
            dev: 1,
            ino: n,
            fingerprint: n * 7,
        }
    }

    fn key(n: u64) -> FileKey {
        FileKey {
            path: format!("/var/log/{n}.log").into(),
            id: id(n),
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let mut p = Positions::default();
        p.set(Path::new("/var/log/a.log"), id(1), 42);
        p.set(Path::new("/var/log/b.log"), id(2), 7);
        p.save(&path).unwrap();
        let (loaded, err) = Positions::load(&path);
        assert!(err.is_none());
        assert_eq!(loaded, p);
        assert_eq!(loaded.get(&id(1)).unwrap().offset, 42);
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn a_files_pod_pin_is_kept_and_read_back_as_what_its_stages_resume_with() {
        use crate::model::ResolvedPod;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let mut p = Positions::default();
        let pin = Arc::new(PodPin {
            from: 12,
            pod: Arc::new(ResolvedPod {
                labels: vec![
                    ("app".into(), "api".into()),
                    ("job".into(), "shop/api".into()),
                ],
                metadata: vec![("pod_uid".into(), "u1".into())],
                excluded: false,
                stages: Some("java".into()),
            }),
        });
        p.promise_sent_to(Path::new("/var/log/pods/a.log"), id(1), 90);
        p.pin(Path::new("/var/log/pods/a.log"), id(1), Arc::clone(&pin));
        p.set(Path::new("/var/log/pods/a.log"), id(1), 40);
        p.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 3"), "{text}");
        let (loaded, err) = Positions::load(&path);
        assert!(err.is_none());
        assert_eq!(loaded, p);
        let resumed = loaded.get(&id(1)).unwrap().resumed();
        assert_eq!(resumed.sent_to, 90);
        assert_eq!(resumed.pod.as_deref(), Some(&*pin), "labels in their order");

        // A version 2 file (no pins) is still read.
        fs::write(
            &path,
            r#"{"version":2,"files":[{"path":"/a","dev":1,"ino":1,"fingerprint":7,"offset":3}]}"#,
        )
        .unwrap();
        let (loaded, err) = Positions::load(&path);
        assert!(err.is_none());
        assert_eq!(loaded.get(&id(1)).unwrap().pod, None);
    }

    #[test]
    fn missing_file_is_an_empty_start() {
        let dir = tempfile::tempdir().unwrap();
        let (p, err) = Positions::load(&dir.path().join("none.json"));
        assert!(p.is_empty() && err.is_none());
    }

    #[test]
    fn bad_files_are_moved_aside_and_reported() {
        let cases: [(&str, &[u8]); 5] = [
            ("empty", b""),
            ("nul bytes", &[0u8; 64]),
            ("truncated mid-write", br#"{"version":1,"files":[{"path":"/a","dev":1,"#),
            ("wrong version", br#"{"version":99,"files":[]}"#),
            ("wrong types", br#"{"version":1,"files":[{"path":3,"dev":"x","ino":1,"fingerprint":1,"offset":-1}]}"#),
        ];
        for (what, bytes) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("positions.json");
            fs::write(&path, bytes).unwrap();
            let (p, err) = Positions::load(&path);
            assert!(p.is_empty(), "{what}");
            let err = err.unwrap_or_else(|| panic!("{what}: no error"));
            let msg = err.to_string();
            assert!(
                msg.contains("positions.json") && msg.contains("moved aside"),
                "{what}: {msg}"
            );
            assert!(!path.exists(), "{what}: not moved aside");
            let aside: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(aside.len(), 1, "{what}");
        }
    }

    #[test]
    fn prune_keeps_renamed_files_and_drops_deleted_ones() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let id_of = |p: &Path| {
            let m = fs::metadata(p).unwrap();
            FileId {
                dev: m.dev(),
                ino: m.ino(),
                fingerprint: 1,
            }
        };
        let live = dir.path().join("app.log");
        let rotated = dir.path().join("old.log");
        let gone = dir.path().join("gone.log");
        for f in [&live, &rotated, &gone] {
            fs::write(f, "x\n").unwrap();
        }
        let mut p = Positions::default();
        p.set(&live, id_of(&live), 2);
        p.set(&rotated, id_of(&rotated), 2);
        p.set(&gone, id_of(&gone), 2);
        fs::rename(&rotated, dir.path().join("old.log.1")).unwrap();
        fs::remove_file(&gone).unwrap();
        assert_eq!(p.prune_missing(), 1);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn retain_prunes_gone_files() {
        let mut p = Positions::default();
        p.set(Path::new("/a"), id(1), 1);
        p.set(Path::new("/b"), id(2), 2);
        p.retain(|f| f.path != Path::new("/a"));
        assert_eq!(p.len(), 1);
        assert!(p.get(&id(2)).is_some());
    }

    #[test]
    fn offsets_move_only_over_accepted_prefixes() {
        let mut t = AckTracker::default();
        t.add(key(1), 10, 100);
        t.add(key(1), 11, 200);
        t.add(key(1), 12, 300);
        assert!(t.accept(11).is_empty(), "batch 10 still waits");
        assert_eq!(t.accept(10), vec![(key(1), 200)]);
        assert!(t.pending(&key(1)));
        assert_eq!(t.accept(12), vec![(key(1), 300)]);
        assert!(!t.pending(&key(1)));
    }

    proptest! {
        /// Whatever order batches are accepted in, the committed offset is the end of the
        /// longest accepted prefix, and never goes backwards.
        #[test]
        fn committed_offset_is_the_accepted_prefix(
            n in 1usize..30,
            order in Just(()).prop_perturb(|_, mut rng| {
                let mut v: Vec<usize> = (0..30).collect();
                for i in (1..v.len()).rev() { v.swap(i, (rng.next_u32() as usize) % (i + 1)); }
                v
            }),
        ) {
            let mut t = AckTracker::default();
            for b in 0..n {
                t.add(key(1), b as u64, (b as u64 + 1) * 10);
            }
            let mut accepted = vec![false; n];
            let mut committed = 0;
            for b in order.into_iter().filter(|b| *b < n) {
                accepted[b] = true;
                for (_, off) in t.accept(b as u64) {
                    prop_assert!(off > committed);
                    committed = off;
                }
                let prefix = accepted.iter().take_while(|a| **a).count() as u64;
                prop_assert_eq!(committed, prefix * 10);
            }
            prop_assert_eq!(committed, n as u64 * 10);
        }
    }

    // Fuzzing the positions reader (a property test, so it runs in CI on stable): whatever
    // bytes a crash or a disk leaves, reading returns a value or an error, never a panic.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Positions::parse(&bytes);
        }

        #[test]
        fn damaged_positions_files_parse_or_fail_cleanly(
            cut in 0usize..400,
            at in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let good = br#"{"version":1,"files":[{"path":"/var/log/pods/a_b_c/d/0.log","dev":2049,"ino":1234,"fingerprint":99,"offset":4096},{"path":"/x","dev":1,"ino":2,"fingerprint":0,"offset":0}]}"#;
            let mut damaged = good.to_vec();
            if at < damaged.len() {
                damaged[at] = byte;
            }
            damaged.truncate(cut.max(1));
            if let Ok(p) = Positions::parse(&damaged) {
                // What parses is usable: it saves and reads back the same.
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("positions.json");
                p.save(&path).unwrap();
                proptest::prop_assert_eq!(Positions::read(&path).unwrap(), p);
            }
        }
    }
}

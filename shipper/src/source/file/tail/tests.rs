//! Unit tests of [`Tailer`] with real files in a temporary directory.

use super::siblings::rank;
use super::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::sync::Arc;

/// What copytruncate does to the original: cut it to nothing, in place.
pub(crate) fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn append(path: &Path, bytes: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes.as_bytes())
        .unwrap();
}

fn config() -> TailerConfig {
    TailerConfig {
        partial_timeout: None,
        ..TailerConfig::default()
    }
}

/// Every line of one poll as (watched file name, text).
fn poll(t: &mut Tailer) -> Vec<(String, String)> {
    poll_keys(t)
        .into_iter()
        .map(|(k, s, _)| (name(&k.path), s))
        .collect()
}

fn poll_keys(t: &mut Tailer) -> Vec<(FileKey, String, u64)> {
    poll_at(t, Instant::now(), usize::MAX)
}

fn poll_at(t: &mut Tailer, now: Instant, budget: usize) -> Vec<(FileKey, String, u64)> {
    let mut got = Vec::new();
    let summary = t.poll_at(now, budget, &mut |k, l| {
        got.push((
            k.clone(),
            String::from_utf8(l.bytes.to_vec()).unwrap(),
            l.offset_end,
        ))
    });
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.lines, got.len() as u64);
    got
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn texts(lines: &[(String, String)]) -> Vec<&str> {
    lines.iter().map(|l| l.1.as_str()).collect()
}

#[test]
fn tails_several_files_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    append(&a, "a1\n");
    let mut t = Tailer::new(config());
    t.watch(&a).unwrap();
    t.watch(&b).unwrap(); // not there yet
    t.watch(&a).unwrap(); // twice: no effect
    assert_eq!(t.watched().count(), 2);
    append(&b, "b1\nb2\n");
    append(&a, "a2\n");
    let got = poll_keys(&mut t);
    let mut simple: Vec<_> = got
        .iter()
        .map(|(k, s, o)| (name(&k.path), s.as_str(), *o))
        .collect();
    simple.sort();
    assert_eq!(
        simple,
        [
            ("a.log".into(), "a1", 3),
            ("a.log".into(), "a2", 6),
            ("b.log".into(), "b1", 3),
            ("b.log".into(), "b2", 6)
        ]
    );
    for (k, _, _) in &got {
        assert_eq!(k.id, FileId::of_path(&k.path).unwrap());
    }
    assert!(poll(&mut t).is_empty());
    append(&a, "a3\n");
    assert_eq!(poll(&mut t), [("a.log".into(), "a3".into())]);
}

#[test]
fn budget_applies_per_path_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    append(&a, "aaaa\naaab\naaac\n");
    append(&b, "bbba\nbbbb\n");
    let mut t = Tailer::new(config());
    t.watch(&a).unwrap();
    t.watch(&b).unwrap();
    let first: Vec<_> = poll_at(&mut t, Instant::now(), 5)
        .into_iter()
        .map(|l| l.1)
        .collect();
    assert_eq!(first, ["aaaa", "bbba"]);
    let rest: Vec<_> = poll_at(&mut t, Instant::now(), 100)
        .into_iter()
        .map(|l| l.1)
        .collect();
    assert_eq!(rest, ["aaab", "aaac", "bbbb"]);
}

#[test]
fn rename_rotation_drains_the_old_file_then_reads_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["one"]);
    let mut old_writer = OpenOptions::new().append(true).open(&p).unwrap();
    old_writer.write_all(b"two\n").unwrap();
    fs::rename(&p, dir.path().join("app.log.1")).unwrap();
    append(&p, "new one\n");
    // The writer had not reopened yet.
    old_writer.write_all(b"three\n").unwrap();
    let got = poll_keys(&mut t);
    let got: Vec<_> = got
        .iter()
        .map(|(k, s, o)| (name(&k.path), s.as_str(), *o))
        .collect();
    assert_eq!(
        got,
        [
            ("app.log".into(), "two", 8),
            ("app.log".into(), "three", 14),
            ("app.log".into(), "new one", 8),
        ]
    );
    assert_eq!(
        t.open_files().count(),
        1,
        "the old file is done: the new one has data"
    );
    assert_eq!(t.stats().rotations, 1);
    append(&p, "new two\n");
    assert_eq!(texts(&poll(&mut t)), ["new two"]);
}

#[test]
fn a_rotated_file_stays_open_until_rotate_wait_while_the_new_one_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\n");
    let mut t = Tailer::new(TailerConfig {
        rotate_wait: Duration::from_secs(10),
        ..config()
    });
    t.watch(&p).unwrap();
    let t0 = Instant::now();
    poll_at(&mut t, t0, usize::MAX);
    fs::rename(&p, dir.path().join("app.log.1")).unwrap();
    File::create(&p).unwrap();
    assert!(poll_at(&mut t, t0, usize::MAX).is_empty());
    assert_eq!(t.open_files().count(), 2);
    append(&dir.path().join("app.log.1"), "late\n");
    let got = poll_at(&mut t, t0 + Duration::from_secs(5), usize::MAX);
    assert_eq!(
        got.iter().map(|l| l.1.as_str()).collect::<Vec<_>>(),
        ["late"]
    );
    assert_eq!(t.open_files().count(), 2);
    assert!(poll_at(&mut t, t0 + Duration::from_secs(16), usize::MAX).is_empty());
    assert_eq!(
        t.open_files().count(),
        1,
        "closed after waiting 10 s at its end"
    );
}

#[test]
fn rotated_twice_between_polls_logrotate_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let r1 = dir.path().join("app.log.1");
    let r2 = dir.path().join("app.log.2");
    append(&p, "g1 a\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g1 a"]);
    append(&p, "g1 b\n");
    fs::rename(&p, &r1).unwrap();
    append(&p, "g2 a\ng2 b\n");
    fs::rename(&r1, &r2).unwrap();
    fs::rename(&p, &r1).unwrap();
    append(&p, "g3 a\n");
    assert_eq!(texts(&poll(&mut t)), ["g1 b", "g2 a", "g2 b", "g3 a"]);
    assert_eq!(t.stats().rotated_found, 1);
    assert_eq!(t.open_files().count(), 1);
    // The files left in the directory are known now: another rotation reads only the new.
    append(&p, "g3 b\n");
    fs::rename(&r2, dir.path().join("app.log.3")).unwrap();
    fs::rename(&r1, &r2).unwrap();
    fs::rename(&p, &r1).unwrap();
    append(&p, "g4 a\n");
    assert_eq!(texts(&poll(&mut t)), ["g3 b", "g4 a"]);
}

#[test]
fn rotated_twice_between_polls_kubelet_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("0.log");
    append(&p, "g1 a\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    poll(&mut t);
    append(&p, "g1 b\n");
    fs::rename(&p, dir.path().join("0.log.20261122-100000")).unwrap();
    append(&p, "g2 a\n");
    fs::rename(&p, dir.path().join("0.log.20261122-110000")).unwrap();
    append(&p, "g3 a\n");
    fs::rename(&p, dir.path().join("0.log.20261122-120000")).unwrap();
    append(&p, "g4 a\n");
    // Named `.gz` but not gzip: not read, and said (once).
    append(&dir.path().join("0.log.20261122-090000.gz"), "zip\n");
    let (got, errors) = poll_with_errors(&mut t);
    assert_eq!(got, ["g1 b", "g2 a", "g3 a", "g4 a"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("not read"), "{errors:?}");
    assert_eq!(t.stats().rotated_found, 2);
    assert_eq!(t.stats().compressed_skipped, 1);
}

/// One poll's lines and its errors (as text), errors allowed.
fn poll_with_errors(t: &mut Tailer) -> (Vec<String>, Vec<String>) {
    let mut got = Vec::new();
    let summary = t.poll(usize::MAX, &mut |_, l| {
        got.push(String::from_utf8(l.bytes.to_vec()).unwrap())
    });
    let errors = summary.errors.iter().map(|(_, e)| e.to_string()).collect();
    (got, errors)
}

#[test]
fn a_rotation_while_the_path_is_missing_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert!(poll(&mut t).is_empty());
    // Created, written and renamed away between two polls; nothing at the path yet.
    append(&p, "only\n");
    fs::rename(&p, dir.path().join("app.log.1")).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["only"]);
    append(&p, "next\n");
    assert_eq!(texts(&poll(&mut t)), ["next"]);
}

#[test]
fn rotations_there_before_watching_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&dir.path().join("app.log.1"), "old\n");
    append(&dir.path().join("app.log-20260101"), "old\n");
    append(&dir.path().join("app.logger"), "another file\n");
    append(&p, "now\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["now"]);
    fs::rename(&p, dir.path().join("app.log.2")).unwrap();
    append(&p, "new\n");
    assert_eq!(texts(&poll(&mut t)), ["new"]);
    assert_eq!(t.stats().rotated_found, 0);
}

#[test]
fn copytruncate_reads_again_from_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\ntwo\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    let before = poll_keys(&mut t);
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    truncate(&p);
    append(&p, "three\n");
    let after = poll_keys(&mut t);
    assert_eq!(
        after
            .iter()
            .map(|l| (l.1.as_str(), l.2))
            .collect::<Vec<_>>(),
        [("three", 6)]
    );
    assert_ne!(after[0].0.id, before[0].0.id, "new content, new key");
    assert_eq!(t.stats().reader.truncations, 1);
    // The copy is not taken for a rotation later.
    fs::remove_file(&p).unwrap();
    append(&p, "four\n");
    assert_eq!(texts(&poll(&mut t)), ["four"]);
}

#[test]
fn copytruncate_reads_the_lines_not_yet_read_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\ntwo\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["one", "two"]);
    // Written after our last read, then copied and truncated away by logrotate.
    append(&p, "three\nfour\n");
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    truncate(&p);
    append(&p, "five\n");
    assert_eq!(
        texts(&poll(&mut t)),
        ["three", "four", "five"],
        "from the copy, once, in order"
    );
    assert_eq!(t.stats().copies_drained, 1);
    append(&p, "six\n");
    assert_eq!(texts(&poll(&mut t)), ["six"]);
}

/// The file was empty when opened, so it has no first bytes to notice a truncation by:
/// lines written, copied and truncated away before the next poll are in the copy only.
/// The first line the file gets makes the tailer look at the directory, and the copy is
/// read (once; after the newer lines, which came first).
#[test]
fn a_copytruncate_while_the_file_was_empty_is_found_by_the_next_look() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut t) = watching_an_empty_file(dir.path());
    append(&p, "one\ntwo\n");
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    let got = truncate_write_and_poll_twice(&mut t, &p, "three\n");
    assert_eq!(texts(&got), ["three", "one", "two"]);
    append(&p, "four\n");
    assert_eq!(texts(&poll(&mut t)), ["four"]);
}

/// The copy is made while the file, empty when opened, holds its first lines, and a look
/// at the directory comes between the copy and the truncation: the copy holds content an
/// open file holds too, so it is taken for known. The open file takes its first bytes at
/// that look, so the truncation is noticed and the copy read.
#[test]
fn a_copy_seen_before_the_truncation_of_a_file_opened_empty_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut t) = watching_an_empty_file(dir.path());
    append(&p, "one\n");
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    let chain = t.streams.get_mut(&p).unwrap();
    chain.open_missed(&t.opener, &mut t.stats).unwrap();
    let got = truncate_write_and_poll_twice(&mut t, &p, "two\n");
    assert_eq!(texts(&got), ["one", "two"]);
}

/// `dir/app.log`, empty, watched and polled once (its reader open with no first bytes).
fn watching_an_empty_file(dir: &Path) -> (PathBuf, Tailer) {
    let p = dir.join("app.log");
    append(&p, "");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert!(poll(&mut t).is_empty());
    (p, t)
}

/// Copytruncate's second half (the copy is the test's), then two polls: the first may
/// only notice what the second reads.
fn truncate_write_and_poll_twice(t: &mut Tailer, p: &Path, line: &str) -> Vec<(String, String)> {
    truncate(p);
    append(p, line);
    let mut got = poll(t);
    got.extend(poll(t));
    got
}

#[test]
fn a_deleted_file_is_drained_then_closed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\n");
    let mut writer = OpenOptions::new().append(true).open(&p).unwrap();
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    fs::remove_file(&p).unwrap();
    writer.write_all(b"two\n").unwrap();
    assert_eq!(texts(&poll(&mut t)), ["one", "two"]);
    assert_eq!(t.open_files().count(), 0);
    assert_eq!(t.stats().deleted_given_up, 0);
    // A new file at the path is a new file.
    append(&p, "three\n");
    assert_eq!(texts(&poll(&mut t)), ["three"]);
}

#[test]
fn a_deleted_file_is_held_at_most_deleted_hold() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "aaaa\nbbbb\ncccc\n");
    let mut t = Tailer::new(TailerConfig {
        deleted_hold: Duration::from_secs(60),
        ..config()
    });
    t.watch(&p).unwrap();
    fs::remove_file(&p).unwrap();
    let t0 = Instant::now();
    assert_eq!(poll_at(&mut t, t0, 1).len(), 1);
    assert_eq!(poll_at(&mut t, t0 + Duration::from_secs(59), 1).len(), 1);
    assert!(poll_at(&mut t, t0 + Duration::from_secs(61), 1).is_empty());
    assert_eq!(t.open_files().count(), 0);
    let s = t.stats();
    assert_eq!((s.deleted_given_up, s.given_up_bytes), (1, 5));
}

#[test]
fn partial_lines_wait_then_time_out_in_the_tailer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "whole\nhalf");
    let mut t = Tailer::new(TailerConfig {
        partial_timeout: Some(Duration::ZERO),
        ..config()
    });
    t.watch(&p).unwrap();
    let mut no_timeout = Tailer::new(config());
    no_timeout.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut no_timeout)), ["whole"]);
    assert_eq!(texts(&poll(&mut t)), ["whole", "half"]);
    append(&p, " done\n");
    assert_eq!(texts(&poll(&mut t)), [" done"]);
    assert_eq!(texts(&poll(&mut no_timeout)), ["half done"]);
}

#[test]
fn resume_continues_the_same_file_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\ntwo\n");
    let id = FileId::of_path(&p).unwrap();
    append(&p, "three\n");
    let mut t = Tailer::new(config());
    assert_eq!(t.resume(&p, id, 4).unwrap(), Resumed::AtPath);
    let got = poll_keys(&mut t);
    assert_eq!(
        got.iter().map(|l| (l.1.as_str(), l.2)).collect::<Vec<_>>(),
        [("two", 8), ("three", 14)]
    );
    assert!(got.iter().all(|l| l.0.id == id && l.0.path == p));
}

#[test]
fn resume_finds_the_saved_file_renamed_logrotate_style() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let r1 = dir.path().join("app.log.1");
    let r2 = dir.path().join("app.log.2");
    append(&p, "g0\n");
    fs::rename(&p, &r1).unwrap(); // an old rotation: read before the checkpoint
    append(&p, "g1 a\n");
    let saved = FileId::of_path(&p).unwrap();
    append(&p, "g1 b\n");
    // Down: two rotations.
    fs::rename(&r1, &r2).unwrap();
    fs::rename(&p, &r1).unwrap();
    append(&p, "g2 a\n");
    fs::rename(&r2, dir.path().join("app.log.3")).unwrap();
    fs::rename(&r1, &r2).unwrap();
    fs::rename(&p, &r1).unwrap();
    append(&p, "g3 a\n");
    let mut t = Tailer::new(config());
    assert_eq!(
        t.resume(&p, saved, 5).unwrap(),
        Resumed::Rotated(r2.clone())
    );
    let got = poll_keys(&mut t);
    assert_eq!(
        got.iter().map(|l| l.1.as_str()).collect::<Vec<_>>(),
        ["g1 b", "g2 a", "g3 a"]
    );
    assert_eq!(got[0].0.id, saved);
    assert!(
        got.iter().all(|l| l.0.path == p),
        "keys carry the watched path"
    );
}

#[test]
fn resume_finds_the_saved_file_renamed_kubelet_style_under_no_glob() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("0.log");
    append(&dir.path().join("0.log.20261122-080000"), "older\n");
    append(&p, "g1 a\ng1 b\n");
    let saved = FileId::of_path(&p).unwrap();
    fs::rename(&p, dir.path().join("0.log.20261122-090000")).unwrap();
    append(&p, "g2 a\n");
    fs::rename(&p, dir.path().join("0.log.20261122-100000")).unwrap();
    append(&p, "g3 a\n");
    let mut t = Tailer::new(config());
    let how = t.resume(&p, saved, 5).unwrap();
    assert_eq!(
        how,
        Resumed::Rotated(dir.path().join("0.log.20261122-090000"))
    );
    assert_eq!(texts(&poll(&mut t)), ["g1 b", "g2 a", "g3 a"]);
}

/// A script naming rotations by a growing number (`w1.log.000100`, `w1.log.000200`: bigger
/// is newer, unlike logrotate's `.1`, `.2`), two of them while the tailer was down: the
/// modification times say which way the numbers count, and nothing is taken as read.
#[test]
fn resume_after_two_renames_to_growing_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w1.log");
    append(&p, "g1 a\ng1 b\n");
    let saved = FileId::of_path(&p).unwrap();
    fs::rename(&p, dir.path().join("w1.log.000100")).unwrap();
    // Distinct modification times (a pause, not a timing assertion).
    std::thread::sleep(Duration::from_millis(20));
    append(&p, "g2 a\n");
    fs::rename(&p, dir.path().join("w1.log.000200")).unwrap();
    append(&p, "g3 a\n");
    let mut t = Tailer::new(config());
    t.resume(&p, saved, 10).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g2 a", "g3 a"]);
}

/// logrotate's `create` with a writer that reopens late: the old file (`.2` by now) was
/// written after the new one (`.1`, still empty) was created. An empty file's time is its
/// creation's: `.1` still counts as newer than `.2`, and is read after it.
#[test]
fn resume_after_a_lagging_writer_with_the_newer_rotation_still_empty() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let rotated = |n: u32| dir.path().join(format!("app.log.{n}"));
    append(&p, "g1 a\n");
    let saved = FileId::of_path(&p).unwrap();
    fs::rename(&p, rotated(1)).unwrap();
    append(&p, "");
    // Distinct modification times (a pause, not a timing assertion).
    std::thread::sleep(Duration::from_millis(20));
    append(&rotated(1), "g1 b\n");
    fs::rename(rotated(1), rotated(2)).unwrap();
    fs::rename(&p, rotated(1)).unwrap();
    append(&p, "");
    let mut t = Tailer::new(config());
    t.resume(&p, saved, 5).unwrap();
    append(&rotated(1), "g2 a\n");
    assert_eq!(texts(&poll(&mut t)), ["g1 b", "g2 a"]);
}

#[test]
fn resume_with_several_saved_files_of_one_path() {
    // Downstream accepted the new file's first line before the rotated file's last one.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "g1 a\ng1 b\n");
    let g1 = FileId::of_path(&p).unwrap();
    fs::rename(&p, dir.path().join("app.log.1")).unwrap();
    append(&p, "g2 a\ng2 b\n");
    let g2 = FileId::of_path(&p).unwrap();
    let mut t = Tailer::new(config());
    t.resume(&p, g2, 5).unwrap();
    t.resume(&p, g1, 5).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g1 b", "g2 b"]);
}

#[test]
fn resume_does_not_apply_a_position_to_a_reused_inode_or_replaced_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "the old file, long gone\n");
    let current = FileId::of_path(&p).unwrap();
    // An inode reused for a new file: same device and inode, another first line.
    let reused = FileId {
        fingerprint: current.fingerprint ^ 1,
        ..current
    };
    let mut t = Tailer::new(config());
    assert_eq!(t.resume(&p, reused, 10).unwrap(), Resumed::NotFound);
    assert_eq!(texts(&poll(&mut t)), ["the old file, long gone"]);
    assert_eq!(t.stats().resume_not_found, 1);

    // Copytruncate while down.
    truncate(&p);
    append(&p, "after the truncation, longer than before\n");
    let mut t = Tailer::new(config());
    assert_eq!(t.resume(&p, current, 24).unwrap(), Resumed::NotFound);
    assert_eq!(
        texts(&poll(&mut t)),
        ["after the truncation, longer than before"]
    );
}

#[test]
fn resume_of_a_deleted_file_starts_the_new_file_from_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "gone\n");
    let saved = FileId::of_path(&p).unwrap();
    fs::remove_file(&p).unwrap();
    let mut t = Tailer::new(config());
    assert_eq!(t.resume(&p, saved, 5).unwrap(), Resumed::NotFound);
    assert!(poll(&mut t).is_empty());
    append(&p, "new\n");
    assert_eq!(texts(&poll(&mut t)), ["new"]);
}

#[test]
fn a_symlinked_path_finds_rotations_next_to_the_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let containers = dir.path().join("containers");
    fs::create_dir_all(&pods).unwrap();
    fs::create_dir_all(&containers).unwrap();
    let real = pods.join("0.log");
    let link = containers.join("app_ns_ctr-abc.log");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    append(&real, "g1 a\n");
    let mut t = Tailer::new(config());
    t.watch(&link).unwrap();
    poll(&mut t);
    append(&real, "g1 b\n");
    fs::rename(&real, pods.join("0.log.20261122-100000")).unwrap();
    append(&real, "g2 a\n");
    fs::rename(&real, pods.join("0.log.20261122-110000")).unwrap();
    append(&real, "g3 a\n");
    let got = poll(&mut t);
    assert_eq!(texts(&got), ["g1 b", "g2 a", "g3 a"]);
    assert!(got.iter().all(|l| l.0 == "app_ns_ctr-abc.log"));
}

#[test]
fn forget_closes_the_files_of_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "x\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(t.open_files().count(), 1);
    assert!(t.forget(&p));
    assert!(!t.forget(&p));
    assert_eq!(t.open_files().count(), 0);
    assert!(poll(&mut t).is_empty());
}

#[test]
fn rotation_order_of_suffixes() {
    let mut names = [
        &b"2"[..],
        b"1",
        b"10",
        b"20261122-110000",
        b"20261122-100000",
        b"20260101",
        b"1499.bak",
        b"999.bak",
    ];
    names.sort_by_key(|n| rank(n));
    assert_eq!(
        names,
        [
            &b"10"[..],
            b"2",
            b"1",
            b"999.bak",
            b"1499.bak",
            b"20260101",
            b"20261122-100000",
            b"20261122-110000"
        ]
    );
}

#[test]
fn a_file_resumed_under_a_pending_identity_keeps_that_key() {
    // Saved while its first line was still incomplete (a partial line handed out early).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "no newline yet");
    let saved = FileId::of_path(&p).unwrap();
    assert!(saved.is_pending());
    append(&p, ", now there is\nnext\n");
    let mut t = Tailer::new(config());
    assert_eq!(t.resume(&p, saved, 14).unwrap(), Resumed::AtPath);
    let got = poll_keys(&mut t);
    assert_eq!(
        got.iter().map(|l| l.1.as_str()).collect::<Vec<_>>(),
        [", now there is", "next"]
    );
    assert!(got.iter().all(|l| l.0.id == saved));
}

/// A watched file replaced by a link to a host file, and a "rotated" sibling that is such a
/// link: with a guard, neither is read, and the error names the path; the real log goes on.
#[test]
fn the_guard_keeps_links_to_outside_files_from_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let host = dir.path().join("host");
    fs::create_dir_all(&logs).unwrap();
    fs::create_dir_all(&host).unwrap();
    let secret = host.join("shadow");
    append(&secret, "root:secret\n");
    let p = logs.join("app.log");
    append(&p, "one\n");
    let mut t = Tailer::new(config());
    let root = fs::canonicalize(&logs).unwrap();
    t.set_guard(Arc::new(move |real: &Path| real.starts_with(&root)));
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["one"]);

    // A planted sibling named like a rotation.
    std::os::unix::fs::symlink(&secret, logs.join("app.log.1")).unwrap();
    fs::remove_file(&p).unwrap();
    // The path itself replaced by a link.
    std::os::unix::fs::symlink(&secret, &p).unwrap();
    let mut got = Vec::new();
    let summary = t.poll(usize::MAX, &mut |_, l| got.push(l.bytes.to_vec()));
    assert!(got.is_empty(), "nothing outside the root is read: {got:?}");
    assert!(
        summary
            .errors
            .iter()
            .any(|(_, e)| e.kind() == io::ErrorKind::PermissionDenied
                && e.to_string().contains("outside the input's roots")),
        "{:?}",
        summary.errors
    );
    // The real log comes back: read again.
    fs::remove_file(&p).unwrap();
    append(&p, "two\n");
    let mut got = Vec::new();
    t.poll(usize::MAX, &mut |_, l| got.push(l.bytes.to_vec()));
    assert_eq!(got, [b"two".to_vec()]);
}

/// Copytruncate while the shipper was down: the saved file is the one at the path, now
/// truncated and written again; the lines after the saved offset are in logrotate's copy,
/// and are read from there before the new content.
#[test]
fn copytruncate_while_down_resumes_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\ntwo\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    let keys = poll_keys(&mut t);
    let (key, _, offset) = keys.last().unwrap().clone();
    assert_eq!(offset, 8);
    drop(t);
    // Down: more lines, then copy and truncate, then new lines.
    append(&p, "three\nfour\n");
    fs::copy(&p, dir.path().join("app.log.1")).unwrap();
    truncate(&p);
    append(&p, "five\n");
    let mut t = Tailer::new(config());
    t.resume(&p, key.id, offset).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["three", "four", "five"]);
    assert_eq!(t.stats().copies_drained, 1);
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// A named pipe where a log or a rotation is expected is refused at once, naming it. Opened
/// the usual way it would block until a writer comes: the reader thread, and every file
/// with it, would stop for good.
#[test]
fn a_named_pipe_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    append(&path.join("app.log"), "one\n");
    mkfifo(&path.join("app.log.1")); // named like a rotation of app.log
    mkfifo(&path.join("pipe.log")); // named like a log
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut t = Tailer::new(config());
        t.watch(&path.join("app.log")).unwrap();
        let refused = t.watch(&path.join("pipe.log")).unwrap_err().to_string();
        let lines = |t: &mut Tailer| poll(t).into_iter().map(|l| l.1).collect::<Vec<_>>();
        let first = lines(&mut t);
        fs::rename(path.join("app.log"), path.join("app.log.2")).unwrap();
        append(&path.join("app.log"), "two\n");
        let second = lines(&mut t);
        let _ = tx.send((refused, first, second));
    });
    // Generous: the point is "returns" against "never returns".
    let (refused, first, second) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the tailer blocked opening a named pipe");
    assert!(
        refused.contains("pipe.log") && refused.contains("not a regular file"),
        "{refused}"
    );
    assert_eq!(first, ["one"]);
    assert_eq!(second, ["two"]);
}

/// What kubelet and logrotate's `compress` do to a rotation: `<name>.gz` with its content,
/// the uncompressed file deleted. Returns the compressed file's path.
fn gzip_away(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    let gz = PathBuf::from(name);
    gzip_to(path, &gz);
    fs::remove_file(path).unwrap();
    gz
}

fn gzip_to(from: &Path, to: &Path) {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&fs::read(from).unwrap()).unwrap();
    fs::write(to, enc.finish().unwrap()).unwrap();
}

/// `n` numbered lines `<tag> <i>` from `from`.
fn seq_lines(tag: &str, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("{tag} {i:05}\n"))
        .collect()
}

#[test]
fn a_saved_position_continues_in_the_gzip_of_its_rotation_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("0.log");
    append(&p, "g1 a\ng1 b\ng1 c\n");
    let saved = FileId::of_path(&p).unwrap();
    let r1 = dir.path().join("0.log.20261204-101500");
    fs::rename(&p, &r1).unwrap();
    append(&p, "g2 a\n");
    let gz = gzip_away(&r1);
    let gz_id = FileId::of_path(&gz).unwrap();
    assert_eq!(
        gz_id.fingerprint, saved.fingerprint,
        "decompressed first line"
    );
    assert!(content_still_present(&p, saved));
    let mut t = Tailer::new(config());
    assert_eq!(t.resume(&p, saved, 5).unwrap(), Resumed::Moved(gz.clone()));
    let got = poll_keys(&mut t);
    let got: Vec<_> = got.iter().map(|(k, s, o)| (k.id, s.as_str(), *o)).collect();
    let at_path = FileId::of_path(&p).unwrap();
    assert_eq!(
        got,
        [
            (gz_id, "g1 b", 10),
            (gz_id, "g1 c", 15),
            (at_path, "g2 a", 5)
        ],
        "decompressed offsets, the gzip file's own identity"
    );
    assert_eq!(t.stats().moved_found, 1);
    assert_eq!(t.stats().compressed_opened, 1);
    fs::remove_file(&gz).unwrap();
    assert!(!content_still_present(&p, saved));
}

#[test]
fn a_gzip_of_a_rotation_already_read_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    let r1 = dir.path().join("app.log.1");
    append(&p, "g1 a\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g1 a"]);
    // logrotate `compress` + `delaycompress`: `.1` stays plain until the next rotation.
    fs::rename(&p, &r1).unwrap();
    append(&p, "g2 a\n");
    assert_eq!(texts(&poll(&mut t)), ["g2 a"]);
    fs::rename(&r1, dir.path().join("app.log.2")).unwrap();
    gzip_away(&dir.path().join("app.log.2"));
    fs::rename(&p, &r1).unwrap();
    append(&p, "g3 a\n");
    assert_eq!(texts(&poll(&mut t)), ["g3 a"]);
    // Compressed while still open (not yet drained): read once, through the open file.
    append(&p, "g3 b\n");
    fs::rename(&r1, dir.path().join("app.log.2")).unwrap();
    fs::rename(&p, &r1).unwrap();
    append(&p, "g4 a\n");
    gzip_away(&r1);
    assert_eq!(texts(&poll(&mut t)), ["g3 b", "g4 a"]);
    append(&p, "g4 b\n");
    assert_eq!(texts(&poll(&mut t)), ["g4 b"]);
    assert_eq!(t.stats().compressed_opened, 0);
}

/// Kubelet rotates `0.log` (holding `g1 a`) three times while nothing is read (Loki down,
/// reading paused, or the process not running), gzipping every rotation but the newest.
fn kubelet_three_rotations(dir: &Path) {
    let p = dir.join("0.log");
    append(&p, "g1 b\n");
    let mut previous: Option<PathBuf> = None;
    for (i, next) in ["g2 a\n", "g3 a\n", "g4 a\n"].into_iter().enumerate() {
        let rotated = dir.join(format!("0.log.20261204-10{i}500"));
        fs::rename(&p, &rotated).unwrap();
        if let Some(older) = previous.replace(rotated) {
            gzip_away(&older);
        }
        append(&p, next);
    }
}

#[test]
fn kubelet_rotations_gzipped_while_not_polled_are_read_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("0.log");
    append(&p, "g1 a\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g1 a"]);
    kubelet_three_rotations(dir.path());
    // g1 through its open handle (its gzip copy is not read), g2 from its gzip file.
    assert_eq!(texts(&poll(&mut t)), ["g1 b", "g2 a", "g3 a", "g4 a"]);
    assert_eq!(t.stats().compressed_opened, 1);
    append(&p, "g4 b\n");
    assert_eq!(texts(&poll(&mut t)), ["g4 b"]);
}

#[test]
fn kubelet_rotations_gzipped_while_reading_was_paused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("0.log");
    append(&p, "g0\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g0"]);
    fs::remove_file(&p).unwrap();
    assert!(poll(&mut t).is_empty());
    append(&p, "g1 a\n");
    kubelet_three_rotations(dir.path());
    assert_eq!(
        texts(&poll(&mut t)),
        ["g1 a", "g1 b", "g2 a", "g3 a", "g4 a"],
        "g1 and g2 from their gzip files"
    );
    assert_eq!(t.stats().compressed_opened, 2);
    append(&p, "g4 b\n");
    assert_eq!(texts(&poll(&mut t)), ["g4 b"]);
}

#[test]
fn kubelet_rotations_gzipped_while_down_resume_in_the_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("0.log");
    append(&p, "g1 a\n");
    let g1 = FileId::of_path(&p).unwrap();
    kubelet_three_rotations(dir.path());
    let mut t = Tailer::new(config());
    let how = t.resume(&p, g1, 5).unwrap();
    let gz = dir.path().join("0.log.20261204-100500.gz");
    assert_eq!(how, Resumed::Moved(gz));
    assert_eq!(
        texts(&poll(&mut t)),
        ["g1 b", "g2 a", "g3 a", "g4 a"],
        "the newer rotations from 0, oldest first, compressed or not"
    );
}

/// Copytruncate, the copy named anything in the directory (compressed too): the lines
/// after the last read come from it, running and after a restart.
#[test]
fn copytruncate_copy_found_by_content_whatever_its_name() {
    for copy_name in [
        "app.log.1499.bak",
        "app.log-20261204",
        "saved-by-logrotate",
        "app.log.1.gz",
    ] {
        for restart in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("app.log");
            append(&p, "one\ntwo\n");
            let mut t = Tailer::new(config());
            t.watch(&p).unwrap();
            let (key, _, offset) = poll_keys(&mut t).pop().unwrap();
            append(&p, "three\nfour\n");
            let copy = dir.path().join(copy_name);
            match copy_name.ends_with(".gz") {
                true => gzip_to(&p, &copy),
                false => {
                    fs::copy(&p, &copy).unwrap();
                }
            }
            truncate(&p);
            append(&p, "five\n");
            if restart {
                t = Tailer::new(config());
                let how = t.resume(&p, key.id, offset).unwrap();
                assert_eq!(how, Resumed::Moved(copy.clone()), "{copy_name}");
            }
            let what = format!("{copy_name}, restart: {restart}");
            assert_eq!(texts(&poll(&mut t)), ["three", "four", "five"], "{what}");
            append(&p, "six\n");
            assert_eq!(texts(&poll(&mut t)), ["six"], "{what}");
        }
    }
}

/// Two copytruncates before the tailer looked (down, or not polled): the first copy from
/// where reading stopped, the later copy from 0, then the file at the path.
#[test]
fn two_copytruncates_while_down_or_not_polled() {
    for restart in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w0.log");
        append(&p, &seq_lines("seq", 0, 90));
        let mut t = Tailer::new(config());
        t.watch(&p).unwrap();
        let (key, _, offset) = poll_keys(&mut t).pop().unwrap();
        assert_eq!(offset, 900);
        append(&p, &seq_lines("seq", 90, 1410));
        fs::copy(&p, dir.path().join("w0.log.1499.bak")).unwrap();
        truncate(&p);
        append(&p, &seq_lines("seq", 1500, 1500));
        fs::copy(&p, dir.path().join("w0.log.2999.bak")).unwrap();
        truncate(&p);
        append(&p, &seq_lines("seq", 3000, 10));
        if restart {
            t = Tailer::new(config());
            t.resume(&p, key.id, offset).unwrap();
        }
        let expect = seq_lines("seq", 90, 2920);
        assert_eq!(
            texts(&poll(&mut t)),
            expect.lines().collect::<Vec<_>>(),
            "restart: {restart}"
        );
    }
}

#[test]
fn other_compressions_are_reported_once_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "one\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["one"]);
    fs::rename(&p, dir.path().join("app.log.1")).unwrap();
    append(&dir.path().join("app.log.2.bz2"), "BZh91AY&SY");
    append(&p, "two\n");
    let (got, errors) = poll_with_errors(&mut t);
    assert_eq!(got, ["two"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("app.log.2.bz2"), "{errors:?}");
    fs::rename(&p, dir.path().join("app.log.3")).unwrap();
    append(&dir.path().join("app.log.4.xz"), "\u{fd}7zXZ");
    append(&p, "three\n");
    let (got, errors) = poll_with_errors(&mut t);
    assert_eq!(got, ["three"]);
    assert!(errors.is_empty(), "once per path: {errors:?}");
    assert_eq!(t.stats().compressed_skipped, 2);
}

/// logrotate writes `.gz` in place: seen while being written, it is read as far as it
/// goes, then the rest once it is complete.
#[test]
fn a_gzip_file_still_being_written_is_read_to_its_end_later() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("app.log");
    append(&p, "g0\n");
    let mut t = Tailer::new(config());
    t.watch(&p).unwrap();
    assert_eq!(texts(&poll(&mut t)), ["g0"]);
    fs::remove_file(&p).unwrap();
    assert!(poll(&mut t).is_empty());
    // g1 was created, rotated and is being compressed, all before a poll.
    let plain = dir.path().join("g1");
    let text = seq_lines("g1", 0, 3000);
    append(&plain, &text);
    let gz = dir.path().join("app.log.1.gz");
    gzip_to(&plain, &gz);
    let whole = fs::read(&gz).unwrap();
    fs::write(&gz, &whole[..whole.len() / 2]).unwrap();
    append(&p, "g2 a\n");
    let first = poll(&mut t);
    assert!(!first.is_empty() && first.len() < 3000, "{}", first.len());
    OpenOptions::new()
        .append(true)
        .open(&gz)
        .unwrap()
        .write_all(&whole[whole.len() / 2..])
        .unwrap();
    let mut all = texts(&first)
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    all.extend(poll(&mut t).into_iter().map(|l| l.1));
    let expect: Vec<String> = text
        .lines()
        .map(str::to_owned)
        .chain(["g2 a".into()])
        .collect();
    assert_eq!(all, expect);
}

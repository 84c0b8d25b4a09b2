//! Taking over Promtail's positions, so that a switch from Promtail neither skips nor resends.
//!
//! In: Promtail's positions file (`positions.takeover_from`, or `tailrace positions import
//! FILE`): YAML, `positions: { "/var/log/x.log": "1234", ... }`, one offset (as a string)
//! per path Promtail read, beside `cursor-…`/`journal-…` keys of other targets. Out: for each
//! entry whose file is still the one Promtail read, a tailrace position at Promtail's offset
//! (with the identity the file has now: device, inode, fingerprint); for every other entry a
//! reason it was refused; and a [`TakeoverNote`] kept in tailrace's positions file.
//!
//! Why these checks: Promtail keeps only a path and an offset, no identity. The file now at
//! the path is taken to be the one Promtail read only when it is a regular file, not
//! compressed (Promtail counts a `.gz` in decompressed bytes), at least `offset` long, with
//! a `\n` just before the offset (an offset inside a line would cut it in two: half lost or
//! doubled), and not made after Promtail last wrote its positions file (a rotation since).
//! Anything else starts as its input's `start_at` says, as a file never seen would.
//!
//! Done once: the note in tailrace's positions file says the takeover was made, and from then
//! on tailrace's own positions win; an entry whose path tailrace already knows is refused.
//! Promtail's offset is what it had *read* (its positions move before Loki accepts), so the
//! takeover trusts Promtail to have delivered what it read: stop Promtail gracefully (it
//! sends what it holds), and let it finish before tailrace starts.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::model::FileId;
use crate::runtime::checkpoint::{Positions, RefusedEntry, TakenOver, TakeoverNote};
use crate::source::file::discover::{Discovery, InputGlobs};
use crate::source::file::tail::identity::{is_gzip, open_regular};

/// One entry of Promtail's file: the key and the value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromtailEntry {
    pub key: String,
    pub value: String,
}

/// Reads Promtail's positions file: `Ok(None)` when there is none (a node Promtail never
/// ran on), an error naming the file when it cannot be read or is not a positions file.
pub fn read_promtail(path: &Path) -> Result<Option<Vec<PromtailEntry>>, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read Promtail's positions file {}: {e}",
                path.display()
            ));
        }
    };
    parse_promtail(&text)
        .map(Some)
        .map_err(|e| format!("{}: not a Promtail positions file: {e}", path.display()))
}

/// The entries of a Promtail positions file's text (see [`read_promtail`]).
pub fn parse_promtail(text: &str) -> Result<Vec<PromtailEntry>, String> {
    use serde_yaml_ng::Value;
    if text.trim().is_empty() {
        return Ok(Vec::new()); // Promtail reads an empty file as no positions too.
    }
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML ({e})"))?;
    let positions = match &doc {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(top) => match top.get("positions") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err("`positions` is not a map of path to offset".into()),
        },
        _ => return Err("expected a map with the key `positions`".into()),
    };
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    Ok(positions
        .iter()
        .map(|(k, v)| PromtailEntry {
            key: scalar(k),
            value: scalar(v),
        })
        .collect())
}

/// What was decided for the entries: the files to continue (with their identity now) and
/// the entries refused.
#[derive(Debug, Default)]
pub struct Decision {
    pub taken: Vec<(TakenOver, FileId)>,
    pub refused: Vec<RefusedEntry>,
}

/// Decides each entry against the files as they are now (see the module docs for the
/// checks). `written`: when Promtail last wrote its file; `known`: paths tailrace already
/// has positions for.
pub fn decide(
    entries: &[PromtailEntry],
    written: Option<SystemTime>,
    discovery: &Discovery,
    known: &dyn Fn(&Path) -> bool,
) -> Decision {
    let mut decision = Decision::default();
    for entry in entries {
        match decide_one(entry, written, discovery, known) {
            Ok(taken) => decision.taken.push(taken),
            Err(reason) => decision.refused.push(RefusedEntry {
                entry: entry.key.clone(),
                value: entry.value.clone(),
                reason,
            }),
        }
    }
    decision
}

fn decide_one(
    entry: &PromtailEntry,
    written: Option<SystemTime>,
    discovery: &Discovery,
    known: &dyn Fn(&Path) -> bool,
) -> Result<(TakenOver, FileId), String> {
    let key = entry.key.as_str();
    if !key.starts_with('/') {
        return Err("not a file path (a cursor of a journal, Docker or other target)".into());
    }
    let offset: u64 = entry
        .value
        .trim()
        .parse()
        .map_err(|_| format!("offset `{}` is not a number of bytes", entry.value))?;
    let path = PathBuf::from(key);
    if !path.exists()
        && key
            .rsplit_once(':')
            .is_some_and(|(file, _)| Path::new(file).is_file())
    {
        return Err("a key of the form path:labels (another target's), not a file path".into());
    }
    if discovery.input_of(&path).is_none() {
        return Err("not matched by any input's paths".into());
    }
    if known(&path) {
        return Err("tailrace's own positions file already has this path".into());
    }
    let file = open_regular(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no file at this path now".to_owned(),
        _ => format!("cannot open: {e}"),
    })?;
    let err = |e: std::io::Error| format!("cannot read: {e}");
    if is_gzip(&path, &file).map_err(err)? {
        return Err("compressed (Promtail counts decompressed bytes); read as configured".into());
    }
    let meta = file.metadata().map_err(err)?;
    if meta.len() < offset {
        return Err(format!(
            "the file is shorter ({} bytes) than Promtail's offset: replaced or truncated since",
            meta.len()
        ));
    }
    if offset > 0 && !newline_at(&file, offset - 1).map_err(err)? {
        return Err("not at a line boundary (the byte before the offset is not a newline)".into());
    }
    let made_after = |w: SystemTime| meta.created().is_ok_and(|c| c > w);
    if written.is_some_and(made_after) {
        return Err(
            "the file was made after Promtail last wrote its positions: not the file it read"
                .into(),
        );
    }
    let id = FileId::of_named_file(&path, &file).map_err(err)?;
    Ok((TakenOver { path, offset }, id))
}

fn newline_at(file: &File, at: u64) -> std::io::Result<bool> {
    let mut byte = [0u8; 1];
    let n = file.read_at(&mut byte, at)?;
    Ok(n == 1 && byte[0] == b'\n')
}

/// The inputs' globs, to know which of Promtail's paths tailrace follows at all.
pub fn discovery_of(config: &Config) -> Discovery {
    Discovery::new(
        config
            .inputs
            .iter()
            .map(|i| {
                InputGlobs::new(&i.paths, &i.exclude, &i.roots)
                    .expect("globs were checked with the configuration")
            })
            .collect(),
    )
}

/// Takes over Promtail's positions from `from` into `positions` and records the note (the
/// caller writes the file). `Ok(false)` when a takeover was made before (nothing changes);
/// an error when Promtail's file exists but cannot be read or is not a positions file.
pub fn take_over(positions: &mut Positions, from: &Path, config: &Config) -> Result<bool, String> {
    if positions.takeover().is_some() {
        return Ok(false);
    }
    let Some(entries) = read_promtail(from)? else {
        tracing::warn!(file = %from.display(), "no Promtail positions file: nothing taken over; every file starts as its input's start_at says");
        positions.set_takeover(TakeoverNote {
            from: from.to_owned(),
            at: now_secs(),
            taken: Vec::new(),
            refused: Vec::new(),
        });
        return Ok(true);
    };
    let written = fs::metadata(from).and_then(|m| m.modified()).ok();
    let discovery = discovery_of(config);
    let known: Vec<PathBuf> = positions.iter().map(|p| p.path.clone()).collect();
    let decision = decide(&entries, written, &discovery, &|p| {
        known.iter().any(|k| k == p)
    });
    for (taken, id) in &decision.taken {
        tracing::info!(path = %taken.path.display(), offset = taken.offset, "taken over from Promtail: continuing at its offset");
        positions.set(&taken.path, *id, taken.offset);
    }
    for refused in &decision.refused {
        tracing::warn!(entry = %refused.entry, value = %refused.value, reason = %refused.reason, "Promtail position not taken over: the file starts as its input's start_at says");
    }
    tracing::info!(
        file = %from.display(),
        taken = decision.taken.len(),
        refused = decision.refused.len(),
        "Promtail's positions taken over (once: tailrace's positions file wins from now on)"
    );
    positions.set_takeover(TakeoverNote {
        from: from.to_owned(),
        at: now_secs(),
        taken: decision.taken.into_iter().map(|(t, _)| t).collect(),
        refused: decision.refused,
    });
    Ok(true)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn config_for(dir: &Path) -> Config {
        let yaml = format!(
            "loki: {{ url: 'http://127.0.0.1:3100/loki/api/v1/push' }}\ninputs:\n  - paths: ['{}/*.log']\n",
            dir.display()
        );
        Config::from_yaml_with_env(&yaml, Path::new("t.yaml"), |_| None).unwrap()
    }

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    #[test]
    fn parses_promtails_own_format_and_refuses_what_is_not() {
        let text = "positions:\n  /var/log/a.log: \"1234\"\n  cursor-journal: s=abc\n  /var/log/b.log: 7\n";
        let entries = parse_promtail(text).unwrap();
        assert_eq!(entries.len(), 3);
        assert!(entries.contains(&PromtailEntry {
            key: "/var/log/a.log".into(),
            value: "1234".into()
        }));
        assert!(
            entries
                .iter()
                .any(|e| e.key == "/var/log/b.log" && e.value == "7")
        );
        assert!(parse_promtail("").unwrap().is_empty());
        assert!(parse_promtail("positions:\n").unwrap().is_empty());
        for bad in ["positions: [1, 2]", "- a\n- b\n", "positions: {a: [\n"] {
            assert!(parse_promtail(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("positions.yaml");
        write(&file, "positions: {a: [\n");
        let err = read_promtail(&file).unwrap_err();
        assert!(
            err.contains("positions.yaml") && err.contains("not YAML"),
            "{err}"
        );
        assert_eq!(read_promtail(&dir.path().join("none.yaml")), Ok(None));
    }

    #[test]
    fn each_entry_is_taken_over_only_when_its_file_is_the_one_promtail_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("good.log"), "one\ntwo\nthree\n");
        write(&d.join("short.log"), "one\n");
        write(&d.join("mid.log"), "one\ntwo\n");
        write(&d.join("start.log"), "one\n");
        write(&d.join("known.log"), "one\n");
        write(&d.join("other.txt"), "one\n");
        fs::write(d.join("zipped.log"), b"\x1f\x8b\x08\x00").unwrap();
        let p = |name: &str| d.join(name).display().to_string();
        let yaml = format!(
            "positions:\n  {}: \"8\"\n  {}: \"100\"\n  {}: \"5\"\n  {}: \"0\"\n  {}: \"4\"\n  {}: \"4\"\n  {}: \"4\"\n  {}: \"4\"\n  {}: \"4\"\n  {}: \"x12\"\n  cursor-journal: \"s=1\"\n",
            p("good.log"),
            p("short.log"),
            p("mid.log"),
            p("start.log"),
            p("known.log"),
            p("other.txt"),
            p("gone.log"),
            p("zipped.log"),
            p("good.log:abc"),
            p("start2.log"),
        );
        let promtail = d.join("promtail.yaml");
        write(&promtail, &yaml);
        let mut positions = Positions::default();
        let known = FileId::of_path(&d.join("known.log")).unwrap();
        positions.set(&d.join("known.log"), known, 1);
        assert!(take_over(&mut positions, &promtail, &config_for(d)).unwrap());
        let note = positions.takeover().unwrap().clone();
        let taken: Vec<_> = note
            .taken
            .iter()
            .map(|t| (t.path.clone(), t.offset))
            .collect();
        assert_eq!(taken.len(), 2, "{note:#?}");
        assert!(taken.contains(&(d.join("good.log"), 8)));
        assert!(taken.contains(&(d.join("start.log"), 0)));
        let good = FileId::of_path(&d.join("good.log")).unwrap();
        assert_eq!(positions.get(&good).unwrap().offset, 8);
        let reason = |entry: &str| {
            note.refused
                .iter()
                .find(|r| r.entry == entry)
                .map(|r| r.reason.clone())
                .unwrap_or_else(|| panic!("{entry} not refused: {note:#?}"))
        };
        assert!(reason(&p("short.log")).contains("shorter"));
        assert!(reason(&p("mid.log")).contains("line boundary"));
        assert!(reason(&p("known.log")).contains("already has"));
        assert!(reason(&p("other.txt")).contains("not matched"));
        assert!(reason(&p("gone.log")).contains("no file"));
        assert!(reason(&p("zipped.log")).contains("compressed"));
        assert!(reason(&p("good.log:abc")).contains("path:labels"));
        assert!(reason(&p("start2.log")).contains("not a number"));
        assert!(reason("cursor-journal").contains("not a file path"));
        assert_eq!(note.refused.len(), 9);
        assert_eq!(
            positions.get(&known).unwrap().offset,
            1,
            "tailrace's own wins"
        );

        // Done once: a second takeover (another start) changes nothing.
        write(
            &promtail,
            &format!("positions:\n  {}: \"4\"\n", p("mid.log")),
        );
        assert!(!take_over(&mut positions, &promtail, &config_for(d)).unwrap());
        assert_eq!(positions.takeover(), Some(&note));
        assert_eq!(positions.len(), 3);
    }

    #[test]
    fn a_file_made_after_promtail_wrote_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let promtail = d.join("promtail.yaml");
        let log = d.join("a.log");
        write(
            &promtail,
            &format!("positions:\n  {}: \"4\"\n", log.display()),
        );
        let written = fs::metadata(&promtail).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut f = File::create(&log).unwrap();
        f.write_all(b"one\ntwo\n").unwrap();
        if fs::metadata(&log).and_then(|m| m.created()).is_err() {
            eprintln!("no creation times on this file system: check not made");
            return;
        }
        let entries = read_promtail(&promtail).unwrap().unwrap();
        let decision = decide(
            &entries,
            Some(written),
            &discovery_of(&config_for(d)),
            &|_| false,
        );
        assert!(decision.taken.is_empty());
        assert!(
            decision.refused[0].reason.contains("made after"),
            "{decision:?}"
        );
    }

    #[test]
    fn a_missing_promtail_file_is_recorded_as_nothing_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut positions = Positions::default();
        let from = dir.path().join("none.yaml");
        assert!(take_over(&mut positions, &from, &config_for(dir.path())).unwrap());
        let note = positions.takeover().unwrap();
        assert!(note.taken.is_empty() && note.refused.is_empty());
        // And it survives a save and a load.
        let path = dir.path().join("positions.json");
        positions.save(&path).unwrap();
        assert_eq!(Positions::read(&path).unwrap(), positions);
    }
}

//! Property tests of the stages under the runtime's rules: any sequence of lines through any
//! list of configured stages gives entries that make one valid push, never a panic, and
//! positions that never pass a line a stage still holds.
//!
//! In: random stage lists (built from the configuration, as a user writes them, and made
//! valid by putting extracting stages first when a list reads a field none extracts), random
//! lines (stack trace shapes, JSON, logfmt, noise, CRI-style split parts on stdout and
//! stderr), fed one line per poll to the reader. Checked after every poll: each position
//! acknowledged is after the one before and not past the first line of a record a stage
//! holds. At the end (the reader's shutdown): when nothing is held, the last position is the
//! end of the last line (nothing stuck), and the entries encode into one protobuf push that
//! decodes back whole, with label sets Loki accepts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use prost::Message as _;
use tokio::sync::mpsc;

use super::tests::Scripted;
use super::*;
use crate::config::{Config, Encoding};
use crate::model::{Entry, FileId, Split, Stdio, Stream};
use crate::sink::loki::encode::encode;
use crate::transform::{DropCounter, Plan, PlanContext};

/// Stages as a user writes them. The last three read fields: a list holding them gets the
/// extracting stages (`EXTRACT`) first when none extracts before.
const SNIPPETS: &[&str] = &[
    "multiline: { mode: auto }",
    "multiline: { firstline: '^\\d', max_lines: 3 }",
    "multiline: { mode: java, max_lines: 5 }",
    "multiline: { mode: python }",
    "drop: { regex: 'noise' }",
    "drop: { level: [debug] }",
    "drop: { longer_than: 40 }",
    "label_rules: [ { rename: { stream: out } }, { template: { job: 'x-{out}' } }, { drop: [filename] } ]",
    "limit: { rate: 1, burst: 3, action: drop }",
    "limit: { rate: 100000, burst: 1, action: wait }",
    "regex: { expression: '(?P<level>debug|info|error) (?P<ts>\\d{10})' }",
    "logfmt: { fields: [level, user] }",
    "json: { expressions: { level: , user: } }",
    "timestamp: { source: ts, format: Unix }",
    "labels: { level: }",
    "structured_metadata: [user]",
];

const EXTRACT: &[&str] = &[
    "regex: { expression: '(?P<level>debug|info|error) (?P<ts>\\d{10})' }",
    "logfmt: { fields: [level, user] }",
];

/// Lines a stage may treat specially, and some that none does.
const LINES: &[&str] = &[
    "2026-12-04 10:15:03,123 ERROR request failed",
    "java.lang.IllegalStateException: boom",
    "\tat com.shop.Checkout.pay(Checkout.java:42)",
    "Caused by: java.io.IOException: reset",
    "\t... 12 more",
    "Traceback (most recent call last):",
    "  File \"app.py\", line 3, in <module>",
    "ValueError: bad",
    "",
    "During handling of the above exception, another exception occurred:",
    "panic: runtime error: index out of range",
    "goroutine 1 [running]:",
    "main.main()",
    "    at Object.<anonymous> (/app/index.js:5:11)",
    "{\"level\":\"debug\",\"message\":\"noise\",\"user\":\"ann\"}",
    "level=info user=bob msg=\"hello world\"",
    "debug 1796379303 noise",
    "info 1796379303 fine",
    "error 9999999999 late",
    "é ü \u{1F600} ok",
];

/// A line as the CRI decoder hands it: whole, or a part of a split line.
#[derive(Debug, Clone)]
struct Input {
    text: String,
    stdio: Option<Stdio>,
    /// A `P` part (continued by the next record of its stdio).
    part: bool,
}

fn input() -> impl Strategy<Value = Input> {
    (
        prop_oneof![
            8 => prop::sample::select(LINES).prop_map(str::to_owned),
            1 => "\\PC{0,30}",
        ],
        prop_oneof![
            Just(None),
            Just(Some(Stdio::Stdout)),
            Just(Some(Stdio::Stderr))
        ],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(text, stdio, part)| Input {
            // A part needs a stdio to be joined by: the runtimes always give one.
            part: part && stdio.is_some(),
            text,
            stdio,
        })
}

fn stage_list() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(SNIPPETS), 0..5)
}

/// The configuration of one CRI input with `stages`, made valid (see `EXTRACT`).
fn config_with(stages: &[&str]) -> Config {
    let yaml = |stages: &[&str]| {
        let mut text = String::from(
            "loki: { url: http://127.0.0.1:1/loki/api/v1/push }\ninputs:\n  - paths: [/x/*.log]\n    format: cri\n    stages:\n",
        );
        for stage in stages {
            text.push_str(&format!("      - {stage}\n"));
        }
        if stages.is_empty() {
            text = text.replace("    stages:\n", "");
        }
        text
    };
    match Config::from_yaml(&yaml(stages), Path::new("prop.yaml")) {
        Ok(config) => config,
        Err(_) => {
            let mut fixed = EXTRACT.to_vec();
            fixed.extend_from_slice(stages);
            Config::from_yaml(&yaml(&fixed), Path::new("prop.yaml"))
                .unwrap_or_else(|e| panic!("stage list {fixed:?} does not parse: {e}"))
        }
    }
}

fn records(inputs: &[Input]) -> (VecDeque<(u64, u64, Record)>, u64) {
    let mut offset = 0u64;
    let lines = inputs
        .iter()
        .map(|i| {
            let bytes = i.text.as_bytes().to_vec();
            let record = Record {
                timestamp: Some(1_796_379_303_000_000_000 + offset as i64),
                stdio: i.stdio,
                split: if i.part {
                    Split::Part(bytes)
                } else {
                    Split::Last(bytes)
                },
                ..Record::default()
            };
            let start = offset;
            offset += i.text.len() as u64 + 40; // the CRI prefix
            (start, offset, record)
        })
        .collect();
    (lines, offset)
}

/// Loki's label rules: a name of `[a-zA-Z_][a-zA-Z0-9_]*`, a value, at most 15 pairs.
fn loki_accepts(labels: &[(String, String)]) -> bool {
    let name_ok = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    !labels.is_empty()
        && labels.len() <= 15
        && labels.iter().all(|(n, v)| name_ok(n) && !v.is_empty())
}

fn run(stages: &[&str], inputs: &[Input]) -> Result<(), TestCaseError> {
    let config = config_with(stages);
    let no_counter = |_: &str| DropCounter::default();
    let ctx = PlanContext {
        max_line_bytes: 1024,
        dropped: &no_counter,
    };
    let plan = Plan::new(&config.inputs[0], &ctx);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = FileKey {
        path: "/x/app.log".into(),
        id: FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        },
    };
    let (lines, last_end) = records(inputs);
    let (tx, mut rx) = mpsc::channel(1 << 16);
    let mut reader = Reader {
        source: Scripted {
            key: key.clone(),
            lines,
            per_poll: 1,
        },
        make_stages: Box::new(move |_, path, labels, _| plan.stages(path, labels, None)),
        resumed: HashMap::new(),
        tenants: vec![Arc::from("")],
        tx,
        memory: Arc::new(MemoryBudget::new(1 << 30, Default::default())),
        telemetry: Arc::new(Telemetry::new(Duration::from_secs(300))),
        shutdown: Shutdown::new(),
        runtime: runtime.handle().clone(),
    };
    let (mut paths, mut ready, mut paused) = (HashMap::new(), Ready::new(), HashSet::new());
    let mut acked = 0u64;
    let mut entries: Vec<(Arc<crate::model::LabelSet>, Entry)> = Vec::new();
    let mut take =
        |rx: &mut mpsc::Receiver<Chunk>, holds: Option<u64>| -> Result<(), TestCaseError> {
            while let Ok(chunk) = rx.try_recv() {
                for e in &chunk.entries {
                    prop_assert!(e.end >= acked, "positions go back: {} after {acked}", e.end);
                    if let Some(from) = holds {
                        prop_assert!(e.end <= from, "{} passes a held line at {from}", e.end);
                    }
                    acked = e.end;
                    if !e.dropped {
                        let mut entry = e.entry.clone();
                        entry.line = chunk.text[e.range.clone()].to_owned().into();
                        entries.push((Arc::clone(&chunk.labels[e.labels]), entry));
                    }
                }
            }
            Ok(())
        };
    // Every line, then polls until nothing is paused (a waiting limit lets lines go).
    let mut polls = 0;
    while !reader.source.lines.is_empty() || !paused.is_empty() {
        reader.poll(&mut paths, &mut ready, &mut paused);
        let holds = paths
            .values()
            .filter_map(|s: &PathStages| s.stages.holds_from())
            .min();
        take(&mut rx, holds)?;
        polls += 1;
        prop_assert!(polls < 100_000, "the reader never got through the lines");
    }
    reader.shutdown.request();
    reader.finish(&mut paths, &mut ready);
    let holds = paths
        .values()
        .filter_map(|s: &PathStages| s.stages.holds_from())
        .min();
    take(&mut rx, holds)?;
    if holds.is_none() && !inputs.is_empty() && !inputs.last().is_some_and(|i| i.part) {
        prop_assert_eq!(
            acked,
            last_end,
            "nothing is held, yet lines are not acknowledged"
        );
    }

    // One push of everything sent, as the batcher would group it.
    let mut streams: Vec<Stream> = Vec::new();
    for (labels, entry) in entries {
        prop_assert!(
            loki_accepts(labels.pairs()),
            "labels Loki refuses: {labels:?}"
        );
        match streams.iter_mut().find(|s| s.labels == labels.pairs()) {
            Some(stream) => stream.entries.push(entry),
            None => streams.push(Stream {
                labels: labels.pairs().to_vec(),
                entries: vec![entry],
            }),
        }
    }
    let sent: usize = streams.iter().map(|s| s.entries.len()).sum();
    if sent == 0 {
        return Ok(());
    }
    let body =
        encode(Encoding::Protobuf, &streams).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body.body)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let push = loki_double::proto::PushRequest::decode(raw.as_slice())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded: usize = push.streams.iter().map(|s| s.entries.len()).sum();
    prop_assert_eq!(decoded, sent);
    for (stream, ours) in push.streams.iter().zip(&streams) {
        for (entry, sent) in stream.entries.iter().zip(&ours.entries) {
            prop_assert_eq!(&entry.line, sent.line.as_str());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_lines_through_any_stages_make_one_valid_push_and_positions_never_pass_a_held_line(
        stages in stage_list(),
        inputs in prop::collection::vec(input(), 0..40),
    ) {
        run(&stages, &inputs)?;
    }
}

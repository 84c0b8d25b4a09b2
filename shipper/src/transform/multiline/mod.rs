//! Joins the lines of one event (a stack trace, a message written over several lines) into
//! one entry.
//!
//! In: whole, labelled records of one file (the partial-line join and the stream labels ran
//! before), each with the position where it starts. Out: records, each one event: its lines
//! joined with `\n`, the first line's timestamp, labels and structured metadata (a trace id
//! is a range of the first line, and appending keeps it valid). Configured as Promtail's
//! `multiline` stage, with built-in shapes as Fluent Bit's multiline parsers:
//! - `firstline: '<regex>'`: a line that matches starts a record, any other line is appended
//!   to the one held (Promtail's semantics).
//! - `mode: java | python | go | ruby | node`: that shape's rules only; `mode: auto` (also
//!   when neither key is given): all of them (see [`shapes`]). A trace's header starts a
//!   record, so the message a logger writes before a trace arrives alone; a JSON line is
//!   never joined, nor joined to.
//!
//! A record is held until a line that does not continue it, `max_lines` lines, or
//! `max_wait` without a new line (Promtail's `max_wait_time`: counted from the last line),
//! and at shutdown it is handed on ([`Stage::finish`]). Records are held per stdio, as CRI
//! files interleave stdout and stderr. The rule of the stages: a position never passes the
//! first line of a record still held ([`Stage::holds_from`]), so after a crash the lines of
//! a held record are read again and joined whole.
//!
//! Cost per line: byte checks (a regex match with `firstline`), and no allocation: a
//! continuation's text is appended to the held record's `String`, which grows amortised.
//! The joined text is cut at `limits.max_line_bytes` on a character boundary and marked
//! truncated; later lines still count toward `max_lines`. Blank lines at the end of an
//! event (after a Python traceback, a Go panic) are trimmed from its text.

mod shapes;

use std::time::Instant;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{MakeStage, Out, PlanContext, Stage};
use crate::config::{HumanDuration, Pattern};
use crate::model::{Record, Stdio};
use shapes::{Phase, Shapes};

/// The `multiline` stage's configuration. `mode` and `firstline` exclude each other; with
/// neither, the mode is `auto`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawMultilineConfig")]
pub struct MultilineConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MultilineMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstline: Option<Pattern>,
    pub max_lines: usize,
    pub max_wait: HumanDuration,
}

/// The built-in shapes a stage recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MultilineMode {
    Auto,
    Java,
    Python,
    Go,
    Ruby,
    Node,
}

/// The configuration as written, checked into a [`MultilineConfig`] while parsing (so a
/// mistake is reported at its line and column).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultilineConfig {
    #[serde(default)]
    mode: Option<MultilineMode>,
    #[serde(default)]
    firstline: Option<Pattern>,
    #[serde(default = "default_max_lines")]
    max_lines: usize,
    #[serde(default = "default_max_wait", alias = "max_wait_time")]
    max_wait: HumanDuration,
}

impl TryFrom<RawMultilineConfig> for MultilineConfig {
    type Error = String;

    fn try_from(raw: RawMultilineConfig) -> Result<Self, String> {
        if let (Some(mode), Some(firstline)) = (raw.mode, &raw.firstline) {
            return Err(format!(
                "multiline: `mode: {}` and `firstline: '{}'` both say where a record starts; \
                 keep one",
                mode_name(mode),
                firstline.as_str()
            ));
        }
        if raw.max_lines == 0 {
            return Err("multiline: max_lines must be at least 1".into());
        }
        if raw.max_wait.0.is_zero() {
            return Err("multiline: max_wait must be above zero".into());
        }
        Ok(MultilineConfig {
            // The mode that runs, so `tailrace check` prints it.
            mode: raw
                .mode
                .or(raw.firstline.is_none().then_some(MultilineMode::Auto)),
            firstline: raw.firstline,
            max_lines: raw.max_lines,
            max_wait: raw.max_wait,
        })
    }
}

fn mode_name(mode: MultilineMode) -> &'static str {
    match mode {
        MultilineMode::Auto => "auto",
        MultilineMode::Java => "java",
        MultilineMode::Python => "python",
        MultilineMode::Go => "go",
        MultilineMode::Ruby => "ruby",
        MultilineMode::Node => "node",
    }
}

fn default_max_lines() -> usize {
    128
}

fn default_max_wait() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3))
}

/// Makes the stage of each file.
pub fn maker(config: &MultilineConfig, ctx: &PlanContext<'_>) -> MakeStage {
    let rules = match &config.firstline {
        Some(pattern) => Rules::Firstline(pattern.0.clone()),
        None => Rules::Shapes(Shapes::of(config.mode.unwrap_or(MultilineMode::Auto))),
    };
    let limits = Limits {
        max_lines: config.max_lines.max(1),
        max_wait: config.max_wait.0,
        max_line_bytes: ctx.max_line_bytes,
    };
    Box::new(move |_| Box::new(Multiline::new(rules.clone(), limits)))
}

/// Where a record starts.
#[derive(Clone)]
enum Rules {
    Firstline(Regex),
    Shapes(Shapes),
}

#[derive(Clone, Copy)]
struct Limits {
    max_lines: usize,
    max_wait: std::time::Duration,
    max_line_bytes: usize,
}

/// The multiline stage of one file.
pub struct Multiline {
    rules: Rules,
    limits: Limits,
    /// Indexed by [`slot`]: no stdio (a plain file), stdout, stderr.
    slots: [Slot; 3],
    /// Arrival order of held records, so [`Stage::finish`] hands out the oldest first.
    next_order: u64,
}

#[derive(Default)]
struct Slot {
    held: Option<Held>,
    /// What the record last started here is (kept after it was handed on at `max_lines` or
    /// `max_wait`: as in Promtail, the next line that continues it starts a new record).
    phase: Option<Phase>,
}

/// A record being joined.
struct Held {
    record: Record,
    start: u64,
    lines: usize,
    /// The length of its text up to the end of its last line that is not blank: blank
    /// lines at the end are trimmed when it is handed on.
    content: usize,
    /// A line came since the last flush, which then restarts the wait.
    touched: bool,
    /// When the flush after its last line ran.
    since: Option<Instant>,
    order: u64,
}

fn slot(stdio: Option<Stdio>) -> usize {
    match stdio {
        None => 0,
        Some(Stdio::Stdout) => 1,
        Some(Stdio::Stderr) => 2,
    }
}

/// What a line does.
enum Step {
    /// Appended to the held record (or, when none is held, starts one in this phase).
    Continue(Phase),
    /// Starts a record in this phase, the held one handed on first.
    Start(Phase),
}

impl Rules {
    fn step(&self, phase: Option<Phase>, line: &str) -> Step {
        match self {
            Rules::Firstline(regex) => match regex.is_match(line) {
                true => Step::Start(Phase::Plain),
                false => Step::Continue(Phase::Plain),
            },
            Rules::Shapes(shapes) => match phase.and_then(|p| shapes.continues(p, line)) {
                Some(next) => Step::Continue(next),
                None => Step::Start(shapes.starts(line)),
            },
        }
    }
}

impl Stage for Multiline {
    fn push(&mut self, record: Record, start: u64, out: &mut Out<'_>) {
        let i = slot(record.stdio);
        match self.rules.step(self.slots[i].phase, &record.line) {
            Step::Continue(phase) => {
                self.slots[i].phase = Some(phase);
                match &mut self.slots[i].held {
                    Some(held) => held.append(record, self.limits.max_line_bytes),
                    None => self.hold(i, record, start),
                }
            }
            Step::Start(phase) => {
                self.hand_on(i, out);
                self.slots[i].phase = Some(phase);
                if phase == Phase::Closed {
                    // Never joined to: nothing to wait for.
                    out(record, start);
                    return;
                }
                self.hold(i, record, start);
            }
        }
        if self.slots[i]
            .held
            .as_ref()
            .is_some_and(|h| h.lines >= self.limits.max_lines)
        {
            self.hand_on(i, out);
        }
    }

    fn flush(&mut self, now: Instant, out: &mut Out<'_>) {
        let max_wait = self.limits.max_wait;
        while let Some(i) = self.oldest(|held| {
            !held.touched
                && held
                    .since
                    .is_some_and(|since| now.saturating_duration_since(since) >= max_wait)
        }) {
            self.hand_on(i, out);
        }
        for held in self.slots.iter_mut().filter_map(|s| s.held.as_mut()) {
            if held.touched {
                held.touched = false;
                held.since = Some(now);
            }
        }
    }

    fn holds_from(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| s.held.as_ref())
            .map(|h| h.start)
            .min()
    }

    fn held_bytes(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| s.held.as_ref())
            .map(|h| h.record.line.len())
            .sum()
    }

    fn finish(&mut self, out: &mut Out<'_>) {
        while let Some(i) = self.oldest(|_| true) {
            self.hand_on(i, out);
        }
    }
}

impl Multiline {
    fn new(rules: Rules, limits: Limits) -> Self {
        Multiline {
            rules,
            limits,
            slots: Default::default(),
            next_order: 0,
        }
    }

    fn hold(&mut self, i: usize, record: Record, start: u64) {
        self.next_order += 1;
        self.slots[i].held = Some(Held {
            content: record.line.len(),
            record,
            start,
            lines: 1,
            touched: true,
            since: None,
            order: self.next_order,
        });
    }

    /// The slot of the oldest held record that `pick` takes.
    fn oldest(&self, pick: impl Fn(&Held) -> bool) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.held.as_ref().filter(|h| pick(h)).map(|h| (h.order, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Hands on the record held in slot `i`, if any.
    fn hand_on(&mut self, i: usize, out: &mut Out<'_>) {
        if let Some(mut held) = self.slots[i].held.take() {
            held.record.line.truncate(held.content);
            out(held.record, held.start);
        }
    }
}

impl Held {
    /// Appends a continuation line: `\n` and its text, as much as fits in
    /// `max_line_bytes`. Its own labels and metadata are dropped: the event's are the first
    /// line's.
    fn append(&mut self, next: Record, max_line_bytes: usize) {
        self.lines += 1;
        self.touched = true;
        let line = &mut self.record.line;
        let room = max_line_bytes.saturating_sub(line.len());
        let cut = next.line.len() + 1 > room;
        if cut || next.truncated {
            self.record.truncated = true;
            self.record.metadata.set_truncated();
        }
        if room < 2 {
            // Not even a newline and one byte: nothing of it fits.
            return;
        }
        let text = match cut {
            false => next.line.as_str(),
            true => {
                let mut end = room - 1;
                while !next.line.is_char_boundary(end) {
                    end -= 1;
                }
                &next.line[..end]
            }
        };
        line.push('\n');
        line.push_str(text);
        if cut || !text.bytes().all(|c| matches!(c, b' ' | b'\t' | b'\r')) {
            self.content = line.len();
        }
    }
}

#[cfg(test)]
mod tests;

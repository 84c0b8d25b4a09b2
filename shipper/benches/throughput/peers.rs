//! The cases with processing stages (`stages`, `traces`), run in turns with a peer shipper
//! (Fluent Bit) doing the same work on the same files: rounds of tailrace then the peer,
//! each run with a fresh Loki double and fresh positions (Fluent Bit: a fresh `DB`).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::child::{End, Wait, Watched, describe_status, measure, tail_of};
use crate::lines::{FILES, Generated, generate_json, generate_traces};
use crate::{MIB, TailraceConfig, start_double, write_config};

/// A run ends once the count has not grown for this long after some entries arrived.
const STALL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(900);

/// One case: its files, tailrace's stages and Fluent Bit's equivalent.
pub struct Case {
    pub name: &'static str,
    about: &'static str,
    generate: fn(&Path, u64) -> Result<Generated, String>,
    /// The input's `stages:` list (YAML, indented for the input's mapping).
    stages: &'static str,
    /// The tail input's `multiline.parser`.
    fluent_bit_multiline: &'static str,
    /// `[FILTER]` sections.
    fluent_bit_filters: &'static str,
    /// The parsers file's content, `""` for none.
    fluent_bit_parsers: &'static str,
    /// Extra lines of the loki `[OUTPUT]`.
    fluent_bit_output: &'static str,
    /// tailrace's MiB per CPU second at least this many times the peer's.
    target_ratio: Option<f64>,
}

pub const CASES: &[Case] = &[
    Case {
        name: "stages",
        about: "the JSON lines, every 10th of each file a `GET /healthz` line; \
                multiline auto, drop regex, regex extraction",
        generate: stages_files,
        stages: "    stages:\n\
                 \x20     - multiline: { mode: auto }\n\
                 \x20     - drop: { regex: 'GET /healthz' }\n\
                 \x20     - regex: { expression: '\"level\":\"(?P<level>\\w+)\"' }\n",
        fluent_bit_multiline: "java,python,go",
        fluent_bit_filters: "[FILTER]\n\
                             \x20   Name          grep\n\
                             \x20   Match         *\n\
                             \x20   Exclude       log GET /healthz\n\n\
                             [FILTER]\n\
                             \x20   Name          parser\n\
                             \x20   Match         *\n\
                             \x20   Key_Name      log\n\
                             \x20   Parser        bench_level\n\
                             \x20   Reserve_Data  On\n\
                             \x20   Preserve_Key  On\n\n",
        fluent_bit_parsers: "[PARSER]\n\
                             \x20   Name    bench_level\n\
                             \x20   Format  regex\n\
                             \x20   Regex   \"level\":\"(?<level>\\w+)\"\n",
        // The extracted key is not part of the line: both send the line as read (Fluent
        // Bit's with the trailing `\n` that its multiline parsers keep).
        fluent_bit_output: "    Remove_Keys     level\n",
        target_ratio: Some(2.0),
    },
    Case {
        name: "traces",
        about: "text lines with Java and Python stack traces; multiline auto",
        generate: generate_traces,
        stages: "    stages:\n\
                 \x20     - multiline: { mode: auto }\n",
        fluent_bit_multiline: "java,python",
        fluent_bit_filters: "",
        fluent_bit_parsers: "",
        fluent_bit_output: "",
        target_ratio: None,
    },
];

fn stages_files(dir: &Path, lines: u64) -> Result<Generated, String> {
    generate_json(dir, lines, Some(10))
}

/// What every case's runs share.
pub struct Settings<'a> {
    pub tailrace: &'a Path,
    /// The Fluent Bit binary, and its version line; `None`: tailrace only.
    pub fluent_bit: Option<(PathBuf, String)>,
    pub lines: u64,
    pub rounds: usize,
    pub config: TailraceConfig<'a>,
    pub keep: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Shipper {
    Tailrace,
    FluentBit,
}

impl Shipper {
    fn name(self) -> &'static str {
        match self {
            Shipper::Tailrace => "tailrace",
            Shipper::FluentBit => "fluent-bit",
        }
    }
}

/// One run of one shipper.
struct Run {
    shipper: Shipper,
    round: usize,
    watched: Watched,
    /// The double's count after the shipper stopped.
    final_count: u64,
    hwm_kib: u64,
    double_cpu: f64,
    /// How it stopped (exit status, shutdown time).
    exit: String,
    log: PathBuf,
}

impl Run {
    fn cpu(&self) -> f64 {
        self.watched.user + self.watched.sys
    }

    fn complete(&self) -> bool {
        matches!(self.watched.end, End::Reached)
    }
}

/// Whether this build's stages do the case's work, judged by `tailrace check --explain` on
/// the first lines of the first file.
#[derive(PartialEq)]
enum StagesCheck {
    Working,
    NotYet,
}

/// Runs one case: generates its files, checks tailrace's stages on a sample, runs the
/// rounds and prints each run and the case's table. Fails only when tailrace's stages work
/// on the sample but its count over the whole run is wrong, or tailrace crashed.
pub fn run_case(case: &Case, s: &Settings<'_>) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tailrace-bench-{}-", case.name))
        .tempdir()
        .map_err(|e| format!("{}: temp dir: {e}", case.name))?;
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let t = Instant::now();
    let g = (case.generate)(&logs, s.lines).map_err(|e| format!("{}: {e}", case.name))?;
    let mib = g.bytes as f64 / MIB;
    println!("\n== {}: {} ==", case.name, case.about);
    println!(
        "generated {} lines, {mib:.1} MiB in {FILES} files in {:.2?}; a correct pipeline sends {} entries",
        g.lines,
        t.elapsed(),
        g.entries
    );
    let glob = logs.join("*.log");
    let check = check_stages(case, s, dir.path(), &glob, &g)?;

    let mut shippers = vec![Shipper::Tailrace];
    if s.fluent_bit.is_some() {
        shippers.push(Shipper::FluentBit);
    }
    let mut runs = Vec::new();
    for round in 1..=s.rounds {
        for &shipper in &shippers {
            let run = run_one(case, s, shipper, round, dir.path(), &glob, &g)?;
            print_run(&run, &g);
            runs.push(run);
        }
    }
    print_table(case, s, &g, &runs, check == StagesCheck::Working);

    let wrong: Vec<&Run> = runs
        .iter()
        .filter(|r| r.shipper == Shipper::Tailrace && r.final_count != g.entries)
        .collect();
    if s.keep {
        println!("kept: {}", dir.keep().display());
    }
    match (wrong.first(), check) {
        (None, _) => Ok(()),
        (Some(_), StagesCheck::NotYet) => {
            println!(
                "WARNING: {}: tailrace's counts ({}) differ from the {} a correct pipeline sends; \
                 expected while this build's stages are placeholders (see the check above): \
                 not a failure",
                case.name,
                wrong
                    .iter()
                    .map(|r| r.final_count.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                g.entries
            );
            Ok(())
        }
        (Some(r), StagesCheck::Working) => Err(format!(
            "{} round {}: tailrace sent {} entries, a correct pipeline sends {} (its stages were \
             right on the first {} lines of {}); its log {}:\n{}",
            case.name,
            r.round,
            r.final_count,
            g.entries,
            g.sample_lines,
            g.sample.display(),
            r.log.display(),
            tail_of(&r.log, 20)
        )),
    }
}

/// `tailrace check --explain` on the first lines of the first file: does this build's
/// pipeline send the entries a correct one sends? (Also checks that the case's
/// configuration is accepted, before the long runs.)
fn check_stages(
    case: &Case,
    s: &Settings<'_>,
    dir: &Path,
    glob: &Path,
    g: &Generated,
) -> Result<StagesCheck, String> {
    let config = dir.join("explain.yaml");
    let config_for = TailraceConfig {
        stages: case.stages,
        ..s.config
    };
    // Nothing is pushed by `check`: the URL is never used.
    write_config(
        &config,
        "http://127.0.0.1:9/loki/api/v1/push",
        dir,
        glob,
        &config_for,
    )?;
    let out = Command::new(s.tailrace)
        .arg("--config")
        .arg(&config)
        .args(["check", "--lines", &g.sample_lines.to_string(), "--explain"])
        .arg(&g.sample)
        .output()
        .map_err(|e| format!("{}: running {} check: {e}", case.name, s.tailrace.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: `tailrace check --explain` failed on {} ({}):\n{}",
            case.name,
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let got = text
        .lines()
        .filter(|l| l.trim_start().starts_with("=> entry"))
        .count() as u64;
    let sample = format!(
        "on the first {} lines of {}",
        g.sample_lines,
        g.sample.display()
    );
    if got == g.sample_entries {
        println!(
            "stages check: {sample} this build sends the {got} entries a correct pipeline sends"
        );
        Ok(StagesCheck::Working)
    } else {
        println!(
            "WARNING: stages check: {sample} this build sends {got} entries, a correct pipeline \
             {}: its stages do not do this case's work yet (pass-through placeholders?), so \
             tailrace's runs below do less work than Fluent Bit's and its counts are not checked",
            g.sample_entries
        );
        Ok(StagesCheck::NotYet)
    }
}

fn run_one(
    case: &Case,
    s: &Settings<'_>,
    shipper: Shipper,
    round: usize,
    dir: &Path,
    glob: &Path,
    g: &Generated,
) -> Result<Run, String> {
    let name = format!("{} round {round} {}", case.name, shipper.name());
    let run_dir = dir.join(format!("{}-{round}", shipper.name()));
    fs::create_dir_all(&run_dir).map_err(|e| format!("{name}: {}: {e}", run_dir.display()))?;
    let loki = start_double();
    let (bin, args): (&Path, Vec<OsString>) = match (shipper, &s.fluent_bit) {
        (Shipper::Tailrace, _) => {
            let config = run_dir.join("tailrace.yaml");
            let config_for = TailraceConfig {
                stages: case.stages,
                ..s.config
            };
            write_config(&config, &loki.url(), &run_dir, glob, &config_for)?;
            (s.tailrace, vec!["--config".into(), config.into()])
        }
        (Shipper::FluentBit, Some((bin, _))) => {
            let config = write_fluent_bit_config(case, &run_dir, glob, loki.addr().port())?;
            (bin.as_path(), vec!["-c".into(), config.into()])
        }
        (Shipper::FluentBit, None) => unreachable!("fluent-bit runs only when found"),
    };
    let log = run_dir.join(format!("{}.log", shipper.name()));
    let wait = Wait {
        expected: g.entries,
        stall: STALL,
        timeout: TIMEOUT,
    };
    let m = measure(&name, bin, &args, &log, &loki, wait)?;
    let final_count = loki.entry_count();
    drop(loki);
    let clean = !matches!(m.watched.end, End::Exited(_))
        && matches!(&m.exit, Ok((status, ..)) if libc::WIFEXITED(*status) && libc::WEXITSTATUS(*status) == 0);
    let exit = match (&m.watched.end, m.exit) {
        (End::Exited(status), _) => format!("exited on its own ({})", describe_status(*status)),
        (_, Ok((status, _, shutdown))) => format!(
            "{} after SIGTERM in {:.2} s",
            describe_status(status),
            shutdown.as_secs_f64()
        ),
        (_, Err(e)) => e,
    };
    if shipper == Shipper::Tailrace && !clean {
        return Err(format!(
            "{name}: tailrace {exit}; its log {}:\n{}",
            log.display(),
            tail_of(&log, 20)
        ));
    }
    Ok(Run {
        shipper,
        round,
        watched: m.watched,
        final_count,
        hwm_kib: m.hwm_kib,
        double_cpu: m.double_cpu,
        exit,
        log,
    })
}

fn write_fluent_bit_config(
    case: &Case,
    run_dir: &Path,
    glob: &Path,
    port: u16,
) -> Result<PathBuf, String> {
    let write = |path: &Path, text: &str| {
        fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    let parsers_file = if case.fluent_bit_parsers.is_empty() {
        String::new()
    } else {
        let path = run_dir.join("parsers.conf");
        write(&path, case.fluent_bit_parsers)?;
        format!("    Parsers_File  {}\n", path.display())
    };
    let config = format!(
        "[SERVICE]\n\
         \x20   Flush         1\n\
         \x20   Log_Level     warn\n\
         {parsers_file}\n\
         [INPUT]\n\
         \x20   Name              tail\n\
         \x20   Tag               bench\n\
         \x20   Path              {glob}\n\
         \x20   Read_from_Head    On\n\
         \x20   DB                {db}\n\
         \x20   multiline.parser  {multiline}\n\n\
         {filters}\
         [OUTPUT]\n\
         \x20   Name            loki\n\
         \x20   Match           *\n\
         \x20   Host            127.0.0.1\n\
         \x20   Port            {port}\n\
         \x20   Labels          job=bench\n\
         \x20   Line_Format     json\n\
         \x20   Drop_Single_Key raw\n\
         {output}",
        glob = glob.display(),
        db = run_dir.join("fluent-bit.db").display(),
        multiline = case.fluent_bit_multiline,
        filters = case.fluent_bit_filters,
        output = case.fluent_bit_output,
    );
    let path = run_dir.join("fluent-bit.conf");
    write(&path, &config)?;
    Ok(path)
}

fn mib_per(g: &Generated, secs: f64) -> f64 {
    g.bytes as f64 / MIB / secs
}

fn print_run(r: &Run, g: &Generated) {
    let w = &r.watched;
    let reached = match w.end {
        End::Reached => String::new(),
        End::Stalled => format!(", INCOMPLETE (no new entry for {:.1?})", w.quiet),
        End::Exited(_) => ", INCOMPLETE (exited)".to_owned(),
        End::TimedOut => ", INCOMPLETE (timed out)".to_owned(),
    };
    println!(
        "  round {} {:<10}: {} of {} entries{reached} in {:.2} s; CPU {:.2} s ({:.2} user + {:.2} sys); \
         {:.1} MiB/s, {:.1} MiB/CPU-s; peak RSS {:.1} MiB; {} entries after it stopped; \
         double {:.2} CPU s; {}",
        r.round,
        r.shipper.name(),
        w.count,
        g.entries,
        w.wall.as_secs_f64(),
        r.cpu(),
        w.user,
        w.sys,
        mib_per(g, w.wall.as_secs_f64()),
        mib_per(g, r.cpu()),
        r.hwm_kib as f64 / 1024.0,
        r.final_count,
        r.double_cpu,
        r.exit
    );
}

fn print_table(case: &Case, s: &Settings<'_>, g: &Generated, runs: &[Run], stages_work: bool) {
    let peer = s
        .fluent_bit
        .as_ref()
        .map_or("none", |(_, version)| version.as_str());
    println!(
        "\n== {}: {} lines, {:.1} MiB, {} entries expected; peer: {peer} ==",
        case.name,
        g.lines,
        g.bytes as f64 / MIB,
        g.entries
    );
    println!("| run                 | entries    | MiB/s  | MiB/CPU-s | CPU s  | peak RSS MiB |");
    println!("|---------------------|------------|--------|-----------|--------|--------------|");
    for r in runs {
        let mark = if r.complete() { ' ' } else { '*' };
        println!(
            "| {:<19} | {:>9}{mark} | {:>6.1} | {:>9.1} | {:>6.2} | {:>12.1} |",
            format!("{} {}", r.round, r.shipper.name()),
            r.watched.count,
            mib_per(g, r.watched.wall.as_secs_f64()),
            mib_per(g, r.cpu()),
            r.cpu(),
            r.hwm_kib as f64 / 1024.0
        );
    }
    if runs.iter().any(|r| !r.complete()) {
        println!("(* incomplete: the count stopped short of {})", g.entries);
    }
    let ratios: Vec<(usize, f64, bool)> = runs
        .chunks(2)
        .filter_map(|pair| match pair {
            [a, b] if b.shipper == Shipper::FluentBit => {
                Some((a.round, (b.cpu() / a.cpu()), a.complete() && b.complete()))
            }
            _ => None,
        })
        .collect();
    if ratios.is_empty() {
        return;
    }
    let listed: Vec<String> = ratios
        .iter()
        .map(|(round, ratio, complete)| {
            format!(
                "round {round} {ratio:.2}x{}",
                if *complete { "" } else { "*" }
            )
        })
        .collect();
    println!(
        "tailrace / Fluent Bit, MiB per CPU second (same bytes, so Fluent Bit's CPU / tailrace's): {}{}",
        listed.join(", "),
        if stages_work {
            ""
        } else {
            " (NOT comparable: tailrace's stages are placeholders in this build)"
        }
    );
    if let Some(target) = case.target_ratio {
        let lowest = ratios.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        println!(
            "target >= {target}x Fluent Bit per CPU second: {} (lowest pair {lowest:.2}x)",
            match (stages_work, lowest >= target) {
                (false, _) => "not judged (placeholder stages)",
                (true, true) => "met",
                (true, false) => "NOT met",
            }
        );
    }
}

/// The Fluent Bit binary: `FLUENT_BIT_BIN`, else `target/real-bin/fluent-bit` under the
/// workspace root; with its version line (`Fluent Bit v5.1.1`). `Err` says where it looked.
pub fn fluent_bit_binary() -> Result<(PathBuf, String), String> {
    let path = match std::env::var_os("FLUENT_BIT_BIN") {
        Some(bin) => PathBuf::from(bin),
        // The workspace root is the parent of this package's directory.
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new(".."))
            .join("target/real-bin/fluent-bit"),
    };
    let out = Command::new(&path).arg("--version").output().map_err(|e| {
        format!(
            "no Fluent Bit at {} ({e}): set FLUENT_BIT_BIN",
            path.display()
        )
    })?;
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .find(|l| l.starts_with("Fluent Bit v"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} --version printed no `Fluent Bit v...`", path.display()))?;
    Ok((path, version))
}

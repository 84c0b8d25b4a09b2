//! The generated log files: `tailrace-log`-shaped JSON lines (the plain and stages cases),
//! a mix of text lines and Java and Python stack traces (the traces case), and the idle
//! check's many small files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const FILES: usize = 4;
pub const IDLE_FILES: usize = 1000;
const IDLE_LINES_PER_FILE: usize = 5;
/// How many first lines of the first file `tailrace check --explain` looks at.
pub const SAMPLE_LINES: u64 = 300;

/// What was written, and what a shipper doing the case's work should send of it.
pub struct Generated {
    pub bytes: u64,
    pub lines: u64,
    /// Entries a correct pipeline sends: records (a trace is one), less dropped ones.
    pub entries: u64,
    /// The first file, and the entries a correct pipeline makes of its first
    /// `sample_lines` lines (a record that starts there counts whole).
    pub sample: PathBuf,
    pub sample_lines: u64,
    pub sample_entries: u64,
}

/// `FILES` files being written, and the tally of what went in.
struct Files {
    writers: Vec<BufWriter<File>>,
    paths: Vec<PathBuf>,
    g: Generated,
    first_file_lines: u64,
}

impl Files {
    fn create(dir: &Path) -> Result<Files, String> {
        let paths: Vec<PathBuf> = (0..FILES)
            .map(|f| dir.join(format!("app-{f}.log")))
            .collect();
        let writers = paths
            .iter()
            .map(|path| {
                File::create(path)
                    .map(|file| BufWriter::with_capacity(1 << 20, file))
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Files {
            writers,
            g: Generated {
                bytes: 0,
                lines: 0,
                entries: 0,
                sample: paths[0].clone(),
                sample_lines: 0,
                sample_entries: 0,
            },
            paths,
            first_file_lines: 0,
        })
    }

    /// Appends one record (one or more `\n`-terminated lines) to file `f`; `kept`: a correct
    /// pipeline sends it (as one entry).
    fn record(&mut self, f: usize, text: &[u8], kept: bool) -> Result<(), String> {
        self.writers[f]
            .write_all(text)
            .map_err(|e| format!("writing {}: {e}", self.paths[f].display()))?;
        let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
        self.g.bytes += text.len() as u64;
        self.g.lines += lines;
        self.g.entries += kept as u64;
        if f == 0 {
            if self.first_file_lines < SAMPLE_LINES {
                self.g.sample_entries += kept as u64;
            }
            self.first_file_lines += lines;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Generated, String> {
        for (w, path) in self.writers.into_iter().zip(&self.paths) {
            w.into_inner()
                .map_err(|e| e.to_string())
                .and_then(|file| file.sync_all().map_err(|e| e.to_string()))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        self.g.sample_lines = self.first_file_lines.min(SAMPLE_LINES);
        Ok(self.g)
    }
}

/// Line `i` of `lines` is stamped `now - 45 min + i * step` (distinct, increasing, all
/// within the last hour, and any two files stay within Loki's 1 h out-of-order window of
/// each other).
fn stamps(lines: u64) -> impl Fn(u64) -> i128 {
    let now = unix_nanos_now();
    let span: i128 = 45 * 60 * 1_000_000_000;
    let step = (span / lines.max(1) as i128).max(1);
    move |i| now - span + i as i128 * step
}

/// `lines` JSON lines round-robin into `FILES` files. With `health_every = Some(n)`, every
/// `n`th line of each file is a health check (`"message":"GET /healthz"`) that the stages
/// case drops.
pub fn generate_json(
    dir: &Path,
    lines: u64,
    health_every: Option<u64>,
) -> Result<Generated, String> {
    let stamp = stamps(lines);
    let mut files = Files::create(dir)?;
    let mut line = Vec::with_capacity(512);
    for i in 0..lines {
        let f = (i % FILES as u64) as usize;
        let health = health_every.is_some_and(|n| (i / FILES as u64) % n == n - 1);
        let message: &[u8] = if health {
            b"GET /healthz"
        } else {
            b"order placed"
        };
        line.clear();
        write_line(&mut line, stamp(i), i, message);
        files.record(f, &line, !health)?;
    }
    files.finish()
}

/// About `lines` lines round-robin into `FILES` files, record by record: text log lines
/// (Spring Boot and Python `logging` shapes), and every 16th record an ERROR line followed
/// by a stack trace, Java and Python in turn. A Java trace: the exception line, 8 to 31
/// `\tat` frames, `Caused by:` with 3 to 7 frames, `\t... N more` (10 to 41 lines). A Python
/// one: `Traceback (most recent call last):`, 2 to 7 `File`/code pairs, the `ValueError:`
/// line (6 to 16 lines). Both are one record for Fluent Bit's built-in `java` and `python`
/// multiline parsers and for tailrace's `multiline: auto`; a text line between two traces
/// ends the first (nothing is held behind it).
///
/// Each file ends with a JSON line, which no multiline rule holds: so neither shipper waits
/// its multiline timeout (tailrace's `max_wait` 3 s, Fluent Bit's 4 s flush) for a next line
/// after the files' last lines, which would add seconds of idleness to the wall time.
pub fn generate_traces(dir: &Path, lines: u64) -> Result<Generated, String> {
    let stamp = stamps(lines);
    let mut files = Files::create(dir)?;
    let mut text = Vec::with_capacity(8192);
    let mut r = 0u64;
    while files.g.lines + (FILES as u64) < lines {
        let f = (r % FILES as u64) as usize;
        let h = splitmix(r);
        let ts = stamp(files.g.lines);
        text.clear();
        if (r / FILES as u64) % 16 == 15 {
            let java = (r / FILES as u64 / 16) % 2 == 0;
            write_text_line(&mut text, ts, r, h, java, true);
            files.record(f, &text, true)?;
            text.clear();
            if java {
                write_java_trace(&mut text, r, h);
            } else {
                write_python_trace(&mut text, h);
            }
        } else {
            write_text_line(&mut text, ts, r, h, h % 3 != 0, false);
        }
        files.record(f, &text, true)?;
        r += 1;
    }
    for f in 0..FILES {
        text.clear();
        let _ = writeln!(
            text,
            "{{\"level\":\"info\",\"message\":\"bench file {f} ends\"}}"
        );
        files.record(f, &text, true)?;
    }
    files.finish()
}

/// A Spring Boot (`java`) or Python `logging` text line; `error`: the line a logger writes
/// before a trace.
fn write_text_line(out: &mut Vec<u8>, ts: i128, r: u64, h: u64, java: bool, error: bool) {
    write_rfc3339(out, ts);
    let level = if error { "ERROR" } else { " INFO" };
    let (what, ms) = (if error { "failed" } else { "placed" }, h % 900);
    if java {
        let _ = writeln!(
            out,
            " {level} 1 --- [nio-8080-exec-{}] c.e.checkout.OrderController   : order {r} {what} after {ms} ms",
            h % 10
        );
    } else {
        let _ = writeln!(
            out,
            " {level} [worker-{}] orders.sync: order {r} {what} after {ms} ms (batch {})",
            h % 8,
            h % 1000
        );
    }
}

const JAVA_FRAMES: &[&str] = &[
    "com.example.checkout.OrderService.place(OrderService.java:142)",
    "com.example.checkout.OrderController.create(OrderController.java:57)",
    "jdk.internal.reflect.GeneratedMethodAccessor87.invoke(Unknown Source)",
    "java.base/java.lang.reflect.Method.invoke(Method.java:580)",
    "org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:255)",
    "org.springframework.web.servlet.mvc.method.annotation.ServletInvocableHandlerMethod.invokeAndHandle(ServletInvocableHandlerMethod.java:118)",
    "org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1089)",
    "org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:590)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:138)",
    "org.springframework.web.filter.OncePerRequestFilter.doFilter(OncePerRequestFilter.java:116)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:167)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:391)",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1736)",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
];

const JAVA_CAUSE_FRAMES: &[&str] = &[
    "com.example.inventory.InventoryClient.reserve(InventoryClient.java:88)",
    "com.example.inventory.InventoryClient.reserveAll(InventoryClient.java:61)",
    "com.example.checkout.Reservations.hold(Reservations.java:40)",
    "com.example.checkout.OrderService.reserve(OrderService.java:171)",
    "com.example.checkout.OrderService.place(OrderService.java:139)",
    "com.example.checkout.OrderService$$SpringCGLIB$$0.place(<generated>)",
    "com.example.checkout.OrderController.create(OrderController.java:55)",
];

fn write_java_trace(out: &mut Vec<u8>, r: u64, h: u64) {
    let frames = 8 + (h % 24) as usize;
    let cause = 3 + (h / 24 % 5) as usize;
    let _ = writeln!(
        out,
        "java.lang.IllegalStateException: order {r} cannot be placed: reservation failed"
    );
    for i in 0..frames {
        let _ = writeln!(out, "\tat {}", JAVA_FRAMES[i % JAVA_FRAMES.len()]);
    }
    let _ = writeln!(
        out,
        "Caused by: com.example.inventory.ReservationException: sku {} out of stock",
        h % 100_000
    );
    for frame in &JAVA_CAUSE_FRAMES[..cause] {
        let _ = writeln!(out, "\tat {frame}");
    }
    let _ = writeln!(out, "\t... {} more", frames - 2);
}

const PYTHON_FRAMES: &[(&str, u32, &str, &str)] = &[
    (
        "/app/orders/worker.py",
        212,
        "run",
        "self.sync_batch(batch)",
    ),
    (
        "/app/orders/sync.py",
        88,
        "sync_batch",
        "self.sync_one(order)",
    ),
    (
        "/app/orders/sync.py",
        61,
        "sync_one",
        "qty = parse_quantity(order[\"qty\"])",
    ),
    (
        "/app/orders/parse.py",
        19,
        "parse_quantity",
        "return _to_int(value.strip())",
    ),
    (
        "/usr/local/lib/python3.12/site-packages/retry/api.py",
        33,
        "__retry_internal",
        "return f()",
    ),
    ("/app/orders/parse.py", 12, "_to_int", "return int(value)"),
    ("/app/orders/parse.py", 9, "_to_int", "raise"),
];

fn write_python_trace(out: &mut Vec<u8>, h: u64) {
    let frames = 2 + (h % 6) as usize;
    out.extend_from_slice(b"Traceback (most recent call last):\n");
    for (file, line, func, code) in &PYTHON_FRAMES[PYTHON_FRAMES.len() - frames..] {
        let _ = writeln!(out, "  File \"{file}\", line {line}, in {func}\n    {code}");
    }
    let _ = writeln!(
        out,
        "ValueError: invalid literal for int() with base 10: 'twelve-{}'",
        h % 1000
    );
}

/// `IDLE_FILES` files of `IDLE_LINES_PER_FILE` lines; returns the number of lines.
pub fn generate_small(dir: &Path) -> Result<u64, String> {
    let now = unix_nanos_now();
    let n = (IDLE_FILES * IDLE_LINES_PER_FILE) as i128;
    let mut line = Vec::with_capacity(512);
    let mut i = 0u64;
    for f in 0..IDLE_FILES {
        let path = dir.join(format!("pod-{f:04}.log"));
        let mut w =
            BufWriter::new(File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        for _ in 0..IDLE_LINES_PER_FILE {
            line.clear();
            write_line(
                &mut line,
                now - (n - i as i128) * 1_000_000,
                i,
                b"order placed",
            );
            w.write_all(&line).map_err(|e| e.to_string())?;
            i += 1;
        }
        w.flush().map_err(|e| e.to_string())?;
    }
    Ok(i)
}

fn write_line(out: &mut Vec<u8>, ts_ns: i128, i: u64, message: &[u8]) {
    let h1 = splitmix(i);
    let h2 = splitmix(h1);
    let h3 = splitmix(h2);
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_rfc3339(out, ts_ns);
    out.extend_from_slice(b"\",\"level\":\"info\",\"message\":\"");
    out.extend_from_slice(message);
    out.extend_from_slice(
        b"\",\"target\":\"checkout::api\",\"service\":\"checkout\",\"trace_id\":\"",
    );
    write_hex(out, h1);
    write_hex(out, h2);
    out.extend_from_slice(b"\",\"span_id\":\"");
    write_hex(out, h3);
    out.extend_from_slice(
        b"\",\"trace_flags\":\"01\",\"span\":\"http_request\",\"http.method\":\"POST\",\"order_id\":",
    );
    let _ = writeln!(out, "{i},\"duration_ms\":{}.{:03}}}", h3 % 500, h2 % 1000);
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn write_hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// `2026-11-22T10:00:01.250000000Z` (UTC, 9 fraction digits): `tailrace-log`'s own writer.
fn write_rfc3339(out: &mut Vec<u8>, ns: i128) {
    let time = UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    let mut ts = [0u8; tailrace_log::timestamp::RFC3339_LEN];
    tailrace_log::timestamp::write_rfc3339(time, &mut ts);
    out.extend_from_slice(&ts);
}

fn unix_nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128
}

//! `tailrace convert promtail.yaml`: a Promtail configuration turned into a tailrace one.
//!
//! In: the text of a Promtail configuration file. Out: a [`Conversion`]: the tailrace
//! configuration as commented YAML (what each part came from, then every note at the end as
//! comments), the list of what could not be converted ([`Note`]s with the Promtail line
//! number), and the list of what was left out because it changes nothing in tailrace.
//! Why: Promtail reaches its end of life on 2026-03-02; its users should get a working
//! tailrace configuration for the common shapes, and a precise list of the rest. Nothing is
//! left out silently: every key is converted, ignored with a reason, or listed as not
//! converted.
//!
//! What maps (the README's "Coming from Promtail" table): the first client becomes `loki:`
//! (`external_labels` go to every input's labels), `positions`, `server`, `limits_config`;
//! each `static_configs` entry with a `__path__` becomes an input; a `kubernetes_sd_configs`
//! pod job (the Helm chart's `kubernetes-pods`) becomes kubelet's `/var/log/pods` glob with
//! its path labels, a `docker_sd_configs` job Docker's json-file glob; `relabel_configs`
//! become `label_rules` where they can (see `relabel.rs`), `pipeline_stages` the input's
//! format and the stages of the same names (see `stages.rs`).
//!
//! Line numbers come from the text itself ([`locate`](crate::config::diagnose::locate)):
//! `serde_yaml_ng`'s values keep none, and the keys' paths are all a note needs.
//! Every stage written is checked by tailrace's own stage parser before it is kept, so an
//! expression Rust's regex cannot read (a look-ahead) is a note, not a broken output.

mod relabel;
mod stages;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::config::{ByteSize, HumanDuration};

/// The result of converting one Promtail file.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The tailrace configuration, commented, the notes at its end.
    pub yaml: String,
    /// What could not be converted: Promtail behaviour the output does not have.
    pub not_converted: Vec<Note>,
    /// What was left out because it makes no difference to tailrace.
    pub ignored: Vec<Note>,
    /// How many inputs the output has (none: it cannot run until one is added).
    pub inputs: usize,
}

/// One key of the Promtail file and why it was not (or need not be) converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// 1-based line of the key in the Promtail file.
    pub line: usize,
    /// The key's path, `scrape_configs[0].pipeline_stages[3].template`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.key, self.reason)
    }
}

/// A file that is not a Promtail configuration at all.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not YAML: {message}", path = .path.display())]
    NotYaml { path: PathBuf, message: String },
    #[error("{path}: line {line}: not a Promtail configuration: {message}", path = .path.display())]
    NotPromtail {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads and converts `path`.
pub fn convert_file(path: &Path) -> Result<Conversion, ConvertError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Read {
        path: path.to_owned(),
        source,
    })?;
    convert(&text, path)
}

/// Converts the Promtail configuration `text`; `path` is named in the header and errors.
pub fn convert(text: &str, path: &Path) -> Result<Conversion, ConvertError> {
    let mut root: Value = serde_yaml_ng::from_str(text).map_err(|e| ConvertError::NotYaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    root.apply_merge().map_err(|e| ConvertError::NotYaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let not_promtail = |line: usize, message: &str| ConvertError::NotPromtail {
        path: path.to_owned(),
        line,
        message: message.to_owned(),
    };
    let Value::Mapping(root) = root else {
        return Err(not_promtail(
            1,
            "the file is not a mapping of Promtail's sections (server, clients, positions, scrape_configs)",
        ));
    };
    if get(&root, "clients").is_none()
        && get(&root, "client").is_none()
        && get(&root, "scrape_configs").is_none()
    {
        return Err(not_promtail(
            1,
            "it has neither `clients` nor `scrape_configs`",
        ));
    }
    for key in ["clients", "scrape_configs"] {
        if let Some(v) = get(&root, key)
            && !matches!(v, Value::Sequence(_) | Value::Null)
        {
            let line = Ctx::new(text).line_of(key);
            return Err(not_promtail(line, &format!("`{key}` must be a list")));
        }
    }
    let mut ctx = Ctx::new(text);
    let mut out = Output::default();
    for (key, value) in &root {
        let Some(key) = key.as_str() else {
            ctx.not_converted("(root)", format!("a non-string key {key:?}"));
            continue;
        };
        match key {
            "server" => server(&mut ctx, value, &mut out),
            "clients" => {
                for (i, client) in seq(value).iter().enumerate() {
                    let at = format!("clients[{i}]");
                    if out.loki.is_some() {
                        ctx.not_converted(
                            &at,
                            "tailrace pushes to one Loki: run a second tailrace for this client",
                        );
                    } else {
                        out.loki = Some(self::client(&mut ctx, &at, client, &mut out));
                    }
                }
            }
            "client" => {
                if out.loki.is_some() {
                    ctx.not_converted(
                        key,
                        "tailrace pushes to one Loki: run a second tailrace for this client",
                    );
                } else {
                    out.loki = Some(self::client(&mut ctx, key, value, &mut out));
                }
            }
            "positions" => positions(&mut ctx, value, &mut out),
            "limits_config" => limits(&mut ctx, value, &mut out),
            "scrape_configs" => {}
            "tracing" => match get_map(value).and_then(|m| get(m, "enabled")) {
                Some(Value::Bool(true)) => {
                    ctx.not_converted("tracing.enabled", "tailrace sends no traces of its own")
                }
                _ => ctx.ignored(key, "tracing is off"),
            },
            "target_config" => ctx.ignored(
                key,
                "tailrace is told of new files by inotify, and checks again every few seconds",
            ),
            "file_watch_config" | "global" => ctx.ignored(
                key,
                "tailrace is told of new files by inotify; there is no polling to tune",
            ),
            "options" => ctx.not_converted(key, "stream_lag_labels has no tailrace equivalent"),
            other => ctx.not_converted(other, "not a Promtail section tailrace knows"),
        }
    }
    let external = out.external_labels.clone();
    for (i, scrape) in get(&root, "scrape_configs")
        .map(seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        relabel::scrape_config(
            &mut ctx,
            &format!("scrape_configs[{i}]"),
            scrape,
            &external,
            &mut out,
        );
    }
    if out.loki.is_none() {
        ctx.not_converted(
            "clients",
            "no client: tailrace needs loki.url (set to ${LOKI_URL} in the output)",
        );
        let mut loki = Mapping::new();
        loki.insert("url".into(), "${LOKI_URL}".into());
        out.loki = Some(Section {
            comment: "no Promtail client: set LOKI_URL".into(),
            map: loki,
        });
    }
    Ok(out.render(path, ctx))
}

/// The notes being gathered and the text their lines are found in.
struct Ctx<'a> {
    text: &'a str,
    not_converted: Vec<Note>,
    ignored: Vec<Note>,
    /// A relabel rule took a label tailrace's `kubernetes:` section makes by default (the
    /// Promtail chart's `app`, `instance`, `component`, `node_name`): the section is written.
    kubernetes: bool,
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            not_converted: Vec::new(),
            ignored: Vec::new(),
            kubernetes: false,
        }
    }

    /// The line of `key` (`a.b[2].c`), or of the nearest enclosing key that can be found
    /// (an item of a flow list `[cri: {}]` is found as its list's key).
    fn line_of(&self, key: &str) -> usize {
        let mut path = key.to_owned();
        loop {
            if let Some((line, _)) = crate::config::diagnose::locate(self.text, &path) {
                return line;
            }
            let cut = match (path.rfind('.'), path.rfind('[')) {
                (Some(dot), Some(bracket)) => dot.max(bracket),
                (Some(at), None) | (None, Some(at)) => at,
                (None, None) => return 1,
            };
            path.truncate(cut);
        }
    }

    fn note(&self, key: &str, reason: impl Into<String>) -> Note {
        Note {
            line: self.line_of(key),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn not_converted(&mut self, key: &str, reason: impl Into<String>) {
        let note = self.note(key, reason);
        self.not_converted.push(note);
    }

    fn ignored(&mut self, key: &str, reason: impl Into<String>) {
        let note = self.note(key, reason);
        self.ignored.push(note);
    }

    /// Every key of `map` not in `known` is not converted, with `reason`.
    fn rest(&mut self, at: &str, map: &Mapping, known: &[&str], reason: &str) {
        for key in map.keys() {
            let name = key
                .as_str()
                .map_or_else(|| format!("{key:?}"), str::to_owned);
            if !known.contains(&name.as_str()) {
                self.not_converted(&format!("{at}.{name}"), reason);
            }
        }
    }
}

/// A section of the output and the comment above it.
#[derive(Debug, Default)]
struct Section {
    comment: String,
    map: Mapping,
}

/// The tailrace configuration being built.
#[derive(Debug, Default)]
struct Output {
    loki: Option<Section>,
    positions: Option<Section>,
    limits: Option<Section>,
    server: Option<Section>,
    inputs: Vec<Section>,
    external_labels: BTreeMap<String, String>,
}

impl Output {
    fn render(self, path: &Path, ctx: Ctx<'_>) -> Conversion {
        let mut yaml = format!(
            "# tailrace configuration converted from {} by `tailrace convert`.\n\
             # Check it with `tailrace check --config FILE`; what could not be converted is\n\
             # listed at the end.\n",
            path.display()
        );
        let kubernetes = ctx.kubernetes.then(|| {
            let mut map = Mapping::new();
            map.insert("enabled".into(), true.into());
            map.insert("node_name".into(), "${NODE_NAME}".into());
            Section {
                comment: "Pod labels from the Kubernetes API, by default the ones Promtail's Helm chart makes\n\
                          (app, instance, component, node_name, job=<namespace>/<app>): NODE_NAME from the\n\
                          downward API, and a ClusterRole with get, list, watch on pods"
                    .into(),
                map,
            }
        });
        let sections = [
            ("loki", self.loki),
            ("positions", self.positions),
            ("kubernetes", kubernetes),
            ("limits", self.limits),
            ("server", self.server),
        ];
        for (name, section) in sections {
            let Some(section) = section else { continue };
            yaml.push('\n');
            push_comment(&mut yaml, &section.comment, "");
            let mut one = Mapping::new();
            one.insert(name.into(), Value::Mapping(section.map));
            yaml.push_str(&to_yaml(&Value::Mapping(one)));
        }
        yaml.push('\n');
        if self.inputs.is_empty() {
            yaml.push_str(
                "# No scrape config could be converted (see below): tailrace needs an input\n\
                 # before it can run, for example:\n\
                 #   - paths: [\"/var/log/*.log\"]\n\
                 inputs: []\n",
            );
        } else {
            yaml.push_str("inputs:\n");
        }
        let inputs = self.inputs.len();
        for input in self.inputs {
            push_comment(&mut yaml, &input.comment, "  ");
            let text = to_yaml(&Value::Sequence(vec![Value::Mapping(input.map)]));
            for line in text.lines() {
                yaml.push_str("  ");
                yaml.push_str(line);
                yaml.push('\n');
            }
        }
        let Ctx {
            mut not_converted,
            mut ignored,
            ..
        } = ctx;
        // A pipeline shared by several inputs is noted once.
        for notes in [&mut not_converted, &mut ignored] {
            notes.sort_by(|a, b| (a.line, &a.key).cmp(&(b.line, &b.key)));
            notes.dedup();
        }
        if !ignored.is_empty() {
            yaml.push('\n');
            for note in &ignored {
                push_comment(&mut yaml, &format!("ignored: {note}"), "");
            }
        }
        yaml.push('\n');
        if not_converted.is_empty() {
            yaml.push_str("# Everything was converted.\n");
        }
        for note in &not_converted {
            push_comment(&mut yaml, &format!("not converted: {note}"), "");
        }
        Conversion {
            yaml,
            not_converted,
            ignored,
            inputs,
        }
    }
}

fn push_comment(out: &mut String, comment: &str, indent: &str) {
    for line in comment.lines() {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

fn to_yaml(value: &Value) -> String {
    // A Value of strings, numbers, lists and maps always serializes.
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

/// `server:`: the HTTP port and address become `server.listen`.
fn server(ctx: &mut Ctx<'_>, value: &Value, out: &mut Output) {
    let Some(map) = get_map(value) else {
        ctx.ignored("server", "empty");
        return;
    };
    let port = get(map, "http_listen_port").and_then(scalar);
    let address = get(map, "http_listen_address").and_then(scalar);
    match (&port, &address) {
        (Some(port), _) if port == "0" => ctx.not_converted(
            "server.http_listen_port",
            "0 (a random port) cannot be set: tailrace keeps 127.0.0.1:9080",
        ),
        (Some(port), address) => {
            // Promtail listens on every interface unless told otherwise.
            let address = address
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or("0.0.0.0");
            let host = if address.contains(':') {
                format!("[{address}]")
            } else {
                address.to_owned()
            };
            let mut section = Section {
                comment: format!(
                    "server.http_listen_port (line {}): Promtail listens on every interface unless\n\
                     http_listen_address says otherwise; tailrace's default is 127.0.0.1:9080",
                    ctx.line_of("server.http_listen_port")
                ),
                map: Mapping::new(),
            };
            section
                .map
                .insert("listen".into(), format!("{host}:{port}").into());
            out.server = Some(section);
        }
        (None, Some(_)) => ctx.not_converted(
            "server.http_listen_address",
            "without http_listen_port (Promtail's default port is 80): set server.listen",
        ),
        (None, None) => {}
    }
    for (key, v) in map {
        let name = key.as_str().unwrap_or_default();
        let at = format!("server.{name}");
        match name {
            "http_listen_port" | "http_listen_address" => {}
            "grpc_listen_port" | "grpc_listen_address" => {
                ctx.ignored(&at, "tailrace serves no gRPC")
            }
            "log_level" => match scalar(v).as_deref() {
                Some("info") => ctx.ignored(&at, "info is tailrace's default too"),
                _ => ctx.not_converted(
                    &at,
                    "set LOG_LEVEL in tailrace's environment (debug, info, warn, error)",
                ),
            },
            "log_format" => ctx.ignored(
                &at,
                "tailrace writes its own logs as JSON lines, whatever this says",
            ),
            "http_server_read_timeout"
            | "http_server_write_timeout"
            | "http_server_idle_timeout"
            | "graceful_shutdown_timeout"
            | "register_instrumentation" => ctx.ignored(
                &at,
                "tailrace's endpoints have fixed timeouts and always serve /metrics",
            ),
            "profiling_enabled" => ctx.ignored(&at, "tailrace has no profiling endpoint"),
            _ => ctx.not_converted(&at, "no tailrace setting does this"),
        }
    }
}

/// One client: `loki:`. Keeps the external labels aside for every input.
fn client(ctx: &mut Ctx<'_>, at: &str, value: &Value, out: &mut Output) -> Section {
    let mut loki = Mapping::new();
    let mut section = Section {
        comment: format!("{at} (line {})", ctx.line_of(at)),
        map: Mapping::new(),
    };
    let Some(map) = get_map(value) else {
        ctx.not_converted(at, "a client must be a mapping with a url");
        loki.insert("url".into(), "${LOKI_URL}".into());
        section.map = loki;
        return section;
    };
    match get(map, "url").and_then(scalar) {
        Some(url) => {
            loki.insert("url".into(), url.into());
        }
        None => {
            ctx.not_converted(
                &format!("{at}.url"),
                "no url: set to ${LOKI_URL} in the output",
            );
            loki.insert("url".into(), "${LOKI_URL}".into());
        }
    }
    if let Some(tenant) = get(map, "tenant_id").and_then(scalar) {
        loki.insert("tenant".into(), tenant.into());
    }
    let mut batch = Mapping::new();
    if let Some(v) = duration(ctx, &format!("{at}.batchwait"), get(map, "batchwait")) {
        batch.insert("max_wait".into(), v);
    }
    if let Some(v) = size(ctx, &format!("{at}.batchsize"), get(map, "batchsize")) {
        let bytes = serde_yaml_ng::from_value::<ByteSize>(v.clone()).map_or(0, |b| b.0);
        if bytes > crate::config::MAX_BATCH_BYTES {
            ctx.not_converted(
                &format!("{at}.batchsize"),
                "over tailrace's 4MiB (Loki refuses pushes over its 6MiB burst): the default 1MiB is kept",
            );
        } else {
            batch.insert("max_bytes".into(), v);
        }
    }
    if !batch.is_empty() {
        loki.insert("batch".into(), Value::Mapping(batch));
    }
    if let Some(v) = duration(ctx, &format!("{at}.timeout"), get(map, "timeout")) {
        loki.insert("timeout".into(), v);
    }
    for (key, v) in map {
        let name = key.as_str().unwrap_or_default();
        let here = format!("{at}.{name}");
        match name {
            "url" | "tenant_id" | "batchwait" | "batchsize" | "timeout" => {}
            "basic_auth" => {
                let Some(auth) = get_map(v) else { continue };
                let user = get(auth, "username").and_then(scalar);
                let file = get(auth, "password_file").and_then(scalar);
                if get(auth, "password").is_some() {
                    ctx.not_converted(
                        &format!("{here}.password"),
                        "tailrace reads the password from a file only: write it to a file and set loki.basic_auth.password_file",
                    );
                }
                match (user, file) {
                    (Some(user), Some(file)) => {
                        let mut basic = Mapping::new();
                        basic.insert("username".into(), user.into());
                        basic.insert("password_file".into(), file.into());
                        loki.insert("basic_auth".into(), Value::Mapping(basic));
                    }
                    (Some(_), None) if get(auth, "password").is_some() => {}
                    _ => ctx.not_converted(&here, "basic auth needs both username and password_file"),
                }
                ctx.rest(&here, auth, &["username", "password", "password_file"], "no tailrace setting does this");
            }
            "bearer_token_file" => {
                if let Some(file) = scalar(v) {
                    loki.insert("bearer_token_file".into(), file.into());
                }
            }
            "bearer_token" => ctx.not_converted(
                &here,
                "tailrace reads the token from a file only: write it to a file and set loki.bearer_token_file",
            ),
            "tls_config" => {
                let Some(tls_map) = get_map(v) else { continue };
                let mut tls = Mapping::new();
                for (k, val) in tls_map {
                    let k = k.as_str().unwrap_or_default();
                    match (k, scalar(val)) {
                        ("ca_file" | "cert_file" | "key_file", Some(file)) => {
                            tls.insert(k.into(), file.into());
                        }
                        ("insecure_skip_verify", _) => {
                            tls.insert(k.into(), Value::Bool(val.as_bool().unwrap_or(false)));
                        }
                        _ => ctx.not_converted(
                            &format!("{here}.{k}"),
                            "tailrace's TLS takes ca_file, cert_file, key_file and insecure_skip_verify only",
                        ),
                    }
                }
                if !tls.is_empty() {
                    loki.insert("tls".into(), Value::Mapping(tls));
                }
            }
            "backoff_config" => {
                let Some(b) = get_map(v) else { continue };
                let mut backoff = Mapping::new();
                for (from, to) in [("min_period", "min"), ("max_period", "max")] {
                    if let Some(d) = duration(ctx, &format!("{here}.{from}"), get(b, from)) {
                        backoff.insert(to.into(), d);
                    }
                }
                if let Some(n) = get(b, "max_retries") {
                    match n.as_u64() {
                        Some(n) => {
                            backoff.insert("max_retries".into(), n.into());
                        }
                        None => ctx.not_converted(&format!("{here}.max_retries"), "not a number"),
                    }
                }
                ctx.rest(&here, b, &["min_period", "max_period", "max_retries"], "no tailrace setting does this");
                if !backoff.is_empty() {
                    loki.insert("backoff".into(), Value::Mapping(backoff));
                }
            }
            "external_labels" => {
                if let Some(labels) = get_map(v) {
                    for (k, val) in labels {
                        if let (Some(k), Some(val)) = (k.as_str(), scalar(val)) {
                            out.external_labels.insert(k.to_owned(), val);
                        }
                    }
                }
            }
            "drop_rate_limited_batches" => ctx.not_converted(
                &here,
                "tailrace never drops a rate-limited batch: it waits (use backoff.max_retries to give up)",
            ),
            _ => ctx.not_converted(&here, "no tailrace setting does this"),
        }
    }
    section.map = loki;
    section
}

fn positions(ctx: &mut Ctx<'_>, value: &Value, out: &mut Output) {
    let Some(map) = get_map(value) else {
        return;
    };
    let mut section = Section::default();
    for (key, v) in map {
        let name = key.as_str().unwrap_or_default();
        let at = format!("positions.{name}");
        match name {
            "filename" => {
                let Some(file) = scalar(v) else { continue };
                let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
                let path = dir.join("tailrace-positions.json");
                section.comment = format!(
                    "positions.filename (line {}) was {file}: tailrace keeps its own JSON file beside\n\
                     it, so that Promtail's file is left as it is (and the two never overwrite each other),\n\
                     and at its first start continues each file where Promtail's positions say (takeover_from)",
                    ctx.line_of(&at)
                );
                section
                    .map
                    .insert("path".into(), path.display().to_string().into());
                section.map.insert("takeover_from".into(), file.into());
            }
            "sync_period" => {
                if let Some(d) = duration(ctx, &at, Some(v)) {
                    section.map.insert("sync_interval".into(), d);
                }
            }
            "ignore_invalid_yaml" => ctx.ignored(
                &at,
                "tailrace's positions are JSON it writes atomically; a broken file is reported",
            ),
            _ => ctx.not_converted(&at, "no tailrace setting does this"),
        }
    }
    if !section.map.is_empty() {
        out.positions = Some(section);
    }
}

fn limits(ctx: &mut Ctx<'_>, value: &Value, out: &mut Output) {
    let Some(map) = get_map(value) else {
        ctx.ignored("limits_config", "empty");
        return;
    };
    let mut section = Section {
        comment: format!("limits_config (line {})", ctx.line_of("limits_config")),
        map: Mapping::new(),
    };
    for (key, v) in map {
        let name = key.as_str().unwrap_or_default();
        let at = format!("limits_config.{name}");
        match name {
            "max_line_size" => {
                if let Some(s) = size(ctx, &at, Some(v)) {
                    section.map.insert("max_line_bytes".into(), s);
                }
            }
            "max_line_size_truncate" => ctx.ignored(
                &at,
                "tailrace always truncates longer lines, marked truncated=\"true\"",
            ),
            _ => ctx.not_converted(&at, "no tailrace limit does this"),
        }
    }
    if !section.map.is_empty() {
        out.limits = Some(section);
    }
}

/// A Promtail duration, if tailrace reads it as written (`5s`, `500ms`, `1m`).
fn duration(ctx: &mut Ctx<'_>, at: &str, value: Option<&Value>) -> Option<Value> {
    let text = scalar(value?)?;
    match HumanDuration::parse(&text) {
        Ok(_) => Some(text.into()),
        Err(e) => {
            ctx.not_converted(at, format!("{e}; tailrace's default is kept"));
            None
        }
    }
}

/// A Promtail size (a number of bytes, or `256KiB`), if tailrace reads it.
fn size(ctx: &mut Ctx<'_>, at: &str, value: Option<&Value>) -> Option<Value> {
    let value = value?;
    if let Some(n) = value.as_u64() {
        return Some(n.into());
    }
    let text = scalar(value)?;
    match ByteSize::parse(&text) {
        Ok(_) => Some(text.into()),
        Err(e) => {
            ctx.not_converted(at, format!("{e}; tailrace's default is kept"));
            None
        }
    }
}

fn get<'v>(map: &'v Mapping, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn get_map(value: &Value) -> Option<&Mapping> {
    value.as_mapping().filter(|m| !m.is_empty())
}

fn seq(value: &Value) -> Vec<Value> {
    value.as_sequence().cloned().unwrap_or_default()
}

/// A string, number or boolean as text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

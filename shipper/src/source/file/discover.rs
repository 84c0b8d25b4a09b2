//! Finds the files to tail: include and exclude globs, walked from each glob's literal base
//! directory, with symlinks followed and each real file reported once, however many links
//! or globs reach it.
//!
//! In: the inputs' globs. Out: on every [`Discovery::scan`], the set of matching files,
//! each with its real path and device/inode, tagged with the input that matched first. A
//! scan runs on a timer (default every 10 s) and whenever the directory watcher
//! ([`DirWatcher`]) sees a change, so a new file is picked up within about a second; when
//! inotify is unavailable or overflows, the timer alone still finds everything.
//!
//! Symlinks are followed only to files inside the input's roots: by default the directories
//! its globs start from, plus kubelet's `pods` directory beside a `containers` one (whose
//! links point there), plus `inputs[].roots`. A link planted in a watched directory that
//! points at `/etc/shadow` is [refused](Scan::refused), never read.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};

/// One input's globs, compiled, and the roots its files must really be in.
#[derive(Debug, Clone)]
pub struct InputGlobs {
    include: Vec<(PathBuf, GlobMatcher, usize)>,
    exclude: GlobSet,
    roots: Vec<PathBuf>,
}

/// What one [`Discovery::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files to tail.
    pub found: Vec<Found>,
    /// Matching paths whose real file is outside every root of their input: not tailed.
    pub refused: Vec<Refused>,
}

/// A path that resolves (through symlinks) outside its input's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub real: PathBuf,
}

/// A file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The path as the glob matched it (a link's own path, which carries kubelet's labels).
    pub path: PathBuf,
    /// Where it really is, all links resolved.
    pub real: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// Which input matched it first.
    pub input: usize,
}

impl InputGlobs {
    /// Compiles `include` and `exclude` (already checked by the configuration); the roots
    /// are the globs' base directories (see the module docs) and `extra_roots`.
    pub fn new(
        include: &[String],
        exclude: &[String],
        extra_roots: &[PathBuf],
    ) -> Result<Self, globset::Error> {
        let include: Vec<(PathBuf, GlobMatcher, usize)> = include
            .iter()
            .map(|g| {
                let matcher = Glob::new(g)?.compile_matcher();
                let (base, depth) = literal_base(Path::new(g));
                Ok((base, matcher, depth))
            })
            .collect::<Result<_, globset::Error>>()?;
        let mut set = GlobSetBuilder::new();
        for g in exclude {
            set.add(Glob::new(g)?);
        }
        let mut roots: Vec<PathBuf> = extra_roots.to_vec();
        for (base, _, _) in &include {
            roots.push(base.clone());
            // kubelet's /var/log/containers/*.log are links into /var/log/pods.
            if base.file_name().is_some_and(|n| n == "containers") {
                roots.push(base.with_file_name("pods"));
            }
        }
        Ok(Self {
            include,
            exclude: set.build()?,
            roots,
        })
    }

    /// Whether `real` (a canonical path) is inside one of the roots. Roots are resolved now,
    /// not at start: they may not exist yet, or be links themselves.
    fn allows(&self, real: &Path) -> bool {
        self.roots.iter().any(|root| {
            let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
            real.starts_with(root)
        })
    }

    /// The directories a watcher should watch.
    pub fn base_dirs(&self) -> impl Iterator<Item = &Path> {
        self.include.iter().map(|(b, _, _)| b.as_path())
    }
}

/// The part of a glob before its first wildcard, and how many path components may follow
/// it (`usize::MAX` when `**` appears).
fn literal_base(glob: &Path) -> (PathBuf, usize) {
    let mut base = PathBuf::new();
    let mut rest = 0;
    let mut in_pattern = false;
    for c in glob.components() {
        let s = c.as_os_str().to_string_lossy();
        if !in_pattern && !s.contains(['*', '?', '[', '{']) {
            base.push(c);
            continue;
        }
        in_pattern = true;
        if s.contains("**") {
            return (base, usize::MAX);
        }
        rest += 1;
    }
    if !in_pattern {
        // A plain file name: its directory is the base, one component below it.
        let parent = base.parent().map(Path::to_path_buf).unwrap_or_default();
        return (parent, 1);
    }
    (base, rest)
}

/// Walks the inputs' globs.
#[derive(Debug, Clone)]
pub struct Discovery {
    inputs: Vec<InputGlobs>,
}

impl Discovery {
    pub fn new(inputs: Vec<InputGlobs>) -> Self {
        Self { inputs }
    }

    /// Every matching regular file, once per real file. Unreadable directories and files
    /// that vanish mid-scan are skipped (the next scan sees the truth); symlink loops end
    /// because a directory is entered once per scan.
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        let mut seen_files = HashSet::new();
        for (input, globs) in self.inputs.iter().enumerate() {
            for (base, matcher, depth) in &globs.include {
                let mut seen_dirs = HashSet::new();
                walk(base, *depth, &mut seen_dirs, &mut |path| {
                    if !matcher.is_match(path) || globs.exclude.is_match(path) {
                        return;
                    }
                    let Ok(meta) = std::fs::metadata(path) else {
                        return;
                    };
                    if !meta.is_file() {
                        return;
                    }
                    let Ok(real) = std::fs::canonicalize(path) else {
                        return; // gone mid-scan
                    };
                    if !globs.allows(&real) {
                        scan.refused.push(Refused {
                            path: path.to_owned(),
                            real,
                        });
                        return;
                    }
                    if !seen_files.insert((meta.dev(), meta.ino())) {
                        return;
                    }
                    scan.found.push(Found {
                        path: path.to_owned(),
                        real,
                        dev: meta.dev(),
                        ino: meta.ino(),
                        input,
                    });
                });
            }
        }
        scan
    }

    /// Whether `real` (canonical) is inside the roots of any input: the tailer's guard for
    /// files it opens later (a rotation, a file replaced by a link).
    pub fn allows(&self, real: &Path) -> bool {
        self.inputs.iter().any(|i| i.allows(real))
    }

    /// The first input whose globs take `path` (for positions saved by an earlier run).
    pub fn input_of(&self, path: &Path) -> Option<usize> {
        self.inputs.iter().position(|i| {
            i.include.iter().any(|(_, m, _)| m.is_match(path)) && !i.exclude.is_match(path)
        })
    }

    pub fn base_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .inputs
            .iter()
            .flat_map(|i| i.base_dirs().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

fn walk(dir: &Path, depth: usize, seen: &mut HashSet<(u64, u64)>, visit: &mut impl FnMut(&Path)) {
    if depth == 0 {
        return;
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    if !meta.is_dir() || !seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_dir = std::fs::metadata(&path)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            walk(&path, depth.saturating_sub(1), seen, visit);
        } else {
            visit(&path);
        }
    }
}

/// Wakes the scanner when anything changes under the watched directories. If the
/// platform's watcher cannot be set up (no inotify instances or watches left), it says
/// why once and the periodic scan carries on alone.
pub struct DirWatcher {
    _watcher: Option<notify::RecommendedWatcher>,
    pub error: Option<String>,
}

impl DirWatcher {
    /// Watches `dirs` recursively; every event sends `()` on `wake`.
    pub fn start(dirs: &[PathBuf], wake: mpsc::Sender<()>) -> Self {
        use notify::{RecursiveMode, Watcher};
        let handler = move |event: notify::Result<notify::Event>| {
            use notify::EventKind;
            use notify::event::ModifyKind;
            // Files appearing, going, renamed or written. Not opens, reads and closes: the
            // shipper's own reads would wake it in a loop. Errors (such as a queue
            // overflow) also mean "look again".
            let relevant = match &event {
                Ok(e) => matches!(
                    e.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Any
                        | EventKind::Modify(
                            ModifyKind::Data(_)
                                | ModifyKind::Name(_)
                                | ModifyKind::Any
                                | ModifyKind::Other
                        )
                ),
                Err(_) => true,
            };
            if relevant {
                let _ = wake.send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                return Self {
                    _watcher: None,
                    error: Some(format!(
                        "file watcher unavailable, relying on periodic scans: {e}"
                    )),
                };
            }
        };
        let mut errors = Vec::new();
        for dir in dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::Recursive) {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
        Self {
            _watcher: Some(watcher),
            error: (!errors.is_empty()).then(|| {
                format!(
                    "cannot watch {}; relying on periodic scans",
                    errors.join(", ")
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn globs(dir: &Path, include: &[&str], exclude: &[&str]) -> InputGlobs {
        let include: Vec<String> = include
            .iter()
            .map(|g| format!("{}/{g}", dir.display()))
            .collect();
        let exclude: Vec<String> = exclude.iter().map(|g| g.to_string()).collect();
        InputGlobs::new(&include, &exclude, &[]).unwrap()
    }

    #[test]
    fn literal_bases() {
        assert_eq!(
            literal_base(Path::new("/var/log/pods/*/*/*.log")),
            ("/var/log/pods".into(), 3)
        );
        assert_eq!(
            literal_base(Path::new("/var/log/**/*.log")),
            ("/var/log".into(), usize::MAX)
        );
        assert_eq!(
            literal_base(Path::new("/var/log/app.log")),
            ("/var/log".into(), 1)
        );
    }

    #[test]
    fn kubelet_layout_each_real_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pod = root.join("pods/shop_api-1_uid/api");
        fs::create_dir_all(&pod).unwrap();
        fs::write(pod.join("0.log"), "a\n").unwrap();
        fs::write(pod.join("0.log.20261122-095959"), "old\n").unwrap();
        fs::write(pod.join("0.log.gz"), "zz").unwrap();
        fs::create_dir_all(root.join("containers")).unwrap();
        symlink(
            pod.join("0.log"),
            root.join("containers/api-1_shop_api-abc.log"),
        )
        .unwrap();

        let d = Discovery::new(vec![
            globs(root, &["containers/*.log"], &[]),
            globs(root, &["pods/*/*/*.log", "pods/*/*/*"], &["**/*.gz"]),
        ]);
        let found = d.scan().found;
        let names: Vec<String> = found
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(found.len(), 2, "{names:?}");
        assert!(
            names.contains(&"containers/api-1_shop_api-abc.log".to_owned()),
            "the link matched first"
        );
        assert!(names.iter().any(|n| n.ends_with("0.log.20261122-095959")));
        let link = found.iter().find(|f| f.input == 0).unwrap();
        assert_eq!(link.real, fs::canonicalize(pod.join("0.log")).unwrap());
    }

    #[test]
    fn loops_and_odd_entries_do_not_hang_or_fail() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink(root.join("a"), root.join("a/b/loop")).unwrap();
        symlink(root.join("missing"), root.join("a/dangling.log")).unwrap();
        fs::create_dir_all(root.join("a/dir.log")).unwrap();
        fs::write(root.join("a/b/x.log"), "x\n").unwrap();
        let found = Discovery::new(vec![globs(root, &["**/*.log"], &[])])
            .scan()
            .found;
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn links_out_of_the_roots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let outside = root.join("host/etc");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("shadow"), "root:secret\n").unwrap();
        let logs = root.join("logs");
        fs::create_dir_all(logs.join("sub")).unwrap();
        fs::write(logs.join("app.log"), "ok\n").unwrap();
        symlink(outside.join("shadow"), logs.join("evil.log")).unwrap();
        symlink(&outside, logs.join("sub/etc")).unwrap();
        symlink(logs.join("app.log"), logs.join("sub/inside.log")).unwrap();
        let d = Discovery::new(vec![globs(root, &["logs/**/*"], &[])]);
        let scan = d.scan();
        let found: Vec<&Path> = scan.found.iter().map(|f| f.path.as_path()).collect();
        assert!(
            found == [logs.join("app.log")] || found == [logs.join("sub/inside.log")],
            "a link inside the root is fine, and the file is read once: {found:?}"
        );
        let mut refused: Vec<PathBuf> = scan.refused.iter().map(|r| r.path.clone()).collect();
        refused.sort();
        assert_eq!(
            refused,
            [logs.join("evil.log"), logs.join("sub/etc/shadow")]
        );
        assert!(
            scan.refused
                .iter()
                .all(|r| r.real.ends_with("host/etc/shadow"))
        );

        // An extra root lets them in, when a user says so.
        let include = vec![format!("{}/logs/**/*", root.display())];
        let d = Discovery::new(vec![
            InputGlobs::new(&include, &[], &[root.join("host")]).unwrap(),
        ]);
        assert!(d.scan().refused.is_empty());
    }

    #[test]
    fn watcher_wakes_on_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let w = DirWatcher::start(&[dir.path().to_owned()], tx);
        if w.error.is_some() {
            return; // no inotify here: the periodic scan is the fallback, tested above
        }
        fs::write(dir.path().join("new.log"), "x\n").unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }
}

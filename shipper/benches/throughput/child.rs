//! A shipper run as a child process (tailrace or a peer such as Fluent Bit), measured from
//! `/proc` and `wait4`, and watched until the Loki double has counted its entries.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loki_double::LokiDouble;

/// How long a run may go without any entry arriving before it counts as stalled.
pub const STARTUP: Duration = Duration::from_secs(60);

pub struct Child {
    name: String,
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Runs `bin args...` with its stderr written to `log` (stdin and stdout closed).
    /// `name` says which run it is in messages.
    pub fn spawn<I, S>(name: &str, bin: &Path, args: I, log: &Path) -> Result<Child, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let err =
            File::create(log).map_err(|e| format!("{name}: creating {}: {e}", log.display()))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .env_remove("RUST_LOG")
            .env_remove("LOG_LEVEL")
            .spawn()
            .map_err(|e| format!("{name}: spawning {}: {e}", bin.display()))?;
        // Reaped with wait4 below (for its rusage), never through std's handle.
        let pid = child.id() as libc::pid_t;
        std::mem::forget(child);
        Ok(Child {
            name: name.to_owned(),
            pid,
            reaped: false,
        })
    }

    /// `Some((status, rusage))` once it has exited.
    pub fn try_wait(&mut self) -> Option<(libc::c_int, libc::rusage)> {
        self.wait4(libc::WNOHANG)
    }

    fn wait4(&mut self, flags: libc::c_int) -> Option<(libc::c_int, libc::rusage)> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        // SAFETY: plain syscall on our own child with valid out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(self.pid, &mut status, flags, &mut usage) };
        if r == self.pid {
            self.reaped = true;
            Some((status, usage))
        } else {
            None
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: signalling our own un-reaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// SIGTERM, then wait up to `grace` (SIGKILL after that).
    pub fn terminate(
        &mut self,
        grace: Duration,
    ) -> Result<(libc::c_int, libc::rusage, Duration), String> {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        loop {
            if let Some((status, usage)) = self.try_wait() {
                return Ok((status, usage, t.elapsed()));
            }
            if t.elapsed() > grace {
                self.signal(libc::SIGKILL);
                let _ = self.wait4(0);
                return Err(format!(
                    "{} did not stop within {grace:?} of SIGTERM",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// (utime, stime) in seconds, from `/proc/<pid>/stat` (all its threads).
    pub fn cpu(&self) -> Option<(f64, f64)> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = clock_ticks();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime / tick, stime / tick))
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`) or `Threads`.
    pub fn status_field(&self, name: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.wait4(0);
        }
    }
}

/// Why [`watch`] stopped.
pub enum End {
    /// The double counted the expected entries.
    Reached,
    /// The count did not grow for the stall time (or [`STARTUP`] before the first entry).
    Stalled,
    /// The child exited on its own, with this status.
    Exited(libc::c_int),
    /// The run took longer than its timeout.
    TimedOut,
}

/// What [`watch`] saw.
pub struct Watched {
    pub end: End,
    /// The double's count when it stopped.
    pub count: u64,
    /// Wall time from the spawn to the last growth of the count.
    pub wall: Duration,
    /// The child's CPU time (user, sys) when the count last grew.
    pub user: f64,
    pub sys: f64,
    /// How long the count had not grown when it stopped.
    pub quiet: Duration,
}

/// When [`watch`] stops: `expected` entries counted, or no growth for `stall` after some
/// entries arrived ([`STARTUP`] before), or `timeout`.
#[derive(Clone, Copy)]
pub struct Wait {
    pub expected: u64,
    pub stall: Duration,
    pub timeout: Duration,
}

/// Watches `child` until `loki` has counted the expected entries, the count stalled, the
/// child exited, or the timeout passed (see [`Wait`]). Prints progress every 10 s.
pub fn watch(child: &mut Child, loki: &LokiDouble, wait: Wait) -> Watched {
    let start = Instant::now();
    let (mut count, mut wall, mut cpu) = (0, Duration::ZERO, (0.0, 0.0));
    let mut last_progress = Instant::now();
    let mut next_report = start + Duration::from_secs(10);
    let end = loop {
        let reached = loki.wait_for_entries(wait.expected, Duration::from_millis(20));
        let now = loki.entry_count();
        if now != count {
            count = now;
            wall = start.elapsed();
            cpu = child.cpu().unwrap_or(cpu);
            last_progress = Instant::now();
        }
        if reached {
            break End::Reached;
        }
        if let Some((status, _)) = child.try_wait() {
            break End::Exited(status);
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            let rss = child.status_field("VmRSS").unwrap_or(0);
            println!(
                "  .. {:>5.1} s: {count} entries, RSS {:.1} MiB",
                start.elapsed().as_secs_f64(),
                rss as f64 / 1024.0
            );
        }
        let limit = if count > 0 { wait.stall } else { STARTUP };
        if last_progress.elapsed() > limit {
            break End::Stalled;
        }
        if start.elapsed() > wait.timeout {
            break End::TimedOut;
        }
    };
    Watched {
        end,
        count,
        wall,
        user: cpu.0,
        sys: cpu.1,
        quiet: last_progress.elapsed(),
    }
}

/// A whole run: what [`watch`] saw, the peak RSS before SIGTERM, how it stopped, and the CPU
/// time this process (the Loki double) spent meanwhile.
pub struct Measured {
    pub watched: Watched,
    /// `VmHWM` before SIGTERM.
    pub hwm_kib: u64,
    /// (status, rusage, shutdown time) after SIGTERM; `Err` when it exited on its own or
    /// did not stop.
    pub exit: Result<(libc::c_int, libc::rusage, Duration), String>,
    pub double_cpu: f64,
}

/// Spawns `bin args` (see [`Child::spawn`]), watches it (see [`watch`]) and stops it with
/// SIGTERM (SIGKILL after 30 s).
pub fn measure<I, S>(
    name: &str,
    bin: &Path,
    args: I,
    log: &Path,
    loki: &LokiDouble,
    wait: Wait,
) -> Result<Measured, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let cpu_before = self_cpu_secs();
    let mut child = Child::spawn(name, bin, args, log)?;
    let watched = watch(&mut child, loki, wait);
    let hwm_kib = child.status_field("VmHWM").unwrap_or(0);
    let exit = match watched.end {
        End::Exited(_) => Err(format!("{name} exited on its own")),
        _ => child.terminate(Duration::from_secs(30)),
    };
    Ok(Measured {
        watched,
        hwm_kib,
        exit,
        double_cpu: self_cpu_secs() - cpu_before,
    })
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

pub fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// User + sys CPU time of this process (the in-process Loki double and the bench).
pub fn self_cpu_secs() -> f64 {
    // SAFETY: getrusage with a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    tv_secs(usage.ru_utime) + tv_secs(usage.ru_stime)
}

pub fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

/// The last `n` lines of a child's log.
pub fn tail_of(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

//! Running external tools: logged, timed, and failing with the tool's own words.

use crate::error::{Error, Result};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xshell::{Cmd, Shell};

/// One external command and how long it took (for `--timings`).
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// Command line, program first (never contains secrets: callers pass them via files).
    pub command: String,
    /// Wall-clock duration.
    pub took: Duration,
    /// When it started, counted from the process's first tool call or [`epoch`].
    pub at: Duration,
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
static TIMINGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The instant tool call offsets count from (set on first use; call early to start the clock).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Print stage and tool-call timings at the end of a build (`--timings`).
pub fn set_timings(v: bool) {
    TIMINGS.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--timings` is on.
pub fn timings() -> bool {
    TIMINGS.load(std::sync::atomic::Ordering::Relaxed)
}

static CALLS: Mutex<Vec<ToolCall>> = Mutex::new(Vec::new());
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Print each external command and its output to stderr.
pub fn set_verbose(v: bool) {
    VERBOSE.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--verbose` is on.
pub fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Every tool call made so far by this process, in order.
pub fn calls() -> Vec<ToolCall> {
    CALLS.lock().map(|c| c.clone()).unwrap_or_default()
}

/// Record an in-process step that stands where a tool call would (for `--timings`).
pub fn record(command: String, start: Instant) {
    let at = start.saturating_duration_since(epoch());
    if let Ok(mut c) = CALLS.lock() {
        c.push(ToolCall {
            command,
            took: start.elapsed(),
            at,
        });
    }
}

/// Run a command, capturing its output; on failure the error carries the tail of stderr.
pub fn run(cmd: Cmd<'_>) -> Result<String> {
    let shown = cmd.to_string();
    if verbose() {
        eprintln!("+ {shown}");
    }
    let start = Instant::now();
    let at = start.saturating_duration_since(epoch());
    let out = cmd.ignore_status().quiet().output();
    let took = start.elapsed();
    if let Ok(mut c) = CALLS.lock() {
        c.push(ToolCall {
            command: shown.clone(),
            took,
            at,
        });
    }
    let out = out.map_err(|e| Error::failed(format!("could not run `{shown}`: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if verbose() {
        for l in stdout.lines().chain(stderr.lines()) {
            eprintln!("  | {l}");
        }
    }
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
        let tail = tail[tail.len().saturating_sub(25)..].join("\n    ");
        return Err(Error::failed(format!(
            "`{shown}` failed ({}):\n    {tail}",
            out.status
        )));
    }
    Ok(stdout)
}

/// A new xshell `Shell` (one per stage; it holds no global state we rely on).
pub fn shell() -> Result<Shell> {
    Shell::new().map_err(|e| Error::failed(format!("cannot create shell: {e}")))
}

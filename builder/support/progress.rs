//! Progress on stderr: a spinner per stage, byte bars (rate and ETA) for long copies,
//! stage timings. When stderr is not a terminal (CI logs, pipes), one line per finished
//! stage instead; nothing with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stage timings and the progress display.
#[derive(Clone)]
pub struct Progress {
    mp: Option<MultiProgress>,
    /// Not quiet, but no terminal: a summary line per stage.
    plain: bool,
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

/// A running stage; call [`Stage::done`] when it finished.
pub struct Stage {
    name: String,
    bar: Option<ProgressBar>,
    plain: bool,
    start: Instant,
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Progress {
    /// Bars when not quiet and stderr is a terminal; else, when not quiet, a line per stage.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let show = !quiet && tty;
        let mp = show.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            mp,
            plain: !quiet && !tty,
            timings: Default::default(),
        }
    }

    /// Start a stage with a spinner and a message.
    pub fn stage(&self, name: &str, msg: &str) -> Stage {
        let bar = self.mp.as_ref().map(|mp| {
            let b = mp.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:<10.bold} {msg} {elapsed:.dim}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(name.to_string());
            b.set_message(msg.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Stage {
            name: name.into(),
            bar,
            plain: self.plain,
            start: Instant::now(),
            timings: self.timings.clone(),
        }
    }

    /// A byte-counting bar (hidden when progress is off).
    pub fn bytes(&self, name: &str, total: u64) -> ProgressBar {
        match &self.mp {
            Some(mp) => {
                let b = mp.add(ProgressBar::new(total));
                b.set_style(
                    ProgressStyle::with_template(
                        "  {prefix:<10.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(name.to_string());
                b
            }
            None => ProgressBar::hidden(),
        }
    }

    /// Print a line above the bars (or plainly), unless progress is off.
    pub fn println(&self, msg: &str) {
        if let Some(mp) = &self.mp {
            let _ = mp.println(msg);
        }
    }

    /// Timings of finished stages, in order.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Stage {
    /// Set the spinner's message.
    pub fn msg(&self, m: &str) {
        if let Some(b) = &self.bar {
            b.set_message(m.to_string());
        }
    }

    /// Finish the stage, recording its time.
    pub fn done(self, summary: &str) -> Duration {
        let took = self.start.elapsed();
        if let Some(b) = &self.bar {
            b.set_style(
                ProgressStyle::with_template("✓ {prefix:<10.bold} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.finish_with_message(format!("{summary} ({:.1}s)", took.as_secs_f64()));
        }
        if self.plain {
            eprintln!("{}", plain_line(&self.name, summary, took));
        }
        if let Ok(mut t) = self.timings.lock() {
            t.push((self.name.clone(), took));
        }
        took
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}

/// The line a finished stage prints when stderr is not a terminal.
fn plain_line(name: &str, summary: &str, took: Duration) -> String {
    format!("{name:<10} {summary} ({:.1}s)", took.as_secs_f64())
}

/// The `--timings` report: stages in order, then every external tool call with its start
/// offset and duration (calls that overlap ran in parallel), then time per program.
pub fn report(
    stages: &[(String, Duration)],
    calls: &[crate::support::exec::ToolCall],
    total: Duration,
) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "timings (total {:.2}s)", total.as_secs_f64());
    for (name, d) in stages {
        let pct = 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-9);
        let _ = writeln!(
            o,
            "  stage {:<16} {:>8.2}s {:>5.1}%",
            name,
            d.as_secs_f64(),
            pct
        );
    }
    let _ = writeln!(
        o,
        "  tool calls ({}): start  duration  command",
        calls.len()
    );
    let mut per: Vec<(String, Duration, usize)> = vec![];
    for c in calls {
        let mut cmd: String = c.command.chars().take(110).collect();
        if cmd.len() < c.command.len() {
            cmd.push('…');
        }
        let _ = writeln!(
            o,
            "    {:>8.2}s {:>8.2}s  {cmd}",
            c.at.as_secs_f64(),
            c.took.as_secs_f64()
        );
        let prog = program(&c.command);
        match per.iter_mut().find(|(p, _, _)| *p == prog) {
            Some(e) => {
                e.1 += c.took;
                e.2 += 1;
            }
            None => per.push((prog, c.took, 1)),
        }
    }
    per.sort_by_key(|b| std::cmp::Reverse(b.1));
    let _ = writeln!(o, "  per program:");
    for (p, d, n) in per {
        let _ = writeln!(o, "    {p:<20} {:>8.2}s  {n} call(s)", d.as_secs_f64());
    }
    o
}

/// The program a command line runs: past `setpriv ... --` and `env`, without its directory.
fn program(command: &str) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut i = 0;
    if words.first().is_some_and(|w| w.ends_with("setpriv")) {
        i = words.iter().position(|w| *w == "--").map_or(0, |p| p + 1);
    }
    let w = words.get(i).copied().unwrap_or("");
    w.rsplit('/').next().unwrap_or(w).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::exec::ToolCall;

    #[test]
    fn stages_without_a_terminal_print_one_line_each() {
        assert_eq!(
            plain_line(
                "base",
                "138 packages installed",
                Duration::from_millis(61_240)
            ),
            "base       138 packages installed (61.2s)"
        );
        // Quiet: neither bars nor lines.
        let p = Progress::new(true);
        assert!(p.mp.is_none() && !p.plain);
    }

    #[test]
    fn report_lists_stages_calls_and_programs() {
        let calls = vec![
            ToolCall {
                command: "setpriv --pdeathsig KILL -- mmdebstrap --mode=root noble".into(),
                took: Duration::from_millis(2500),
                at: Duration::from_millis(100),
            },
            ToolCall {
                command: "/usr/bin/qemu-img convert -c".into(),
                took: Duration::from_millis(500),
                at: Duration::from_millis(2700),
            },
            ToolCall {
                command: "qemu-img info x".into(),
                took: Duration::from_millis(100),
                at: Duration::from_millis(3300),
            },
        ];
        let r = report(
            &[("base".into(), Duration::from_secs(3))],
            &calls,
            Duration::from_secs(4),
        );
        assert!(r.contains("stage base"), "{r}");
        assert!(r.contains("75.0%"), "{r}");
        assert!(r.contains("0.10s     2.50s  setpriv"), "{r}");
        assert!(
            r.contains("mmdebstrap               2.50s  1 call(s)"),
            "{r}"
        );
        assert!(
            r.contains("qemu-img                 0.60s  2 call(s)"),
            "{r}"
        );
    }
}

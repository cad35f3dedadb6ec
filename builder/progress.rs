//! Progress on stderr: a spinner per stage, byte bars for long copies, stage timings.
//! Silent with `--quiet` or when stderr is not a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stage timings and the progress display.
#[derive(Clone)]
pub struct Progress {
    mp: Option<MultiProgress>,
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

/// A running stage; call [`Stage::done`] when it finished.
pub struct Stage {
    name: String,
    bar: Option<ProgressBar>,
    start: Instant,
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Progress {
    /// Progress is shown when not quiet and stderr is a terminal.
    pub fn new(quiet: bool) -> Self {
        let show = !quiet && std::io::stderr().is_terminal();
        let mp = show.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { mp, timings: Default::default() }
    }

    /// Start a stage with a spinner and a message.
    pub fn stage(&self, name: &str, msg: &str) -> Stage {
        let bar = self.mp.as_ref().map(|mp| {
            let b = mp.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:<10.bold} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(name.to_string());
            b.set_message(msg.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Stage { name: name.into(), bar, start: Instant::now(), timings: self.timings.clone() }
    }

    /// A byte-counting bar (hidden when progress is off).
    pub fn bytes(&self, name: &str, total: u64) -> ProgressBar {
        match &self.mp {
            Some(mp) => {
                let b = mp.add(ProgressBar::new(total));
                b.set_style(
                    ProgressStyle::with_template(
                        "  {prefix:<10.bold} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
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
            b.set_style(ProgressStyle::with_template("✓ {prefix:<10.bold} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
            b.finish_with_message(format!("{summary} ({:.1}s)", took.as_secs_f64()));
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

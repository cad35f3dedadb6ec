//! Probes: commands run inside a booted image over SSH, each with an expectation.
//! Later capabilities add their own probe sets; `clawimg test` runs them and prints a table.

use std::time::Duration;

/// What a probe's output must satisfy.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Exit status 0.
    Success,
    /// Exit 0 and stdout (trimmed) equal to this.
    Equals(String),
    /// Exit 0 and stdout contains this.
    Contains(String),
    /// Exit 0 and stdout (trimmed) parses as an integer ≥ this.
    AtLeast(u64),
}

/// One check inside the VM.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Short name for the table.
    pub name: String,
    /// Shell command run as the SSH user.
    pub command: String,
    /// Expected result.
    pub expect: Expect,
    /// Extra command run when the probe fails; its output is shown (e.g. journal tails).
    pub on_failure: Option<String>,
}

/// A probe's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Probe name.
    pub name: String,
    /// Passed?
    pub pass: bool,
    /// What was seen (first line) or why it failed.
    pub detail: String,
    /// Diagnostics gathered on failure.
    pub diagnostics: String,
    /// Time taken.
    pub took: Duration,
}

impl Probe {
    /// A probe with no failure diagnostics.
    pub fn new(name: &str, command: &str, expect: Expect) -> Self {
        Probe {
            name: name.into(),
            command: command.into(),
            expect,
            on_failure: None,
        }
    }
}

/// The pass/fail table.
pub fn table(title: &str, outcomes: &[Outcome]) -> String {
    let w = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(4)
        .max(5);
    let mut s = format!("{title}\n  {:<w$}  RESULT  DETAIL\n", "PROBE");
    for o in outcomes {
        let d: String = o.detail.chars().take(100).collect();
        s.push_str(&format!(
            "  {:<w$}  {}    {}\n",
            o.name,
            if o.pass { "pass" } else { "FAIL" },
            d
        ));
        if !o.diagnostics.is_empty() {
            for l in o.diagnostics.lines() {
                s.push_str(&format!("  {:<w$}        | {l}\n", ""));
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.pass).count();
    s.push_str(&format!(
        "{} of {} probes passed{}\n",
        outcomes.len() - failed,
        outcomes.len(),
        if failed > 0 {
            format!(", {failed} FAILED")
        } else {
            String::new()
        }
    ));
    s
}

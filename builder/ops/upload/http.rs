//! What every upload client shares: the HTTP agent, retries with backoff, secrets that never
//! print, and URL encoding.

use crate::error::{Error, Result};
use std::time::Duration;

/// The HTTP agent for uploads: long read timeout (servers hash big bodies before answering).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(20))
        .timeout_read(Duration::from_secs(600))
        .timeout_write(Duration::from_secs(600))
        .user_agent(concat!("clawimg/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The outcome of one attempt of a request.
pub enum Attempt {
    /// Worth another try (transport error, 5xx, 429): what went wrong.
    Retry(String),
    /// Final.
    Fatal(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Fatal(e)
    }
}

/// Classify a ureq error; `what` names the request in messages (never a signed URL).
pub fn classify(e: ureq::Error, what: &str) -> Attempt {
    match e {
        ureq::Error::Status(code, _) if code == 429 || code >= 500 => {
            Attempt::Retry(format!("{what}: HTTP {code}"))
        }
        ureq::Error::Status(code, resp) => {
            let body: String = resp
                .into_string()
                .unwrap_or_default()
                .chars()
                .take(400)
                .collect();
            let body = match body.trim() {
                "" if code == 401 || code == 403 => "access denied (check the credentials)",
                b => b,
            };
            Attempt::Fatal(Error::failed(format!("{what}: HTTP {code}: {body}")))
        }
        ureq::Error::Transport(t) => Attempt::Retry(format!("{what}: {t}")),
    }
}

/// Attempts per request before giving up.
pub const ATTEMPTS: u32 = 6;

/// Run `f` until it succeeds, fails for good, or [`ATTEMPTS`] are used, with exponential
/// backoff between tries.
pub fn retry<T>(what: &str, mut f: impl FnMut() -> Result<T, Attempt>) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(msg)) => {
                attempt += 1;
                if attempt >= ATTEMPTS {
                    return Err(Error::failed(format!(
                        "{what}: giving up after {ATTEMPTS} attempts: {msg}"
                    )));
                }
                if crate::support::exec::verbose() {
                    eprintln!("retry {attempt}: {msg}");
                }
                std::thread::sleep(backoff(attempt));
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(7)).min(30_000))
}

/// A secret string: never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A non-empty environment variable.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/` when
/// `keep_slash`), as URL paths and query values for S3 and Glance need.
pub fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

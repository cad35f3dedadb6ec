//! Error type shared by every stage, carrying the process exit code.

use std::fmt;

/// How an error should end the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line, profile or configuration: exit code 2.
    Config,
    /// A missing host tool: exit code 3.
    Tool,
    /// The build, test or an external tool failed: exit code 1.
    Failed,
}

/// An error with a kind; the message is complete and meant for the operator.
#[derive(Debug)]
pub struct Error {
    /// Decides the exit code.
    pub kind: Kind,
    /// Full, human-readable message.
    pub message: String,
}

impl Error {
    /// A usage or configuration error (exit code 2).
    pub fn config(msg: impl Into<String>) -> Self {
        Error { kind: Kind::Config, message: msg.into() }
    }
    /// A missing or unusable host tool (exit code 3).
    pub fn tool(msg: impl Into<String>) -> Self {
        Error { kind: Kind::Tool, message: msg.into() }
    }
    /// A runtime failure (exit code 1).
    pub fn failed(msg: impl Into<String>) -> Self {
        Error { kind: Kind::Failed, message: msg.into() }
    }
    /// Process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Config => 2,
            Kind::Tool => 3,
            Kind::Failed => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::failed(format!("I/O error: {e}"))
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to I/O-ish errors.
pub trait Context<T> {
    /// Wrap the error with a message saying what was being done.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::failed(format!("{}: {e}", what())))
    }
}

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

/// The error an [`Error`] was made from, kept for callers that look below the message.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with a kind; the message is complete and meant for the operator.
#[derive(Debug)]
pub struct Error {
    /// Decides the exit code.
    pub kind: Kind,
    /// Full, human-readable message (already includes the source's text where useful).
    pub message: String,
    /// The underlying error, if any (see [`std::error::Error::source`]).
    pub source: Option<Source>,
}

impl Error {
    fn new(kind: Kind, message: String) -> Self {
        Error {
            kind,
            message,
            source: None,
        }
    }
    /// A usage or configuration error (exit code 2).
    pub fn config(msg: impl Into<String>) -> Self {
        Error::new(Kind::Config, msg.into())
    }
    /// A missing or unusable host tool (exit code 3).
    pub fn tool(msg: impl Into<String>) -> Self {
        Error::new(Kind::Tool, msg.into())
    }
    /// A runtime failure (exit code 1).
    pub fn failed(msg: impl Into<String>) -> Self {
        Error::new(Kind::Failed, msg.into())
    }
    /// Keep `source` as the cause of this error; the message is unchanged.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::failed(format!("I/O error: {e}")).with_source(e)
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to I/O-ish errors.
pub trait Context<T> {
    /// Wrap the error with a message saying what was being done; the error stays its source.
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display + Into<Source>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::failed(format!("{}: {e}", what())).with_source(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn context_keeps_the_source_and_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Err::<(), _>(io).ctx(|| "open x".into()).unwrap_err();
        assert_eq!(e.to_string(), "open x: gone");
        assert_eq!(e.exit_code(), 1);
        let src = e.source().expect("source kept");
        let io = src.downcast_ref::<std::io::Error>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        // Wrapping again keeps the chain.
        let outer = Err::<(), _>(e).ctx(|| "load".into()).unwrap_err();
        assert_eq!(outer.to_string(), "load: open x: gone");
        let inner = outer.source().unwrap().downcast_ref::<Error>().unwrap();
        assert!(inner.source().is_some());
        let e: Error = std::io::Error::other("disk").into();
        assert_eq!(e.to_string(), "I/O error: disk");
        assert!(e.source().is_some());
        assert!(Error::config("x").source().is_none());
    }
}

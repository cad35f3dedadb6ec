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
    /// The problems this error reports: the list a check run collected, else the error's
    /// own message read as one problem.
    pub fn problems(&self) -> Vec<Problem> {
        match self
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<ProblemList>())
        {
            Some(l) => l.0.clone(),
            None => vec![Problem::from_message(&self.message)],
        }
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

/// One problem found while checking a build's inputs: where it is and what is wrong.
/// Checks push problems into [`Problems`] instead of stopping at the first, so `check`
/// and `build` report every one in a single run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Problem {
    /// File the problem is in (profile, template, catalog …); empty when it is in no file.
    pub file: String,
    /// 1-based line in `file`, when known.
    pub line: Option<usize>,
    /// 1-based column in `file`, when known.
    pub column: Option<usize>,
    /// Dotted profile key concerned, when there is one.
    pub key: Option<String>,
    /// What is wrong and what was expected (may span lines: a source excerpt, the reason).
    pub message: String,
}

impl Problem {
    /// A problem about `key` in `file`, line unknown (see [`Problems::locate`]).
    pub fn at_key(
        file: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            file: file.into(),
            line: None,
            column: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// Read an error message of the form `FILE[:LINE[:COL]]: [key `K`: ]MESSAGE` back into
    /// its parts (the form every input check writes); anything else is a bare message.
    pub fn from_message(text: &str) -> Problem {
        let mut p = Problem {
            file: String::new(),
            line: None,
            column: None,
            key: None,
            message: text.to_string(),
        };
        let Some((head, rest)) = text.split_once(": ") else {
            return p;
        };
        if head.contains(char::is_whitespace) || head.contains('`') || head.is_empty() {
            return p;
        }
        let mut parts = head.split(':');
        let file = parts.next().unwrap_or_default();
        let nums: Vec<Option<usize>> = parts.map(|n| n.parse().ok()).collect();
        if nums.len() > 2 || nums.iter().any(Option::is_none) || !file.contains(['.', '/']) {
            return p;
        }
        p.file = file.to_string();
        p.line = nums.first().copied().flatten();
        p.column = nums.get(1).copied().flatten();
        p.message = rest.to_string();
        if let Some(r) = rest.strip_prefix("key `") {
            if let Some((k, m)) = r.split_once("`: ") {
                p.key = Some(k.to_string());
                p.message = m.to_string();
            }
        }
        p
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
                if let Some(c) = self.column {
                    write!(f, ":{c}")?;
                }
            }
            f.write_str(": ")?;
        }
        if let Some(k) = &self.key {
            write!(f, "key `{k}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The problems of one check run, attached to the error it ends with (see
/// [`Error::problems`]).
#[derive(Debug, Clone, Default)]
pub struct ProblemList(pub Vec<Problem>);

impl fmt::Display for ProblemList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProblemList {}

/// The collection point of a check run: every input check pushes what it finds here, and
/// [`Problems::finish`] turns them into one error listing all of them, sorted by file and
/// line (exit code 2).
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<(Problem, Option<Error>)>,
}

impl Problems {
    /// Record a problem.
    pub fn push(&mut self, p: Problem) {
        self.list.push((p, None));
    }

    /// Record an error returned by a check (its message is split into file, line and key).
    pub fn push_error(&mut self, e: Error) {
        match e
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<ProblemList>())
        {
            Some(l) => {
                for p in l.0.clone() {
                    self.push(p);
                }
            }
            None => self.list.push((Problem::from_message(&e.message), Some(e))),
        }
    }

    /// The value of a check that succeeded; an error is recorded and gives `None`.
    pub fn take<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push_error(e);
                None
            }
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Fill in the line and column of problems that name a key but no line, with `find`
    /// (file, key) → (file, line, column).
    pub fn locate(&mut self, find: impl Fn(&str, &str) -> Option<(String, usize, usize)>) {
        for (p, _) in &mut self.list {
            if let (None, Some(k)) = (p.line, &p.key) {
                if let Some((file, line, col)) = find(&p.file, k) {
                    p.file = file;
                    p.line = Some(line);
                    p.column = Some(col);
                }
            }
        }
    }

    /// The problems, sorted by file and line (stable: equal places keep their order), each
    /// once (two checks that read the same input report its problem twice).
    pub fn sorted(&self) -> Vec<Problem> {
        let mut v: Vec<Problem> = self.list.iter().map(|(p, _)| p.clone()).collect();
        // Within a file, problems without a line come after those with one.
        let place = |p: &Problem| {
            (
                p.file.clone(),
                p.line.unwrap_or(usize::MAX),
                p.column.unwrap_or(usize::MAX),
            )
        };
        v.sort_by_key(place);
        let mut seen = std::collections::HashSet::new();
        v.retain(|p| seen.insert(p.clone()));
        v
    }

    /// `Ok` when nothing was found; else one error listing every problem. A single
    /// problem that came from an error is returned as that error (its exit code kept).
    pub fn finish(self) -> Result<()> {
        if self.list.is_empty() {
            return Ok(());
        }
        let sorted = self.sorted();
        if sorted.len() == 1 {
            if let Some(e) = self.list.into_iter().find_map(|(_, e)| e) {
                return Err(e);
            }
        }
        let n = sorted.len();
        let body: Vec<String> = sorted.iter().map(|p| p.to_string()).collect();
        Err(Error::config(format!(
            "{n} problem{} found, nothing was built:\n{}",
            if n == 1 { "" } else { "s" },
            body.join("\n")
        ))
        .with_source(ProblemList(sorted)))
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
    fn problems_are_read_back_sorted_and_listed_once() {
        let p = Problem::from_message("profiles/p.toml:5:1: key `image.sizee`: unknown field");
        assert_eq!(
            (
                p.file.as_str(),
                p.line,
                p.column,
                p.key.as_deref(),
                p.message.as_str()
            ),
            (
                "profiles/p.toml",
                Some(5),
                Some(1),
                Some("image.sizee"),
                "unknown field"
            )
        );
        assert_eq!(
            p.to_string(),
            "profiles/p.toml:5:1: key `image.sizee`: unknown field"
        );
        let bare = Problem::from_message("the base stage runs mmdebstrap: run as root");
        assert_eq!((bare.file.as_str(), bare.line), ("", None));
        let mut ps = Problems::default();
        ps.push_error(Error::config("z.toml: key `a`: late file"));
        ps.push(Problem::at_key("b.toml", "ssh.port", "second"));
        ps.push_error(Error::config("b.toml:2:1: first"));
        ps.push_error(Error::config("b.toml:2:1: first"));
        ps.locate(|f, k| (f == "b.toml" && k == "ssh.port").then(|| ("b.toml".into(), 9, 1)));
        let order: Vec<String> = ps.sorted().iter().map(|p| p.message.clone()).collect();
        assert_eq!(order, ["first", "second", "late file"]);
        let e = ps.finish().unwrap_err();
        assert_eq!(e.problems().len(), 3);
        // One problem keeps its own error (message and exit code).
        let mut one = Problems::default();
        one.push_error(Error::tool("mkfs.ext4 missing (apt-get install e2fsprogs)"));
        let e = one.finish().unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert!(Problems::default().finish().is_ok());
    }

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

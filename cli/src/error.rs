//! The CLI's errors: a usage error (bad arguments, exit code 2) or a failure (exit code 1).

use std::fmt;

/// What went wrong, in words for the person at the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The command line asks for something that cannot be: unknown plugin, malformed value.
    Usage(String),
    /// The command was understood but could not be done.
    Failed(String),
}

impl Error {
    /// A failure with this message.
    pub fn failed(message: impl Into<String>) -> Self {
        Error::Failed(message.into())
    }

    /// A usage error with this message.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    /// The process exit code: 2 for usage errors, 1 for failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }

    /// The same error with `context: ` in front of its message.
    #[must_use]
    pub fn context(self, context: &str) -> Self {
        match self {
            Error::Usage(m) => Error::Usage(format!("{context}: {m}")),
            Error::Failed(m) => Error::Failed(format!("{context}: {m}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Shorthand for the CLI's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Read a file, naming it when that fails.
pub fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::failed(format!("cannot read {}: {e}", path.display())))
}

/// Write a file, creating its folder, naming it when that fails.
pub fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))
}

/// A URL given without a scheme (`127.0.0.1:8000`, `localhost:8000`) is a usage error that
/// says what is expected, instead of the URL parser's "relative URL without a base" or a
/// host taken for a scheme.
pub fn check_url_scheme(what: &str, url: &str) -> Result<()> {
    if url.contains("://") {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{what} {url:?}: no scheme; expected http://host:port"
        )))
    }
}

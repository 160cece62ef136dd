//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, merging or writing results.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error (part of the message, not a `source()`, so that error
        /// chains print it once).
        error: std::io::Error,
    },
    /// A results file is not valid JSON or does not match the schema.
    #[error("{}: not a valid results file: {error}", path.display())]
    Json {
        /// The results file.
        path: PathBuf,
        /// The underlying error (part of the message).
        error: serde_json::Error,
    },
    /// A results file was written with another `format_version`.
    #[error(
        "{}: results format version {found} is not supported (this pkeys-report reads version {expected}); re-render it with the pkeys-report that wrote it",
        path.display()
    )]
    FormatVersion {
        /// The results file.
        path: PathBuf,
        /// The version found in the file (`None`: the field is missing).
        found: FoundVersion,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// Two results files to merge do not share a format or tool version.
    #[error("cannot merge {}: {reason}", path.display())]
    Merge {
        /// The offending input.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// An expectations file is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Expectations {
        /// The expectations file.
        path: PathBuf,
        /// 1-based line of the offending item (0 when unknown).
        line: usize,
        /// What is wrong, naming the key where known.
        message: String,
    },
    /// Building the JUnit report failed.
    #[error("junit: {0}")]
    Junit(quick_junit::SerializeError),
}

/// The `format_version` found in a results file, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundVersion {
    /// The file declares this version.
    Version(u64),
    /// The file has no (numeric) `format_version`.
    Missing,
}

impl std::fmt::Display for FoundVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoundVersion::Version(v) => write!(f, "{v}"),
            FoundVersion::Missing => f.write_str("<missing>"),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.into();
    move |error| ReportError::Io { path, error }
}

//! [`ConfigError`]: everything that can be wrong with a configuration, and where it came from.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A position in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, or `None` for text given to [`PerformanceConfig::from_toml_str`].
    ///
    /// [`PerformanceConfig::from_toml_str`]: crate::PerformanceConfig::from_toml_str
    pub file: Option<PathBuf>,
    /// Line, counted from 1.
    pub line: usize,
    /// Column in characters, counted from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub(crate) fn of_offset(file: Option<PathBuf>, text: &str, offset: usize) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
        Self {
            file,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}:{}", file.display(), self.line, self.column),
            None => write!(f, "line {}, column {}", self.line, self.column),
        }
    }
}

/// Where a rejected value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A position in a TOML file or string.
    File(Location),
    /// An environment variable (`KWIK_<SECTION>_<KEY>`), by name.
    Env(String),
    /// A value set in code: [`PerformanceConfig::validate`] on a struct built by hand.
    ///
    /// [`PerformanceConfig::validate`]: crate::PerformanceConfig::validate
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(location) => location.fmt(f),
            Self::Env(variable) => write!(f, "environment variable {variable}"),
            Self::Code => f.write_str("configuration"),
        }
    }
}

/// Why a configuration could not be loaded.
///
/// Every variant but [`Read`](Self::Read) and [`Syntax`](Self::Syntax) names the key path
/// (`worker_pool.buffer_size`) and where the value came from; the message says what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The text is not TOML.
    #[error("{location}: invalid TOML: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// What the parser expected.
        message: String,
    },
    /// A section or key the schema does not have.
    #[error("{origin}: unknown key `{key}`; expected one of: {expected}")]
    UnknownKey {
        /// Where the key was written.
        origin: Origin,
        /// Its full path, e.g. `worker_pool.sise`.
        key: String,
        /// The names allowed at that level.
        expected: String,
    },
    /// A value of the wrong type, or one that does not parse (duration, size, address, choice).
    #[error("{origin}: `{key}`: {message}")]
    InvalidValue {
        /// Where the value was written.
        origin: Origin,
        /// The key path, e.g. `cache.ttl`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A well-formed value outside its allowed range.
    #[error("{origin}: `{key}`: {message}")]
    OutOfRange {
        /// Where the value was written.
        origin: Origin,
        /// The key path, e.g. `worker_pool.buffer_size`.
        key: String,
        /// The allowed range and the value found.
        message: String,
    },
}

impl ConfigError {
    /// The key path the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { key, .. }
            | Self::InvalidValue { key, .. }
            | Self::OutOfRange { key, .. } => Some(key),
            Self::Read { .. } | Self::Syntax { .. } => None,
        }
    }

    /// Where the offending text is, for errors found in a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Syntax { location, .. } => Some(location),
            Self::UnknownKey { origin, .. }
            | Self::InvalidValue { origin, .. }
            | Self::OutOfRange { origin, .. } => match origin {
                Origin::File(location) => Some(location),
                Origin::Env(_) | Origin::Code => None,
            },
            Self::Read { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters_from_one() {
        let text = "a = 1\n[é]\nkey = 2";
        let at = |offset| {
            let l = Location::of_offset(None, text, offset);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(4), (1, 5));
        assert_eq!(at(6), (2, 1));
        // `]` follows a two-byte character: column 3, not 4.
        assert_eq!(at(9), (2, 3));
        assert_eq!(at(11), (3, 1));
        // Past the end and inside a character both clamp.
        assert_eq!(at(8), (2, 2));
        assert_eq!(at(99), (3, 8));
    }
}

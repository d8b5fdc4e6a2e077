//! Reading `performance.toml`: parse, deserialize, validate, and turn every failure into a
//! [`ConfigError`] that points at the key.
//!
//! The happy path parses the text once. Only when something is wrong is the text parsed a
//! second time into a spanned tree ([`toml::de::DeTable`]) to map the error's byte span to a key
//! path, or a key path to a line.

use std::fmt;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::PerformanceConfig;
use crate::error::{ConfigError, Location, Origin};
use crate::schema::{self, SCHEMA};
use crate::validate::{self, Violation};

impl PerformanceConfig {
    /// Parses and validates a configuration from TOML text.
    ///
    /// Missing sections and keys take their defaults, so `""` is valid. Errors locate the
    /// offending key by line and column; use [`load`](Self::load) to have them name the file.
    ///
    /// ```
    /// use kwik_config::PerformanceConfig;
    ///
    /// let config = PerformanceConfig::from_toml_str("[worker_pool]\nsize = 8\n")?;
    /// assert_eq!(config.worker_pool.size, 8);
    /// assert_eq!(config.worker_pool.buffer_size, 10);
    ///
    /// let err = PerformanceConfig::from_toml_str("[worker_pool]\nbuffer_size = 0\n").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "line 2, column 15: `worker_pool.buffer_size`: must be at least 1, got 0",
    /// );
    /// # Ok::<(), kwik_config::ConfigError>(())
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        parse(text, None)
    }

    /// Reads, parses and validates the configuration file at `path`.
    ///
    /// Environment overrides are not applied; chain
    /// [`with_env_overrides`](Self::with_env_overrides) for that.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        parse(&text, Some(path.to_owned()))
    }

    /// Checks the range rules that types cannot express (`buffer_size` at least 1, a
    /// compression threshold no larger than a packet, …). [`load`](Self::load),
    /// [`from_toml_str`](Self::from_toml_str) and the environment overrides call it; call it
    /// yourself on a configuration built in code.
    ///
    /// ```
    /// use kwik_config::{ConfigError, PerformanceConfig};
    ///
    /// let mut config = PerformanceConfig::default();
    /// config.profiling.sample_rate = 0;
    /// let err = config.validate().unwrap_err();
    /// assert!(matches!(err, ConfigError::OutOfRange { .. }));
    /// assert_eq!(err.key(), Some("profiling.sample_rate"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::check(self).map_err(|v| out_of_range(v, Origin::Code))
    }
}

/// Writes the configuration as a complete `performance.toml`: every section and key, defaults
/// included, in a form [`PerformanceConfig::from_toml_str`] reads back to an equal value.
///
/// ```
/// use kwik_config::PerformanceConfig;
///
/// let config = PerformanceConfig::default();
/// let text = config.to_string();
/// assert!(text.contains("[worker_pool]"));
/// assert_eq!(PerformanceConfig::from_toml_str(&text)?, config);
/// # Ok::<(), kwik_config::ConfigError>(())
/// ```
impl fmt::Display for PerformanceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field is a TOML scalar inside a one-level table, which the serializer always
        // accepts; a failure here would be a schema bug, surfaced as a formatting error.
        let text = toml::to_string_pretty(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

pub(crate) fn out_of_range(v: Violation, origin: Origin) -> ConfigError {
    ConfigError::OutOfRange {
        origin,
        key: v.key.to_owned(),
        message: v.message,
    }
}

fn parse(text: &str, file: Option<PathBuf>) -> Result<PerformanceConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|err| ConfigError::Syntax {
        location: Location::of_offset(file.clone(), text, err.span().map_or(0, |s| s.start)),
        message: err.message().trim_end().to_owned(),
    })?;
    let config = PerformanceConfig::deserialize(deserializer)
        .map_err(|err| deserialize_error(&err, text, file.clone()))?;
    if let Err(violation) = validate::check(&config) {
        // Point at the key the rule names or, when that one took its default, at the other
        // key of the rule: that is the line the user has to change.
        let origin = [Some(violation.key), violation.other]
            .into_iter()
            .flatten()
            .find_map(|key| value_span(text, key))
            .map_or(Origin::Code, |span| {
                Origin::File(Location::of_offset(file, text, span.start))
            });
        return Err(out_of_range(violation, origin));
    }
    Ok(config)
}

/// Turns a serde error (unknown key, wrong type, bad duration or size) into a located error.
fn deserialize_error(err: &toml::de::Error, text: &str, file: Option<PathBuf>) -> ConfigError {
    let span = err.span().unwrap_or(0..0);
    let path = key_path_at(text, span.start).unwrap_or_default();
    let origin = Origin::File(Location::of_offset(file, text, span.start));
    let message = err.message().trim_end().to_owned();
    if message.starts_with("unknown field") {
        let parent = &path[..path.len().saturating_sub(1)];
        return ConfigError::UnknownKey {
            origin,
            key: path.join("."),
            expected: expected_names(parent.first().map(String::as_str)),
        };
    }
    ConfigError::InvalidValue {
        origin,
        key: path.join("."),
        message,
    }
}

/// The names allowed inside `section`, or the section names at the top level.
fn expected_names(section: Option<&str>) -> String {
    let names: Vec<&str> = match section {
        None => SCHEMA.iter().map(|&(name, _)| name).collect(),
        Some(section) => schema::section_keys(section).unwrap_or_default().to_vec(),
    };
    names.join(", ")
}

/// The key path of the innermost key or value whose span holds byte `offset`.
fn key_path_at(text: &str, offset: usize) -> Option<Vec<String>> {
    let root = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_offset(root.get_ref(), offset, &mut path).then_some(path)
}

fn find_offset(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        // Children first: a section's span covers its keys, and the innermost key is wanted.
        if let DeValue::Table(inner) = value.get_ref()
            && find_offset(inner, offset, path)
        {
            return true;
        }
        if contains(&key.span(), offset) || contains(&value.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// The byte span of the value at `key_path` (`section.key`), if the text sets it.
fn value_span(text: &str, key_path: &str) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = root.get_ref();
    let mut parts = key_path.split('.').peekable();
    while let Some(part) = parts.next() {
        let value: &Spanned<DeValue<'_>> = table.get(part)?;
        if parts.peek().is_none() {
            return Some(value.span());
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_found_by_offset() {
        let text = "[cache]\nttl = \"24x\"\n\n[worker_pool]\nsize = 8\n";
        let ttl = text.find("\"24x\"").expect("in text");
        assert_eq!(
            key_path_at(text, ttl),
            Some(vec!["cache".into(), "ttl".into()])
        );
        let size = text.find("size").expect("in text");
        assert_eq!(
            key_path_at(text, size),
            Some(vec!["worker_pool".into(), "size".into()])
        );
        let header = text.find("worker_pool").expect("in text");
        assert_eq!(key_path_at(text, header), Some(vec!["worker_pool".into()]));
    }

    #[test]
    fn value_spans_are_found_by_key_path() {
        let text = "cache.ttl = \"1h\"\n[transport]\nalpn = \"x\"\n";
        let span = value_span(text, "transport.alpn").expect("set");
        assert_eq!(&text[span], "\"x\"");
        let span = value_span(text, "cache.ttl").expect("set");
        assert_eq!(&text[span], "\"1h\"");
        assert_eq!(value_span(text, "cache.capacity"), None);
        assert_eq!(value_span(text, "cache.ttl.deeper"), None);
    }
}

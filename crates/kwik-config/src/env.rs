//! Environment overrides: `KWIK_<SECTION>_<KEY>=value`.
//!
//! Section names contain underscores (`worker_pool`), so a variable is resolved against the
//! schema, not split on its first underscore: `KWIK_WORKER_POOL_SIZE` is `worker_pool.size`.
//! Variables whose name starts with no known section (`KWIK_CONFIG`, `KWIK_REQUIRE_PROMTOOL`)
//! belong to other tools and are ignored; one that names a section but no key of it is a typo
//! and an error.
//!
//! Values are untyped text. Each is tried first as a TOML literal (integer, float, boolean),
//! then as a string, so `8`, `2.5`, `true`, `30s`, `64KiB` and `0.0.0.0:4433` all work unquoted.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use serde::Deserialize;

use crate::error::{ConfigError, Origin};
use crate::load::out_of_range;
use crate::schema::{SCHEMA, section_keys};
use crate::{PerformanceConfig, validate};

/// The prefix every override carries.
const PREFIX: &str = "KWIK_";

/// One override, resolved against the schema.
struct Override {
    variable: String,
    section: &'static str,
    key: String,
    value: String,
}

impl Override {
    fn key_path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }
}

impl PerformanceConfig {
    /// Applies the `KWIK_<SECTION>_<KEY>` variables of the process environment, then
    /// validates. See [`with_env_overrides_from`](Self::with_env_overrides_from).
    pub fn with_env_overrides(self) -> Result<Self, ConfigError> {
        self.with_env_overrides_from(std::env::vars_os())
    }

    /// Applies the `KWIK_<SECTION>_<KEY>` variables among `vars`, then validates.
    ///
    /// `KWIK_WORKER_POOL_SIZE=8` sets `worker_pool.size`, `KWIK_CACHE_TTL=1h` sets `cache.ttl`.
    /// Variables that start with no known section are ignored (`KWIK_CONFIG` is not an
    /// override); an unknown key of a known section, a value that does not parse, or a value
    /// out of range is an error naming the variable.
    ///
    /// ```
    /// use kwik_config::PerformanceConfig;
    ///
    /// let config = PerformanceConfig::default().with_env_overrides_from([
    ///     ("KWIK_WORKER_POOL_SIZE", "8"),
    ///     ("KWIK_CACHE_TTL", "1h"),
    ///     ("KWIK_CONFIG", "ignored.toml"),
    /// ])?;
    /// assert_eq!(config.worker_pool.size, 8);
    /// assert_eq!(config.cache.ttl, std::time::Duration::from_secs(3600));
    ///
    /// let err = PerformanceConfig::default()
    ///     .with_env_overrides_from([("KWIK_WORKER_POOL_BUFFER_SIZE", "0")])
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "environment variable KWIK_WORKER_POOL_BUFFER_SIZE: `worker_pool.buffer_size`: \
    ///      must be at least 1, got 0",
    /// );
    /// # Ok::<(), kwik_config::ConfigError>(())
    /// ```
    pub fn with_env_overrides_from<I, K, V>(self, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let overrides = collect(vars)?;
        if overrides.is_empty() {
            return Ok(self);
        }
        let first = &overrides[0];
        let mut table = toml::Table::try_from(&self).map_err(|err| ConfigError::InvalidValue {
            origin: Origin::Env(first.variable.clone()),
            key: first.key_path(),
            message: format!("cannot apply the override: {err}"),
        })?;
        for o in &overrides {
            apply(&mut table, o)?;
        }
        let config = Self::deserialize(table).map_err(|err| ConfigError::InvalidValue {
            origin: Origin::Env(first.variable.clone()),
            key: first.key_path(),
            message: err.message().to_owned(),
        })?;
        if let Err(violation) = validate::check(&config) {
            let by_key: BTreeMap<String, &str> = overrides
                .iter()
                .map(|o| (o.key_path(), o.variable.as_str()))
                .collect();
            let variable = [Some(violation.key), violation.other]
                .into_iter()
                .flatten()
                .find_map(|key| by_key.get(key));
            let origin = variable.map_or(Origin::Code, |v| Origin::Env((*v).to_owned()));
            return Err(out_of_range(violation, origin));
        }
        Ok(config)
    }
}

/// The overrides among `vars`, sorted by variable name so errors are reported in a stable
/// order whatever the environment's.
fn collect<I, K, V>(vars: I) -> Result<Vec<Override>, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut overrides = Vec::new();
    for (name, value) in vars {
        // A name that is not UTF-8 cannot spell `KWIK_`.
        let Some(variable) = name.as_ref().to_str() else {
            continue;
        };
        let Some((section, key)) = resolve(variable) else {
            continue;
        };
        let key_path = format!("{section}.{key}");
        let keys = section_keys(section).unwrap_or_default();
        if !keys.contains(&key.as_str()) {
            let expected: Vec<String> = keys
                .iter()
                .map(|k| format!("{PREFIX}{section}_{k}").to_ascii_uppercase())
                .collect();
            return Err(ConfigError::UnknownKey {
                origin: Origin::Env(variable.to_owned()),
                key: key_path,
                expected: expected.join(", "),
            });
        }
        let Some(value) = value.as_ref().to_str() else {
            return Err(ConfigError::InvalidValue {
                origin: Origin::Env(variable.to_owned()),
                key: key_path,
                message: "the value is not valid UTF-8".to_owned(),
            });
        };
        overrides.push(Override {
            variable: variable.to_owned(),
            section,
            key,
            value: value.to_owned(),
        });
    }
    overrides.sort_unstable_by(|a, b| a.variable.cmp(&b.variable));
    Ok(overrides)
}

/// The section and key a variable names, if it starts with `KWIK_` and a known section.
///
/// When several sections are prefixes of the name, the one under which the rest is a known key
/// wins, then the longest.
fn resolve(variable: &str) -> Option<(&'static str, String)> {
    let rest = variable.strip_prefix(PREFIX)?;
    let mut best: Option<(&'static str, String, bool)> = None;
    for &(section, keys) in SCHEMA {
        let upper = section.to_ascii_uppercase();
        let Some(key) = rest
            .strip_prefix(upper.as_str())
            .and_then(|r| r.strip_prefix('_'))
        else {
            continue;
        };
        if key.is_empty() || key.bytes().any(|b| b.is_ascii_lowercase()) {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let known = keys.contains(&key.as_str());
        let better = match &best {
            None => true,
            Some((s, _, k)) => (known, section.len()) > (*k, s.len()),
        };
        if better {
            best = Some((section, key, known));
        }
    }
    best.map(|(section, key, _)| (section, key))
}

/// Sets one key of the serialized configuration, trying the value as a TOML literal, then as
/// a string, and keeping the first form the schema accepts.
fn apply(table: &mut toml::Table, o: &Override) -> Result<(), ConfigError> {
    let literal = o
        .value
        .parse::<toml::Value>()
        .ok()
        .filter(|v| v.is_integer() || v.is_float() || v.is_bool());
    let candidates = literal
        .into_iter()
        .chain(std::iter::once(toml::Value::String(o.value.clone())));
    let mut first_error = None;
    for candidate in candidates {
        let mut attempt = table.clone();
        if let Some(section) = attempt
            .get_mut(o.section)
            .and_then(toml::Value::as_table_mut)
        {
            section.insert(o.key.clone(), candidate);
        }
        match PerformanceConfig::deserialize(attempt.clone()) {
            Ok(_) => {
                *table = attempt;
                return Ok(());
            }
            Err(err) => {
                first_error.get_or_insert_with(|| err.message().trim_end().to_owned());
            }
        }
    }
    Err(ConfigError::InvalidValue {
        origin: Origin::Env(o.variable.clone()),
        key: o.key_path(),
        message: first_error.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_sections_with_underscores() {
        assert_eq!(
            resolve("KWIK_WORKER_POOL_SIZE"),
            Some(("worker_pool", "size".to_owned()))
        );
        assert_eq!(
            resolve("KWIK_WORKER_POOL_MAX_QUEUE_SIZE"),
            Some(("worker_pool", "max_queue_size".to_owned()))
        );
        assert_eq!(
            resolve("KWIK_CIRCUIT_BREAKER_TIMEOUT"),
            Some(("circuit_breaker", "timeout".to_owned()))
        );
        assert_eq!(
            resolve("KWIK_BUFFER_POOL_BUFFER_SIZE"),
            Some(("buffer_pool", "buffer_size".to_owned()))
        );
        // Typos in the key still resolve the section, so they can be reported.
        assert_eq!(
            resolve("KWIK_CACHE_TTTL"),
            Some(("cache", "tttl".to_owned()))
        );
    }

    #[test]
    fn ignores_variables_of_other_tools() {
        for name in [
            "KWIK_CONFIG",
            "KWIK_REQUIRE_PROMTOOL",
            "KWIK_WORKER",
            "KWIK_CACHE_",
            "KWIK_cache_ttl",
            "PATH",
            "kwik_cache_ttl",
        ] {
            assert_eq!(resolve(name), None, "{name}");
        }
    }

    #[test]
    fn every_schema_key_has_a_variable() {
        for &(section, keys) in SCHEMA {
            for key in keys {
                let variable = format!("KWIK_{section}_{key}").to_ascii_uppercase();
                assert_eq!(resolve(&variable), Some((section, (*key).to_owned())));
            }
        }
    }
}

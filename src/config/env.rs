//! Environment overrides: which `SIGEX_*` variables are config keys, and what they set.
//!
//! The allow-list is the config file's own schema, read from the `Raw*` structs' serde
//! descriptions at run time: a key added to the file format can be overridden at once, with the
//! value typed as the file would type it (a whole number, true/false, a comma-separated list,
//! text). `SIGEX_<SECTION>__<KEY>` names a key of a section, `SIGEX_<KEY>` a top-level key.
//!
//! Guarantees: a variable whose section is a config section is an override, and a mistake in it
//! (an unknown key, a value of the wrong kind) stops start-up naming the variable. Any other
//! `SIGEX_*` name (`SIGEX_ADMIN_URL` for `sigex status`, the simulator's `SIGEX_SIM_*`, a test's
//! `SIGEX_CHAOS_SEED`) is not config-shaped: it is left alone, never fatal. Values are never
//! quoted in an error: some of them are secrets.

use super::ConfigError;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// How an environment value is turned into the TOML value the file would hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Integer,
    Float,
    Bool,
    /// Comma-separated.
    List,
    Text,
    /// A table or an array of tables: only the file can say it.
    Table,
}

/// The config file's keys, as its serde types describe them.
#[derive(Debug, Default)]
pub(super) struct Schema {
    /// Top-level keys that are not sections (`mode`), with their kind.
    top: BTreeMap<String, Kind>,
    /// Sections (`[venue]`, `[webhook]`, ...) and their keys.
    sections: BTreeMap<String, BTreeMap<String, Kind>>,
    /// Top-level tables that are maps or arrays of tables (`[alerts.LEVEL]`, `[[notify]]`).
    nested: Vec<String>,
}

impl Schema {
    /// Reads the schema of `T` (a struct of sections) by letting its `Deserialize` describe itself.
    pub(super) fn of<T: DeserializeOwned>() -> Self {
        let mut schema = Schema::default();
        let Traced::Fields(top) = trace::<T>(&[]) else {
            return schema;
        };
        for field in top {
            match trace::<T>(&[field]) {
                Traced::Fields(keys) => {
                    let keys = keys
                        .iter()
                        .map(|k| {
                            let kind = match trace::<T>(&[field, k]) {
                                Traced::Kind(kind) => kind,
                                Traced::Fields(_) | Traced::Nothing => Kind::Table,
                            };
                            (k.to_string(), kind)
                        })
                        .collect();
                    schema.sections.insert(field.to_string(), keys);
                }
                Traced::Kind(Kind::Table) | Traced::Kind(Kind::List) => {
                    schema.nested.push(field.to_string())
                }
                Traced::Kind(kind) => {
                    schema.top.insert(field.to_string(), kind);
                }
                Traced::Nothing => {}
            }
        }
        schema
    }

    #[cfg(test)]
    pub(super) fn sections_for_test(&self, section: &str) -> BTreeMap<String, Kind> {
        self.sections.get(section).cloned().unwrap_or_default()
    }

    /// What `SIGEX_<rest>` means: an override of a key, or nothing to do with the config.
    fn classify(&self, rest: &str) -> Classified {
        let lower = rest.to_ascii_lowercase();
        match lower.split_once("__") {
            None => match self.top.get(&lower) {
                Some(&kind) => Classified::Key {
                    section: None,
                    key: lower,
                    kind,
                },
                None => Classified::Stray,
            },
            Some((section, key)) => {
                if let Some(keys) = self.sections.get(section) {
                    match keys.get(key) {
                        Some(&kind) => Classified::Key {
                            section: Some(section.to_owned()),
                            key: key.to_owned(),
                            kind,
                        },
                        None => Classified::Mistake(format!(
                            "[{section}] has no key {key:?}; its keys are {}",
                            keys.keys().cloned().collect::<Vec<_>>().join(", ")
                        )),
                    }
                } else if self.nested.iter().any(|n| n == section) || self.top.contains_key(section)
                {
                    Classified::Mistake(format!(
                        "{section} cannot be set from the environment; write it in the config file"
                    ))
                } else {
                    Classified::Stray
                }
            }
        }
    }
}

enum Classified {
    Key {
        section: Option<String>,
        key: String,
        kind: Kind,
    },
    /// Config-shaped, but wrong: the variable is named in the error.
    Mistake(String),
    /// Not a config key at all.
    Stray,
}

/// One environment variable applied to the config table.
#[derive(Debug, Clone)]
pub(super) struct Override {
    pub variable: String,
    pub section: Option<String>,
    pub key: String,
    pub value: toml::Value,
}

impl Override {
    /// Writes the value into `table` (the section is created when the file has none).
    pub(super) fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        match &self.section {
            None => {
                table.insert(self.key.clone(), self.value.clone());
            }
            Some(section) => {
                let entry = table
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(t) = entry else {
                    return Err(self.error(format!(
                        "{section} is not a section in the config file, but this variable sets a \
                         key inside it"
                    )));
                };
                t.insert(self.key.clone(), self.value.clone());
            }
        }
        Ok(())
    }

    /// An error about this variable's value; the value itself is never quoted (it may be secret).
    pub(super) fn error(&self, message: String) -> ConfigError {
        variable_error(&self.variable, message)
    }

    /// `[section] key` (or `key` at the top level), as validation messages start.
    pub(super) fn names(&self, section: Option<&str>, key: &str) -> bool {
        self.section.as_deref() == section && self.key == key
    }
}

fn variable_error(variable: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: format!("environment variable {variable}"),
        message,
    }
}

/// The config overrides among `env`, typed by `schema`. Variables that are not config-shaped
/// are skipped (see [`stray`]); a config-shaped mistake is an error naming the variable.
pub(super) fn overrides(
    schema: &Schema,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut out = Vec::new();
    for (variable, raw) in env {
        let Some(rest) = variable.strip_prefix(PREFIX) else {
            continue;
        };
        let (section, key, kind) = match schema.classify(rest) {
            Classified::Key { section, key, kind } => (section, key, kind),
            Classified::Mistake(message) => return Err(variable_error(&variable, message)),
            Classified::Stray => continue,
        };
        let at = match &section {
            Some(s) => format!("[{s}] {key}"),
            None => key.clone(),
        };
        let value =
            match kind {
                Kind::Integer => raw.trim().parse().map(toml::Value::Integer).map_err(|_| {
                    variable_error(&variable, format!("{at} must be a whole number"))
                })?,
                Kind::Float => raw
                    .trim()
                    .parse()
                    .map(toml::Value::Float)
                    .map_err(|_| variable_error(&variable, format!("{at} must be a number")))?,
                Kind::Bool => match raw.trim() {
                    "true" => toml::Value::Boolean(true),
                    "false" => toml::Value::Boolean(false),
                    _ => {
                        return Err(variable_error(
                            &variable,
                            format!("{at} must be true or false"),
                        ))
                    }
                },
                Kind::List => toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_owned()))
                        .collect(),
                ),
                Kind::Text => toml::Value::String(raw),
                Kind::Table => {
                    return Err(variable_error(
                        &variable,
                        format!("{at} is a table; write it in the config file"),
                    ))
                }
            };
        out.push(Override {
            variable,
            section,
            key,
            value,
        });
    }
    Ok(out)
}

const PREFIX: &str = "SIGEX_";

/// Variables sigex itself reads outside the config file: never warned about.
const OTHER_VARIABLES: &[&str] = &[
    "SIGEX_ADMIN_URL",
    "SIGEX_SIM_API_KEY",
    "SIGEX_SIM_API_SECRET",
    "SIGEX_SIM_WEBHOOK_SECRET",
];
/// Knobs of the test suite (`SIGEX_CHAOS_SEED`, `SIGEX_PROP_CASES`, `SIGEX_FUZZ_ITERS`, ...).
const TEST_PREFIXES: &[&str] = &["SIGEX_CHAOS_", "SIGEX_PROP_", "SIGEX_FUZZ_"];

/// `SIGEX_*` names in `env` that are neither config keys nor variables sigex reads elsewhere:
/// worth a warning (a typo of `SIGEX_SECTION__KEY` with one underscore lands here), never fatal.
pub(super) fn stray(
    schema: &Schema,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    env.into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.strip_prefix(PREFIX)
                .is_some_and(|rest| matches!(schema.classify(rest), Classified::Stray))
                && !OTHER_VARIABLES.contains(&name.as_str())
                && !TEST_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .collect()
}

/// What the traced type said about the place the path leads to.
#[derive(Debug)]
enum Traced {
    /// A struct, with its field names.
    Fields(&'static [&'static str]),
    Kind(Kind),
    /// The path leads nowhere.
    Nothing,
}

/// Runs `T`'s `Deserialize` against a deserializer that follows `path` (one field per level)
/// and records what is asked for at its end. The deserialization itself always fails: only the
/// record matters.
fn trace<T: DeserializeOwned>(path: &[&'static str]) -> Traced {
    let found = RefCell::new(Traced::Nothing);
    let _ = T::deserialize(Tracer {
        path,
        found: &found,
    });
    found.into_inner()
}

struct Tracer<'a> {
    path: &'a [&'static str],
    found: &'a RefCell<Traced>,
}

type TraceError = de::value::Error;

impl Tracer<'_> {
    fn record(self, kind: Kind) -> Result<(), TraceError> {
        if self.path.is_empty() {
            *self.found.borrow_mut() = Traced::Kind(kind);
        }
        Err(de::Error::custom("traced"))
    }
}

macro_rules! record_as {
    ($kind:expr => $($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, TraceError> {
            self.record($kind).map(|()| unreachable!())
        })*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    record_as!(Kind::Integer => deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128);
    record_as!(Kind::Float => deserialize_f32 deserialize_f64);
    record_as!(Kind::Bool => deserialize_bool);
    record_as!(Kind::List => deserialize_seq);
    record_as!(Kind::Text => deserialize_any deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_identifier
        deserialize_ignored_any);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_unit(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_seq(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        self.deserialize_str(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, TraceError> {
        self.record(Kind::Table).map(|()| unreachable!())
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        match self.path.split_first() {
            None => {
                *self.found.borrow_mut() = Traced::Fields(fields);
                Err(de::Error::custom("traced"))
            }
            Some((field, rest)) if fields.contains(field) => visitor.visit_map(OneField {
                key: Some(field),
                value: Some(Tracer {
                    path: rest,
                    found: self.found,
                }),
            }),
            Some(_) => Err(de::Error::custom("no such field")),
        }
    }
}

/// A map of exactly one key, whose value is traced further.
struct OneField<'a> {
    key: Option<&'static str>,
    value: Option<Tracer<'a>>,
}

impl<'de> MapAccess<'de> for OneField<'_> {
    type Error = TraceError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.key.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        match self.value.take() {
            Some(tracer) => seed.deserialize(tracer),
            None => Err(de::Error::custom("no value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        mode: Option<String>,
        #[serde(default)]
        server: Server,
        #[serde(default)]
        hooks: Vec<Server>,
        #[serde(default)]
        levels: BTreeMap<String, Server>,
    }

    #[derive(serde::Deserialize, Default)]
    #[allow(dead_code)]
    struct Server {
        port: Option<u16>,
        #[serde(default)]
        verbose: bool,
        #[serde(default)]
        sources: Vec<String>,
        price: Option<rust_decimal::Decimal>,
        path: Option<std::path::PathBuf>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_schema_is_read_from_the_serde_types() {
        let s = Schema::of::<File>();
        assert_eq!(s.top.get("mode"), Some(&Kind::Text));
        let server = &s.sections["server"];
        let kinds: Vec<_> = server.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            kinds,
            vec![
                ("path", Kind::Text),
                ("port", Kind::Integer),
                ("price", Kind::Text),
                ("sources", Kind::List),
                ("verbose", Kind::Bool),
            ]
        );
        assert_eq!(s.nested, vec!["hooks".to_owned(), "levels".to_owned()]);
    }

    #[test]
    fn overrides_are_typed_like_the_file_and_other_names_are_left_alone() {
        let s = Schema::of::<File>();
        let got = overrides(
            &s,
            env(&[
                ("SIGEX_SERVER__PORT", "8080"),
                ("SIGEX_SERVER__VERBOSE", "true"),
                ("SIGEX_SERVER__SOURCES", "a, b,"),
                ("SIGEX_MODE", "live"),
                ("SIGEX_ADMIN_URL", "http://127.0.0.1:8081"),
                ("SIGEX_CHAOS_SEED", "7"),
                ("SIGEX_SOMETHING__ELSE", "x"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|o| (o.variable.as_str(), o.value.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("SIGEX_SERVER__PORT", "8080".to_owned()),
                ("SIGEX_SERVER__VERBOSE", "true".to_owned()),
                ("SIGEX_SERVER__SOURCES", r#"["a", "b"]"#.to_owned()),
                ("SIGEX_MODE", r#""live""#.to_owned()),
            ]
        );
    }

    #[test]
    fn a_config_shaped_mistake_names_the_variable_and_never_its_value() {
        let s = Schema::of::<File>();
        let cases = [
            (
                "SIGEX_SERVER__PORT",
                "eighty",
                "[server] port must be a whole number",
            ),
            ("SIGEX_SERVER__VERBOSE", "yes", "must be true or false"),
            ("SIGEX_SERVER__PROT", "80", "[server] has no key \"prot\""),
            (
                "SIGEX_LEVELS__HIGH",
                "1",
                "levels cannot be set from the environment",
            ),
        ];
        for (name, value, expected) in cases {
            let err = overrides(&s, env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("environment variable {name}: "))
                    && err.contains(expected),
                "{name}: {err}"
            );
            assert!(!err.contains(value), "{name}: {err}");
        }
    }

    #[test]
    fn stray_names_exclude_config_keys_and_variables_sigex_reads_elsewhere() {
        let s = Schema::of::<File>();
        let names = stray(
            &s,
            env(&[
                ("SIGEX_SERVER__PORT", "1"),
                ("SIGEX_MODE", "live"),
                ("SIGEX_ADMIN_URL", "x"),
                ("SIGEX_SIM_API_KEY", "x"),
                ("SIGEX_CHAOS_SEED", "1"),
                ("SIGEX_SERVER_PORT", "1"),
                ("HOME", "/root"),
            ]),
        );
        assert_eq!(names, vec!["SIGEX_SERVER_PORT".to_owned()]);
    }
}

//! Locating and typing values: byte spans turned into lines, TOML's own
//! errors condensed to one line in the config's terms, and the typed
//! readers (string, integer, keyword, port range, ...) whose errors name
//! the key and its line.

use toml::{Spanned, Value};

use super::{ConfigError, raw::Skeleton};
use crate::syntax::PortRange;

/// The text being parsed, for turning byte spans into lines.
pub(super) struct Doc<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Doc<'a> {
    pub(super) fn new(text: &'a str, origin: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Doc {
            text,
            origin,
            line_starts,
        }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    pub(super) fn invalid(
        &self,
        line: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn at(
        &self,
        v: &Spanned<Value>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.invalid(self.line(v.span().start), key, message)
    }

    /// Condenses a toml error to one line. Errors in the document's shape
    /// (unknown keys, a table where a list belongs) get the section they are
    /// in, so they read like the semantic errors; anything the lenient
    /// [`Skeleton`] cannot read either is reported as a syntax error.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        // toml's `Spanned` meets a dotted key or sub-table where it expects a
        // single value and reports it in terms of its own internals.
        if let Some(rest) = message.strip_prefix("invalid type: string ")
            && let Some(name) = rest.strip_suffix(", expected a borrowed string")
        {
            message = format!("unexpected sub-table or dotted key {name}");
        }
        let Some(span) = e.span() else {
            return ConfigError::Syntax {
                origin: self.origin.to_string(),
                position: None,
                message,
            };
        };
        let shape_error_in = toml::from_str::<Skeleton>(self.text)
            .ok()
            .map(|s| s.section_at(span.start));
        let Some(section) = shape_error_in else {
            return ConfigError::Syntax {
                origin: self.origin.to_string(),
                position: Some(self.position(span.start)),
                message,
            };
        };
        let line = self.line(span.start);
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((name, expected)) = rest.split_once("`, ")
        {
            let key = match section {
                Some(s) => format!("{s}.{name}"),
                None => name.to_string(),
            };
            // TOML puts every key after a `[section]` header into it.
            let hint = match (&key, name) {
                (k, "xdp_mode" | "iptables") if k != name => {
                    "; top-level keys go before the first [section]"
                }
                _ => "",
            };
            return self.invalid(line, key, format!("unknown key ({expected}){hint}"));
        }
        match section {
            Some(s) => self.invalid(line, s, message),
            None => ConfigError::Syntax {
                origin: self.origin.to_string(),
                position: Some(self.position(span.start)),
                message,
            },
        }
    }

    pub(super) fn string<'v>(
        &self,
        v: &'v Spanned<Value>,
        key: &str,
    ) -> Result<&'v str, ConfigError> {
        match v.get_ref() {
            Value::String(s) => Ok(s),
            other => Err(self.at(
                v,
                key,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    pub(super) fn integer(&self, v: &Spanned<Value>, key: &str) -> Result<i64, ConfigError> {
        match v.get_ref() {
            Value::Integer(n) => Ok(*n),
            other => Err(self.at(
                v,
                key,
                format!("expected an integer, found {}", other.type_str()),
            )),
        }
    }

    pub(super) fn boolean(&self, v: &Spanned<Value>, key: &str) -> Result<bool, ConfigError> {
        match v.get_ref() {
            Value::Boolean(b) => Ok(*b),
            other => Err(self.at(
                v,
                key,
                format!("expected true or false, found {}", other.type_str()),
            )),
        }
    }

    pub(super) fn ranged(
        &self,
        v: &Spanned<Value>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Result<i64, ConfigError> {
        let n = self.integer(v, key)?;
        if n < min || n > max {
            return Err(self.at(v, key, format!("{n} is out of range ({min}-{max})")));
        }
        Ok(n)
    }

    pub(super) fn keyword<T: Copy>(
        &self,
        v: &Spanned<Value>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let s = self.string(v, key)?;
        choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, t)| t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.at(
                    v,
                    key,
                    format!("unknown value {s:?} (expected {})", one_of(&names)),
                )
            })
    }

    pub(super) fn port_range(
        &self,
        v: &Spanned<Value>,
        key: &str,
    ) -> Result<PortRange, ConfigError> {
        let port = |n: i64| {
            u16::try_from(n)
                .map_err(|_| self.at(v, key, format!("port {n} is out of range (0-65535)")))
        };
        let (lo, hi) = match v.get_ref() {
            Value::Integer(n) => (port(*n)?, port(*n)?),
            Value::String(s) => {
                let bad = || {
                    self.at(
                        v,
                        key,
                        format!("invalid port range {s:?} (expected \"LO-HI\")"),
                    )
                };
                let num = |t: &str| {
                    let t = t.trim();
                    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    port(t.parse().unwrap_or(i64::MAX))
                };
                match s.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => (num(s)?, num(s)?),
                }
            }
            other => {
                return Err(self.at(
                    v,
                    key,
                    format!(
                        "expected a port number or \"LO-HI\" string, found {}",
                        other.type_str()
                    ),
                ));
            }
        };
        if lo > hi {
            return Err(self.at(v, key, format!("port range {lo}-{hi} is reversed")));
        }
        Ok(PortRange { lo, hi })
    }
}

pub(super) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The name of `t` in a keyword table, for messages and summaries.
pub(super) fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], t: T) -> &'static str {
    table.iter().find(|(_, x)| *x == t).map_or("?", |(n, _)| n)
}

//! The one-line errors of reading a config: `file:line: key: message`.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The I/O error is part of the message
    /// rather than a `source` so that the one line is complete on its own and
    /// chains printed with `{:#}` do not repeat it.
    #[error("{origin}: cannot read: {error}")]
    Read {
        origin: String,
        error: std::io::Error,
    },
    /// The text is not TOML (or not the document shape at all).
    #[error("{origin}:{}: {message}", position_text(*.position))]
    Syntax {
        origin: String,
        /// 1-based line and column, when the TOML parser reported one.
        position: Option<(usize, usize)>,
        message: String,
    },
    /// Well-formed TOML with a bad value, an unknown key or a broken rule.
    #[error("{origin}:{line}: {key}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        /// Dotted path of the offending key, e.g. `rule[2].dport`.
        key: String,
        message: String,
    },
}

fn position_text(position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!("{line}:{column}"),
        None => "?".into(),
    }
}

//! Words: a command line split into arguments as iptables-restore splits
//! it, and the cursor option parsing reads them with.

use super::ParseError;

/// Splits a line into arguments the way iptables-restore does: whitespace
/// separates, `"..."` quotes (with `\"` and `\\` escapes) and ends the word;
/// `'...'` quotes literally, for lines taken from shell scripts.
pub(super) fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '"' | '\'' => {
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated quote ({ch})")),
                        Some('\\') if ch == '"' => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err(format!("unterminated quote ({ch})")),
                        },
                        Some(c) if c == ch => break,
                        Some(c) => word.push(c),
                    }
                }
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

pub(super) struct Args {
    pub(super) words: Vec<String>,
    pub(super) next: usize,
}

impl Args {
    pub(super) fn next(&mut self) -> Option<String> {
        let w = self.words.get(self.next).cloned();
        self.next += 1;
        w
    }

    pub(super) fn peek(&self) -> Option<&str> {
        self.words.get(self.next).map(String::as_str)
    }

    /// The value of `opt`.
    pub(super) fn value(&mut self, opt: &str) -> Result<String, ParseError> {
        self.next()
            .ok_or_else(|| ParseError::new(format!("{opt} needs a value")))
    }

    /// The value of an option that can be negated: `! ` after the option is
    /// the syntax iptables dropped, and would otherwise read as a value.
    pub(super) fn operand(&mut self, opt: &str) -> Result<String, ParseError> {
        let v = self.value(opt)?;
        if v == "!" {
            return Err(ParseError::new(format!(
                "\"{opt} ! VALUE\" is the old negation syntax; write \"! {opt} VALUE\""
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests;

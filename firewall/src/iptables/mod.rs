//! Importing iptables rules: a parser for `iptables` rule arguments and
//! `iptables-save` dumps, the resolution of user chains into the built-in
//! chains they are called from, and the translation to this firewall's TOML
//! config (`firewall import`).
//!
//! Three layers, each usable on its own:
//!
//! 1. [`parse_rule`] reads one command line as iptables arguments (`-A INPUT
//!    -p tcp --dport 22 -j ACCEPT`) into [`Stmt`]s; [`parse_save`] reads a
//!    whole `iptables-save` / `ip6tables-save` dump into a [`Ruleset`].
//!    Quoting follows iptables-restore (`"..."` with `\"` and `\\` escapes;
//!    a quoted part ends the word), plus `'...'` for lines copied from shell
//!    scripts.
//! 2. [`Ruleset::rules`] is the resolved form: every user chain is inlined
//!    into the built-in chain that jumps to it, so each table is an ordered,
//!    first-match list of [`FlatRule`]s per built-in chain.
//! 3. [`to_toml`] writes the config, or refuses with the exact lines whose
//!    meaning the config cannot express.
//!
//! One module per concern: `tree` (the parse tree and its error), `lex`
//! (words), `command` (one command line, and the supported syntax), `dump`
//! (a whole dump), `resolve` (user chains inlined), `detect` (a dump's
//! family), `keys` (a resolved rule as `[[rule]]` keys), `translate` (the
//! config `firewall import` writes) and `config_lines` (a config's
//! `iptables` lines).

mod command;
mod config_lines;
mod detect;
mod dump;
mod keys;
mod lex;
mod resolve;
mod translate;
mod tree;

#[cfg(test)]
mod test_support;

pub use command::parse_rule;
pub use config_lines::{ConfigLines, config_lines};
pub use detect::detect_family;
pub use dump::{Builder, ChainDump, Ruleset, TableDump, parse_save};
pub use keys::{Omitted, RuleKeys, rule_block, rule_keys};
pub use resolve::{FlatCond, FlatRule, UnusedChain};
pub use translate::{ToTomlError, Unexpressible, to_toml};
pub use tree::{Cond, Hook, NatTo, ParseError, Policy, Rule, Stmt, Table, Target, Test};

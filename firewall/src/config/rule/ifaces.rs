//! `iif`/`oif` and their `not_` forms: names or `+` wildcards, each only on
//! the chains whose packets have that interface. An exact input interface
//! must be configured: packets arrive on no other.

use std::collections::HashMap;

use firewall_common::Chain;
use toml::{Spanned, Value};

use super::Block;
use crate::{
    config::{ConfigError, doc::Doc, raw::Field},
    syntax::{Iface, Match, interface_name_problem},
};

/// A rule's interface keys, with the line of each (`iif`, `not_iif`,
/// `oif`, `not_oif`), so that an interface missing at load time is
/// reported where it was named.
pub(in crate::config) struct Interfaces {
    pub iif: Match<Iface>,
    pub oif: Match<Iface>,
    pub lines: [usize; 4],
}

impl Block<'_> {
    pub(super) fn interfaces(
        &self,
        chain: Chain,
        configured: &HashMap<String, usize>,
    ) -> Result<Interfaces, ConfigError> {
        let raw = self.raw;
        let mut lines = [self.line; 4];
        let mut read = |pos: &Field, neg: &Field, name: &str, slot: usize| {
            for (f, i) in [(pos, slot), (neg, slot + 1)] {
                if let Some(v) = f {
                    lines[i] = self.doc.line(v.span().start);
                }
            }
            self.matched(pos, neg, name, |v, k| {
                let i = parse_iface_value(self.doc, v, k)?;
                iface_problem(&i, name, chain, configured).map_err(|m| self.doc.at(v, k, m))?;
                if let Some(warning) = iface_warning(&i, name, configured) {
                    log::warn!(
                        "{}:{}: {k}: {warning}",
                        self.doc.origin,
                        self.doc.line(v.span().start)
                    );
                }
                Ok(i)
            })
        };
        let iif = read(&raw.iif, &raw.not_iif, "iif", 0)?;
        let oif = read(&raw.oif, &raw.not_oif, "oif", 2)?;
        Ok(Interfaces { iif, oif, lines })
    }
}

/// An `iif`/`oif` value: a name, or a prefix ending in `+`.
fn parse_iface_value(doc: &Doc, v: &Spanned<Value>, key: &str) -> Result<Iface, ConfigError> {
    let s = doc.string(v, key)?;
    Iface::split(s)
        .ok_or_else(|| doc.at(v, key, "\"+\" alone is every interface (leave the key out)"))
}

/// What is wrong with interface `i` as a value of `name` (`iif` or `oif`)
/// in a rule of `chain`: a name no interface can have, an interface the
/// chain's packets lack, or an input interface that is not configured.
/// Output interfaces can be any: the host routes to unmanaged ones too.
pub(in crate::config) fn iface_problem(
    i: &Iface,
    name: &str,
    chain: Chain,
    configured: &HashMap<String, usize>,
) -> Result<(), String> {
    if let Some(problem) = interface_name_problem(&i.name) {
        return Err(problem);
    }
    match (name, chain) {
        ("iif", Chain::Output) => {
            return Err(
                "not allowed on chain output (locally generated packets have no input \
                 interface)"
                    .into(),
            );
        }
        ("oif", Chain::Input) => {
            return Err(
                "not allowed on chain input (packets for the host have no output interface)".into(),
            );
        }
        _ => {}
    }
    if name == "iif" && !i.wildcard && !configured.contains_key(&i.name) {
        return Err(format!(
            "{:?} is not a configured [[interface]] (configured: {})",
            i.name,
            known(configured).join(", ")
        ));
    }
    Ok(())
}

/// An input wildcard that names no configured interface never matches.
pub(in crate::config) fn iface_warning(
    i: &Iface,
    name: &str,
    configured: &HashMap<String, usize>,
) -> Option<String> {
    let known = known(configured);
    (name == "iif" && i.wildcard && !known.iter().any(|n| n.starts_with(&i.name))).then(|| {
        format!(
            "{i} names no configured [[interface]] (configured: {}), and packets arrive only on \
             those",
            known.join(", ")
        )
    })
}

fn known(configured: &HashMap<String, usize>) -> Vec<&str> {
    let mut known: Vec<&str> = configured.keys().map(String::as_str).collect();
    known.sort_unstable();
    known
}

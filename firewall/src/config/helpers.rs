//! `[[helper]]` blocks: which connections a conntrack helper watches.

use std::fmt;

use firewall_common::IPPROTO_TCP;
use toml::{Spanned, Value};

use super::{
    ConfigError,
    doc::{Doc, name_of},
    raw::RawHelper,
};
use crate::syntax::{PORT_PROTOCOLS, proto_name};

const HELPER_KINDS: &[(&str, HelperKind)] = &[("ftp", HelperKind::Ftp)];

/// A connection-tracking helper: the protocol parser that finds the data
/// connections a control connection announces and lets them in as RELATED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperKind {
    /// FTP (`nf_conntrack_ftp`/`nf_nat_ftp`): PORT, EPRT, 227 and 229.
    Ftp,
}

impl HelperKind {
    /// The one IP protocol this helper works on.
    pub fn proto(self) -> u8 {
        match self {
            HelperKind::Ftp => IPPROTO_TCP,
        }
    }
}

impl fmt::Display for HelperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(HELPER_KINDS, *self))
    }
}

/// One validated `[[helper]]`: connections to `proto`/`port` are watched by
/// the `kind` helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helper {
    /// Always `kind.proto()` (`IPPROTO_TCP` for FTP).
    pub proto: u8,
    /// Destination (server) port of the control connection; never 0.
    pub port: u16,
    pub kind: HelperKind,
    /// 1-based line of the `[[helper]]` header.
    pub line: usize,
    /// 1-based position among the helpers (`helper[N]`).
    pub index: usize,
}

impl Helper {
    /// Human one-line summary, e.g. `tcp 21 -> ftp helper`.
    pub fn summary(&self) -> String {
        format!(
            "{} {} -> {} helper",
            proto_name(self.proto),
            self.port,
            self.kind
        )
    }
}

/// The `[[helper]]` blocks: each valid on its own, and no protocol and port
/// given a helper twice.
pub(super) fn validate_helpers(
    doc: &Doc,
    raws: &[Spanned<RawHelper>],
) -> Result<Vec<Helper>, ConfigError> {
    let mut helpers: Vec<Helper> = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let (helper, port_v) = validate_helper(doc, raw, i + 1)?;
        if let Some(first) = helpers
            .iter()
            .find(|h| (h.proto, h.port) == (helper.proto, helper.port))
        {
            return Err(doc.at(
                port_v,
                &format!("helper[{}].port", helper.index),
                format!(
                    "{} port {} is assigned twice: helper[{}] (line {}) already gives it the \
                     {} helper, and a port takes one helper",
                    proto_name(helper.proto),
                    helper.port,
                    first.index,
                    first.line,
                    first.kind
                ),
            ));
        }
        helpers.push(helper);
    }
    Ok(helpers)
}

/// One `[[helper]]` on its own, with the `port` value for the duplicate
/// check.
fn validate_helper<'r>(
    doc: &Doc,
    spanned: &'r Spanned<RawHelper>,
    index: usize,
) -> Result<(Helper, &'r Spanned<Value>), ConfigError> {
    let line = doc.line(spanned.span().start);
    let raw = spanned.get_ref();
    let key = |k: &str| format!("helper[{index}].{k}");
    let missing = |k: &str| doc.invalid(line, key(k), "missing (required)");

    let proto_v = raw.proto.as_ref().ok_or_else(|| missing("proto"))?;
    let proto = doc.keyword(proto_v, &key("proto"), PORT_PROTOCOLS)?;

    let port_v = raw.port.as_ref().ok_or_else(|| missing("port"))?;
    let port = match port_v.get_ref() {
        Value::Integer(_) => doc.ranged(port_v, &key("port"), 1, u16::MAX.into())? as u16,
        Value::String(s) if s.contains('-') => {
            return Err(doc.at(
                port_v,
                &key("port"),
                format!(
                    "{s:?} is a range; a helper is assigned to a single port \
                     (one [[helper]] per port)"
                ),
            ));
        }
        other => {
            return Err(doc.at(
                port_v,
                &key("port"),
                format!("expected a port number 1-65535, found {}", other.type_str()),
            ));
        }
    };

    let kind_v = raw.kind.as_ref().ok_or_else(|| missing("kind"))?;
    let name = doc.string(kind_v, &key("kind"))?;
    let kind = HELPER_KINDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, k)| k)
        .ok_or_else(|| {
            let names: Vec<&str> = HELPER_KINDS.iter().map(|(n, _)| *n).collect();
            doc.at(
                kind_v,
                &key("kind"),
                format!("unknown helper {name:?} (supported: {})", names.join(", ")),
            )
        })?;

    if proto != kind.proto() {
        return Err(doc.at(
            proto_v,
            &key("proto"),
            format!(
                "the {kind} helper works on {}, not {}",
                proto_name(kind.proto()),
                proto_name(proto)
            ),
        ));
    }

    Ok((
        Helper {
            proto,
            port,
            kind,
            line,
            index,
        },
        port_v,
    ))
}

#[cfg(test)]
mod tests;

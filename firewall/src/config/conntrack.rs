//! `[conntrack]` and `[timeouts]`: the table's capacity and how long each
//! state lives.

use firewall_common::{Timeouts, tcp::track::TcpConfig};
use serde::Deserialize;

use super::{
    ConfigError,
    doc::Doc,
    raw::{Field, RawConntrack},
};

/// Smallest accepted conntrack capacity: below this a busy host would evict
/// live connections constantly, which looks like random drops.
pub const MIN_CT_ENTRIES: u32 = 1024;

/// Declares `RawTimeouts`, one key per `Timeouts` field, from
/// firewall-common's list of them (`timeout_fields!`), so the accepted keys
/// and the struct cannot drift apart. The exhaustive pattern below is a
/// second guard: it stops compiling when a field is added to `Timeouts` and
/// not to the list.
macro_rules! timeouts {
    ($($field:ident),* $(,)?) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawTimeouts {
            $($field: Field,)*
        }

        impl RawTimeouts {
            pub(super) fn apply(&self, doc: &Doc, t: &mut Timeouts) -> Result<(), ConfigError> {
                let Timeouts { $($field: _,)* _pad: _ } = *t;
                $(
                    if let Some(v) = &self.$field {
                        let key = concat!("timeouts.", stringify!($field));
                        t.$field = doc.ranged(v, key, 1, u32::MAX.into())? as u32;
                    }
                )*
                Ok(())
            }
        }
    };
}

firewall_common::timeout_fields!(timeouts);

/// `conntrack.max_entries`.
pub(super) fn max_entries(doc: &Doc, raw: Option<&RawConntrack>) -> Result<u32, ConfigError> {
    Ok(match raw.and_then(|c| c.max_entries.as_ref()) {
        Some(v) => doc.ranged(
            v,
            "conntrack.max_entries",
            MIN_CT_ENTRIES.into(),
            u32::MAX.into(),
        )? as u32,
        None => firewall_common::DEFAULT_CT_ENTRIES,
    })
}

/// `conntrack.tcp_be_liberal`, `tcp_loose` and `tcp_max_retrans`, over
/// netfilter's defaults.
pub(super) fn tcp(doc: &Doc, raw: Option<&RawConntrack>) -> Result<TcpConfig, ConfigError> {
    let mut tcp = TcpConfig::NETFILTER;
    let Some(raw) = raw else {
        return Ok(tcp);
    };
    if let Some(v) = &raw.tcp_be_liberal {
        tcp.be_liberal = doc.boolean(v, "conntrack.tcp_be_liberal")?;
    }
    if let Some(v) = &raw.tcp_loose {
        tcp.loose = doc.boolean(v, "conntrack.tcp_loose")?;
    }
    if let Some(v) = &raw.tcp_max_retrans {
        tcp.max_retrans = doc.ranged(v, "conntrack.tcp_max_retrans", 0, u8::MAX.into())? as u8;
    }
    Ok(tcp)
}

/// `[timeouts]`, over netfilter's defaults.
pub(super) fn timeouts(doc: &Doc, raw: Option<&RawTimeouts>) -> Result<Timeouts, ConfigError> {
    let mut timeouts = Timeouts::NETFILTER;
    if let Some(t) = raw {
        t.apply(doc, &mut timeouts)?;
    }
    Ok(timeouts)
}

#[cfg(test)]
mod tests;

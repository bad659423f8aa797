//! `[conntrack]` and `[timeouts]`: the table's capacity and how long each
//! state lives.

use firewall_common::Timeouts;
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

//! Conntrack state names: lower case in the config, upper case in
//! iptables (which reads either).

use firewall_common::CtState;

/// In `CtState` order.
pub const CTSTATES: &[(&str, CtState)] = &[
    ("new", CtState::New),
    ("established", CtState::Established),
    ("related", CtState::Related),
    ("invalid", CtState::Invalid),
    ("untracked", CtState::Untracked),
];

/// Every state, as `CtState` bits.
pub const ALL_STATES: u8 = 0x1f;

pub fn ctstate_name(s: CtState) -> &'static str {
    CTSTATES
        .iter()
        .find(|(_, x)| *x == s)
        .map_or("?", |(n, _)| n)
}

/// As iptables writes it.
pub fn ctstate_upper(s: CtState) -> String {
    ctstate_name(s).to_ascii_uppercase()
}

/// The states of `bits`, in `CtState` order.
pub fn states_of(bits: u8) -> Vec<CtState> {
    CTSTATES
        .iter()
        .filter(|(_, s)| bits & s.bit() != 0)
        .map(|(_, s)| *s)
        .collect()
}

pub fn state_bits(states: &[CtState]) -> u8 {
    states.iter().fold(0, |b, s| b | s.bit())
}

/// `--ctstate`/`--state`'s comma list, in any case.
pub fn parse_ctstates(s: &str) -> Result<Vec<CtState>, String> {
    let mut bits = 0u8;
    for name in s.split(',') {
        let lower = name.to_ascii_lowercase();
        match CTSTATES.iter().find(|(n, _)| *n == lower) {
            Some((_, st)) => bits |= st.bit(),
            None if lower == "snat" || lower == "dnat" => {
                return Err(format!(
                    "state {} is not supported",
                    name.to_ascii_uppercase()
                ));
            }
            None => return Err(format!("unknown state {name:?}")),
        }
    }
    Ok(states_of(bits))
}

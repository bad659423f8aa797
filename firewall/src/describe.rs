//! Human-readable forms of datapath values read back from the maps.

use std::net::IpAddr;

use firewall_common::{
    Chain, CtState, FAMILY_V4, Rule, RuleAction,
    rule::match_flags::{CTSTATE, DPORT, DST, IIF, SPORT, SRC},
};

use crate::table::{key_addr, proto_name};

fn prefix_len(mask: &[u32; 4], family: u8) -> u32 {
    let words = if family == FAMILY_V4 { 1 } else { 4 };
    mask[..words]
        .iter()
        .map(|w| u32::from_be(*w).count_ones())
        .sum()
}

fn cidr(addr: &[u32; 4], mask: &[u32; 4], family: u8) -> String {
    let a: IpAddr = key_addr(addr, family);
    let len = prefix_len(mask, family);
    let full = if family == FAMILY_V4 { 32 } else { 128 };
    if len == full {
        a.to_string()
    } else {
        format!("{a}/{len}")
    }
}

fn ports(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn ifname(idx: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes.
    let p = unsafe { libc::if_indextoname(idx, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if#{idx}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// One line per rule, in the order the config writes selectors:
/// `input tcp dport 22 src 10.0.0.0/8 -> accept`.
pub fn rule(r: &Rule) -> String {
    let mut s = String::from(match r.chain {
        x if x == Chain::Input as u8 => "input",
        x if x == Chain::Forward as u8 => "forward",
        _ => "output",
    });
    let family = if r.family != 0 { r.family } else { FAMILY_V4 };
    if r.proto != 0 {
        s += &format!(" {}", proto_name(r.proto));
    } else if r.family != 0 && r.match_flags & (SRC | DST) == 0 {
        s += if r.family == FAMILY_V4 {
            " ipv4"
        } else {
            " ipv6"
        };
    }
    if r.match_flags & SPORT != 0 {
        s += &format!(" sport {}", ports(r.sport_lo, r.sport_hi));
    }
    if r.match_flags & DPORT != 0 {
        s += &format!(" dport {}", ports(r.dport_lo, r.dport_hi));
    }
    if r.match_flags & SRC != 0 {
        s += &format!(" src {}", cidr(&r.src, &r.src_mask, family));
    }
    if r.match_flags & DST != 0 {
        s += &format!(" dst {}", cidr(&r.dst, &r.dst_mask, family));
    }
    if r.match_flags & IIF != 0 {
        s += &format!(" iif {}", ifname(r.iif));
    }
    if r.match_flags & CTSTATE != 0 {
        let names: Vec<&str> = [
            (CtState::New, "new"),
            (CtState::Established, "established"),
            (CtState::Related, "related"),
            (CtState::Invalid, "invalid"),
            (CtState::Untracked, "untracked"),
        ]
        .iter()
        .filter(|(st, _)| r.ctstate & st.bit() != 0)
        .map(|(_, n)| *n)
        .collect();
        s += &format!(" ctstate {}", names.join(","));
    }
    s += if r.action == RuleAction::Accept as u8 {
        " -> accept"
    } else {
        " -> drop"
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn rules_read_back_from_the_map_form() {
        let cfg = config::parse(
            r#"
[[interface]]
name = "lo"
role = "wan"

[[rule]]
chain = "input"
proto = "tcp"
dport = 22
src = "10.0.0.0/8"
action = "accept"

[[rule]]
chain = "forward"
proto = "udp"
sport = "1000-2000"
dst = "fd00::1"
ctstate = ["new"]
action = "drop"
"#,
            "t.toml",
        )
        .unwrap();
        let ifx = |_: &str| Some(1);
        let lines: Vec<String> = cfg
            .rules
            .iter()
            .map(|r| rule(&r.to_rule(&ifx).unwrap()))
            .collect();
        assert_eq!(lines[0], "input tcp dport 22 src 10.0.0.0/8 -> accept");
        assert_eq!(
            lines[1],
            "forward udp sport 1000-2000 dst fd00::1 ctstate new -> drop"
        );
    }
}

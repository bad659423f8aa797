//! TCP flag tests: `--tcp-flags MASK SET`, `--syn`, and the config's
//! `tcp_flags`/`not_tcp_flags`/`syn`.

use std::fmt;

/// `--tcp-flags MASK SET`: of the flags in `mask`, exactly those in `set`
/// are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags {
    pub mask: u8,
    pub set: u8,
}

pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ALL: u8 = 0x3f;
}

/// What `--syn` means.
pub const SYN_ONLY: TcpFlags = TcpFlags {
    mask: tcp_flag::FIN | tcp_flag::SYN | tcp_flag::RST | tcp_flag::ACK,
    set: tcp_flag::SYN,
};

/// In the order iptables prints them.
pub const TCP_FLAG_NAMES: &[(&str, u8)] = &[
    ("FIN", tcp_flag::FIN),
    ("SYN", tcp_flag::SYN),
    ("RST", tcp_flag::RST),
    ("PSH", tcp_flag::PSH),
    ("ACK", tcp_flag::ACK),
    ("URG", tcp_flag::URG),
];

impl TcpFlags {
    pub fn meet(&self, other: &TcpFlags) -> Option<TcpFlags> {
        let common = self.mask & other.mask;
        (self.set & common == other.set & common).then_some(TcpFlags {
            mask: self.mask | other.mask,
            set: (self.set & self.mask) | (other.set & other.mask),
        })
    }
}

pub fn flag_names(bits: u8) -> Vec<&'static str> {
    TCP_FLAG_NAMES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect()
}

fn flag_list(bits: u8) -> String {
    match bits {
        0 => "NONE".into(),
        _ => flag_names(bits).join(","),
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", flag_list(self.mask), flag_list(self.set))
    }
}

/// One flag, or `all`, in any case.
pub fn flag_bits(name: &str) -> Option<u8> {
    match TCP_FLAG_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some((_, b)) => Some(*b),
        None if name.eq_ignore_ascii_case("all") => Some(tcp_flag::ALL),
        None => None,
    }
}

/// iptables' comma list of flags, where `NONE` is no flag.
pub fn parse_tcp_flags(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for name in s.split(',') {
        bits |= match flag_bits(name) {
            Some(b) => b,
            None if name.eq_ignore_ascii_case("none") => 0,
            None => return Err(format!("unknown TCP flag {name:?}")),
        };
    }
    Ok(bits)
}

/// `tcp_flags`, `not_tcp_flags` or `syn`: of the flags in `flags.mask`,
/// exactly those in `flags.set` are on (or, `negated`, not so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlagsMatch {
    pub flags: TcpFlags,
    pub negated: bool,
}

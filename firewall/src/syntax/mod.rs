//! The rule vocabulary the config and iptables share: addresses and
//! prefixes, address and port ranges, interface names, ICMP types, TCP
//! flags, rates, the names of protocols, conntrack states, REJECT answers
//! and log levels, and the shape of a condition (a key and its `not_`
//! form).
//!
//! The config's `[[rule]]` keys take iptables' spellings on purpose, so
//! that what `firewall import` writes reads the same as what a person
//! writes; keeping the types and their parsers here lets [`crate::config`]
//! and [`crate::iptables`] both use them without importing each other.
//! Where the two front ends read a value differently (a prefix with host
//! bits set), the parser takes the difference as a parameter.

mod addr;
mod ctstate;
mod icmp;
mod iface;
mod limit;
mod matching;
mod port;
mod proto;
mod target;
mod tcp_flags;

pub use addr::{AddrRange, Cidr, Family, HostBits, parse_addr_range, parse_ip};
pub use ctstate::{
    ALL_STATES, CTSTATES, ctstate_name, ctstate_upper, parse_ctstates, state_bits, states_of,
};
pub use icmp::{ICMP_TYPES, ICMPV6_TYPES, IcmpType, parse_icmp_type};
pub use iface::{Iface, interface_name_problem, parse_iface};
pub use limit::{Limit, MAX_LIMIT_BURST, RateUnit, parse_rate};
pub use matching::Match;
pub use port::{
    MAX_PORT_SLOTS, PortRange, parse_port, parse_port_list, parse_port_range, port_slots,
};
pub use proto::{
    PORT_PROTOCOLS, PROTOCOLS, iptables_proto_name, parse_proto, proto_by_name, proto_name,
    proto_number,
};
pub use target::{
    DEFAULT_LOG_LEVEL, MAX_LOG_PREFIX, REJECT_WITH, parse_log_level, reject_answer,
    reject_canonical, reject_name,
};
pub use tcp_flags::{
    SYN_ONLY, TCP_FLAG_NAMES, TcpFlags, TcpFlagsMatch, flag_bits, flag_names, parse_tcp_flags,
    tcp_flag,
};

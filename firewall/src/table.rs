//! The connection table as users see it: pairs of entries joined into
//! connections, filtered, and printed like `conntrack -L`.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use firewall_common::{
    CtEntry, CtKey, FAMILY_V4, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP, TcpState, ct::flags, sctp::SctpState,
};
use serde::Serialize;

use crate::syntax::{proto_name, proto_number};

pub fn key_addr(words: &[u32; 4], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    } else {
        let mut b = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
}

impl Tuple {
    fn from_key(k: &CtKey) -> Self {
        let icmp = matches!(k.proto, IPPROTO_ICMP | IPPROTO_ICMPV6);
        let ports = k.has_ports();
        Tuple {
            src: key_addr(&k.src, k.family),
            dst: key_addr(&k.dst, k.family),
            sport: ports.then(|| u16::from_be(k.sport)),
            dport: ports.then(|| u16::from_be(k.dport)),
            id: icmp.then(|| u16::from_be(k.sport)),
            icmp_type: icmp.then_some(k.dport as u8),
        }
    }

    fn conntrack_fmt(&self) -> String {
        let mut s = format!("src={} dst={}", self.src, self.dst);
        if let (Some(sp), Some(dp)) = (self.sport, self.dport) {
            s += &format!(" sport={sp} dport={dp}");
        }
        if let (Some(t), Some(id)) = (self.icmp_type, self.id) {
            s += &format!(" type={t} code=0 id={id}");
        }
        s
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub orig: u64,
    pub reply: u64,
}

/// One connection: its original entry joined with its reply entry.
#[derive(Clone, Debug, Serialize)]
pub struct Connection {
    pub proto: String,
    pub family: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_state: Option<&'static str>,
    /// An SCTP association's state (`sctp_print_conntrack`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sctp_state: Option<&'static str>,
    pub orig: Tuple,
    pub reply: Tuple,
    pub expires_in: u64,
    pub flags: Vec<&'static str>,
    pub packets: Counters,
    pub bytes: Counters,
    /// The conntrack helper watching this connection (`helper=ftp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helper: Option<&'static str>,
    #[serde(skip)]
    pub proto_num: u8,
    /// The keys of its original and reply entries, for `conntrack delete`.
    #[serde(skip)]
    pub keys: [CtKey; 2],
}

/// Joins entries into connections. Entries whose partner is missing (a pair
/// caught mid-deletion, or a table an older version's LRU evicted from) are
/// still shown, from the half
/// we have. Expired connections are left out: the datapath already treats
/// them as gone.
pub fn connections(entries: &[(CtKey, CtEntry)], now_ns: u64) -> Vec<Connection> {
    let by_key: HashMap<&CtKey, &CtEntry> = entries.iter().map(|(k, e)| (k, e)).collect();
    let mut out = Vec::new();
    for (key, e) in entries {
        let peer = by_key.get(&e.peer).copied();
        let (orig_key, orig, reply_key, reply) = if e.is_reply() {
            if peer.is_some() {
                continue; // shown from its original entry
            }
            (&e.peer, None, key, Some(e))
        } else {
            (key, Some(e), &e.peer, peer)
        };
        let expires = orig
            .map(|o| o.expires_ns)
            .into_iter()
            .chain(reply.map(|r| r.expires_ns))
            .max()
            .unwrap_or(0);
        if expires < now_ns {
            continue;
        }
        let any = orig.or(reply).expect("at least one half");
        let mut fl = Vec::new();
        if any.flags & flags::SEEN_REPLY == 0 {
            fl.push("UNREPLIED");
        }
        if any.flags & flags::ASSURED != 0 {
            fl.push("ASSURED");
        }
        if any.flags & flags::EXPECTED != 0 {
            fl.push("EXPECTED");
        }
        out.push(Connection {
            proto: conntrack_proto_name(orig_key.proto),
            family: if orig_key.family == FAMILY_V4 {
                "ipv4"
            } else {
                "ipv6"
            },
            tcp_state: (orig_key.proto == IPPROTO_TCP)
                .then(|| TcpState::from_u8(any.tcp_state).map_or("NONE", TcpState::name)),
            sctp_state: (orig_key.proto == IPPROTO_SCTP)
                .then(|| SctpState::from_u8(any.sctp.state).map_or("NONE", SctpState::name)),
            orig: Tuple::from_key(orig_key),
            reply: Tuple::from_key(reply_key),
            expires_in: (expires - now_ns) / 1_000_000_000,
            flags: fl,
            packets: Counters {
                orig: orig.map_or(0, |o| o.packets),
                reply: reply.map_or(0, |r| r.packets),
            },
            bytes: Counters {
                orig: orig.map_or(0, |o| o.bytes),
                reply: reply.map_or(0, |r| r.bytes),
            },
            helper: (any.flags & flags::HELPER_FTP != 0).then_some("ftp"),
            proto_num: orig_key.proto,
            keys: [*orig_key, *reply_key],
        });
    }
    out.sort_by(|a, b| {
        (a.proto_num, a.orig.src, a.orig.dst, a.orig.sport, a.orig.id).cmp(&(
            b.proto_num,
            b.orig.src,
            b.orig.dst,
            b.orig.sport,
            b.orig.id,
        ))
    });
    out
}

/// How full the table is, for `firewall stats`: every entry the map holds
/// (expired ones the ager has not removed yet included: they occupy it),
/// and the connections they make, by protocol.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TableFill {
    pub entries: u64,
    pub connections: u64,
    pub protocols: ProtoCounts,
}

/// Connections per protocol (ICMP counts ICMPv6 too).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ProtoCounts {
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
    pub sctp: u64,
    pub other: u64,
}

/// Counts a snapshot of the table. A connection is its original entry, or
/// a reply entry whose original is missing (a pair caught mid-deletion).
pub fn fill(entries: &[(CtKey, CtEntry)]) -> TableFill {
    use std::collections::HashSet;
    let keys: HashSet<&CtKey> = entries.iter().map(|(k, _)| k).collect();
    let mut f = TableFill {
        entries: entries.len() as u64,
        ..TableFill::default()
    };
    for (key, e) in entries {
        if e.is_reply() && keys.contains(&e.peer) {
            continue;
        }
        f.connections += 1;
        let p = &mut f.protocols;
        *match key.proto {
            IPPROTO_TCP => &mut p.tcp,
            IPPROTO_UDP => &mut p.udp,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => &mut p.icmp,
            IPPROTO_SCTP => &mut p.sctp,
            _ => &mut p.other,
        } += 1;
    }
    f
}

/// `conntrack -L` filters: `-s/-d/--sport/--dport` apply to the original
/// tuple, `--reply-*` to the reply tuple, as conntrack's do; every one given
/// must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub proto: Option<u8>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub reply_src: Option<IpAddr>,
    pub reply_dst: Option<IpAddr>,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    /// "ipv4" or "ipv6" (`-f`).
    pub family: Option<&'static str>,
    /// A TCP or SCTP state name (`--state ESTABLISHED`).
    pub state: Option<String>,
    /// Flags that must all be set (`--status ASSURED,UNREPLIED`).
    pub status: Vec<String>,
    pub nat: Option<NatFilter>,
}

/// `--src-nat`, `--dst-nat`, `--any-nat`: read off the tuples, as conntrack
/// does (a reply that does not answer the original's source was
/// source-translated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatFilter {
    Src,
    Dst,
    Any,
}

impl Filter {
    pub fn matches(&self, c: &Connection) -> bool {
        let snat = c.reply.dst != c.orig.src || c.reply.dport != c.orig.sport;
        let dnat = c.reply.src != c.orig.dst || c.reply.sport != c.orig.dport;
        self.proto.is_none_or(|p| p == c.proto_num)
            && self.src.is_none_or(|a| a == c.orig.src)
            && self.dst.is_none_or(|a| a == c.orig.dst)
            && self.sport.is_none_or(|p| Some(p) == c.orig.sport)
            && self.dport.is_none_or(|p| Some(p) == c.orig.dport)
            && self.reply_src.is_none_or(|a| a == c.reply.src)
            && self.reply_dst.is_none_or(|a| a == c.reply.dst)
            && self.reply_sport.is_none_or(|p| Some(p) == c.reply.sport)
            && self.reply_dport.is_none_or(|p| Some(p) == c.reply.dport)
            && self.family.is_none_or(|f| f == c.family)
            && self.state.as_deref().is_none_or(|st| {
                c.tcp_state
                    .or(c.sctp_state)
                    .is_some_and(|have| have.eq_ignore_ascii_case(st))
            })
            && self.status.iter().all(|want| {
                let want = want.to_ascii_uppercase();
                match want.as_str() {
                    "SEEN_REPLY" => !c.flags.contains(&"UNREPLIED"),
                    _ => c.flags.contains(&want.as_str()),
                }
            })
            && match self.nat {
                None => true,
                Some(NatFilter::Src) => snat,
                Some(NatFilter::Dst) => dnat,
                Some(NatFilter::Any) => snat || dnat,
            }
    }
}

/// One `conntrack -L` line (with accounting on).
pub fn conntrack_line(c: &Connection) -> String {
    let mut s = format!("{:<8} {} {}", c.proto, c.proto_num, c.expires_in);
    if let Some(st) = c.tcp_state.or(c.sctp_state) {
        s += " ";
        s += st;
    }
    s += &format!(
        " {} packets={} bytes={}",
        c.orig.conntrack_fmt(),
        c.packets.orig,
        c.bytes.orig
    );
    if c.flags.contains(&"UNREPLIED") {
        s += " [UNREPLIED]";
    }
    s += &format!(
        " {} packets={} bytes={}",
        c.reply.conntrack_fmt(),
        c.packets.reply,
        c.bytes.reply
    );
    if c.flags.contains(&"ASSURED") {
        s += " [ASSURED]";
    }
    s += " mark=0";
    if let Some(h) = c.helper {
        s += &format!(" helper={h}");
    }
    s += " use=1";
    s
}

/// One pending expectation, as `conntrack -L expect` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ExpectView {
    pub proto: String,
    pub expires_in: u64,
    /// The announced data connection: source (any port) → destination.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub dport: u16,
    /// The control connection's original tuple.
    pub master: Tuple,
    pub helper: &'static str,
    /// Where NAT sends the data connection, when the master is translated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_to: Option<String>,
}

pub fn expectations(
    entries: &[(
        firewall_common::ftp::ExpectKey,
        firewall_common::ftp::Expectation,
    )],
    now_ns: u64,
) -> Vec<ExpectView> {
    let mut out: Vec<ExpectView> = entries
        .iter()
        .filter(|(_, e)| e.expires_ns >= now_ns)
        .map(|(k, e)| ExpectView {
            proto: proto_name(k.proto),
            expires_in: (e.expires_ns - now_ns) / 1_000_000_000,
            src: key_addr(&k.src, k.family),
            dst: key_addr(&k.dst, k.family),
            dport: u16::from_be(k.dport),
            master: Tuple::from_key(&e.master),
            helper: "ftp",
            nat_to: (e.flags & firewall_common::ftp::expect_flags::NAT != 0).then(|| {
                format!(
                    "{}:{}",
                    key_addr(&e.nat_dst, k.family),
                    u16::from_be(e.nat_dport)
                )
            }),
        })
        .collect();
    out.sort_by_key(|x| (x.src, x.dst, x.dport));
    out
}

/// `conntrack -L expect` style: `300 proto=6 src=… dst=… sport=0 dport=…`.
pub fn expect_line(x: &ExpectView) -> String {
    let mut s = format!(
        "{} proto={} src={} dst={} sport=0 dport={} mask-src=all mask-dst=all sport=0 dport=65535 \
         master-src={} master-dst={}",
        x.expires_in,
        table_proto_num(&x.proto),
        x.src,
        x.dst,
        x.dport,
        x.master.src,
        x.master.dst,
    );
    if let (Some(sp), Some(dp)) = (x.master.sport, x.master.dport) {
        s += &format!(" sport={sp} dport={dp}");
    }
    if let Some(n) = &x.nat_to {
        s += &format!(" nat-to={n}");
    }
    s += &format!(" helper={}", x.helper);
    s
}

fn table_proto_num(name: &str) -> u8 {
    proto_number(name).unwrap_or(0)
}

/// The protocol as `conntrack -L` names it: the trackers netfilter has
/// names for, else what the firewall calls it (a number for the rest).
fn conntrack_proto_name(p: u8) -> String {
    match p {
        IPPROTO_SCTP => "sctp".to_owned(),
        33 => "dccp".to_owned(),
        47 => "gre".to_owned(),
        136 => "udplite".to_owned(),
        _ => proto_name(p),
    }
}

#[cfg(test)]
mod tests {
    use firewall_common::ct::CtDir;

    use super::*;

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
    }

    fn pair(state: TcpState, fl: u8, expires: u64) -> Vec<(CtKey, CtEntry)> {
        let orig = CtKey {
            src: v4([10, 0, 1, 2]),
            dst: v4([10, 0, 2, 2]),
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: IPPROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let reply = orig.inverted();
        let e = CtEntry {
            peer: reply,
            expires_ns: expires,
            tcp_state: state as u8,
            flags: fl,
            packets: 3,
            bytes: 180,
            ..CtEntry::default()
        };
        let r = CtEntry {
            peer: orig,
            dir: CtDir::Reply as u8,
            packets: 2,
            bytes: 120,
            ..e
        };
        vec![(orig, e), (reply, r)]
    }

    /// A pair of `proto` from source port `port`.
    fn pair_of(proto: u8, port: u16) -> Vec<(CtKey, CtEntry)> {
        pair(TcpState::Established, 0, 0)
            .into_iter()
            .map(|(mut k, mut e)| {
                for key in [&mut k, &mut e.peer] {
                    key.proto = proto;
                    if key.dport == 80u16.to_be() {
                        key.sport = port.to_be();
                    } else {
                        key.dport = port.to_be();
                    }
                }
                (k, e)
            })
            .collect()
    }

    #[test]
    fn fill_counts_entries_connections_and_protocols() {
        let mut entries = Vec::new();
        for (i, proto) in [
            IPPROTO_TCP,
            IPPROTO_TCP,
            IPPROTO_UDP,
            IPPROTO_ICMP,
            IPPROTO_ICMPV6,
        ]
        .into_iter()
        .chain([IPPROTO_SCTP, 47])
        .enumerate()
        {
            entries.extend(pair_of(proto, 1000 + i as u16));
        }
        // A reply half whose original is gone still counts as a connection,
        // once.
        entries.push(pair_of(IPPROTO_UDP, 2000)[1]);
        let f = fill(&entries);
        assert_eq!(f.entries, 15);
        assert_eq!(f.connections, 8);
        assert_eq!(
            f.protocols,
            ProtoCounts {
                tcp: 2,
                udp: 2,
                icmp: 2,
                sctp: 1,
                other: 1,
            }
        );
        assert_eq!(fill(&[]), TableFill::default());
    }

    #[test]
    fn pair_joins_into_one_connection_with_conntrack_format() {
        let entries = pair(
            TcpState::Established,
            flags::SEEN_REPLY | flags::ASSURED,
            100 * 1_000_000_000,
        );
        let conns = connections(&entries, 1_000_000_000);
        assert_eq!(conns.len(), 1);
        assert_eq!(
            conntrack_line(&conns[0]),
            "tcp      6 99 ESTABLISHED src=10.0.1.2 dst=10.0.2.2 sport=40000 dport=80 \
             packets=3 bytes=180 src=10.0.2.2 dst=10.0.1.2 sport=80 dport=40000 \
             packets=2 bytes=120 [ASSURED] mark=0 use=1"
        );
    }

    #[test]
    fn sctp_associations_show_their_state_and_ports() {
        let mut entries = pair(
            TcpState::None,
            flags::SEEN_REPLY | flags::ASSURED,
            100 * 1_000_000_000,
        );
        for (k, e) in entries.iter_mut() {
            k.proto = IPPROTO_SCTP;
            e.peer.proto = IPPROTO_SCTP;
            e.sctp.state = SctpState::Established as u8;
        }
        let c = &connections(&entries, 1_000_000_000)[0];
        assert_eq!(c.tcp_state, None);
        assert_eq!(
            conntrack_line(c),
            "sctp     132 99 ESTABLISHED src=10.0.1.2 dst=10.0.2.2 sport=40000 dport=80 \
             packets=3 bytes=180 src=10.0.2.2 dst=10.0.1.2 sport=80 dport=40000 \
             packets=2 bytes=120 [ASSURED] mark=0 use=1"
        );
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["sctp_state"], "ESTABLISHED");
    }

    #[test]
    fn helped_connections_are_marked_like_conntrack() {
        let entries = pair(
            TcpState::Established,
            flags::SEEN_REPLY | flags::ASSURED | flags::HELPER_FTP,
            100 * 1_000_000_000,
        );
        let c = &connections(&entries, 0)[0];
        assert_eq!(c.helper, Some("ftp"));
        assert!(conntrack_line(c).ends_with("[ASSURED] mark=0 helper=ftp use=1"));
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["helper"], "ftp");
    }

    #[test]
    fn unreplied_and_expired_connections() {
        let entries = pair(TcpState::SynSent, 0, 50 * 1_000_000_000);
        let conns = connections(&entries, 0);
        assert_eq!(conns[0].flags, vec!["UNREPLIED"]);
        assert!(conntrack_line(&conns[0]).contains("[UNREPLIED] src=10.0.2.2"));
        assert!(connections(&entries, 51 * 1_000_000_000).is_empty());
    }

    #[test]
    fn filters_on_the_reply_tuple_family_state_status_and_nat() {
        let mut entries = pair(
            TcpState::Established,
            flags::SEEN_REPLY | flags::ASSURED,
            u64::MAX,
        );
        // Masquerade: the reply comes back to 10.0.2.1:20000.
        let public = CtKey {
            dst: v4([10, 0, 2, 1]),
            dport: 20000u16.to_be(),
            ..entries[1].0
        };
        entries[1].0 = public;
        entries[0].1.peer = public;
        let c = &connections(&entries, 0)[0];
        let f = |g: fn(&mut Filter)| {
            let mut f = Filter::default();
            g(&mut f);
            f.matches(c)
        };
        assert!(f(|f| f.reply_dst = Some("10.0.2.1".parse().unwrap())));
        assert!(!f(|f| f.reply_dst = Some("10.0.1.2".parse().unwrap())));
        assert!(f(|f| f.reply_dport = Some(20000)));
        assert!(f(|f| f.reply_src = Some("10.0.2.2".parse().unwrap())));
        assert!(!f(|f| f.reply_sport = Some(20000)));
        assert!(f(|f| f.family = Some("ipv4")));
        assert!(!f(|f| f.family = Some("ipv6")));
        assert!(f(|f| f.state = Some("established".into())));
        assert!(!f(|f| f.state = Some("SYN_SENT".into())));
        assert!(f(|f| f.status = vec!["ASSURED".into(), "SEEN_REPLY".into()]));
        assert!(!f(|f| f.status = vec!["UNREPLIED".into()]));
        assert!(f(|f| f.nat = Some(NatFilter::Src)));
        assert!(f(|f| f.nat = Some(NatFilter::Any)));
        assert!(!f(|f| f.nat = Some(NatFilter::Dst)));
        // Untranslated: no NAT filter matches.
        let plain = pair(TcpState::Established, flags::SEEN_REPLY, u64::MAX);
        let p = &connections(&plain, 0)[0];
        let any = Filter {
            nat: Some(NatFilter::Any),
            ..Filter::default()
        };
        assert!(!any.matches(p));
    }

    #[test]
    fn filters_apply_to_the_original_tuple() {
        let entries = pair(TcpState::Established, flags::SEEN_REPLY, u64::MAX);
        let c = &connections(&entries, 0)[0];
        assert!(
            Filter {
                dport: Some(80),
                ..Filter::default()
            }
            .matches(c)
        );
        assert!(
            !Filter {
                sport: Some(80),
                ..Filter::default()
            }
            .matches(c)
        );
        assert!(
            Filter {
                proto: Some(IPPROTO_TCP),
                ..Filter::default()
            }
            .matches(c)
        );
        assert!(
            !Filter {
                proto: Some(IPPROTO_UDP),
                ..Filter::default()
            }
            .matches(c)
        );
        let src: IpAddr = "10.0.1.2".parse().unwrap();
        assert!(
            Filter {
                src: Some(src),
                ..Filter::default()
            }
            .matches(c)
        );
        assert!(
            !Filter {
                dst: Some(src),
                ..Filter::default()
            }
            .matches(c)
        );
    }
}

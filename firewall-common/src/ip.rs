//! IP-level checks a packet must pass before it may create a connection:
//! what the kernel's input path would refuse (`ip_rcv_options` /
//! `ip_options_compile`, the martian checks of `ip_route_input_slow` and
//! `ip6_rcv_core`), so that no state is made for a packet the stack then
//! drops.
//!
//! Addresses are as read from the packet (`u32::from_ne_bytes` of the four
//! bytes, `[u32; 4]` for IPv6), like `CtKey`.

/// The most option bytes an IPv4 header can carry (IHL 15).
pub const MAX_IPV4_OPTIONS: usize = 40;

const IPOPT_END: u8 = 0;
const IPOPT_NOOP: u8 = 1;
const IPOPT_RR: u8 = 7;
const IPOPT_TS: u8 = 68;
const IPOPT_LSRR: u8 = 131;
const IPOPT_CIPSO: u8 = 134;
const IPOPT_SSRR: u8 = 137;
const IPOPT_RA: u8 = 148;

/// What an IPv4 header's options amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Options {
    Ok,
    /// Loose or strict source routing. Refused on every new connection,
    /// whatever `accept_source_route` says: a sender choosing the path its
    /// replies take is a spoofing tool (RFC 7126 §4.3–4.4), and a router
    /// that honoured it would forward where the policy never looked.
    SourceRoute,
    /// What `ip_options_compile` rejects with a parameter problem: a
    /// missing or impossible length, a bad pointer, a duplicated record
    /// route or timestamp, a full timestamp overflow counter; and CIPSO, which
    /// needs a NetLabel configuration this firewall never has.
    Malformed,
}

/// Checks the option bytes of an IPv4 header (`opts[..len]`, `len` at most
/// 40) as `ip_options_compile` does for a received packet.
pub fn ipv4_options(opts: &[u8; MAX_IPV4_OPTIONS], len: usize) -> Ipv4Options {
    let mut walk = OptionWalk::new(len);
    // Every step advances by at least one byte: 40 steps cover the header.
    for _ in 0..MAX_IPV4_OPTIONS {
        if let Some(done) = walk.step(opts) {
            return done;
        }
    }
    walk.finish()
}

/// The walk of [`ipv4_options`], one option per [`OptionWalk::step`], so the
/// datapath can run it as a `bpf_loop` callback with the walk in map
/// memory (unrolled, its branches multiply past the verifier's budget).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OptionWalk {
    /// Offset of the next option.
    pub at: u8,
    /// Option bytes in the header.
    pub len: u8,
    /// `SEEN_*` bits.
    pub seen: u8,
    /// 0 while walking; else the result as `1 + Ipv4Options as u8`.
    pub done: u8,
}

const SEEN_RR: u8 = 1;
const SEEN_TS: u8 = 2;
const SEEN_SRR: u8 = 4;

impl OptionWalk {
    pub fn new(len: usize) -> OptionWalk {
        OptionWalk {
            at: 0,
            len: if len > MAX_IPV4_OPTIONS {
                MAX_IPV4_OPTIONS as u8
            } else {
                len as u8
            },
            seen: 0,
            done: 0,
        }
    }

    /// The result, once the walk has ended or run out of options.
    pub fn finish(&self) -> Ipv4Options {
        match self.done {
            2 => Ipv4Options::SourceRoute,
            3 => Ipv4Options::Malformed,
            _ if self.seen & SEEN_SRR != 0 => Ipv4Options::SourceRoute,
            _ => Ipv4Options::Ok,
        }
    }

    fn end(&mut self, r: Ipv4Options) -> Option<Ipv4Options> {
        self.done = 1 + r as u8;
        Some(r)
    }

    /// Reads one option; `Some` once the walk is over.
    pub fn step(&mut self, opts: &[u8; MAX_IPV4_OPTIONS]) -> Option<Ipv4Options> {
        if self.done != 0 {
            return Some(self.finish());
        }
        let byte = |i: usize| opts.get(i).copied().unwrap_or(0);
        let i = self.at as usize;
        let len = self.len as usize;
        if i >= len {
            let r = self.finish();
            return self.end(r);
        }
        let kind = byte(i);
        if kind == IPOPT_END {
            let r = self.finish();
            return self.end(r);
        }
        if kind == IPOPT_NOOP {
            self.at += 1;
            return None;
        }
        if i + 1 >= len {
            return self.end(Ipv4Options::Malformed);
        }
        let optlen = byte(i + 1) as usize;
        if optlen < 2 || optlen > len - i {
            return self.end(Ipv4Options::Malformed);
        }
        let ptr = byte(i + 2) as usize;
        let ok = match kind {
            IPOPT_LSRR | IPOPT_SSRR => {
                let ok = optlen >= 3 && ptr >= 4 && self.seen & SEEN_SRR == 0;
                self.seen |= SEEN_SRR;
                ok
            }
            IPOPT_RR => {
                let room = ptr > optlen || ptr + 3 <= optlen;
                let ok = optlen >= 3 && ptr >= 4 && self.seen & SEEN_RR == 0 && room;
                self.seen |= SEEN_RR;
                ok
            }
            IPOPT_TS => {
                let flags = byte(i + 3);
                let room = if ptr <= optlen {
                    // An unknown flag is left alone on received packets.
                    let need = if matches!(flags & 0x0f, 1 | 3) { 7 } else { 3 };
                    ptr + need <= optlen
                } else {
                    // Full: the overflow counter must have room.
                    flags & 0xf0 != 0xf0
                };
                let ok = optlen >= 4 && ptr >= 5 && self.seen & SEEN_TS == 0 && room;
                self.seen |= SEEN_TS;
                ok
            }
            IPOPT_RA => optlen >= 4,
            IPOPT_CIPSO => false,
            // Security, stream id and unknown options are kept as they are
            // on received packets.
            _ => true,
        };
        if !ok {
            return self.end(Ipv4Options::Malformed);
        }
        self.at += optlen as u8;
        None
    }
}

#[inline(always)]
fn v4_octets(a: u32) -> [u8; 4] {
    a.to_ne_bytes()
}

/// An IPv4 source the input path calls martian for every packet
/// (`ip_route_input_slow`): multicast, limited broadcast, `0.0.0.0/8`
/// (except `0.0.0.0` to the limited broadcast, which DHCP clients send) and
/// loopback. A local or directed-broadcast source needs the routing table
/// and is checked there.
pub fn martian_source_v4(src: u32, dst: u32) -> bool {
    let s = v4_octets(src);
    let d = v4_octets(dst);
    let lbcast = |o: [u8; 4]| o == [255, 255, 255, 255];
    if s[0] >= 224 && s[0] <= 239 || lbcast(s) || s[0] == 127 {
        return true;
    }
    s[0] == 0 && !(src == 0 && lbcast(d))
}

/// An IPv4 destination the input path refuses: `0.0.0.0/8` and loopback.
pub fn martian_destination_v4(dst: u32) -> bool {
    let d = v4_octets(dst);
    d[0] == 0 || d[0] == 127
}

#[inline(always)]
fn v6_first(a: &[u32; 4]) -> [u8; 4] {
    a[0].to_ne_bytes()
}

#[inline(always)]
fn v6_is_unspecified(a: &[u32; 4]) -> bool {
    a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 0
}

#[inline(always)]
fn v6_is_loopback(a: &[u32; 4]) -> bool {
    a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == u32::from_ne_bytes([0, 0, 0, 1])
}

#[inline(always)]
fn v6_is_v4_mapped(a: &[u32; 4]) -> bool {
    a[0] == 0 && a[1] == 0 && a[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
}

#[inline(always)]
pub fn v6_is_multicast(a: &[u32; 4]) -> bool {
    v6_first(a)[0] == 0xff
}

/// `fe80::/10`.
#[inline(always)]
pub fn v6_is_link_local(a: &[u32; 4]) -> bool {
    let b = v6_first(a);
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}

/// An address only meaningful on one link: link-local unicast, or
/// multicast of interface- or link-local scope.
#[inline(always)]
pub fn v6_is_link_scope(a: &[u32; 4]) -> bool {
    let b = v6_first(a);
    v6_is_link_local(a) || (b[0] == 0xff && b[1] & 0x0f <= 2)
}

/// An IPv6 source no new connection may come from: multicast, loopback
/// from outside (`ip6_rcv_core`), IPv4-mapped (RFC 4291 §2.5.5.2), or the
/// unspecified address (only duplicate-address detection uses it, and that
/// is neighbour discovery, never tracked).
pub fn martian_source_v6(src: &[u32; 4]) -> bool {
    v6_is_multicast(src) || v6_is_loopback(src) || v6_is_v4_mapped(src) || v6_is_unspecified(src)
}

/// An IPv6 destination the input path refuses: unspecified, loopback,
/// IPv4-mapped, and multicast of reserved (0) or interface-local (1) scope.
pub fn martian_destination_v6(dst: &[u32; 4]) -> bool {
    let b = v6_first(dst);
    v6_is_unspecified(dst)
        || v6_is_loopback(dst)
        || v6_is_v4_mapped(dst)
        || (b[0] == 0xff && b[1] & 0x0f <= 1)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn opts(bytes: &[u8]) -> Ipv4Options {
        let mut o = [0u8; MAX_IPV4_OPTIONS];
        o[..bytes.len()].copy_from_slice(bytes);
        ipv4_options(&o, bytes.len())
    }

    #[test]
    fn ordinary_options_pass() {
        assert_eq!(opts(&[]), Ipv4Options::Ok);
        assert_eq!(opts(&[1, 1, 1, 0]), Ipv4Options::Ok);
        // Router alert (RFC 2113), as IGMP and RSVP send it.
        assert_eq!(opts(&[148, 4, 0, 0]), Ipv4Options::Ok);
        // Record route with room for two addresses.
        assert_eq!(
            opts(&[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Ipv4Options::Ok
        );
        // A full record route (pointer past the end) is fine.
        assert_eq!(opts(&[7, 7, 8, 0, 0, 0, 0, 0]), Ipv4Options::Ok);
        // Timestamps only, room for one.
        assert_eq!(opts(&[68, 8, 5, 0, 0, 0, 0, 0]), Ipv4Options::Ok);
        // An unknown timestamp flag is left alone on input.
        assert_eq!(opts(&[68, 8, 5, 2, 0, 0, 0, 0]), Ipv4Options::Ok);
        // Unknown options are kept, as the kernel does on input.
        assert_eq!(opts(&[30, 4, 0, 0]), Ipv4Options::Ok);
        // Anything after END is padding.
        assert_eq!(opts(&[0, 99, 99, 99]), Ipv4Options::Ok);
    }

    #[test]
    fn source_routes_are_named() {
        assert_eq!(opts(&[131, 7, 4, 10, 0, 0, 1, 0]), Ipv4Options::SourceRoute);
        assert_eq!(opts(&[1, 137, 7, 4, 10, 0, 0, 1]), Ipv4Options::SourceRoute);
    }

    #[test]
    fn what_ip_options_compile_rejects_is_malformed() {
        for bad in [
            &[7u8][..],                                            // no length byte
            &[7, 1, 0, 0],                                         // length below 2
            &[7, 9, 4, 0],                                         // longer than the header
            &[7, 7, 3, 0, 0, 0, 0, 0],                             // record route pointer < 4
            &[7, 6, 4, 0, 0, 0],                                   // no room for an address
            &[7, 3, 4, 7, 3, 4, 0, 0],                             // record route twice
            &[68, 8, 4, 0, 0, 0, 0, 0],                            // timestamp pointer < 5
            &[68, 8, 5, 1, 0, 0, 0, 0],                            // address + stamp: no room
            &[68, 4, 5, 0xf0, 0, 0, 0, 0],                         // full, overflow counter full
            &[148, 2, 0, 0],                                       // router alert too short
            &[134, 6, 0, 0, 0, 1, 0, 0],                           // CIPSO
            &[131, 7, 4, 0, 0, 0, 0, 137, 7, 4, 0, 0, 0, 0, 0, 0], // two routes
            &[131, 2, 0, 0],                                       // source route without pointer
        ] {
            assert_eq!(opts(bad), Ipv4Options::Malformed, "{bad:?}");
        }
    }

    /// Random option bytes never make the walk read out of bounds or
    /// loop: every input gets an answer.
    #[test]
    fn random_options_always_get_an_answer() {
        let mut rng = crate::testing::Rng::xorshift64(0x1234_5678_9abc_def0);
        for _ in 0..50_000 {
            let mut o = [0u8; MAX_IPV4_OPTIONS];
            for b in o.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            let len = 4 * rng.below(11) as usize;
            let _ = ipv4_options(&o, len);
        }
    }

    fn v4(s: &str) -> u32 {
        u32::from_ne_bytes(s.parse::<Ipv4Addr>().unwrap().octets())
    }

    fn v6(s: &str) -> [u32; 4] {
        let o = s.parse::<Ipv6Addr>().unwrap().octets();
        core::array::from_fn(|i| {
            u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        })
    }

    #[test]
    fn ipv4_martians() {
        let any = v4("198.51.100.1");
        for s in [
            "224.0.0.1",
            "239.1.2.3",
            "255.255.255.255",
            "127.0.0.1",
            "0.1.2.3",
        ] {
            assert!(martian_source_v4(v4(s), any), "{s}");
        }
        assert!(martian_source_v4(0, any));
        assert!(
            !martian_source_v4(0, v4("255.255.255.255")),
            "DHCP discover"
        );
        for s in ["10.0.0.1", "203.0.113.9", "100.64.0.1", "240.0.0.1"] {
            assert!(!martian_source_v4(v4(s), any), "{s}");
        }
        for d in ["0.0.0.0", "0.9.9.9", "127.0.0.1"] {
            assert!(martian_destination_v4(v4(d)), "{d}");
        }
        for d in ["10.0.0.1", "255.255.255.255", "224.0.0.251"] {
            assert!(!martian_destination_v4(v4(d)), "{d}");
        }
    }

    #[test]
    fn ipv6_martians_and_scopes() {
        for s in ["ff02::1", "::1", "::", "::ffff:10.0.0.1"] {
            assert!(martian_source_v6(&v6(s)), "{s}");
        }
        for s in ["fe80::1", "2001:db8::1", "fd00::5"] {
            assert!(!martian_source_v6(&v6(s)), "{s}");
        }
        for d in ["::", "::1", "ff00::1", "ff01::1", "::ffff:1.2.3.4"] {
            assert!(martian_destination_v6(&v6(d)), "{d}");
        }
        for d in ["ff02::1", "ff05::2", "2001:db8::1", "fe80::1"] {
            assert!(!martian_destination_v6(&v6(d)), "{d}");
        }
        for a in ["fe80::1", "febf::1", "ff02::1", "ff02::1:ff00:5", "ff01::1"] {
            assert!(v6_is_link_scope(&v6(a)), "{a}");
        }
        for a in ["fec0::1", "ff05::1", "ff0e::1", "2001:db8::1"] {
            assert!(!v6_is_link_scope(&v6(a)), "{a}");
        }
    }
}

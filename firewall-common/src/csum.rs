//! Internet checksum arithmetic (RFC 1071) and incremental updates
//! (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! All values are 16-bit words exactly as they sit in the packet, read with
//! native byte order (`u16::from_ne_bytes`). One's-complement sums do not
//! depend on byte order as long as every word is read the same way, so the
//! result can be written back with `to_ne_bytes` and no swapping happens on
//! the per-packet path.
//!
//! XDP has no checksum helpers, so the datapath uses these where the kernel's
//! `bpf_l3/l4_csum_replace` are not available (ICMP error payloads, XDP
//! rewrites). They assume the checksum field holds a full checksum, which is
//! true for ICMP and for anything a NIC hands to native XDP; a locally
//! generated TCP/UDP packet with `CHECKSUM_PARTIAL` holds only the
//! pseudo-header sum and must go through the kernel helpers instead.

/// Adds with end-around carry folded in at the end.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum field value after one 16-bit word of the covered data
/// changes from `old` to `new`.
#[inline(always)]
pub const fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check) as u32 + (!old) as u32 + new as u32;
    !fold(sum)
}

/// As [`replace_u16`] for a 32-bit value (an IPv4 address), given as the
/// native-order `u32` of its four packet bytes.
#[inline(always)]
pub const fn replace_u32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check) as u32
        + (!(old as u16)) as u32
        + (!((old >> 16) as u16)) as u32
        + (new as u16) as u32
        + ((new >> 16) as u16) as u32;
    !fold(sum)
}

/// As [`replace_u32`] for a 128-bit address (four words).
#[inline(always)]
pub fn replace_addr(check: u16, old: &[u32; 4], new: &[u32; 4]) -> u16 {
    let mut c = check;
    let mut i = 0;
    while i < 4 {
        c = replace_u32(c, old[i], new[i]);
        i += 1;
    }
    c
}

/// The IPv4 header checksum after the TTL drops by one, as a router
/// forwarding the packet does (`ip_decrease_ttl`). The TTL shares its
/// 16-bit word with the protocol byte, so that word is what changes. The
/// header checksum always covers the whole header (no offload leaves it
/// partial), so this is valid on every packet, unlike the L4 updates.
#[inline(always)]
pub const fn ttl_decrement(check: u16, ttl: u8, proto: u8) -> u16 {
    let old = u16::from_ne_bytes([ttl, proto]);
    let new = u16::from_ne_bytes([ttl.wrapping_sub(1), proto]);
    replace_u16(check, old, new)
}

/// UDP over IPv4: a zero checksum means "none" and must stay zero; a
/// computed zero is sent as 0xffff (RFC 768).
#[inline(always)]
pub const fn udp_replace_u16(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    let c = replace_u16(check, old, new);
    if c == 0 { 0xffff } else { c }
}

#[inline(always)]
pub const fn udp_replace_u32(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    let c = replace_u32(check, old, new);
    if c == 0 { 0xffff } else { c }
}

/// Sum of `data` as 16-bit native-order words, odd byte padded with zero.
/// The datapath uses it only on headers it builds (REJECT answers).
#[inline(always)]
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_ne_bytes([c[0], c[1]]) as u32;
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [last] = chunks.remainder() {
        acc += u16::from_ne_bytes([*last, 0]) as u32;
    }
    acc
}

/// The checksum of `data` (field zeroed by the caller), as stored.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    !fold(sum(data, initial))
}

/// The two 16-bit words of a 32-bit value as read from the packet.
#[inline(always)]
const fn halves(w: u32) -> u32 {
    (w & 0xffff) + (w >> 16)
}

/// Partial sum of the IPv4 pseudo-header (RFC 793/768): addresses as read
/// from the packet, the protocol, and the transport length (host order).
#[inline(always)]
pub const fn pseudo_sum_v4(src: u32, dst: u32, proto: u8, len: u16) -> u32 {
    halves(src)
        + halves(dst)
        + u16::from_ne_bytes([0, proto]) as u32
        + u16::from_ne_bytes(len.to_be_bytes()) as u32
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): addresses as
/// read from the packet, the 32-bit upper-layer length and the next header.
#[inline(always)]
pub const fn pseudo_sum_v6(src: &[u32; 4], dst: &[u32; 4], proto: u8, len: u32) -> u32 {
    let len = len.to_be_bytes();
    halves(src[0])
        + halves(src[1])
        + halves(src[2])
        + halves(src[3])
        + halves(dst[0])
        + halves(dst[1])
        + halves(dst[2])
        + halves(dst[3])
        + u16::from_ne_bytes([len[0], len[1]]) as u32
        + u16::from_ne_bytes([len[2], len[3]]) as u32
        + u16::from_ne_bytes([0, proto]) as u32
}

/// What a transport checksum field says about its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// The pseudo-header plus the segment sum to all ones (or a UDP/IPv4
    /// datagram without a checksum).
    Valid,
    /// The field holds exactly the pseudo-header sum: how a local sender's
    /// offloaded checksum (`CHECKSUM_PARTIAL`) looks on a virtual device
    /// before any NIC filled it in. XDP cannot see `ip_summed`, so this is
    /// the only sign of it.
    Partial,
    Bad,
}

/// Two stored checksums are the same one's-complement number.
#[inline(always)]
const fn same(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

/// Classifies a transport checksum: `field` as stored, `pseudo` the
/// pseudo-header's partial sum (0 for ICMPv4, which has none), `segment`
/// the partial sum of the whole transport segment, field included.
#[inline(always)]
pub const fn verify_l4(field: u16, pseudo: u32, segment: u32) -> L4Checksum {
    // Fold each part first: the sums may be 32-bit partial sums.
    let total = fold(pseudo) as u32 + fold(segment) as u32;
    if fold(total) == 0xffff {
        L4Checksum::Valid
    } else if pseudo != 0 && same(field, fold(pseudo)) {
        L4Checksum::Partial
    } else {
        L4Checksum::Bad
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::testing::Rng;

    fn put16(buf: &mut [u8], off: usize, v: u16) {
        buf[off..off + 2].copy_from_slice(&v.to_ne_bytes());
    }
    fn get16(buf: &[u8], off: usize) -> u16 {
        u16::from_ne_bytes([buf[off], buf[off + 1]])
    }
    fn get32(buf: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]])
    }

    /// IPv4 pseudo-header (src, dst, zero, proto, L4 length) + L4 segment.
    fn l4_checksum(ip: &[u8], l4: &[u8], csum_off: usize, proto: u8) -> u16 {
        let mut seg = l4.to_vec();
        put16(&mut seg, csum_off, 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[12..20]);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        checksum(&seg, sum(&pseudo, 0))
    }

    /// Random IPv4 header + TCP or UDP segment with valid checksums.
    fn random_packet(rng: &mut Rng, proto: u8) -> (Vec<u8>, Vec<u8>, usize) {
        let mut ip = rng.bytes(20);
        ip[0] = 0x45;
        ip[9] = proto;
        put16(&mut ip, 10, 0);
        let c = checksum(&ip, 0);
        put16(&mut ip, 10, c);
        let payload = (rng.next_u64() % 64) as usize;
        let (hdr, csum_off) = if proto == 6 { (20, 16) } else { (8, 6) };
        let mut l4 = rng.bytes(hdr + payload);
        if proto == 17 {
            put16(&mut l4, 4, ((hdr + payload) as u16).to_be());
        }
        let c = l4_checksum(&ip, &l4, csum_off, proto);
        let c = if proto == 17 && c == 0 { 0xffff } else { c };
        put16(&mut l4, csum_off, c);
        (ip, l4, csum_off)
    }

    fn verifies(ip: &[u8], l4: &[u8], csum_off: usize, proto: u8) -> bool {
        let stored = get16(l4, csum_off);
        let want = l4_checksum(ip, l4, csum_off, proto);
        stored == want || (proto == 17 && stored == 0xffff && want == 0)
    }

    /// Property: rewriting source address and port (SNAT) or destination
    /// (DNAT) with the incremental updates gives exactly what a full
    /// recomputation gives, for random packets.
    #[test]
    fn incremental_nat_rewrite_matches_full_recomputation() {
        let mut rng = Rng::xorshift64_star(0x9e37_79b9_7f4a_7c15);
        for case in 0..20_000 {
            let proto = if case % 2 == 0 { 6 } else { 17 };
            let (mut ip, mut l4, csum_off) = random_packet(&mut rng, proto);
            let dst_side = case % 4 >= 2;
            let (addr_off, port_off) = if dst_side { (16, 2) } else { (12, 0) };
            let old_addr = get32(&ip, addr_off);
            let new_addr = rng.next_u64() as u32;
            let old_port = get16(&l4, port_off);
            let new_port = rng.next_u64() as u16;

            ip[addr_off..addr_off + 4].copy_from_slice(&new_addr.to_ne_bytes());
            let ipc = replace_u32(get16(&ip, 10), old_addr, new_addr);
            put16(&mut ip, 10, ipc);

            let mut c = get16(&l4, csum_off);
            if proto == 17 {
                c = udp_replace_u32(c, old_addr, new_addr);
                c = udp_replace_u16(c, old_port, new_port);
            } else {
                c = replace_u32(c, old_addr, new_addr);
                c = replace_u16(c, old_port, new_port);
            }
            put16(&mut l4, port_off, new_port);
            put16(&mut l4, csum_off, c);

            let mut hdr = ip.clone();
            put16(&mut hdr, 10, 0);
            assert_eq!(
                get16(&ip, 10),
                checksum(&hdr, 0),
                "IPv4 header, case {case}"
            );
            assert!(
                verifies(&ip, &l4, csum_off, proto),
                "L4 proto {proto}, case {case}"
            );
        }
    }

    /// Property: decrementing the TTL of random valid IPv4 headers, every
    /// TTL from 2 to 255, gives the checksum a full recomputation gives,
    /// and the result verifies (sums to all ones).
    #[test]
    fn ttl_decrement_matches_full_recomputation() {
        let mut rng = Rng::xorshift64_star(0x5eed_0f77);
        for case in 0..20_000u32 {
            let mut ip = rng.bytes(20);
            ip[0] = 0x45;
            ip[8] = 2 + (case % 254) as u8;
            put16(&mut ip, 10, 0);
            let c = checksum(&ip, 0);
            put16(&mut ip, 10, c);

            let c = ttl_decrement(get16(&ip, 10), ip[8], ip[9]);
            ip[8] -= 1;
            put16(&mut ip, 10, c);

            let mut z = ip.clone();
            put16(&mut z, 10, 0);
            assert_eq!(get16(&ip, 10), checksum(&z, 0), "case {case}");
            assert_eq!(fold(sum(&ip, 0)), 0xffff, "header verifies, case {case}");
        }
    }

    /// The kernel's own form (`ip_decrease_ttl`: add 0x0100 in network
    /// order, end-around carry) agrees with ours on every checksum value
    /// and TTL/protocol pair it can meet.
    #[test]
    fn ttl_decrement_agrees_with_ip_decrease_ttl() {
        fn kernel(check_be: u16) -> u16 {
            let c = check_be as u32 + 0x0100;
            (c + u32::from(c >= 0xffff)) as u16
        }
        for check in (0..=0xffffu16).step_by(7) {
            for (ttl, proto) in [(2u8, 6u8), (64, 17), (255, 1), (128, 58)] {
                let ours = ttl_decrement(check.to_be(), ttl, proto);
                // Both represent the same one's-complement value (0x0000
                // and 0xffff are the same number).
                let k = kernel(check);
                let ours_be = u16::from_be(ours);
                assert!(
                    ours_be == k || (ours_be, k) == (0, 0xffff) || (ours_be, k) == (0xffff, 0),
                    "check {check:#06x} ttl {ttl}: ours {ours_be:#06x}, kernel {k:#06x}"
                );
            }
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        assert_eq!(udp_replace_u16(0, 0x1234, 0x4321), 0);
        assert_eq!(udp_replace_u32(0, 0x0a00_0001, 0xc0a8_0001), 0);
    }

    #[test]
    fn udp_computed_zero_becomes_all_ones() {
        // Find an update whose result folds to zero and check it is sent
        // as 0xffff instead.
        let check = 0xffff - 0x0001; // ~0x0001
        // ~check = 1; ~old + new must make the total 0xffff → result 0.
        let old = 0x0001;
        let new = 0xffff;
        assert_eq!(!fold((!check) as u32 + (!old) as u32 + new as u32), 0);
        assert_eq!(udp_replace_u16(check, old, new), 0xffff);
        assert_eq!(replace_u16(check, old, new), 0);
    }

    #[test]
    fn icmp_identifier_rewrite_matches_recomputation() {
        let mut rng = Rng::xorshift64_star(42);
        for _ in 0..5_000 {
            let len = 8 + (rng.next_u64() % 56) as usize;
            let mut msg = rng.bytes(len);
            msg[0] = 8;
            put16(&mut msg, 2, 0);
            let c = checksum(&msg, 0);
            put16(&mut msg, 2, c);
            let old = get16(&msg, 4);
            let new = rng.next_u64() as u16;
            put16(&mut msg, 4, new);
            let c = replace_u16(get16(&msg, 2), old, new);
            put16(&mut msg, 2, c);
            let mut z = msg.clone();
            put16(&mut z, 2, 0);
            assert_eq!(get16(&msg, 2), checksum(&z, 0));
        }
    }

    #[test]
    fn address_of_four_words() {
        let mut rng = Rng::xorshift64_star(7);
        for _ in 0..2_000 {
            let mut data = rng.bytes(40);
            let c = checksum(&data, 0);
            let old: [u32; 4] = core::array::from_fn(|i| get32(&data, 8 + 4 * i));
            let new: [u32; 4] = core::array::from_fn(|_| rng.next_u64() as u32);
            for (i, w) in new.iter().enumerate() {
                data[8 + 4 * i..12 + 4 * i].copy_from_slice(&w.to_ne_bytes());
            }
            assert_eq!(replace_addr(c, &old, &new), checksum(&data, 0));
        }
    }

    /// A valid segment verifies; one flipped bit anywhere does not; a
    /// field holding only the pseudo-header sum reads as a partial
    /// checksum, for TCP and UDP over both families.
    #[test]
    fn transport_checksums_verify_and_partial_is_recognised() {
        let mut rng = Rng::xorshift64_star(0xc0ff_ee00);
        for case in 0..5_000 {
            let proto = if case % 2 == 0 { 6 } else { 17 };
            let v6 = case % 4 >= 2;
            let (hdr, off) = if proto == 6 { (20, 16) } else { (8, 6) };
            let extra = (rng.next_u64() % 200) as usize;
            let mut seg = rng.bytes(hdr + extra);
            put16(&mut seg, off, 0);
            let pseudo = if v6 {
                let s: [u32; 4] = core::array::from_fn(|_| rng.next_u64() as u32);
                let d: [u32; 4] = core::array::from_fn(|_| rng.next_u64() as u32);
                pseudo_sum_v6(&s, &d, proto, seg.len() as u32)
            } else {
                pseudo_sum_v4(
                    rng.next_u64() as u32,
                    rng.next_u64() as u32,
                    proto,
                    seg.len() as u16,
                )
            };
            let c = checksum(&seg, pseudo);
            put16(&mut seg, off, c);
            assert_eq!(
                verify_l4(c, pseudo, sum(&seg, 0)),
                L4Checksum::Valid,
                "case {case}"
            );
            let mut bad = seg.clone();
            let bit = (rng.next_u64() as usize) % (bad.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
            let field = get16(&bad, off);
            assert_eq!(
                verify_l4(field, pseudo, sum(&bad, 0)),
                L4Checksum::Bad,
                "case {case} bit {bit}"
            );
            let mut partial = seg.clone();
            put16(&mut partial, off, fold(pseudo));
            assert_eq!(
                verify_l4(fold(pseudo), pseudo, sum(&partial, 0)),
                L4Checksum::Partial,
                "case {case}"
            );
        }
    }

    /// The pseudo-header sum matches the RFC's byte layout summed plainly.
    #[test]
    fn pseudo_headers_match_their_byte_layout() {
        let src = u32::from_ne_bytes([10, 1, 0, 5]);
        let dst = u32::from_ne_bytes([203, 0, 113, 7]);
        let bytes = [10, 1, 0, 5, 203, 0, 113, 7, 0, 6, 0x05, 0xdc];
        assert_eq!(fold(pseudo_sum_v4(src, dst, 6, 1500)), fold(sum(&bytes, 0)));
        let s6 = [1u32, 2, 3, 4].map(|w: u32| w.to_be());
        let d6 = [5u32, 6, 7, 8].map(|w: u32| w.to_be());
        let mut b6 = alloc::vec::Vec::new();
        for w in s6.iter().chain(d6.iter()) {
            b6.extend_from_slice(&w.to_ne_bytes());
        }
        b6.extend_from_slice(&70_000u32.to_be_bytes());
        b6.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(fold(pseudo_sum_v6(&s6, &d6, 17, 70_000)), fold(sum(&b6, 0)));
    }
}

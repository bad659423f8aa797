//! The answers a REJECT rule sends, built in the datapath: a TCP RST with
//! the sequence numbers `nf_send_reset` uses, or an ICMP/ICMPv6 error that
//! quotes the refused packet. Headers come out complete with checksums;
//! the caller only sums the quoted bytes (with `bpf_csum_diff`).
//!
//! The answer's source is the refused packet's destination, as a closed
//! port on that host would answer. (iptables sends ICMP errors from the
//! router's own address; clients match errors by the quoted tuple either
//! way, and the datapath has no routing decision for the router's address.)

use crate::csum::{fold, sum};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// IPv4 header (20) + ICMP header (8) in front of the quote.
pub const ICMP4_OVERHEAD: usize = 28;
/// IPv6 header (40) + ICMPv6 header (8).
pub const ICMP6_OVERHEAD: usize = 48;
/// Bytes of the refused packet an ICMPv4 error quotes beyond its IP header
/// (RFC 792's minimum; enough for the ports and the TCP sequence number).
pub const ICMP4_QUOTE_L4: usize = 8;

/// (seq, ack, flags) of the RST answering a segment: with an ACK, the RST
/// takes its sequence number from it; without, it acknowledges everything
/// the segment occupied (RFC 793, "Reset Generation").
#[inline(always)]
pub const fn rst_numbers(seq: u32, ack: u32, flags: u8, payload_len: u32) -> (u32, u32, u8) {
    if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let mut end = seq.wrapping_add(payload_len);
        if flags & TCP_SYN != 0 {
            end = end.wrapping_add(1);
        }
        if flags & TCP_FIN != 0 {
            end = end.wrapping_add(1);
        }
        (0, end, TCP_RST | TCP_ACK)
    }
}

/// Nobody is answered at a broadcast or multicast address, and a RST is
/// never answered (RFC 1122, 3.2.2 and RFC 793).
#[inline(always)]
pub fn may_answer(v6: bool, dst: &[u8; 16], tcp_flags: u8, is_tcp: bool) -> bool {
    if is_tcp && tcp_flags & TCP_RST != 0 {
        return false;
    }
    if v6 {
        dst[0] != 0xff
    } else {
        !(dst[..4] == [255; 4] || dst[0] >= 224)
    }
}

#[inline(always)]
fn pseudo_sum(v6: bool, src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    let n = if v6 { 16 } else { 4 };
    let mut acc = sum(&src[..n], 0);
    acc = sum(&dst[..n], acc);
    let tail = [
        (len >> 24) as u8,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0,
        0,
        0,
        proto,
    ];
    // IPv4's pseudo header has a 16-bit length and the protocol in one
    // word; the sum is the same as IPv6's 32-bit form for lengths < 64k.
    sum(&tail, acc)
}

/// A 20-byte IPv4 header (TTL 64, no options), checksum included.
#[inline(always)]
pub fn write_ipv4_header(
    h: &mut [u8; 20],
    src: &[u8; 16],
    dst: &[u8; 16],
    proto: u8,
    total_len: u16,
) {
    let len = total_len.to_be_bytes();
    *h = [
        0x45, 0, len[0], len[1], 0, 0, 0, 0, 64, proto, 0, 0, src[0], src[1], src[2], src[3],
        dst[0], dst[1], dst[2], dst[3],
    ];
    let c = (!fold(sum(&h[..], 0))).to_ne_bytes();
    h[10] = c[0];
    h[11] = c[1];
}

/// A 40-byte IPv6 header (hop limit 64).
#[inline(always)]
pub fn write_ipv6_header(
    h: &mut [u8; 40],
    src: &[u8; 16],
    dst: &[u8; 16],
    next: u8,
    payload_len: u16,
) {
    let len = payload_len.to_be_bytes();
    h[0] = 0x60;
    h[1] = 0;
    h[2] = 0;
    h[3] = 0;
    h[4] = len[0];
    h[5] = len[1];
    h[6] = next;
    h[7] = 64;
    let mut i = 0;
    while i < 16 {
        h[8 + i] = src[i];
        h[24 + i] = dst[i];
        i += 1;
    }
}

/// A 20-byte TCP header with the RST, checksum included.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn write_tcp_rst(
    h: &mut [u8; 20],
    v6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) {
    let s = sport.to_be_bytes();
    let d = dport.to_be_bytes();
    let q = seq.to_be_bytes();
    let a = ack.to_be_bytes();
    *h = [
        s[0],
        s[1],
        d[0],
        d[1],
        q[0],
        q[1],
        q[2],
        q[3],
        a[0],
        a[1],
        a[2],
        a[3],
        5 << 4,
        flags,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    let acc = pseudo_sum(v6, src, dst, crate::IPPROTO_TCP, 20);
    let c = (!fold(sum(&h[..], acc))).to_ne_bytes();
    h[16] = c[0];
    h[17] = c[1];
}

/// The 8-byte ICMP/ICMPv6 header of an error quoting `quote_len` bytes
/// whose sum is `quote_sum` (native-order words, as `bpf_csum_diff`
/// returns). ICMPv6 also covers a pseudo header.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn write_icmp_error(
    h: &mut [u8; 8],
    v6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    ty: u8,
    code: u8,
    quote_sum: u32,
    quote_len: u32,
) {
    *h = [ty, code, 0, 0, 0, 0, 0, 0];
    let mut acc = sum(&h[..], fold(quote_sum) as u32);
    if v6 {
        acc = pseudo_sum(true, src, dst, crate::IPPROTO_ICMPV6, 8 + quote_len) + fold(acc) as u32;
    }
    let c = (!fold(acc)).to_ne_bytes();
    h[2] = c[0];
    h[3] = c[1];
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::csum::checksum;
    use std::vec::Vec;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0; 16];
        o[..4].copy_from_slice(&a);
        o
    }

    /// A checksummed region sums to 0xffff (i.e. its checksum over itself
    /// is zero).
    fn verifies(data: &[u8], initial: u32) -> bool {
        checksum(data, initial) == 0
    }

    #[test]
    fn rst_numbers_follow_rfc_793() {
        // SYN without ACK: ack = seq + 1, flags RST|ACK, seq 0.
        assert_eq!(
            rst_numbers(1000, 0, TCP_SYN, 0),
            (0, 1001, TCP_RST | TCP_ACK)
        );
        // Data with FIN, no ACK: payload and FIN both count.
        assert_eq!(
            rst_numbers(1000, 0, TCP_FIN, 10),
            (0, 1011, TCP_RST | TCP_ACK)
        );
        // With ACK: seq = their ack, plain RST.
        assert_eq!(rst_numbers(1000, 5555, TCP_ACK, 10), (5555, 0, TCP_RST));
        assert_eq!(
            rst_numbers(u32::MAX, 0, TCP_SYN, 0),
            (0, 0, TCP_RST | TCP_ACK)
        );
    }

    #[test]
    fn never_answer_rst_multicast_or_broadcast() {
        assert!(may_answer(false, &v4([10, 0, 0, 1]), TCP_SYN, true));
        assert!(!may_answer(false, &v4([10, 0, 0, 1]), TCP_RST, true));
        assert!(!may_answer(false, &v4([255, 255, 255, 255]), 0, false));
        assert!(!may_answer(false, &v4([239, 1, 1, 1]), 0, false));
        let mut mc6 = [0u8; 16];
        mc6[0] = 0xff;
        assert!(!may_answer(true, &mc6, 0, false));
        mc6[0] = 0xfd;
        assert!(may_answer(true, &mc6, 0, false));
    }

    #[test]
    fn headers_carry_valid_checksums() {
        let (a, b) = (v4([192, 0, 2, 1]), v4([198, 51, 100, 7]));
        let mut ip = [0; 20];
        write_ipv4_header(&mut ip, &a, &b, 6, 40);
        assert!(verifies(&ip, 0));
        let mut tcp = [0; 20];
        write_tcp_rst(
            &mut tcp,
            false,
            &a,
            &b,
            80,
            40000,
            0,
            1001,
            TCP_RST | TCP_ACK,
        );
        assert!(verifies(&tcp, pseudo_sum(false, &a, &b, 6, 20)));

        let mut a6 = [0u8; 16];
        a6[0] = 0x20;
        a6[15] = 1;
        let mut b6 = a6;
        b6[15] = 2;
        let mut tcp6 = [0; 20];
        write_tcp_rst(&mut tcp6, true, &a6, &b6, 443, 5555, 7, 0, TCP_RST);
        assert!(verifies(&tcp6, pseudo_sum(true, &a6, &b6, 6, 20)));
    }

    #[test]
    fn icmp_errors_checksum_over_header_and_quote() {
        let (a, b) = (v4([192, 0, 2, 1]), v4([198, 51, 100, 7]));
        let quote: Vec<u8> = (0..28u8).collect();
        let mut h = [0; 8];
        write_icmp_error(&mut h, false, &a, &b, 3, 3, sum(&quote, 0), 28);
        let mut msg = h.to_vec();
        msg.extend_from_slice(&quote);
        assert!(verifies(&msg, 0));
        // Odd-looking sums (carries) still fold right.
        let quote: Vec<u8> = std::vec![0xff; 48];
        let mut a6 = [0u8; 16];
        a6[0] = 0xfd;
        let b6 = [0xfe; 16];
        let mut h = [0; 8];
        write_icmp_error(&mut h, true, &a6, &b6, 1, 4, sum(&quote, 0), 48);
        let mut msg = h.to_vec();
        msg.extend_from_slice(&quote);
        assert!(verifies(&msg, pseudo_sum(true, &a6, &b6, 58, 56)));
    }
}

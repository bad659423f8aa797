use super::*;
use crate::{FAMILY_V4, FAMILY_V6};

const NOW: u64 = 1_000_000_000_000;

fn udp_tuple() -> CtKey {
    CtKey {
        src: [0x0a00_0102, 0, 0, 0],
        dst: [0x0a00_0202, 0, 0, 0],
        sport: 53u16.to_be(),
        dport: 40000u16.to_be(),
        proto: IPPROTO_UDP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

fn entry(verdict: u8, header_end: u16) -> FragEntry {
    FragEntry {
        ct: udp_tuple(),
        expires: NOW + FRAG_TIMEOUT_V4_NS,
        frag_proto: IPPROTO_UDP,
        verdict,
        header_end,
        _pad: [0; 4],
    }
}

#[test]
fn later_fragments_follow_an_accepted_first_with_its_tuple() {
    let e = entry(frag_verdict::ACCEPT, 8);
    assert_eq!(
        later(Some(&e), IPPROTO_UDP, 1480, 1480, NOW),
        Later::Follow(udp_tuple())
    );
}

#[test]
fn later_fragments_of_a_dropped_first_are_dropped() {
    let e = entry(frag_verdict::DROP, 8);
    assert_eq!(
        later(Some(&e), IPPROTO_UDP, 1480, 100, NOW),
        Later::FollowDrop
    );
}

#[test]
fn without_a_live_first_fragment_a_later_one_is_an_orphan() {
    assert_eq!(later(None, IPPROTO_UDP, 1480, 100, NOW), Later::Orphan);
    // Expired: ipfrag_time has passed since the first fragment.
    let mut e = entry(frag_verdict::ACCEPT, 8);
    e.expires = NOW;
    assert_eq!(later(Some(&e), IPPROTO_UDP, 1480, 100, NOW), Later::Orphan);
}

#[test]
fn a_fragment_reaching_into_the_transport_header_is_an_overlap() {
    // RFC 1858: a TCP fragment at offset 8 rewrites the flags and window.
    let mut e = entry(frag_verdict::ACCEPT, 20);
    e.frag_proto = IPPROTO_TCP;
    e.ct.proto = IPPROTO_TCP;
    assert_eq!(later(Some(&e), IPPROTO_TCP, 8, 100, NOW), Later::Overlap);
    assert_eq!(later(Some(&e), IPPROTO_TCP, 16, 100, NOW), Later::Overlap);
    // A header with options ends later: offset 24 of a 40-byte header.
    e.header_end = 40;
    assert_eq!(later(Some(&e), IPPROTO_TCP, 24, 100, NOW), Later::Overlap);
    assert_eq!(
        later(Some(&e), IPPROTO_TCP, 40, 100, NOW),
        Later::Follow(e.ct)
    );
    // Unknown datagram: the protocol's shortest header still protects.
    assert_eq!(later(None, IPPROTO_TCP, 8, 100, NOW), Later::Overlap);
    assert_eq!(later(None, IPPROTO_TCP, 24, 100, NOW), Later::Orphan);
    assert_eq!(later(None, 47, 8, 100, NOW), Later::Orphan);
}

#[test]
fn a_fragment_of_another_protocol_is_refused() {
    let e = entry(frag_verdict::ACCEPT, 8);
    assert_eq!(
        later(Some(&e), IPPROTO_TCP, 1480, 100, NOW),
        Later::ProtoMismatch
    );
    assert_eq!(
        first(
            Some(&e),
            &CtKey {
                proto: IPPROTO_TCP,
                ..udp_tuple()
            },
            IPPROTO_TCP,
            NOW
        ),
        First::ProtoMismatch
    );
}

#[test]
fn offset_plus_length_past_65535_is_oversize() {
    // The last fragment of a "ping of death": 65528 + 100.
    assert_eq!(later(None, IPPROTO_ICMP, 65528, 100, NOW), Later::Oversize);
    let e = entry(frag_verdict::ACCEPT, 8);
    assert_eq!(later(Some(&e), IPPROTO_UDP, 65528, 8, NOW), Later::Oversize);
    assert_eq!(
        later(Some(&e), IPPROTO_UDP, 65528, 7, NOW),
        Later::Follow(e.ct)
    );
    assert!(!oversize(0, MAX_DATAGRAM));
    assert!(oversize(1, MAX_DATAGRAM));
}

#[test]
fn a_poisoned_datagram_stays_dead() {
    let e = entry(frag_verdict::POISONED, 8);
    assert_eq!(
        later(Some(&e), IPPROTO_UDP, 1480, 100, NOW),
        Later::Poisoned
    );
    assert_eq!(
        first(Some(&e), &udp_tuple(), IPPROTO_UDP, NOW),
        First::Poisoned
    );
}

#[test]
fn a_duplicate_first_fragment_is_tracked_a_different_one_is_an_overlap() {
    let e = entry(frag_verdict::ACCEPT, 8);
    assert_eq!(first(None, &udp_tuple(), IPPROTO_UDP, NOW), First::Track);
    assert_eq!(
        first(Some(&e), &udp_tuple(), IPPROTO_UDP, NOW),
        First::Track
    );
    let other = CtKey {
        dport: 40001u16.to_be(),
        ..udp_tuple()
    };
    assert_eq!(first(Some(&e), &other, IPPROTO_UDP, NOW), First::Overlap);
    // Once the datagram has expired, the identification may be reused.
    let mut old = e;
    old.expires = NOW - 1;
    assert_eq!(first(Some(&old), &other, IPPROTO_UDP, NOW), First::Track);
}

#[test]
fn ipv6_datagrams_wait_longer() {
    assert_eq!(timeout_ns(FAMILY_V4), 30_000_000_000);
    assert_eq!(timeout_ns(FAMILY_V6), 60_000_000_000);
}

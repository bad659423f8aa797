use super::*;

#[test]
fn seq_after_wraps() {
    assert!(seq_after(1, 0));
    assert!(!seq_after(0, 1));
    assert!(!seq_after(5, 5));
    assert!(seq_after(0, u32::MAX));
    assert!(seq_after(10, u32::MAX - 10));
    assert!(!seq_after(u32::MAX - 10, 10));
}

/// The netfilter scenario: the client's PORT segment at seq S (length
/// L) grows by 3 bytes when NAT rewrites it.
fn scenario(s: u32) {
    const L: u32 = 22;
    let mut client = SeqAdj::default(); // client → server
    let server = SeqAdj::default(); // server → client
    assert!(client.is_identity());
    client.record(s, 3);
    assert!(!client.is_identity());
    assert_eq!(
        client,
        SeqAdj {
            correction_pos: s,
            offset_before: 0,
            offset_after: 3
        }
    );
    // The rewritten segment itself and anything before keep their seq.
    assert_eq!(client.adjust_seq(s), s);
    assert_eq!(client.adjust_seq(s.wrapping_sub(100)), s.wrapping_sub(100));
    // Later client data moves up by 3.
    assert_eq!(client.adjust_seq(s.wrapping_add(L)), s.wrapping_add(L + 3));
    assert_eq!(client.adjust_seq(s.wrapping_add(1)), s.wrapping_add(4));
    // The server acknowledges the grown stream; its acks move back by 3.
    assert_eq!(client.adjust_ack(s.wrapping_add(L + 3)), s.wrapping_add(L));
    assert_eq!(client.adjust_ack(s), s);
    assert_eq!(
        client.adjust_sack_edge(s.wrapping_add(L + 3)),
        s.wrapping_add(L)
    );
    assert_eq!(
        SeqAdj::adjust_sack_edge(&client, s.wrapping_add(L + 103)),
        s.wrapping_add(L + 100)
    );
    // The server's own numbers are untouched.
    assert_eq!(server.adjust_seq(12345), 12345);
    assert_eq!(server.adjust_ack(s.wrapping_add(L)), s.wrapping_add(L));

    // Retransmission of the rewritten segment: rewritten again, but the
    // correction is not recorded twice, and it keeps its seq.
    client.record(s, 3);
    assert_eq!(client.offset_after, 3);
    assert_eq!(client.adjust_seq(s), s);
    // An older segment cannot record either.
    client.record(s.wrapping_sub(50), 3);
    assert_eq!(client.correction_pos, s);

    // A second rewrite later in the stream, +2: offsets accumulate.
    let s2 = s.wrapping_add(L + 40);
    client.record(s2, 2);
    assert_eq!(
        client,
        SeqAdj {
            correction_pos: s2,
            offset_before: 3,
            offset_after: 5
        }
    );
    assert_eq!(client.adjust_seq(s2), s2.wrapping_add(3));
    assert_eq!(client.adjust_seq(s.wrapping_add(L)), s.wrapping_add(L + 3));
    assert_eq!(client.adjust_seq(s2.wrapping_add(30)), s2.wrapping_add(35));
    assert_eq!(client.adjust_ack(s2.wrapping_add(3)), s2);
    assert_eq!(client.adjust_ack(s2.wrapping_add(35)), s2.wrapping_add(30));
    // One level of history, as in netfilter: a retransmission from
    // before the previous correction gets this one's offset_before.
    assert_eq!(client.adjust_seq(s), s.wrapping_add(3));

    // A rewrite that shrinks.
    let s3 = s2.wrapping_add(100);
    client.record(s3, -4);
    assert_eq!((client.offset_before, client.offset_after), (5, 1));
    assert_eq!(client.adjust_seq(s3.wrapping_add(10)), s3.wrapping_add(11));
    assert_eq!(client.adjust_ack(s3.wrapping_add(11)), s3.wrapping_add(10));
    assert_eq!(client.offset(s3), 5);
    assert_eq!(client.offset(s3.wrapping_add(1)), 1);

    // No length change records nothing.
    let before = client;
    client.record(s3.wrapping_add(1000), 0);
    assert_eq!(client, before);
}

#[test]
fn seqadj_netfilter_scenario() {
    scenario(1_000_000);
}

#[test]
fn seqadj_across_wraparound() {
    for s in [u32::MAX - 21, u32::MAX - 5, u32::MAX, 0, 3] {
        scenario(s);
    }
    // Directly: pos just below 2^32, data after the wrap.
    let mut a = SeqAdj::default();
    a.record(u32::MAX - 1, 7);
    assert_eq!(a.adjust_seq(5), 12);
    assert_eq!(a.adjust_seq(u32::MAX - 1), u32::MAX - 1);
    assert_eq!(a.adjust_seq(u32::MAX), 6);
    assert_eq!(a.adjust_ack(12), 5);
    assert_eq!(a.adjust_ack(6), u32::MAX);
    a.record(3, 1);
    assert_eq!(
        (a.correction_pos, a.offset_before, a.offset_after),
        (3, 7, 8)
    );
}

extern crate std;
use std::vec::Vec;

use super::*;

/// `sctp_conntracks` as the kernel writes it, state names for cells.
const REFERENCE_GRID: &str = "
ORIGINAL      sNO  sCL  sCW  sCE  sES  sSS  sSR  sSA  sHS
init          sCL  sCL  sCW  sCE  sES  sCL  sCL  sSA  sCW
init_ack      sCL  sCL  sCW  sCE  sES  sSS  sSR  sSA  sCL
abort         sCL  sCL  sCL  sCL  sCL  sCL  sCL  sCL  sCL
shutdown      sCL  sCL  sCW  sCE  sSS  sSS  sSR  sSA  sCL
shutdown_ack  sSA  sCL  sCW  sCE  sES  sSA  sSA  sSA  sSA
error         sCL  sCL  sCW  sCE  sES  sSS  sSR  sSA  sCL
cookie_echo   sCL  sCL  sCE  sCE  sES  sSS  sSR  sSA  sCL
cookie_ack    sCL  sCL  sCW  sES  sES  sSS  sSR  sSA  sCL
shutdown_comp sCL  sCL  sCW  sCE  sES  sSS  sSR  sCL  sCL
heartbeat     sHS  sCL  sCW  sCE  sES  sSS  sSR  sSA  sHS
heartbeat_ack sCL  sCL  sCW  sCE  sES  sSS  sSR  sSA  sHS
REPLY         sNO  sCL  sCW  sCE  sES  sSS  sSR  sSA  sHS
init          sIV  sCL  sCW  sCE  sES  sSS  sSR  sSA  sIV
init_ack      sIV  sCW  sCW  sCE  sES  sSS  sSR  sSA  sIV
abort         sIV  sCL  sCL  sCL  sCL  sCL  sCL  sCL  sIV
shutdown      sIV  sCL  sCW  sCE  sSR  sSS  sSR  sSA  sIV
shutdown_ack  sIV  sCL  sCW  sCE  sES  sSA  sSA  sSA  sIV
error         sIV  sCL  sCW  sCL  sES  sSS  sSR  sSA  sIV
cookie_echo   sIV  sCL  sCE  sCE  sES  sSS  sSR  sSA  sIV
cookie_ack    sIV  sCL  sCW  sES  sES  sSS  sSR  sSA  sIV
shutdown_comp sIV  sCL  sCW  sCE  sES  sSS  sSR  sCL  sIV
heartbeat     sIV  sCL  sCW  sCE  sES  sSS  sSR  sSA  sHS
heartbeat_ack sIV  sCL  sCW  sCE  sES  sSS  sSR  sSA  sES
";

fn state_of(name: &str) -> Option<SctpState> {
    Some(match name {
        "sNO" => SctpState::None,
        "sCL" => SctpState::Closed,
        "sCW" => SctpState::CookieWait,
        "sCE" => SctpState::CookieEchoed,
        "sES" => SctpState::Established,
        "sSS" => SctpState::ShutdownSent,
        "sSR" => SctpState::ShutdownRecd,
        "sSA" => SctpState::ShutdownAckSent,
        "sHS" => SctpState::HeartbeatSent,
        "sIV" => return None,
        other => panic!("unknown state {other}"),
    })
}

fn chunk_type(name: &str) -> u8 {
    match name {
        "init" => CHUNK_INIT,
        "init_ack" => CHUNK_INIT_ACK,
        "abort" => CHUNK_ABORT,
        "shutdown" => CHUNK_SHUTDOWN,
        "shutdown_ack" => CHUNK_SHUTDOWN_ACK,
        "error" => CHUNK_ERROR,
        "cookie_echo" => CHUNK_COOKIE_ECHO,
        "cookie_ack" => CHUNK_COOKIE_ACK,
        "shutdown_comp" => CHUNK_SHUTDOWN_COMPLETE,
        "heartbeat" => CHUNK_HEARTBEAT,
        "heartbeat_ack" => CHUNK_HEARTBEAT_ACK,
        other => panic!("unknown chunk {other}"),
    }
}

#[test]
fn transition_table_matches_the_kernel_in_all_198_cells() {
    let mut reply = false;
    let mut columns: Vec<Option<SctpState>> = Vec::new();
    let mut cells = 0;
    for line in REFERENCE_GRID.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "ORIGINAL" | "REPLY" => {
                reply = words[0] == "REPLY";
                columns = words[1..].iter().map(|w| state_of(w)).collect();
                assert_eq!(columns.len(), 9);
            }
            row => {
                let ty = chunk_type(row);
                assert_eq!(words.len(), 10, "{row}");
                for (col, cell) in words[1..].iter().enumerate() {
                    let old = columns[col].expect("a column is a state");
                    assert_eq!(
                        new_state(reply, old, ty),
                        state_of(cell),
                        "reply={reply} {row} in {old:?}"
                    );
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, 2 * 11 * 9);
}

#[test]
fn data_and_other_chunks_change_no_state() {
    for st in 0..9 {
        let st = SctpState::from_u8(st).unwrap();
        for ty in [CHUNK_DATA, 3, 12, 15, 64, 128, 192, 255] {
            assert_eq!(new_state(false, st, ty), Some(st));
            assert_eq!(new_state(true, st, ty), Some(st));
        }
    }
}

const A: u32 = 0x1111_1111;
const B: u32 = 0x2222_2222;

fn ch(ty: u8) -> Chunk {
    Chunk {
        ty,
        ..Chunk::default()
    }
}

fn init(ty: u8, tag: u32) -> Chunk {
    Chunk {
        ty,
        init_tag: tag,
        ..Chunk::default()
    }
}

fn flagged(ty: u8, flags: u8) -> Chunk {
    Chunk {
        ty,
        flags,
        ..Chunk::default()
    }
}

/// INIT (A) → INIT ACK (B) → COOKIE ECHO → COOKIE ACK: ESTABLISHED, with
/// each side's tag learned from the other's INIT.
fn established() -> SctpConn {
    let first = [init(CHUNK_INIT, A)];
    let mut c = SctpConn::begin(0, type_bit(CHUNK_INIT), &first).expect("INIT starts one");
    assert_eq!(c.packet(false, 0, &first), Verdict::Accept);
    assert_eq!(c.state, SctpState::Closed as u8);
    assert_eq!(c.vtag, [0, A]);
    assert_eq!(
        c.packet(true, A, &[init(CHUNK_INIT_ACK, B)]),
        Verdict::Accept
    );
    assert_eq!(c.state, SctpState::CookieWait as u8);
    assert_eq!(c.vtag, [B, A]);
    assert_eq!(
        c.packet(false, B, &[ch(CHUNK_COOKIE_ECHO)]),
        Verdict::Accept
    );
    assert_eq!(c.state, SctpState::CookieEchoed as u8);
    assert_eq!(c.packet(true, A, &[ch(CHUNK_COOKIE_ACK)]), Verdict::Accept);
    assert_eq!(c.state, SctpState::Established as u8);
    c
}

#[test]
fn a_handshake_reaches_established_and_data_needs_the_right_tag() {
    let mut c = established();
    assert_eq!(c.packet(false, B, &[ch(CHUNK_DATA)]), Verdict::Accept);
    assert_eq!(c.packet(true, A, &[ch(3), ch(CHUNK_DATA)]), Verdict::Accept);
    assert_eq!(
        c.packet(false, A, &[ch(CHUNK_DATA)]),
        Verdict::Invalid,
        "reply's tag"
    );
    assert_eq!(c.packet(true, 0xdead, &[ch(CHUNK_DATA)]), Verdict::Invalid);
    assert_eq!(c.state, SctpState::Established as u8);
}

#[test]
fn an_abort_must_carry_the_right_tag_or_reflect_the_peers() {
    let mut c = established();
    assert_eq!(c.packet(true, 0xbad, &[ch(CHUNK_ABORT)]), Verdict::Invalid);
    assert_eq!(
        c.packet(true, B, &[ch(CHUNK_ABORT)]),
        Verdict::Invalid,
        "not T"
    );
    assert_eq!(c.state, SctpState::Established as u8);
    // T set: the sender reflects the tag of the side it aborts.
    let mut t = c;
    assert_eq!(
        t.packet(true, B, &[flagged(CHUNK_ABORT, 1)]),
        Verdict::Accept
    );
    assert_eq!(t.state, SctpState::Closed as u8);
    assert_eq!(c.packet(true, A, &[ch(CHUNK_ABORT)]), Verdict::Accept);
    assert_eq!(c.state, SctpState::Closed as u8);
}

#[test]
fn shutdown_sequence_closes() {
    let mut c = established();
    assert_eq!(c.packet(false, B, &[ch(CHUNK_SHUTDOWN)]), Verdict::Accept);
    assert_eq!(c.state, SctpState::ShutdownSent as u8);
    assert_eq!(
        c.packet(true, A, &[ch(CHUNK_SHUTDOWN_ACK)]),
        Verdict::Accept
    );
    assert_eq!(c.state, SctpState::ShutdownAckSent as u8);
    assert_eq!(
        c.packet(false, 0xbad, &[ch(CHUNK_SHUTDOWN_COMPLETE)]),
        Verdict::Invalid
    );
    assert_eq!(
        c.packet(false, B, &[ch(CHUNK_SHUTDOWN_COMPLETE)]),
        Verdict::Accept
    );
    assert_eq!(c.state, SctpState::Closed as u8);
}

#[test]
fn what_may_start_an_association() {
    // INIT with a non-zero tag, out-of-the-blue ABORT / SHUTDOWN COMPLETE /
    // COOKIE ACK, no chunks at all: nothing.
    assert!(SctpConn::begin(5, type_bit(CHUNK_INIT), &[init(CHUNK_INIT, A)]).is_none());
    for ty in [CHUNK_ABORT, CHUNK_SHUTDOWN_COMPLETE, CHUNK_COOKIE_ACK] {
        assert!(
            SctpConn::begin(A, type_bit(ty), &[ch(ty)]).is_none(),
            "{ty}"
        );
    }
    assert!(SctpConn::begin(A, 0, &[]).is_none());
    // Mid-association pickup by a heartbeat (a secondary path): the tag
    // seen is the originator's.
    let hb = SctpConn::begin(A, type_bit(CHUNK_HEARTBEAT), &[ch(CHUNK_HEARTBEAT)]).unwrap();
    assert_eq!(hb.vtag, [A, 0]);
    // DATA out of the blue changes no state: it cannot start one.
    assert!(SctpConn::begin(A, type_bit(CHUNK_DATA), &[ch(CHUNK_DATA)]).is_none());
    // A SHUTDOWN ACK out of the blue expects a SHUTDOWN COMPLETE with the
    // tag it carried.
    let sa = SctpConn::begin(A, type_bit(CHUNK_SHUTDOWN_ACK), &[ch(CHUNK_SHUTDOWN_ACK)]).unwrap();
    assert_eq!(sa.vtag, [0, A]);
}

#[test]
fn a_retransmitted_init_does_not_refresh_the_timeout() {
    let first = [init(CHUNK_INIT, A)];
    let mut c = SctpConn::begin(0, type_bit(CHUNK_INIT), &first).unwrap();
    assert_eq!(c.packet(false, 0, &first), Verdict::Accept);
    assert_eq!(c.packet(false, 0, &first), Verdict::AcceptQuiet);
}

#[test]
fn an_init_ack_must_carry_the_initiators_tag() {
    let first = [init(CHUNK_INIT, A)];
    let mut c = SctpConn::begin(0, type_bit(CHUNK_INIT), &first).unwrap();
    assert_eq!(c.packet(false, 0, &first), Verdict::Accept);
    assert_eq!(
        c.packet(true, 0xbad, &[init(CHUNK_INIT_ACK, B)]),
        Verdict::Invalid
    );
    assert_eq!(c.state, SctpState::Closed as u8);
    assert_eq!(
        c.packet(true, A, &[init(CHUNK_INIT_ACK, B)]),
        Verdict::Accept
    );
    assert_eq!(c.state, SctpState::CookieWait as u8);
}

#[test]
fn basic_checks() {
    assert!(basic_check(0, CHUNK_INIT, 20, false));
    assert!(!basic_check(1, CHUNK_INIT, 20, false), "INIT not alone");
    assert!(!basic_check(1, CHUNK_DATA, 20, true), "after an INIT");
    assert!(
        !basic_check(1, CHUNK_COOKIE_ECHO, 20, false),
        "COOKIE ECHO not first"
    );
    assert!(basic_check(0, CHUNK_COOKIE_ECHO, 20, false));
    assert!(basic_check(1, CHUNK_DATA, 20, false));
    assert!(!basic_check(0, CHUNK_DATA, 0, false), "empty chunk");
}

#[test]
fn every_state_byte_round_trips() {
    for v in 0..=8u8 {
        let s = SctpState::from_u8(v).unwrap();
        assert_eq!(s as u8, v);
        assert!(!s.name().is_empty());
        assert!(s.timeout_secs() > 0);
    }
    assert!(SctpState::from_u8(9).is_none());
}

//! SCTP connection tracking, after netfilter's `nf_conntrack_proto_sctp.c`:
//! the association's state from the chunks it carries, and the
//! verification tags (RFC 9260 §8.5) that tie every packet to it. A guessed
//! 4-tuple is not enough to reach an SCTP endpoint through the firewall:
//! the packet must also carry the tag the peer chose.
//!
//! The datapath reads a packet's chunk headers into [`Chunk`]s (at most
//! [`MAX_CHUNKS`]; any beyond are taken for data, which changes no state),
//! then applies [`SctpConn::begin`] (first packet only), [`SctpConn::tags_ok`]
//! and one [`SctpConn::chunk`] per chunk.

/// Chunk headers read per packet; later chunks are treated as data.
pub const MAX_CHUNKS: usize = 16;

pub const CHUNK_DATA: u8 = 0;
pub const CHUNK_INIT: u8 = 1;
pub const CHUNK_INIT_ACK: u8 = 2;
pub const CHUNK_HEARTBEAT: u8 = 4;
pub const CHUNK_HEARTBEAT_ACK: u8 = 5;
pub const CHUNK_ABORT: u8 = 6;
pub const CHUNK_SHUTDOWN: u8 = 7;
pub const CHUNK_SHUTDOWN_ACK: u8 = 8;
pub const CHUNK_ERROR: u8 = 9;
pub const CHUNK_COOKIE_ECHO: u8 = 10;
pub const CHUNK_COOKIE_ACK: u8 = 11;
pub const CHUNK_SHUTDOWN_COMPLETE: u8 = 14;
/// ABORT and SHUTDOWN COMPLETE: the tag is the sender's own, reflected.
const FLAG_T: u8 = 1;

/// netfilter's `enum sctp_conntrack`, in its order.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SctpState {
    None = 0,
    Closed,
    CookieWait,
    CookieEchoed,
    Established,
    ShutdownSent,
    ShutdownRecd,
    ShutdownAckSent,
    HeartbeatSent,
}

impl SctpState {
    pub fn from_u8(v: u8) -> Option<SctpState> {
        Some(match v {
            0 => SctpState::None,
            1 => SctpState::Closed,
            2 => SctpState::CookieWait,
            3 => SctpState::CookieEchoed,
            4 => SctpState::Established,
            5 => SctpState::ShutdownSent,
            6 => SctpState::ShutdownRecd,
            7 => SctpState::ShutdownAckSent,
            8 => SctpState::HeartbeatSent,
            _ => return None,
        })
    }

    /// `sctp_conntrack_names`, for `conntrack list`.
    pub fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Closed => "CLOSED",
            SctpState::CookieWait => "COOKIE_WAIT",
            SctpState::CookieEchoed => "COOKIE_ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "SHUTDOWN_SENT",
            SctpState::ShutdownRecd => "SHUTDOWN_RECD",
            SctpState::ShutdownAckSent => "SHUTDOWN_ACK_SENT",
            SctpState::HeartbeatSent => "HEARTBEAT_SENT",
        }
    }

    /// `sctp_timeouts[]`, in seconds.
    pub fn timeout_secs(self) -> u32 {
        match self {
            SctpState::None | SctpState::Closed => 10,
            SctpState::Established => 210,
            SctpState::HeartbeatSent => 30,
            _ => 3,
        }
    }
}

use SctpState::{
    Closed as sCL, CookieEchoed as sCE, CookieWait as sCW, Established as sES,
    HeartbeatSent as sHS, ShutdownAckSent as sSA, ShutdownRecd as sSR, ShutdownSent as sSS,
};

/// `sctp_conntracks[dir][chunk][state]`, verbatim; `None` is netfilter's
/// `sIV` (invalid). Rows: INIT, INIT ACK, ABORT, SHUTDOWN, SHUTDOWN ACK,
/// ERROR, COOKIE ECHO, COOKIE ACK, SHUTDOWN COMPLETE, HEARTBEAT, HEARTBEAT
/// ACK. Columns: sNO sCL sCW sCE sES sSS sSR sSA sHS.
const IV: Option<SctpState> = None;
#[rustfmt::skip]
const TABLE: [[[Option<SctpState>; 9]; 11]; 2] = {
    const fn s(x: SctpState) -> Option<SctpState> { Some(x) }
    [
        // ORIGINAL
        [
            [s(sCL), s(sCL), s(sCW), s(sCE), s(sES), s(sCL), s(sCL), s(sSA), s(sCW)],
            [s(sCL), s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sCL)],
            [s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), s(sCL)],
            [s(sCL), s(sCL), s(sCW), s(sCE), s(sSS), s(sSS), s(sSR), s(sSA), s(sCL)],
            [s(sSA), s(sCL), s(sCW), s(sCE), s(sES), s(sSA), s(sSA), s(sSA), s(sSA)],
            [s(sCL), s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sCL)],
            [s(sCL), s(sCL), s(sCE), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sCL)],
            [s(sCL), s(sCL), s(sCW), s(sES), s(sES), s(sSS), s(sSR), s(sSA), s(sCL)],
            [s(sCL), s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sCL), s(sCL)],
            [s(sHS), s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sHS)],
            [s(sCL), s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sHS)],
        ],
        // REPLY
        [
            [IV, s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), IV],
            [IV, s(sCW), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), IV],
            [IV, s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), s(sCL), IV],
            [IV, s(sCL), s(sCW), s(sCE), s(sSR), s(sSS), s(sSR), s(sSA), IV],
            [IV, s(sCL), s(sCW), s(sCE), s(sES), s(sSA), s(sSA), s(sSA), IV],
            [IV, s(sCL), s(sCW), s(sCL), s(sES), s(sSS), s(sSR), s(sSA), IV],
            [IV, s(sCL), s(sCE), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), IV],
            [IV, s(sCL), s(sCW), s(sES), s(sES), s(sSS), s(sSR), s(sSA), IV],
            [IV, s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sCL), IV],
            [IV, s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sHS)],
            [IV, s(sCL), s(sCW), s(sCE), s(sES), s(sSS), s(sSR), s(sSA), s(sES)],
        ],
    ]
};

/// `sctp_new_state`: the state after a chunk of type `ty` in direction
/// `reply`; chunks without a row (DATA, SACK, …) leave it alone. `None`:
/// invalid.
pub fn new_state(reply: bool, state: SctpState, ty: u8) -> Option<SctpState> {
    let row = match ty {
        CHUNK_INIT => 0,
        CHUNK_INIT_ACK => 1,
        CHUNK_ABORT => 2,
        CHUNK_SHUTDOWN => 3,
        CHUNK_SHUTDOWN_ACK => 4,
        CHUNK_ERROR => 5,
        CHUNK_COOKIE_ECHO => 6,
        CHUNK_COOKIE_ACK => 7,
        CHUNK_SHUTDOWN_COMPLETE => 8,
        CHUNK_HEARTBEAT => 9,
        CHUNK_HEARTBEAT_ACK => 10,
        _ => return Some(state),
    };
    TABLE[reply as usize][row][state as usize]
}

/// A chunk's header, and the Initiate Tag of an INIT or INIT ACK.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub ty: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    /// As read (network order in memory).
    pub init_tag: u32,
}

/// Bit `ty` of a chunk-type set, for the types the tracker asks about
/// (all below 32).
#[inline(always)]
pub fn type_bit(ty: u8) -> u32 {
    if ty < 32 { 1 << ty } else { 0 }
}

/// `do_basic_checks`: COOKIE ECHO and COOKIE ACK only first; INIT, INIT ACK
/// and SHUTDOWN COMPLETE only alone; no empty chunk; at least one chunk.
/// `index` is the chunk's position, `len` its length field, `alone` says an
/// INIT/INIT ACK/SHUTDOWN COMPLETE came before.
#[inline(always)]
pub fn basic_check(index: usize, ty: u8, len: u16, alone_seen: bool) -> bool {
    let alone = matches!(ty, CHUNK_INIT | CHUNK_INIT_ACK | CHUNK_SHUTDOWN_COMPLETE);
    let first_only = matches!(ty, CHUNK_COOKIE_ACK | CHUNK_COOKIE_ECHO) || alone || alone_seen;
    !(first_only && index != 0) && len != 0
}

/// The association as netfilter keeps it (`ct->proto.sctp`): state, the
/// verification tag each direction's packets must carry, and the INIT and
/// HEARTBEAT bookkeeping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SctpConn {
    /// By direction: original, reply. As read (network order in memory).
    pub vtag: [u32; 2],
    /// An [`SctpState`] as u8.
    pub state: u8,
    /// `conn_flags` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<SctpConn>() == 12);

/// `SctpConn::flags`.
pub mod conn_flags {
    /// `init[ORIGINAL]`, `init[REPLY]`: an INIT was seen that way.
    pub const INIT_ORIGINAL: u8 = 1 << 0;
    pub const INIT_REPLY: u8 = 1 << 1;
    /// `SCTP_FLAG_HEARTBEAT_VTAG_FAILED`.
    pub const HEARTBEAT_VTAG_FAILED: u8 = 1 << 2;
    /// `last_dir` is REPLY.
    pub const LAST_DIR_REPLY: u8 = 1 << 3;
}

/// The outcome of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; refresh the timeout to the new state's.
    Accept,
    /// Accepted without refreshing the timeout (a retransmitted INIT, or a
    /// heartbeat on another path).
    AcceptQuiet,
    Invalid,
}

#[inline(always)]
fn init_bit(reply: bool) -> u8 {
    if reply {
        conn_flags::INIT_REPLY
    } else {
        conn_flags::INIT_ORIGINAL
    }
}

impl SctpConn {
    /// Whether a packet with chunk-type set `types` and `n` chunks may start
    /// an association (`nf_conntrack_sctp_packet` before `sctp_new`): an
    /// out-of-the-blue ABORT, SHUTDOWN COMPLETE or COOKIE ACK is discarded
    /// (RFC 9260 §8.4).
    pub fn may_begin(types: u32, n: usize) -> bool {
        let ootb =
            type_bit(CHUNK_ABORT) | type_bit(CHUNK_SHUTDOWN_COMPLETE) | type_bit(CHUNK_COOKIE_ACK);
        n > 0 && types & ootb == 0
    }

    /// `sctp_new`, one chunk of the first packet at a time (starting from
    /// `SctpConn::default()`): which chunks may start an association, and
    /// the tags to expect. `false`: invalid, no connection.
    pub fn begin_chunk(&mut self, vtag: u32, ch: &Chunk) -> bool {
        match new_state(false, SctpState::None, ch.ty) {
            None | Some(SctpState::None) => return false,
            Some(_) => {}
        }
        if ch.ty == CHUNK_INIT {
            // §8.5.1 (A): an INIT carries tag 0.
            if vtag != 0 {
                return false;
            }
            self.vtag[1] = ch.init_tag;
        } else if ch.ty == CHUNK_HEARTBEAT {
            self.vtag[0] = vtag;
        } else {
            // A SHUTDOWN ACK out of the blue expects a SHUTDOWN COMPLETE
            // back, anything else an ABORT (§8.4 (5), (8)).
            self.vtag[1] = vtag;
        }
        true
    }

    /// The whole first-packet check, as the datapath runs it chunk by
    /// chunk: the association a first packet starts, or `None`.
    pub fn begin(vtag: u32, types: u32, chunks: &[Chunk]) -> Option<SctpConn> {
        if !SctpConn::may_begin(types, chunks.len()) {
            return None;
        }
        let mut c = SctpConn::default();
        for ch in chunks {
            if !c.begin_chunk(vtag, ch) {
                return None;
            }
        }
        Some(c)
    }

    /// Runs a whole packet through the tracker (the datapath does the same
    /// one chunk per `bpf_loop` call): the tag check, then every chunk.
    pub fn packet(&mut self, reply: bool, vtag: u32, chunks: &[Chunk]) -> Verdict {
        let types = chunks.iter().fold(0, |t, c| t | type_bit(c.ty));
        if !self.tags_ok(reply, vtag, types) {
            return Verdict::Invalid;
        }
        let mut ignore = false;
        for ch in chunks {
            if self.chunk(reply, vtag, types, ch, &mut ignore).is_none() {
                return Verdict::Invalid;
            }
        }
        if ignore {
            Verdict::AcceptQuiet
        } else {
            Verdict::Accept
        }
    }

    /// The verification-tag check for the whole packet (§8.5): unless it
    /// carries a chunk with rules of its own, its tag is the direction's.
    pub fn tags_ok(&self, reply: bool, vtag: u32, types: u32) -> bool {
        let own_rules = type_bit(CHUNK_INIT)
            | type_bit(CHUNK_SHUTDOWN_COMPLETE)
            | type_bit(CHUNK_COOKIE_ECHO)
            | type_bit(CHUNK_ABORT)
            | type_bit(CHUNK_SHUTDOWN_ACK)
            | type_bit(CHUNK_HEARTBEAT)
            | type_bit(CHUNK_HEARTBEAT_ACK);
        types & own_rules != 0 || vtag == self.vtag[reply as usize]
    }

    /// One chunk of a packet in direction `reply` with tag `vtag`, whose
    /// chunk-type set is `types`. `ignore` carries the per-packet "do not
    /// refresh" decision from chunk to chunk. Returns `None` when the packet
    /// is invalid (netfilter leaves the state as far as it got; so does
    /// this).
    pub fn chunk(
        &mut self,
        reply: bool,
        vtag: u32,
        types: u32,
        ch: &Chunk,
        ignore: &mut bool,
    ) -> Option<()> {
        let dir = reply as usize;
        let other = 1 - dir;
        match ch.ty {
            // (A): INIT carries tag 0.
            CHUNK_INIT if vtag != 0 => return None,
            // (B), (C): the T bit reflects the peer's tag.
            CHUNK_ABORT | CHUNK_SHUTDOWN_COMPLETE => {
                let want = if ch.flags & FLAG_T != 0 {
                    self.vtag[other]
                } else {
                    self.vtag[dir]
                };
                if vtag != want {
                    return None;
                }
            }
            // (D): COOKIE ECHO carries the tag from the INIT ACK.
            CHUNK_COOKIE_ECHO if vtag != self.vtag[dir] => return None,
            CHUNK_COOKIE_ACK => {
                self.flags &= !(conn_flags::INIT_ORIGINAL | conn_flags::INIT_REPLY);
            }
            CHUNK_HEARTBEAT => {
                if self.vtag[dir] == 0 {
                    self.vtag[dir] = vtag;
                } else if vtag != self.vtag[dir] {
                    if types & type_bit(CHUNK_DATA) != 0 || *ignore {
                        return None;
                    }
                    // A heartbeat on another path: remember and let it by.
                    self.flags |= conn_flags::HEARTBEAT_VTAG_FAILED;
                    if reply {
                        self.flags |= conn_flags::LAST_DIR_REPLY;
                    } else {
                        self.flags &= !conn_flags::LAST_DIR_REPLY;
                    }
                    *ignore = true;
                    return Some(());
                } else {
                    self.flags &= !conn_flags::HEARTBEAT_VTAG_FAILED;
                }
            }
            CHUNK_HEARTBEAT_ACK => {
                if self.vtag[dir] == 0 {
                    self.vtag[dir] = vtag;
                } else if vtag != self.vtag[dir] {
                    if types & type_bit(CHUNK_DATA) != 0 || *ignore {
                        return None;
                    }
                    let last_reply = self.flags & conn_flags::LAST_DIR_REPLY != 0;
                    if self.flags & conn_flags::HEARTBEAT_VTAG_FAILED == 0 || last_reply == reply {
                        return None;
                    }
                    self.flags &= !conn_flags::HEARTBEAT_VTAG_FAILED;
                    self.vtag[dir] = vtag;
                    self.vtag[other] = 0;
                } else {
                    self.flags &= !conn_flags::HEARTBEAT_VTAG_FAILED;
                }
            }
            _ => {}
        }
        let old = SctpState::from_u8(self.state)?;
        let new = new_state(reply, old, ch.ty)?;
        match ch.ty {
            CHUNK_INIT => {
                let (mine, theirs) = (init_bit(reply), init_bit(!reply));
                if self.flags & mine != 0 && self.flags & theirs != 0 {
                    self.flags &= !theirs;
                }
                self.flags |= mine;
                self.vtag[other] = ch.init_tag;
                // A retransmitted INIT must not keep a stale association
                // (and its NAT binding) alive forever.
                if new == SctpState::Closed && old == SctpState::Closed {
                    *ignore = true;
                }
            }
            CHUNK_INIT_ACK => {
                let theirs = init_bit(!reply);
                let tag = self.vtag[other];
                if self.flags & theirs == 0 && tag != 0 && tag != ch.init_tag {
                    return None;
                }
                // An INIT collision: both sides sent one.
                if self.flags & init_bit(reply) != 0
                    && self.flags & theirs != 0
                    && tag != ch.init_tag
                {
                    return None;
                }
                self.vtag[other] = ch.init_tag;
            }
            _ => {}
        }
        self.state = new as u8;
        Some(())
    }
}

#[cfg(test)]
mod tests;

//! Expectations: the data connection a command announces, how a new
//! packet finds it, and the anti-bounce check before one is created.

use super::FtpCmd;
use crate::{CtDir, CtKey, IPPROTO_TCP};

/// `nf_ct_ftp_policy.timeout`: an expectation lives five minutes.
pub const EXPECT_TIMEOUT_NS: u64 = 5 * 60 * 1_000_000_000;

/// `nf_ct_ftp_policy.max_expected`: a new command replaces the connection's
/// pending expectation rather than adding one.
pub const MAX_EXPECTED: u32 = 1;

/// Anti-bounce (RFC 2577; `help()` with `loose=0`): the address in a
/// command must be its sender's own, `ct->tuplehash[dir].tuple.src`: the
/// client's for PORT/EPRT, the server's for 227. Otherwise the helper
/// creates no expectation (and the segment passes unchanged), so nobody can
/// open a hole towards a third host.
#[inline(always)]
pub fn bounce_ok(cmd_addr: [u8; 4], sender_addr: [u8; 4]) -> bool {
    cmd_addr == sender_addr
}

/// Key of an expectation: the tuple of the data connection a command
/// announces, as its first packet will arrive.
///
/// For a command seen in direction `dir` of the control connection, `help()`
/// calls `nf_ct_expect_init(exp, DEFAULT, l3num, &ct->tuplehash[!dir].src,
/// &ct->tuplehash[!dir].dst, IPPROTO_TCP, NULL, &port)`:
///
/// * `src` = `tuplehash[!dir].src`: the peer that receives the command
///   connects, from its real address. Compared exactly.
/// * source port: `NULL`, a wildcard (`mask.src.u.all = 0`). It is not part
///   of this key, so a lookup with the new packet's tuple minus its source
///   port finds the expectation with one hash lookup.
/// * `dst` = `tuplehash[!dir].dst`: the sender as the receiver sees it, i.e.
///   after NAT (the address NAT writes into the command).
/// * `dport`: the port in the command, or the one NAT chose instead.
/// * protocol TCP, and the connection's family.
///
/// So PORT expects server:any → client-as-the-server-sees-it:port, and 227
/// expects client:any → server's public (pre-DNAT) address:port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ExpectKey {
    /// Same layout as [`CtKey::src`].
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Network order.
    pub dport: u16,
    /// Always [`IPPROTO_TCP`] for FTP; kept so other helpers can share the
    /// table.
    pub proto: u8,
    pub family: u8,
}
// 16 + 16 + 2 + 1 + 1: no padding bytes, so hashing the key never reads
// uninitialised memory.
const _: () = assert!(core::mem::size_of::<ExpectKey>() == 36);

impl ExpectKey {
    /// The expectation announced by a command seen in direction `dir`, where
    /// `peer` is the control connection's tuple of the other direction
    /// (`tuplehash[!dir]`; our entry's `peer` key) and `port` (host order)
    /// the port the command announces after any NAT rewrite.
    #[inline(always)]
    pub fn for_command(peer: &CtKey, port: u16) -> Self {
        Self {
            src: peer.src,
            dst: peer.dst,
            dport: port.to_be(),
            proto: IPPROTO_TCP,
            family: peer.family,
        }
    }

    /// The key a NEW packet looks up (`find_expectation`): its own tuple
    /// with the source port left out.
    #[inline(always)]
    pub fn of_packet(key: &CtKey) -> Self {
        let CtKey {
            src,
            dst,
            sport: _,
            dport,
            proto,
            family,
            _pad,
        } = *key;
        Self {
            src,
            dst,
            dport,
            proto,
            family,
        }
    }
}

/// `Expectation::flags` bits.
pub mod expect_flags {
    /// The control connection is NATed (`ct->status & IPS_NAT_MASK`): give
    /// the data connection `nf_nat_follow_master`'s two rewrites, source
    /// address to `nat_src`, destination to `nat_dst`:`nat_dport`.
    pub const NAT: u8 = 1 << 0;
}

/// Value of an expectation. The data connection that matches it is
/// RELATED, gets `master` as its master, and consumes the expectation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Expectation {
    /// `bpf_ktime_get_ns()` after which the expectation is void.
    pub expires_ns: u64,
    /// The control connection's original-direction key.
    pub master: CtKey,
    /// With [`expect_flags::NAT`]: the data connection's new source
    /// address, `master->tuplehash[!exp->dir].dst`.
    pub nat_src: [u32; 4],
    /// With [`expect_flags::NAT`]: its new destination address,
    /// `master->tuplehash[!exp->dir].src`: the host that sent the command,
    /// at its real address.
    pub nat_dst: [u32; 4],
    /// With [`expect_flags::NAT`]: its new destination port, network order:
    /// the port in the original command (`exp->saved_proto`).
    pub nat_dport: u16,
    /// The [`FtpCmd`] that created it, as u8 (for listings).
    pub cmd: u8,
    /// [`expect_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<Expectation>() == 88);

impl Expectation {
    /// `help()` and `nf_nat_ftp()` for a command seen in direction `dir`:
    /// `this` is the control connection's tuple in that direction, `peer`
    /// the other; `nat` whether the connection is NATed; `cmd_port` (host
    /// order) the port the command carried before any rewrite.
    ///
    /// `nf_nat_ftp` sets `exp->dir = !dir`, so `nf_nat_follow_master`'s
    /// `tuplehash[!exp->dir]` is `this`: the data connection's source
    /// becomes `this.dst` and its destination `this.src`:`cmd_port`.
    pub fn for_command(
        cmd: FtpCmd,
        dir: CtDir,
        this: &CtKey,
        peer: &CtKey,
        nat: bool,
        cmd_port: u16,
        expires_ns: u64,
    ) -> Self {
        let master = match dir {
            CtDir::Original => *this,
            CtDir::Reply => *peer,
        };
        let (nat_src, nat_dst, nat_dport, flags) = if nat {
            (this.dst, this.src, cmd_port.to_be(), expect_flags::NAT)
        } else {
            ([0; 4], [0; 4], 0, 0)
        };
        Self {
            expires_ns,
            master,
            nat_src,
            nat_dst,
            nat_dport,
            cmd: cmd as u8,
            flags,
            _pad: [0; 4],
        }
    }
}

/// The address NAT writes into a command seen in direction `dir`:
/// `newaddr = ct->tuplehash[!dir].dst`, the sender as the receiver sees
/// it. `peer` is `tuplehash[!dir]`.
#[inline(always)]
pub fn nat_announce_addr(peer: &CtKey) -> [u32; 4] {
    peer.dst
}

#[cfg(test)]
mod tests;

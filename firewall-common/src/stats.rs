//! Per-CPU counters of every verdict and drop reason (`STATS` map, indexed
//! by [`Counter`]).

/// Counter slots. The names are what `firewall stats` prints, so they are
/// part of the user interface; append new ones at the end.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    AcceptNew = 0,
    AcceptEstablished,
    AcceptRelated,
    AcceptUntracked,
    /// Not IPv4/IPv6 (ARP, LLDP…): outside a layer-3 firewall's remit.
    AcceptNonIp,
    /// Transit traffic seen again at egress after ingress already decided.
    SkipForwarded,
    DropPolicy,
    DropRule,
    DropInvalidTcpFlags,
    DropInvalidTcpNew,
    DropInvalidTcpState,
    DropInvalidIcmp,
    DropIcmpErrorNoConn,
    DropMalformed,
    DropFragment,
    CtCreated,
    CtExpiredInPath,
    CtClosedByRst,
    CtReopened,
    CtInsertFailed,
    AcceptRule,
    /// Non-first fragments from a trusted side (they carry no ports to
    /// track); from a WAN they are dropped as `DropFragment`.
    AcceptFragment,
    /// NEW connections a port forward let in (and DNATed).
    AcceptPortForward,
    /// Packets whose source (egress) or destination (ingress) was rewritten.
    NatSrcRewritten,
    NatDstRewritten,
    /// No free port/id within the tries: the connection is refused.
    DropNatExhausted,
    /// Masquerade on an interface that has no IPv4 address (yet).
    DropNatNoAddress,
    /// A port forward's reply tuple is already in use.
    DropNatCollision,
    /// Would have left a NAT interface with an untranslated source.
    DropNatUntranslated,
    /// A masquerade binding made with an address the interface no longer
    /// has; the pair is deleted so the next packet starts afresh.
    DropNatStale,
    /// One half of a translated pair was missing (LRU eviction); the other
    /// half is deleted too.
    DropNatPairBroken,
    /// A rewrite helper failed; the packet is not sent half-translated.
    DropNatRewriteFailed,
    /// A connection kept its address but had to change its source port.
    NatPortRemapped,
    /// First packets of connections an FTP command announced (RELATED).
    AcceptExpected,
    /// Expectations the FTP helper created.
    FtpExpectCreated,
    /// FTP commands whose address/port NAT rewrote.
    FtpRewritten,
    /// PORT/EPRT naming another host than the client (anti-bounce): no
    /// expectation, as in netfilter.
    FtpBounceRefused,
    /// A command split across segments (netfilter drops these; the sender
    /// retransmits).
    DropFtpPartial,
    /// A recognised command with malformed arguments.
    DropFtpInvalid,
    /// A command needing NAT that cannot be rewritten in place (segment too
    /// long, no port for the data connection): dropped rather than leaked
    /// untranslated.
    DropFtpUnmangleable,
    /// ESTABLISHED packets the XDP fast path forwarded itself (FIB lookup,
    /// MAC rewrite, TTL/hop limit, `bpf_redirect`), bypassing the stack.
    FastPathForwarded,
    /// Fast-path fallbacks to the stack (`XDP_PASS`), one per reason.
    /// The flow is translated or helped at TC, or would leave a NAT
    /// interface, whose guard runs at tcx egress (bypassed by a redirect).
    FastPathNat,
    /// VLAN tags, IPv4 options, fragments, IPv6 extension headers, or an
    /// egress back out of the ingress interface.
    FastPathUnusual,
    /// TTL/hop limit ≤ 1: the stack sends the time-exceeded error.
    FastPathTtl,
    /// The FIB says local delivery, or forwarding is off.
    FastPathNotForwarded,
    /// No neighbour entry for the next hop yet: the stack resolves it.
    FastPathNoNeigh,
    /// Larger than the egress MTU (GSO packets included): the stack
    /// fragments or sends the ICMP error.
    FastPathFragNeeded,
    /// Blackhole, unreachable, prohibit or another FIB result.
    FastPathNoRoute,
    /// The egress interface is not managed by the firewall.
    FastPathUnmanaged,
    /// Native XDP towards an interface that cannot take redirected XDP
    /// frames (veth: depends on its peer, which the loader cannot see).
    FastPathNoXdpTarget,
    /// Refused by a REJECT rule, which answered with a RST or ICMP error.
    DropReject,
    /// A REJECT rule matched but its answer could not be built (an ICMP
    /// error about an ICMP error, a frame too short): dropped silently.
    DropRejectNoReply,
    /// LOG events written to the ring buffer `firewall log` reads.
    LogEmitted,
    /// LOG events lost because the ring buffer was full (no reader).
    LogLost,
    /// A rule that matched but was over its `limit` rate (not a match).
    RuleLimited,
}

/// Slots in the `STATS` map: more than [`Counter::COUNT`] so that new
/// counters do not change the map's size, which would stop a newer daemon
/// from adopting an older instance's pinned map.
pub const STATS_SLOTS: u32 = 64;
const _: () = assert!(Counter::COUNT <= STATS_SLOTS);

impl Counter {
    pub const COUNT: u32 = 55;
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::AcceptNew,
        Counter::AcceptEstablished,
        Counter::AcceptRelated,
        Counter::AcceptUntracked,
        Counter::AcceptNonIp,
        Counter::SkipForwarded,
        Counter::DropPolicy,
        Counter::DropRule,
        Counter::DropInvalidTcpFlags,
        Counter::DropInvalidTcpNew,
        Counter::DropInvalidTcpState,
        Counter::DropInvalidIcmp,
        Counter::DropIcmpErrorNoConn,
        Counter::DropMalformed,
        Counter::DropFragment,
        Counter::CtCreated,
        Counter::CtExpiredInPath,
        Counter::CtClosedByRst,
        Counter::CtReopened,
        Counter::CtInsertFailed,
        Counter::AcceptRule,
        Counter::AcceptFragment,
        Counter::AcceptPortForward,
        Counter::NatSrcRewritten,
        Counter::NatDstRewritten,
        Counter::DropNatExhausted,
        Counter::DropNatNoAddress,
        Counter::DropNatCollision,
        Counter::DropNatUntranslated,
        Counter::DropNatStale,
        Counter::DropNatPairBroken,
        Counter::DropNatRewriteFailed,
        Counter::NatPortRemapped,
        Counter::AcceptExpected,
        Counter::FtpExpectCreated,
        Counter::FtpRewritten,
        Counter::FtpBounceRefused,
        Counter::DropFtpPartial,
        Counter::DropFtpInvalid,
        Counter::DropFtpUnmangleable,
        Counter::FastPathForwarded,
        Counter::FastPathNat,
        Counter::FastPathUnusual,
        Counter::FastPathTtl,
        Counter::FastPathNotForwarded,
        Counter::FastPathNoNeigh,
        Counter::FastPathFragNeeded,
        Counter::FastPathNoRoute,
        Counter::FastPathUnmanaged,
        Counter::FastPathNoXdpTarget,
        Counter::DropReject,
        Counter::DropRejectNoReply,
        Counter::LogEmitted,
        Counter::LogLost,
        Counter::RuleLimited,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Counter::AcceptNew => "accept_new",
            Counter::AcceptEstablished => "accept_established",
            Counter::AcceptRelated => "accept_related",
            Counter::AcceptUntracked => "accept_untracked",
            Counter::AcceptNonIp => "accept_non_ip",
            Counter::SkipForwarded => "skip_forwarded",
            Counter::DropPolicy => "drop_policy",
            Counter::DropRule => "drop_rule",
            Counter::DropInvalidTcpFlags => "drop_invalid_tcp_flags",
            Counter::DropInvalidTcpNew => "drop_invalid_tcp_new",
            Counter::DropInvalidTcpState => "drop_invalid_tcp_state",
            Counter::DropInvalidIcmp => "drop_invalid_icmp",
            Counter::DropIcmpErrorNoConn => "drop_icmp_error_no_conn",
            Counter::DropMalformed => "drop_malformed",
            Counter::DropFragment => "drop_fragment",
            Counter::CtCreated => "ct_created",
            Counter::CtExpiredInPath => "ct_expired_in_datapath",
            Counter::CtClosedByRst => "ct_closed_by_rst",
            Counter::CtReopened => "ct_reopened",
            Counter::CtInsertFailed => "ct_insert_failed",
            Counter::AcceptRule => "accept_rule",
            Counter::AcceptFragment => "accept_fragment",
            Counter::AcceptPortForward => "accept_port_forward",
            Counter::NatSrcRewritten => "nat_src_rewritten",
            Counter::NatDstRewritten => "nat_dst_rewritten",
            Counter::DropNatExhausted => "drop_nat_exhausted",
            Counter::DropNatNoAddress => "drop_nat_no_address",
            Counter::DropNatCollision => "drop_nat_collision",
            Counter::DropNatUntranslated => "drop_nat_untranslated",
            Counter::DropNatStale => "drop_nat_stale",
            Counter::DropNatPairBroken => "drop_nat_pair_broken",
            Counter::DropNatRewriteFailed => "drop_nat_rewrite_failed",
            Counter::NatPortRemapped => "nat_port_remapped",
            Counter::AcceptExpected => "accept_expected",
            Counter::FtpExpectCreated => "ftp_expect_created",
            Counter::FtpRewritten => "ftp_rewritten",
            Counter::FtpBounceRefused => "ftp_bounce_refused",
            Counter::DropFtpPartial => "drop_ftp_partial",
            Counter::DropFtpInvalid => "drop_ftp_invalid",
            Counter::DropFtpUnmangleable => "drop_ftp_unmangleable",
            Counter::FastPathForwarded => "fastpath_forwarded",
            Counter::FastPathNat => "fastpath_fallback_nat",
            Counter::FastPathUnusual => "fastpath_fallback_unusual",
            Counter::FastPathTtl => "fastpath_fallback_ttl",
            Counter::FastPathNotForwarded => "fastpath_fallback_not_forwarded",
            Counter::FastPathNoNeigh => "fastpath_fallback_no_neigh",
            Counter::FastPathFragNeeded => "fastpath_fallback_frag_needed",
            Counter::FastPathNoRoute => "fastpath_fallback_no_route",
            Counter::FastPathUnmanaged => "fastpath_fallback_unmanaged",
            Counter::FastPathNoXdpTarget => "fastpath_fallback_no_xdp_target",
            Counter::DropReject => "drop_reject",
            Counter::DropRejectNoReply => "drop_reject_no_reply",
            Counter::LogEmitted => "log_emitted",
            Counter::LogLost => "log_lost",
            Counter::RuleLimited => "rule_limited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_counter_in_slot_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{}", c.name());
        }
    }
}

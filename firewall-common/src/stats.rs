//! Per-CPU counters of every verdict and drop reason (`STATS` map, indexed
//! by [`Counter`]).

/// Declares [`Counter`], its slot order, [`Counter::ALL`] and the names
/// `firewall stats` prints, from one list: a counter is added in one place.
macro_rules! counters {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Counter slots. The names are part of the user interface; append
        /// new ones at the end (slots are positions in the pinned map).
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter {
            $( $(#[$doc])* $variant, )*
        }

        impl Counter {
            /// Every counter, in slot order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            pub const COUNT: u32 = Self::ALL.len() as u32;

            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    AcceptNew => "accept_new",
    AcceptEstablished => "accept_established",
    AcceptRelated => "accept_related",
    AcceptUntracked => "accept_untracked",
    /// Not IPv4/IPv6 (ARP, LLDP…): outside a layer-3 firewall's remit.
    AcceptNonIp => "accept_non_ip",
    /// Transit traffic seen again at egress after ingress already decided.
    SkipForwarded => "skip_forwarded",
    DropPolicy => "drop_policy",
    DropRule => "drop_rule",
    DropInvalidTcpFlags => "drop_invalid_tcp_flags",
    DropInvalidTcpNew => "drop_invalid_tcp_new",
    DropInvalidTcpState => "drop_invalid_tcp_state",
    DropInvalidIcmp => "drop_invalid_icmp",
    DropIcmpErrorNoConn => "drop_icmp_error_no_conn",
    DropMalformed => "drop_malformed",
    /// Later fragments from a WAN whose first fragment is not on record
    /// (not seen, expired, or forgotten): nothing to judge them by.
    DropFragment => "drop_fragment",
    CtCreated => "ct_created",
    CtExpiredInPath => "ct_expired_in_datapath",
    CtClosedByRst => "ct_closed_by_rst",
    CtReopened => "ct_reopened",
    CtInsertFailed => "ct_insert_failed",
    AcceptRule => "accept_rule",
    /// Later (non-first) fragments that followed their first fragment's
    /// acceptance (and its translation).
    AcceptFragment => "accept_fragment",
    /// NEW connections a port forward let in (and DNATed).
    AcceptPortForward => "accept_port_forward",
    /// Packets whose source (egress) or destination (ingress) was rewritten.
    NatSrcRewritten => "nat_src_rewritten",
    NatDstRewritten => "nat_dst_rewritten",
    /// No free port/id within the tries: the connection is refused.
    DropNatExhausted => "drop_nat_exhausted",
    /// Masquerade on an interface that has no IPv4 address (yet).
    DropNatNoAddress => "drop_nat_no_address",
    /// A port forward's reply tuple is already in use.
    DropNatCollision => "drop_nat_collision",
    /// Would have left a NAT interface with an untranslated source.
    DropNatUntranslated => "drop_nat_untranslated",
    /// A masquerade binding made with an address the interface no longer
    /// has; the pair is deleted so the next packet starts afresh.
    DropNatStale => "drop_nat_stale",
    /// One half of a translated pair was missing (a race with a deletion of
    /// the pair); the other half is deleted too.
    DropNatPairBroken => "drop_nat_pair_broken",
    /// A rewrite helper failed; the packet is not sent half-translated.
    DropNatRewriteFailed => "drop_nat_rewrite_failed",
    /// A connection kept its address but had to change its source port.
    NatPortRemapped => "nat_port_remapped",
    /// First packets of connections an FTP command announced (RELATED).
    AcceptExpected => "accept_expected",
    /// Expectations the FTP helper created.
    FtpExpectCreated => "ftp_expect_created",
    /// FTP commands whose address/port NAT rewrote.
    FtpRewritten => "ftp_rewritten",
    /// PORT/EPRT naming another host than the client (anti-bounce): no
    /// expectation, as in netfilter.
    FtpBounceRefused => "ftp_bounce_refused",
    /// A command split across segments (netfilter drops these; the sender
    /// retransmits).
    DropFtpPartial => "drop_ftp_partial",
    /// A recognised command with malformed arguments.
    DropFtpInvalid => "drop_ftp_invalid",
    /// A command needing NAT that cannot be rewritten in place (segment too
    /// long, no port for the data connection): dropped rather than leaked
    /// untranslated.
    DropFtpUnmangleable => "drop_ftp_unmangleable",
    /// ESTABLISHED packets the XDP fast path forwarded itself (FIB lookup,
    /// MAC rewrite, TTL/hop limit, `bpf_redirect`), bypassing the stack.
    FastPathForwarded => "fastpath_forwarded",
    /// Fast-path fallbacks to the stack (`XDP_PASS`), one per reason.
    /// The flow is translated or helped at TC, or would leave a NAT
    /// interface, whose guard runs at tcx egress (bypassed by a redirect).
    FastPathNat => "fastpath_fallback_nat",
    /// VLAN tags, IPv4 options, fragments, IPv6 extension headers, or an
    /// egress back out of the ingress interface.
    FastPathUnusual => "fastpath_fallback_unusual",
    /// TTL/hop limit ≤ 1: the stack sends the time-exceeded error.
    FastPathTtl => "fastpath_fallback_ttl",
    /// The FIB says local delivery, or forwarding is off.
    FastPathNotForwarded => "fastpath_fallback_not_forwarded",
    /// No neighbour entry for the next hop yet: the stack resolves it.
    FastPathNoNeigh => "fastpath_fallback_no_neigh",
    /// Larger than the egress MTU (GSO packets included): the stack
    /// fragments or sends the ICMP error.
    FastPathFragNeeded => "fastpath_fallback_frag_needed",
    /// Blackhole, unreachable, prohibit or another FIB result.
    FastPathNoRoute => "fastpath_fallback_no_route",
    /// The egress interface is not managed by the firewall.
    FastPathUnmanaged => "fastpath_fallback_unmanaged",
    /// Native XDP towards an interface that cannot take redirected XDP
    /// frames (veth: depends on its peer, which the loader cannot see).
    FastPathNoXdpTarget => "fastpath_fallback_no_xdp_target",
    /// Refused by a REJECT rule, which answered with a RST or ICMP error.
    DropReject => "drop_reject",
    /// A REJECT rule matched but its answer could not be built (an ICMP
    /// error about an ICMP error, a frame too short): dropped silently.
    DropRejectNoReply => "drop_reject_no_reply",
    /// LOG events written to the ring buffer `firewall log` reads.
    LogEmitted => "log_emitted",
    /// LOG events lost because the ring buffer was full (no reader).
    LogLost => "log_lost",
    /// A rule that matched but was over its `limit` rate (not a match).
    RuleLimited => "rule_limited",
    /// A frame still carrying an 802.1Q/802.1ad (or 0x9100) tag after the
    /// two the parser follows: the kernel would strip the tags and route
    /// what is inside, so passing it as "not IP" would skip the firewall.
    DropVlanStack => "drop_vlan_stack",
    /// An IPv4 header checksum that does not verify, on a packet that would
    /// create a connection or on an ICMP error (`ip_rcv` drops these; no
    /// state may be made for them).
    DropBadIpChecksum => "drop_bad_ip_checksum",
    /// A transport checksum that does not verify, on a packet that would
    /// create a connection or on an ICMP error (netfilter: INVALID with
    /// `nf_conntrack_checksum`).
    DropBadChecksum => "drop_bad_checksum",
    /// Malformed IPv4 options, or source routing (IPv4 LSRR/SSRR, an IPv6
    /// routing header with segments left), on a packet that would create a
    /// connection.
    DropIpOptions => "drop_ip_options",
    /// A new connection from outside with a martian source (multicast,
    /// broadcast, loopback, this host's own address, one with no route
    /// back) or to a martian destination: the stack drops these.
    DropMartian => "drop_martian",
    /// A first packet the stack will not forward because its TTL or hop
    /// limit is spent: passed without a connection, so the stack sends its
    /// time-exceeded error and nothing is let back in.
    PassTtlExpired => "pass_ttl_expired",
    /// A first packet to a destination with no route (unreachable,
    /// blackhole, prohibit): passed without a connection, for the stack's
    /// ICMP error.
    PassUnroutable => "pass_unroutable",
    /// A port-forwarded (or helper-translated) first packet with TTL or hop
    /// limit spent: without its translation the stack would deliver it
    /// locally, so it is dropped.
    DropTtlExpired => "drop_ttl_expired",
    /// An ICMP error this host sends about a packet that has no connection
    /// (one it refused to forward: TTL, no route). netfilter attaches the
    /// packet's unconfirmed connection and calls it RELATED.
    AcceptLocalIcmpError => "accept_local_icmp_error",
    /// An IPv6 packet whose header chain ends in No Next Header (59): no
    /// transport to track (netfilter: INVALID).
    DropNoNextHeader => "drop_no_next_header",
    /// An ICMP redirect about a translated connection (netfilter drops
    /// these in `nf_nat_icmp_reply_translation`).
    DropIcmpRedirectNat => "drop_icmp_redirect_nat",
    /// An ICMP error quoting a non-first fragment: no transport header to
    /// tie it to a connection (netfilter: INVALID).
    DropIcmpErrorQuote => "drop_icmp_error_quote",
    /// Link-scope ICMPv6 (neighbour and router discovery, redirect, MLD)
    /// that would be forwarded: never (RFC 4890).
    DropNdForward => "drop_nd_forward",
    /// Neighbour/router discovery or MLD failing RFC 4861/2710 validation
    /// (hop limit, code, length, options).
    DropNdInvalid => "drop_nd_invalid",
    /// SCTP packets outside netfilter's SCTP tracker: a wrong verification
    /// tag, chunks in an invalid order or state, a bad first packet.
    DropInvalidSctp => "drop_invalid_sctp",
    /// A protocol without ports (GRE, ESP…) translated by address: another
    /// inside host already talks to this peer with this protocol, and
    /// replies could not tell them apart.
    DropNatPeerBusy => "drop_nat_peer_busy",
    /// TCP sequence beyond what the receiver's window allows
    /// (`tcp_in_window` bound I): INVALID.
    DropTcpWindowSeqAbove => "drop_tcp_window_seq_above",
    /// An ACK of data the other side never sent (bound III): INVALID.
    DropTcpWindowAckAbove => "drop_tcp_window_ack_above",
    /// An RST outside the window: INVALID even with `tcp_be_liberal`.
    DropTcpWindowRst => "drop_tcp_window_rst",
    /// Data entirely before the receiver's window, a late retransmission
    /// (bound II): accepted, the connection's state untouched.
    TcpWindowSeqBelow => "tcp_window_seq_below",
    /// An ACK from before the window (bound IV), overly delayed:
    /// accepted, state untouched.
    TcpWindowAckBelow => "tcp_window_ack_below",
    /// Data over the window by less than a window, from a stack that
    /// overshoots: accepted, noted, state untouched.
    TcpWindowOvershoot => "tcp_window_overshoot",
    /// A segment the state machine ignores (`sIG`, a challenge ACK):
    /// accepted, state untouched.
    TcpIgnored => "tcp_ignored",
    /// A window failure accepted because the sender is tracked liberally
    /// (a mid-stream pickup, or `tcp_be_liberal`).
    TcpWindowLiberal => "tcp_window_liberal",
    /// Unassured connections deleted (both halves) to make room for a new
    /// one in a full table (netfilter's `early_drop` statistic).
    CtEarlyDrop => "ct_early_drop",
    /// First packets dropped because the table was full and no unassured
    /// connection could be displaced (netfilter's "table full, dropping
    /// packet").
    DropTableFull => "drop_table_full",
    /// Later fragments of a datagram whose first fragment was dropped.
    DropFragmentFollows => "drop_fragment_follows",
    /// Later fragments from a LAN, or from the host itself, whose first
    /// fragment is not on record: passed (a NAT interface still refuses
    /// them as `drop_fragment_untranslated`).
    AcceptFragmentOrphan => "accept_fragment_orphan",
    /// First fragments too short to hold their transport header (the tiny
    /// fragment attack, RFC 1858; IPv6: RFC 7112): the datagram is dropped.
    DropFragmentTiny => "drop_fragment_tiny",
    /// Fragments that would overwrite the transport header their datagram
    /// was judged on (RFC 1858, RFC 3128), or a second, different first
    /// fragment: the datagram is dropped whole.
    DropFragmentOverlap => "drop_fragment_overlap",
    /// Fragments whose offset plus length pass 65,535 bytes.
    DropFragmentOversize => "drop_fragment_oversize",
    /// Fragments whose protocol differs from their datagram's.
    DropFragmentProto => "drop_fragment_proto",
    /// Later fragments that would leave a NAT interface untranslated
    /// (no first fragment on record to take the translation from).
    DropFragmentUntranslated => "drop_fragment_untranslated",
    /// IPv6 atomic fragments (a fragment header, offset 0, no more
    /// fragments): handled as the whole packets they are (RFC 6946).
    /// Not a verdict: the packet is also counted by its verdict.
    FragmentAtomic => "fragment_atomic",
    /// Fragments of established flows the fast path leaves to the stack.
    FastPathFragment => "fastpath_fallback_fragment",
    /// Fragmented segments of a helped (FTP) control connection, at
    /// egress: the helper cannot read a command whose bytes are split over
    /// fragments, nor resize a segment without breaking its datagram, and a
    /// command passed unread would miss its expectation or, under NAT,
    /// leave with the inside address in it.
    DropFragmentHelper => "drop_fragment_helper",
    /// New connections whose reply tuple is already another connection's
    /// entry (or is their own tuple): refused, never overwriting it, as
    /// netfilter's confirm refuses them (`insert_failed`).
    DropCtClash => "drop_ct_clash",
}

/// Slots in the `STATS` map: more than [`Counter::COUNT`] so that new
/// counters do not change the map's size, which would stop a newer daemon
/// from adopting an older instance's pinned map.
pub const STATS_SLOTS: u32 = 128;
const _: () = assert!(Counter::COUNT <= STATS_SLOTS);

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn all_lists_every_counter_in_slot_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{}", c.name());
        }
        // The last variant's slot is COUNT - 1: nothing was left out.
        assert_eq!(*Counter::ALL.last().unwrap() as u32, Counter::COUNT - 1);
    }

    #[test]
    fn names_are_unique_snake_case() {
        let names: BTreeSet<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::ALL.len());
        for n in names {
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{n}"
            );
        }
    }
}

//! Per-state timeouts and the choice between them.

use crate::tcp::TcpState;

/// Calls `$callback! { tcp_syn_sent, tcp_syn_recv, ... }` with the name of
/// every field of [`Timeouts`] but its padding, in declaration order: the
/// one list of the timeouts' names. The config's `[timeouts]` keys and the
/// end-to-end tests' config builder are generated from it, and
/// [`Timeouts::all`] destructures the struct with it, so a field added to
/// the struct and not here (or the reverse) stops the build.
#[macro_export]
macro_rules! timeout_fields {
    ($callback:ident) => {
        $callback! {
            tcp_syn_sent,
            tcp_syn_recv,
            tcp_established,
            tcp_fin_wait,
            tcp_close_wait,
            tcp_last_ack,
            tcp_time_wait,
            tcp_close,
            tcp_syn_sent2,
            tcp_retrans,
            tcp_unack,
            udp,
            udp_stream,
            icmp,
            generic,
        }
    };
}

/// Timeouts in seconds, one per netfilter sysctl
/// (`nf_conntrack_*_timeout*`). Stored in the `SETTINGS` map so the daemon
/// can change them without reloading programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub tcp_syn_sent2: u32,
    /// Retransmissions beyond `tcp_max_retrans`, or a zero window
    /// (`nf_conntrack_tcp_timeout_max_retrans`).
    pub tcp_retrans: u32,
    pub tcp_unack: u32,
    pub udp: u32,
    pub udp_stream: u32,
    pub icmp: u32,
    pub generic: u32,
    pub _pad: [u32; 1],
}
const _: () = assert!(core::mem::size_of::<Timeouts>() == 64);

impl Timeouts {
    /// The kernel's defaults (`tcp_timeouts[]`, `udp_timeouts[]`,
    /// nf_conntrack-sysctl.rst). UDP stream is 120 s as in current kernels.
    pub const NETFILTER: Timeouts = Timeouts {
        tcp_syn_sent: 120,
        tcp_syn_recv: 60,
        tcp_established: 432_000,
        tcp_fin_wait: 120,
        tcp_close_wait: 60,
        tcp_last_ack: 30,
        tcp_time_wait: 120,
        tcp_close: 10,
        tcp_syn_sent2: 120,
        tcp_retrans: 300,
        tcp_unack: 300,
        udp: 30,
        udp_stream: 120,
        icmp: 30,
        generic: 600,
        _pad: [0; 1],
    };

    /// Timeout for a TCP connection now in `state`.
    ///
    /// Before any reply has been seen an ESTABLISHED state can only come from
    /// a loose pickup; netfilter caps those at the UNACK timeout so half-seen
    /// flows do not linger for five days.
    #[inline(always)]
    pub fn tcp(&self, state: TcpState, seen_reply: bool) -> u32 {
        let t = match state {
            TcpState::None => self.tcp_close,
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
            TcpState::SynSent2 => self.tcp_syn_sent2,
        };
        if !seen_reply && state == TcpState::Established && self.tcp_unack < t {
            self.tcp_unack
        } else {
            t
        }
    }

    /// UDP: 30 s until the flow is a stream (a reply was seen and the
    /// connection is older than 2 s, `nf_conntrack_udp_packet`), then the
    /// stream timeout.
    #[inline(always)]
    pub fn udp(&self, stream: bool) -> u32 {
        if stream { self.udp_stream } else { self.udp }
    }
}

/// What follows from the list: the count, the names, and access by name.
macro_rules! by_name {
    ($($field:ident),* $(,)?) => {
        impl Timeouts {
            /// How many timeouts there are.
            pub const COUNT: usize = [$(stringify!($field)),*].len();

            /// Every timeout's name (its field's, and its `[timeouts]` key
            /// in the config), in declaration order.
            pub const NAMES: [&'static str; Self::COUNT] = [$(stringify!($field)),*];

            /// Every timeout, in the order of [`Self::NAMES`], for callers
            /// that need an aggregate (the shortest bounds how long the
            /// ager may sleep).
            pub fn all(&self) -> [u32; Self::COUNT] {
                let Timeouts { $($field,)* _pad } = *self;
                [$($field),*]
            }

            /// The timeout called `name` (one of [`Self::NAMES`]).
            pub fn get_mut(&mut self, name: &str) -> Option<&mut u32> {
                match name {
                    $(stringify!($field) => Some(&mut self.$field),)*
                    _ => None,
                }
            }
        }
    };
}
timeout_fields!(by_name);

/// How long after creation a replied UDP flow becomes a stream (netfilter's
/// `stream_ts = now + 2*HZ`).
pub const UDP_STREAM_AFTER_NS: u64 = 2_000_000_000;

pub const NS_PER_SEC: u64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_state_timeouts_match_netfilter() {
        let t = Timeouts::NETFILTER;
        assert_eq!(t.tcp(TcpState::SynSent, false), 120);
        assert_eq!(t.tcp(TcpState::SynRecv, true), 60);
        assert_eq!(t.tcp(TcpState::Established, true), 432_000);
        assert_eq!(t.tcp(TcpState::FinWait, true), 120);
        assert_eq!(t.tcp(TcpState::CloseWait, true), 60);
        assert_eq!(t.tcp(TcpState::LastAck, true), 30);
        assert_eq!(t.tcp(TcpState::TimeWait, true), 120);
        assert_eq!(t.tcp(TcpState::Close, true), 10);
        assert_eq!(t.tcp(TcpState::SynSent2, false), 120);
    }

    #[test]
    fn loose_pickup_without_reply_is_capped_at_unack() {
        let t = Timeouts::NETFILTER;
        assert_eq!(t.tcp(TcpState::Established, false), 300);
        let short = Timeouts {
            tcp_established: 100,
            ..Timeouts::NETFILTER
        };
        // The cap only ever shortens.
        assert_eq!(short.tcp(TcpState::Established, false), 100);
    }

    /// `NAMES`, `get_mut` and `all` follow one order: setting each timeout
    /// by name shows up in its place, and nowhere else.
    #[test]
    fn names_reach_their_fields() {
        assert_eq!(Timeouts::COUNT, 15);
        for (i, name) in Timeouts::NAMES.into_iter().enumerate() {
            let mut t = Timeouts::NETFILTER;
            *t.get_mut(name).unwrap() = 7_777_777;
            let all = t.all();
            for (j, (&got, &default)) in all.iter().zip(&Timeouts::NETFILTER.all()).enumerate() {
                assert_eq!(got, if i == j { 7_777_777 } else { default }, "{name}");
            }
        }
        let mut t = Timeouts::NETFILTER;
        assert_eq!(t.get_mut("_pad"), None);
        assert_eq!(t.get_mut("tcp"), None);
    }

    #[test]
    fn udp_stream_selection() {
        let t = Timeouts::NETFILTER;
        assert_eq!(t.udp(false), 30);
        assert_eq!(t.udp(true), 120);
    }
}

//! BPF_PROG_TEST_RUN harness for the datapath: a private (unpinned) instance
//! of both programs and all maps, two interfaces to receive on, and builders
//! for the packets and conntrack keys the tests talk about.
//!
//! Every [`Harness`] puts its test thread into a network namespace of its
//! own, with a `wan0` and a `lan0` interface (the two ends of a veth pair). The XDP test run needs a
//! real ifindex in the caller's namespace to report as the ingress
//! interface, and the datapath's `bpf_fib_lookup` (INPUT or FORWARD?) must
//! see a routing table the test controls rather than the host's. The
//! namespace is anonymous (`unshare(CLONE_NEWNET)` on the test thread): the
//! kernel frees it with its interfaces when the thread leaves it, so nothing
//! can leak, even when a test is killed.
//!
//! A test may also bring its own `[[interface]]` blocks (NAT keys on `wan0`)
//! and a routing setup through [`Setup`]: the namespace is prepared before
//! the config is written to the maps, as the daemon would find the host.

// Each test crate (`datapath`, `nat`) uses its own subset of the harness.
#![allow(dead_code)]

use std::{
    fs::File,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    process::Command,
    time::Duration,
};

use aya::{
    Ebpf,
    maps::MapError,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use etherparse::{
    EtherType, Ethernet2Header, Icmpv4Type, Icmpv6Type, IpHeaders, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6Header, PacketBuilder, PacketBuilderStep, TcpHeader, icmpv4, icmpv6,
};
use firewall::{TC_INGRESS_PROGRAM, TC_PROGRAM, XDP_PROGRAM, config, loader, maps::Maps};
use firewall_common::{
    CtDir, CtEntry, CtKey, FAMILY_V4, FAMILY_V6, IPPROTO_ICMP, IPPROTO_ICMPV6, TcpState,
    ct::flags,
    rule::RuleCounter,
    stats::Counter,
    tcp::{TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG},
};

/// Conntrack capacity for a test instance: plenty for a handful of flows,
/// and small enough that many instances can exist at once (the table is
/// preallocated).
const TEST_CT_ENTRIES: u32 = 4096;

/// What a program decided, from either hook's return code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
    /// XDP_TX: sent back out of the interface it came in on (a REJECT's
    /// answer).
    Tx,
    /// `XDP_REDIRECT`: the fast path forwarded the packet itself (a test
    /// run only reports the verdict; nothing is sent).
    Redirect,
}

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;
/// `TC_ACT_UNSPEC`: continue with the next classifier (or send).
const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_SHOT: i32 = 2;

/// The ifindex of a packet the host itself sends (`__sk_buff.ingress_ifindex`).
pub const HOST_ORIGINATED: u32 = 0;

/// The `[[interface]]` blocks every test gets unless it brings its own:
/// `wan0` as wan, `lan0` as lan, no NAT.
pub const DEFAULT_INTERFACES: &str = "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n\n\
                                      [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n";

/// The router the forwarding tests start from (`nat`, `fastpath`, `ftp`,
/// `bypass`): `lan0` 10.0.1.1/24 and `wan0` 10.0.2.1/24, both up, and a
/// default route out of `wan0` via 10.0.2.254. Each test file adds its own
/// lines (neighbours, IPv6, unreachable routes) with [`router_ip`].
pub const ROUTER_IP: &[&str] = &[
    "addr add 10.0.1.1/24 dev lan0",
    "addr add 10.0.2.1/24 dev wan0",
    "link set lan0 up",
    "link set wan0 up",
    "route add default via 10.0.2.254 dev wan0",
];

/// The default gateway's MAC, so that a FIB lookup along the default route
/// finds its neighbour.
pub const GATEWAY_NEIGH: &str = "neigh add 10.0.2.254 lladdr 02:00:00:00:00:fe dev wan0";

/// Forwarding on for both families.
pub const FORWARDING: &[(&str, &str)] = &[
    ("net.ipv4.conf.all.forwarding", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
];

/// `wan0` as wan with `wan_keys` (NAT settings), and `lan0` as lan: the
/// `[[interface]]` blocks of the router tests.
pub fn interfaces_with(wan_keys: &str) -> String {
    format!(
        "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n{wan_keys}\n\n\
         [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n"
    )
}

/// The router of the forwarding tests: [`ROUTER_IP`] and `more`, `sysctls`,
/// [`interfaces_with`] `wan_keys`, then `config_toml`.
pub fn router_harness(
    more: &[&str],
    sysctls: &[(&str, &str)],
    wan_keys: &str,
    config_toml: &str,
) -> Harness {
    Harness::with_setup(
        &Setup {
            interfaces: &interfaces_with(wan_keys),
            ip: &router_ip(more),
            sysctls,
        },
        config_toml,
    )
}

/// [`ROUTER_IP`] followed by `more`, for [`Setup::ip`].
pub fn router_ip<'a>(more: &[&'a str]) -> Vec<&'a str> {
    ROUTER_IP.iter().chain(more).copied().collect()
}

/// How a test's namespace and interfaces look before the config is
/// written to the maps.
#[derive(Clone, Copy, Debug)]
pub struct Setup<'a> {
    /// The `[[interface]]` blocks, naming `wan0` and/or `lan0` (the only
    /// interfaces that exist), with any NAT keys.
    pub interfaces: &'a str,
    /// `ip` commands (addresses, links up, routes, neighbours), run once
    /// both interfaces exist: masquerade reads `wan0`'s address when the
    /// config is written.
    pub ip: &'a [&'a str],
    /// Sysctls (`net.ipv4.conf.all.forwarding`…) written after `ip`.
    pub sysctls: &'a [(&'a str, &'a str)],
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            interfaces: DEFAULT_INTERFACES,
            ip: &[],
            sysctls: &[],
        }
    }
}

/// A loaded, configured firewall instance and the interfaces it manages.
pub struct Harness {
    ebpf: Ebpf,
    pub maps: Maps,
    pub wan: u32,
    pub lan: u32,
    /// The interfaces as the loader resolved them (what the daemon keeps
    /// to refresh masquerade addresses).
    pub ifaces: Vec<loader::Iface>,
    /// Last, so the thread leaves the namespace after everything else is
    /// gone.
    netns: PrivateNetns,
}

impl Harness {
    /// Loads the programs and writes `config_toml` (everything but the
    /// interfaces, which the harness supplies: `wan0` as wan, `lan0` as lan).
    pub fn new(config_toml: &str) -> Harness {
        Harness::with_setup(&Setup::default(), config_toml)
    }

    /// Prepares the namespace as `setup` says, then loads the programs and
    /// writes `setup.interfaces` followed by `config_toml`.
    pub fn with_setup(setup: &Setup, config_toml: &str) -> Harness {
        Harness::with_table(setup, config_toml, TEST_CT_ENTRIES)
    }

    /// As [`Harness::with_setup`], with a connection table of `ct_entries`
    /// entries (two per connection), below the config's minimum if need be:
    /// the table tests fill it.
    pub fn with_table(setup: &Setup, config_toml: &str, ct_entries: u32) -> Harness {
        let netns = PrivateNetns::enter();
        // A veth pair: this kernel has no dummy driver, and the test only
        // needs two ifindexes (nothing is sent between the ends).
        netns.ip("link add wan0 type veth peer name lan0");
        let wan = ifindex("wan0");
        let lan = ifindex("lan0");
        for words in setup.ip {
            netns.ip(words);
        }
        for (key, value) in setup.sysctls {
            write_sysctl(key, value);
        }
        let text = format!("{}\n{config_toml}", setup.interfaces);
        let cfg = config::parse(&text, "datapath-test.toml").expect("test config parses");
        let mut ebpf = loader::load_object(None, ct_entries).expect("object loads");
        let mut maps = Maps::from_ebpf(&mut ebpf).expect("maps open");
        let ifaces = loader::resolve_interfaces(&cfg).expect("test interfaces resolve");
        loader::configure(&mut maps, &cfg, &ifaces).expect("configure");
        Harness {
            ebpf,
            maps,
            wan,
            lan,
            ifaces,
            netns,
        }
    }

    /// What the daemon does when an interface's address changes: brings
    /// every masquerading interface's translation address in `IFACES` up
    /// to date. Returns the interfaces whose address changed.
    pub fn refresh_masquerade(&mut self) -> Vec<String> {
        loader::refresh_masquerade(&mut self.maps, &self.ifaces)
    }

    /// What the daemon does when an interface's IPv6 sysctls change.
    /// Returns the interfaces whose settings changed.
    pub fn refresh_ipv6_settings(&mut self) -> Vec<String> {
        loader::refresh_ipv6_settings(&mut self.maps, &self.ifaces)
    }

    /// Instructions the verifier processed for program `name`.
    pub fn verified_instructions(&self, name: &str) -> Option<u32> {
        loader::verified_instructions(&self.ebpf, name)
    }

    /// Runs `ip <words>` in the harness's namespace.
    pub fn ip(&self, words: &str) {
        self.netns.ip(words);
    }

    /// Writes a sysctl in the harness's namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        write_sysctl(key, value);
    }

    /// The XDP program on the WAN interface.
    pub fn ingress_wan(&self, frame: &[u8]) -> Verdict {
        self.xdp(self.wan, frame)
    }

    /// The XDP program on the LAN interface.
    pub fn ingress_lan(&self, frame: &[u8]) -> Verdict {
        self.xdp(self.lan, frame)
    }

    /// The TC egress program, for a packet the host itself sends.
    pub fn egress_host(&self, frame: &[u8]) -> Verdict {
        self.tc_egress(HOST_ORIGINATED, frame)
    }

    pub fn xdp(&self, ingress_ifindex: u32, frame: &[u8]) -> Verdict {
        self.xdp_out(ingress_ifindex, frame).0
    }

    /// As [`Harness::xdp_out`] (the name the REJECT tests use).
    pub fn xdp_frame(&self, ingress_ifindex: u32, frame: &[u8]) -> (Verdict, Vec<u8>) {
        self.xdp_out(ingress_ifindex, frame)
    }

    /// The XDP program on `ingress_ifindex`; returns the verdict and the
    /// frame as the program left it.
    pub fn xdp_out(&self, ingress_ifindex: u32, frame: &[u8]) -> (Verdict, Vec<u8>) {
        let prog: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .expect("XDP program")
            .try_into()
            .expect("XDP program type");
        // struct xdp_md. data_end is the length of the linear part the
        // program reads directly: with 0, this kernel (6.18) hands the whole
        // frame over as fragments and every packet parses as malformed.
        // ingress_ifindex must name an interface in the caller's namespace.
        let md = XdpMd {
            data: 0,
            data_end: frame.len() as u32,
            data_meta: 0,
            ingress_ifindex,
            rx_queue_index: 0,
            egress_ifindex: 0,
        };
        let ctx = md.to_bytes();
        // Room for a REJECT's answer, which can be longer than the packet.
        let mut out = vec![0u8; frame.len() + 256];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .expect("XDP test run");
        out.truncate(res.data_size_out as usize);
        let verdict = match res.return_value {
            XDP_PASS => Verdict::Pass,
            XDP_DROP => Verdict::Drop,
            XDP_TX => Verdict::Tx,
            XDP_REDIRECT => Verdict::Redirect,
            other => panic!("XDP program returned {other}"),
        };
        (verdict, out)
    }

    /// Installs `rules` as the live ruleset, as `firewall reload` does.
    pub fn install(
        &mut self,
        rules: &[firewall_common::rule::model::MatchRule],
        policy: [u8; 4],
    ) -> firewall::ruleset::Installed {
        let sources: Vec<firewall::ruleset::RuleSource> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| firewall::ruleset::RuleSource {
                rule: r.clone(),
                text: format!("rule {}", i + 1),
                line: i as u32 + 1,
            })
            .collect();
        firewall::ruleset::install(&mut self.maps, &sources, policy).expect("ruleset installs")
    }

    /// LOG events written since the last call.
    pub fn log_events(&mut self) -> Vec<firewall_common::rule::LogEvent> {
        let map = self.ebpf.map_mut("LOG_EVENTS").expect("LOG_EVENTS map");
        let mut ring = aya::maps::RingBuf::try_from(map).expect("ring buffer");
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(
                item.len(),
                std::mem::size_of::<firewall_common::rule::LogEvent>()
            );
            // SAFETY: the datapath writes whole LogEvents; read unaligned.
            out.push(unsafe {
                std::ptr::read_unaligned(item.as_ptr() as *const firewall_common::rule::LogEvent)
            });
        }
        out
    }

    /// The MAC address of interface `name` in the harness's namespace.
    pub fn mac(&self, name: &str) -> [u8; 6] {
        let out = self.netns.ip_output(&format!("-br link show {name}"));
        let text = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in `ip -br link show {name}`: {out}"));
        let bytes: Vec<u8> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("MAC byte"))
            .collect();
        bytes.try_into().expect("six MAC bytes")
    }

    /// The TC egress program with `__sk_buff.ingress_ifindex` set:
    /// [`HOST_ORIGINATED`] for the host's own traffic, an interface's index
    /// for traffic the host forwards.
    pub fn tc_egress(&self, ingress_ifindex: u32, frame: &[u8]) -> Verdict {
        self.tc_egress_on(ingress_ifindex, 0, frame).0
    }

    /// The TC egress program on the interface `ifindex`
    /// (`__sk_buff.ifindex`; 0 leaves the kernel's choice, `lo`), for a
    /// packet that arrived on `ingress_ifindex` ([`HOST_ORIGINATED`] for the
    /// host's own). Returns the verdict and the frame as the program left
    /// it.
    pub fn tc_egress_on(
        &self,
        ingress_ifindex: u32,
        ifindex: u32,
        frame: &[u8],
    ) -> (Verdict, Vec<u8>) {
        self.tc(TC_PROGRAM, ingress_ifindex, ifindex, frame)
    }

    /// A packet forwarded from `lan0` out of `wan0`, at `wan0`'s TC egress.
    pub fn forward_to_wan(&self, frame: &[u8]) -> (Verdict, Vec<u8>) {
        self.tc_egress_on(self.lan, self.wan, frame)
    }

    /// A packet forwarded from `wan0` out of `lan0`, at `lan0`'s TC egress.
    pub fn forward_to_lan(&self, frame: &[u8]) -> (Verdict, Vec<u8>) {
        self.tc_egress_on(self.wan, self.lan, frame)
    }

    /// The TC ingress program on the interface `ifindex` (after XDP let the
    /// packet in). Returns the verdict and the frame as the program left it.
    pub fn tc_ingress(&self, ifindex: u32, frame: &[u8]) -> (Verdict, Vec<u8>) {
        // skb_iif of a received packet is the interface it arrived on.
        self.tc(TC_INGRESS_PROGRAM, ifindex, ifindex, frame)
    }

    fn tc(
        &self,
        program: &str,
        ingress_ifindex: u32,
        ifindex: u32,
        frame: &[u8],
    ) -> (Verdict, Vec<u8>) {
        let prog: &SchedClassifier = self
            .ebpf
            .program(program)
            .expect("TC program")
            .try_into()
            .expect("TC program type");
        let ctx = sk_buff_ctx(ingress_ifindex, ifindex);
        // The programs never grow a packet; the slack only makes a change
        // of length show up as a mismatch instead of ENOSPC.
        let mut out = vec![0u8; frame.len() + 256];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("{program} test run: {e}"));
        out.truncate(res.data_size_out as usize);
        let verdict = match res.return_value as i32 {
            TC_ACT_UNSPEC => Verdict::Pass,
            TC_ACT_SHOT => Verdict::Drop,
            other => panic!("{program} returned {other}"),
        };
        (verdict, out)
    }

    /// Puts the expiry of `key`'s entry a second in the past, as if its
    /// timeout had run out: what a test would otherwise sleep for.
    pub fn expire(&mut self, key: &CtKey) {
        let mut e = self
            .entry(key)
            .unwrap_or_else(|| panic!("no entry for {key:?}"));
        e.expires_ns = monotonic_ns().saturating_sub(1_000_000_000);
        self.maps
            .conntrack
            .insert(key, e, 0)
            .unwrap_or_else(|err| panic!("writing CONNTRACK: {err}"));
    }

    pub fn entry(&self, key: &CtKey) -> Option<CtEntry> {
        match self.maps.conntrack.get(key, 0) {
            Ok(e) => Some(e),
            Err(MapError::KeyNotFound) => None,
            Err(e) => panic!("reading CONNTRACK: {e}"),
        }
    }

    /// Number of entries in CONNTRACK (two per connection).
    pub fn conntrack_len(&self) -> usize {
        self.maps.conntrack_snapshot().len()
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.maps.counter(c as u32)
    }

    /// Counters of the live ruleset's rule at `index` (0-based).
    pub fn rule_counter(&self, index: u32) -> RuleCounter {
        let (_, live) = firewall::ruleset::live(&self.maps).expect("live ruleset");
        let r = &live[index as usize];
        RuleCounter {
            packets: r.packets,
            bytes: r.bytes,
        }
    }

    /// Asserts the whole STATS map: the listed counters have exactly these
    /// values and every other counter is zero. This is what proves which path
    /// the packets took.
    #[track_caller]
    pub fn assert_counters(&self, expected: &[(Counter, u64)]) {
        let want = |c: Counter| {
            expected
                .iter()
                .find(|(e, _)| *e == c)
                .map_or(0, |(_, n)| *n)
        };
        let got: Vec<(&str, u64)> = Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.counter(c)))
            .filter(|(_, n)| *n != 0)
            .collect();
        let wanted: Vec<(&str, u64)> = Counter::ALL
            .iter()
            .map(|&c| (c.name(), want(c)))
            .filter(|(_, n)| *n != 0)
            .collect();
        assert_eq!(got, wanted, "STATS counters (non-zero ones)");
    }

    /// Asserts that the connection whose original direction is `orig`
    /// exists as a consistent pair of entries (each naming the other, with
    /// the right directions) in `state` with exactly the `ct_flags` bits.
    /// Returns (original, reply).
    #[track_caller]
    pub fn assert_conn(&self, orig: &CtKey, state: TcpState, ct_flags: u8) -> (CtEntry, CtEntry) {
        self.assert_pair(orig, &orig.inverted(), state, ct_flags)
    }

    /// As [`Harness::assert_conn`] for a connection whose reply key is not
    /// the mechanical inverse of `orig` (NAT stores the translated tuple).
    #[track_caller]
    pub fn assert_pair(
        &self,
        orig: &CtKey,
        reply: &CtKey,
        state: TcpState,
        ct_flags: u8,
    ) -> (CtEntry, CtEntry) {
        let reply = *reply;
        let o = self
            .entry(orig)
            .unwrap_or_else(|| panic!("no original entry for {orig:?}"));
        let r = self
            .entry(&reply)
            .unwrap_or_else(|| panic!("no reply entry for {reply:?}"));
        assert_eq!(o.peer, reply, "original entry's peer");
        assert_eq!(r.peer, *orig, "reply entry's peer");
        assert_eq!(o.dir, CtDir::Original as u8, "original entry's dir");
        assert_eq!(r.dir, CtDir::Reply as u8, "reply entry's dir");
        for (what, e) in [("original", &o), ("reply", &r)] {
            assert_eq!(
                TcpState::from_u8(e.tcp_state),
                Some(state),
                "{what} entry's tcp_state"
            );
            assert_eq!(e.flags, ct_flags, "{what} entry's flags");
        }
        (o, r)
    }

    /// Asserts that neither entry of the connection `orig` exists.
    #[track_caller]
    pub fn assert_no_conn(&self, orig: &CtKey) {
        assert_eq!(self.entry(orig), None, "original entry of {orig:?}");
        assert_eq!(
            self.entry(&orig.inverted()),
            None,
            "reply entry of {orig:?}"
        );
    }
}

/// Entry `flags` values, spelled for the assertions: none set (`conntrack
/// -L` shows `[UNREPLIED]`), SEEN_REPLY, ASSURED.
pub const UNREPLIED: u8 = 0;
pub const SEEN_REPLY: u8 = flags::SEEN_REPLY;
pub const ASSURED: u8 = flags::ASSURED;

/// Time left until `e` expires, by the clock the datapath uses
/// (`bpf_ktime_get_ns` is CLOCK_MONOTONIC).
pub fn expires_in(e: &CtEntry) -> Duration {
    Duration::from_nanos(e.expires_ns.saturating_sub(monotonic_ns()))
}

/// Asserts that `e` expires `secs` seconds after it was last refreshed,
/// allowing for the time the test took since.
#[track_caller]
pub fn assert_timeout(e: &CtEntry, secs: u64) {
    let left = expires_in(e);
    let full = Duration::from_secs(secs);
    assert!(
        left <= full && left + Duration::from_secs(5) > full,
        "expires in {left:?}, expected just under {full:?}"
    );
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `struct xdp_md`, the context of an XDP test run.
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

impl XdpMd {
    fn to_bytes(&self) -> Vec<u8> {
        let Self {
            data,
            data_end,
            data_meta,
            ingress_ifindex,
            rx_queue_index,
            egress_ifindex,
        } = self;
        [
            data,
            data_end,
            data_meta,
            ingress_ifindex,
            rx_queue_index,
            egress_ifindex,
        ]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
    }
}

/// The start of a `struct __sk_buff`, up to and including `ifindex`
/// (offset 40): the kernel accepts a shorter context and zero-fills the
/// rest. Of these fields it lets a test set only `mark`, `priority`,
/// `ingress_ifindex` (copied to `skb->skb_iif`) and `ifindex` (the skb's
/// device, looked up in the caller's namespace; 0 or 1 means `lo`); the
/// others must be zero (`convert___skb_to_skb` in net/bpf/test_run.c).
fn sk_buff_ctx(ingress_ifindex: u32, ifindex: u32) -> Vec<u8> {
    const INGRESS_IFINDEX_OFFSET: usize = 36;
    const IFINDEX_OFFSET: usize = 40;
    let mut ctx = vec![0u8; IFINDEX_OFFSET + 4];
    ctx[INGRESS_IFINDEX_OFFSET..IFINDEX_OFFSET].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx[IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// Writes a sysctl in the calling thread's namespace: /proc/sys/net shows
/// the namespace of the task that opens it.
fn write_sysctl(key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"));
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).expect("interface name");
    // SAFETY: c is a valid C string; the lookup uses this thread's namespace.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "interface {name} not found");
    i
}

/// The test thread's own network namespace; the thread returns to its
/// previous one on drop, and the kernel frees this one.
struct PrivateNetns {
    original: File,
}

impl PrivateNetns {
    fn enter() -> PrivateNetns {
        let original = File::open("/proc/thread-self/ns/net").expect("current netns");
        // SAFETY: plain syscall; it affects only the calling thread.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {} (the datapath tests need root)",
            std::io::Error::last_os_error()
        );
        PrivateNetns { original }
    }

    /// `ip <words>`, run inside this thread's namespace (a child process
    /// starts in the process's namespace, so it enters the thread's).
    fn ip(&self, words: &str) {
        self.ip_output(words);
    }

    fn ip_output(&self, words: &str) -> String {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let ns = format!("--net=/proc/{}/task/{tid}/ns/net", std::process::id());
        let out = Command::new("nsenter")
            .arg(ns)
            .arg("ip")
            .args(words.split_whitespace())
            .output()
            .expect("running nsenter ip");
        assert!(
            out.status.success(),
            "ip {words}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateNetns {
    fn drop(&mut self) {
        // SAFETY: original is an open namespace fd.
        let rc = unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 && !std::thread::panicking() {
            panic!("setns back: {}", std::io::Error::last_os_error());
        }
    }
}

// ---------------------------------------------------------------------------
// Conntrack keys, built the way the datapath fills them: addresses as the raw
// network-order bytes, ports in network order, ICMP id in network order and
// type in host order.

fn addr_words(a: IpAddr) -> ([u32; 4], u8) {
    match a {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], FAMILY_V4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], FAMILY_V6)
        }
    }
}

/// Key of a TCP/UDP packet from `src` to `dst`.
pub fn key(proto: IpNumber, src: SocketAddr, dst: SocketAddr) -> CtKey {
    let (s, family) = addr_words(src.ip());
    let (d, _) = addr_words(dst.ip());
    CtKey {
        src: s,
        dst: d,
        sport: src.port().to_be(),
        dport: dst.port().to_be(),
        proto: proto.0,
        family,
        _pad: [0; 2],
    }
}

/// Key of an ICMP/ICMPv6 query of type `ty` with identifier `id`.
pub fn icmp_key(src: IpAddr, dst: IpAddr, id: u16, ty: u8) -> CtKey {
    let (s, family) = addr_words(src);
    let (d, _) = addr_words(dst);
    CtKey {
        src: s,
        dst: d,
        sport: id.to_be(),
        dport: ty.into(),
        proto: if family == FAMILY_V4 {
            IPPROTO_ICMP
        } else {
            IPPROTO_ICMPV6
        },
        family,
        _pad: [0; 2],
    }
}

// ---------------------------------------------------------------------------
// Packets.

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
pub const ETH_LEN: usize = Ethernet2Header::LEN;

/// The IP header(s) of a plain packet from `src` to `dst`. The builder
/// fills in lengths, protocol and checksums.
pub fn ip_headers(src: IpAddr, dst: IpAddr) -> IpHeaders {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
            Ipv4Header::new(0, 64, IpNumber::TCP, s.octets(), d.octets()).expect("IPv4 header"),
            Default::default(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: IpNumber::TCP,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            },
            Default::default(),
        ),
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// An Ethernet header, to go on with VLAN tags or IP.
pub fn ethernet() -> PacketBuilderStep<Ethernet2Header> {
    PacketBuilder::ethernet2(WAN_MAC, LAN_MAC)
}

/// Ethernet framing with the given IP header(s).
pub fn frame(ip: IpHeaders) -> PacketBuilderStep<IpHeaders> {
    ethernet().ip(ip)
}

/// Plain Ethernet + IP from `src` to `dst`.
pub fn plain(src: IpAddr, dst: IpAddr) -> PacketBuilderStep<IpHeaders> {
    frame(ip_headers(src, dst))
}

/// One TCP segment. `flags` are the header's flag bits
/// (`firewall_common::tcp::TCP_*`).
pub fn tcp_segment(
    ip: PacketBuilderStep<IpHeaders>,
    src_port: u16,
    dst_port: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let ports = (src_port, dst_port);
    tcp_segment_with(ip, ports, flags, (seq, ack), 64240, &[], payload)
}

/// One TCP segment with window field `win` and TCP `options`.
pub fn tcp_segment_with(
    ip: PacketBuilderStep<IpHeaders>,
    (src_port, dst_port): (u16, u16),
    flags: u8,
    (seq, ack): (u32, u32),
    win: u16,
    options: &[etherparse::TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = TcpHeader::new(src_port, dst_port, seq, win);
    h.fin = flags & TCP_FIN != 0;
    h.syn = flags & TCP_SYN != 0;
    h.rst = flags & TCP_RST != 0;
    h.psh = flags & TCP_PSH != 0;
    h.ack = flags & TCP_ACK != 0;
    h.urg = flags & TCP_URG != 0;
    h.ece = flags & TCP_ECE != 0;
    h.cwr = flags & TCP_CWR != 0;
    if h.ack {
        h.acknowledgment_number = ack;
    }
    h.set_options(options).expect("TCP options fit");
    let step = ip.tcp_header(h);
    let mut out = Vec::with_capacity(step.size(payload.len()));
    step.write(&mut out, payload).expect("building TCP segment");
    out
}

/// A TCP conversation between a client and a server that keeps sequence
/// and acknowledgement numbers right, so the segments stay valid should the
/// datapath ever check windows (`tcp_in_window`).
pub struct TcpConv {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Next sequence number of the client and of the server.
    next: [u32; 2],
    framing: fn(IpAddr, IpAddr) -> PacketBuilderStep<IpHeaders>,
}

impl TcpConv {
    pub fn new(client: &str, server: &str) -> TcpConv {
        TcpConv {
            client: client.parse().expect("client address"),
            server: server.parse().expect("server address"),
            next: [1_000, 5_000_000],
            framing: plain,
        }
    }

    /// Frames every segment with `framing` instead of plain Ethernet + IP.
    pub fn framed(self, framing: fn(IpAddr, IpAddr) -> PacketBuilderStep<IpHeaders>) -> TcpConv {
        TcpConv { framing, ..self }
    }

    /// The original-direction key (client to server).
    pub fn key(&self) -> CtKey {
        key(IpNumber::TCP, self.client, self.server)
    }

    pub fn client_sends(&mut self, flags: u8, payload: &[u8]) -> Vec<u8> {
        self.segment(0, flags, payload)
    }

    pub fn server_sends(&mut self, flags: u8, payload: &[u8]) -> Vec<u8> {
        self.segment(1, flags, payload)
    }

    fn segment(&mut self, side: usize, flags: u8, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = if side == 0 {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        let seq = self.next[side];
        let ack = self.next[1 - side];
        // SYN and FIN each take one sequence number.
        let len = payload.len() as u32 + u32::from(flags & (TCP_SYN | TCP_FIN) != 0);
        self.next[side] = seq.wrapping_add(len);
        tcp_segment(
            (self.framing)(src.ip(), dst.ip()),
            src.port(),
            dst.port(),
            flags,
            seq,
            ack,
            payload,
        )
    }
}

pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let step = plain(src.ip(), dst.ip()).udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(step.size(payload.len()));
    step.write(&mut out, payload)
        .expect("building UDP datagram");
    out
}

/// The IP packet (no Ethernet) of a UDP datagram, as an ICMP error quotes it.
pub fn udp_ip_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let step = PacketBuilder::ip(ip_headers(src.ip(), dst.ip())).udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(step.size(payload.len()));
    step.write(&mut out, payload)
        .expect("building quoted UDP datagram");
    out
}

/// ICMP echo request (or reply) / ICMPv6 echo request (or reply).
pub fn echo(src: IpAddr, dst: IpAddr, request: bool, id: u16, seq: u16) -> Vec<u8> {
    let payload = b"ping";
    let mut out = Vec::new();
    let ip = plain(src, dst);
    let written = match (src.is_ipv4(), request) {
        (true, true) => ip.icmpv4_echo_request(id, seq).write(&mut out, payload),
        (true, false) => ip.icmpv4_echo_reply(id, seq).write(&mut out, payload),
        (false, true) => ip.icmpv6_echo_request(id, seq).write(&mut out, payload),
        (false, false) => ip.icmpv6_echo_reply(id, seq).write(&mut out, payload),
    };
    written.expect("building echo");
    out
}

/// ICMP port unreachable / ICMPv6 destination unreachable (port) from `from`
/// to `to`, quoting `quoted` (an IP packet).
pub fn port_unreachable(from: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let ip = plain(from, to);
    let written = if from.is_ipv4() {
        ip.icmpv4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut out, quoted)
    } else {
        ip.icmpv6(Icmpv6Type::DestinationUnreachable(
            icmpv6::DestUnreachableCode::Port,
        ))
        .write(&mut out, quoted)
    };
    written.expect("building ICMP error");
    out
}

/// An ARP request (who-has `target` tell `sender`) in an Ethernet frame.
/// etherparse has no ARP builder, so the 28-byte body is laid out field by
/// field (RFC 826).
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let eth = Ethernet2Header {
        source: LAN_MAC,
        destination: [0xff; 6],
        ether_type: EtherType::ARP,
    };
    let mut out = eth.to_bytes().to_vec();
    out.extend_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    out.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    out.push(6); // hardware address length
    out.push(4); // protocol address length
    out.extend_from_slice(&1u16.to_be_bytes()); // operation: request
    out.extend_from_slice(&LAN_MAC); // sender hardware address
    out.extend_from_slice(&sender); // sender protocol address
    out.extend_from_slice(&[0; 6]); // target hardware address: unknown
    out.extend_from_slice(&target); // target protocol address
    out
}

/// The layer-3 length of a plain (untagged) Ethernet frame: what the
/// datapath counts in entry and rule byte counters.
pub fn l3_len(frame: &[u8]) -> u64 {
    (frame.len() - ETH_LEN) as u64
}

/// `"addr:port"` as a socket address (tests write them as literals).
pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// `addr` with `port`.
pub fn at(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().expect("IP address"), port)
}

/// One plain (untagged, option-free) TCP segment from `src` to `dst`.
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    tcp_segment(
        plain(src.ip(), dst.ip()),
        src.port(),
        dst.port(),
        flags,
        seq,
        ack,
        payload,
    )
}

pub fn tcp_key(src: SocketAddr, dst: SocketAddr) -> CtKey {
    key(IpNumber::TCP, src, dst)
}

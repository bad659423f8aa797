//! The per-packet and scale half of `cargo xtask bench` (xtask cannot depend on the
//! firewall crate: `cargo xtask setup` must build before bpf-linker exists).
//!
//! ```text
//! bench kernel [--repeat N] [--samples K] [--conns N]   JSON on stdout
//! bench serve PORT                                       TCP accept-and-close server
//! bench connect ADDR PORT SECONDS THREADS                connections/s client, JSON
//! bench xdp PROGRAM MODE IFACE...                        attach bare_forward/bare_pass
//!                                                        (native|generic), hold until killed
//! ```
//!
//! `kernel` runs the real programs of private (unpinned) firewall instances with
//! BPF_PROG_TEST_RUN, in a network namespace of its own (a veth pair `wan0`/`lan0`
//! set up as a router, as in `firewall/tests/nat.rs`). Every figure is measured
//! `--samples` times; every sample is one `BPF_PROG_TEST_RUN` call with `repeat`
//! iterations, and the kernel reports the mean time per iteration
//! (`net/bpf/test_run.c` divides by `repeat` itself). After each measurement the
//! STATS counter of the path the packet should take is checked to have grown by
//! exactly the number of runs, so a figure cannot silently measure another path.
//!
//! Needs root. The floor is a hand-assembled two-instruction program (`r0 = verdict;
//! exit`) loaded with bpf(2) directly.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    Ebpf,
    programs::{SchedClassifier, Xdp, xdp::XdpMode},
};
use etherparse::PacketBuilder;
use firewall::{
    BARE_FORWARD_PROGRAM, BARE_PASS_PROGRAM, TC_INGRESS_PROGRAM, TC_PROGRAM, XDP_PROGRAM, ager,
    config, loader, maps::Maps,
};
use firewall_common::{
    CtKey, FAMILY_V4, TcpState,
    stats::Counter,
    tcp::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN},
};
use serde_json::{Value, json};

#[path = "bench/frag.rs"]
mod frag;
#[path = "bench/table.rs"]
mod table;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
/// `TC_ACT_UNSPEC` as the u32 the syscall returns.
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// The namespace's router setup (as `firewall/tests/nat.rs`).
const ROUTER: &[&str] = &[
    "link add wan0 type veth peer name lan0",
    "addr add 10.0.1.1/24 dev lan0",
    "addr add 10.0.2.1/24 dev wan0",
    "link set lan0 up",
    "link set wan0 up",
    "route add default via 10.0.2.254 dev wan0",
    "neigh add 10.0.2.254 lladdr 02:00:00:00:00:fe dev wan0",
];

const CLIENT: &str = "10.0.1.5:40000";
const SERVER: &str = "203.0.113.7:80";
/// `wan0`'s address: where masquerade puts the client (its port is free, so kept).
const PUBLIC: &str = "10.0.2.1:40000";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["serve", port] => serve(port.parse().context("port")?),
        ["connect", addr, port, secs, threads] => connect(
            addr.parse().context("address")?,
            port.parse().context("port")?,
            Duration::from_secs_f64(secs.parse().context("seconds")?),
            threads.parse().context("threads")?,
        ),
        ["kernel", rest @ ..] => kernel(&Options::parse(rest)?),
        ["xdp", program, mode, ifaces @ ..] if !ifaces.is_empty() => {
            hold_xdp(program, mode, ifaces)
        }
        _ => bail!(
            "usage: bench kernel [--repeat N] [--samples K] [--conns N] | bench serve PORT | \
             bench connect ADDR PORT SECONDS THREADS | bench xdp PROGRAM MODE IFACE..."
        ),
    }
}

struct Options {
    repeat: u32,
    samples: usize,
    conns: u32,
}

impl Options {
    fn parse(words: &[&str]) -> Result<Options> {
        let mut o = Options {
            repeat: 1_000_000,
            samples: 5,
            conns: 1_000_000,
        };
        let mut it = words.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match *flag {
                "--repeat" => o.repeat = value.parse()?,
                "--samples" => o.samples = value.parse()?,
                "--conns" => o.conns = value.parse()?,
                other => bail!("unknown option {other}"),
            }
        }
        ensure!(
            o.samples > 0 && o.repeat > 0,
            "samples and repeat must be > 0"
        );
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// Results.

#[derive(Default)]
struct Report {
    results: Vec<Value>,
}

impl Report {
    fn add(&mut self, id: &str, group: &str, label: &str, unit: &str, samples: &[f64], note: &str) {
        eprintln!(
            "bench: {id}: median {:.1} {unit} ({} samples)",
            median(samples),
            samples.len()
        );
        self.results.push(json!({
            "id": id, "group": group, "label": label, "unit": unit,
            "samples": samples, "note": note,
        }));
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------------------
// BPF_PROG_TEST_RUN and a bare program, straight through bpf(2).

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a zero-padded `union bpf_attr` of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn put32(attr: &mut [u8], off: usize, v: u32) {
    attr[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(attr: &mut [u8], off: usize, v: u64) {
    attr[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads `r0 = ret; exit` as a program of `prog_type`: the least any program of that
/// hook can cost.
fn load_bare(prog_type: u32, ret: i32) -> Result<OwnedFd> {
    // struct bpf_insn: opcode, dst:4|src:4, off:i16, imm:i32.
    let mut insns = Vec::new();
    insns.extend_from_slice(&[0xb7, 0x00, 0, 0]); // BPF_ALU64 | BPF_MOV | BPF_K, r0
    insns.extend_from_slice(&ret.to_ne_bytes());
    insns.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]); // BPF_JMP | BPF_EXIT
    let license = c"GPL";
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, prog_type);
    put32(&mut attr, 4, 2); // insn_cnt
    put64(&mut attr, 8, insns.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    let fd = bpf(BPF_PROG_LOAD, &mut attr).context("BPF_PROG_LOAD of the bare program")?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// One BPF_PROG_TEST_RUN: (return value, mean ns per iteration as the kernel
/// reports it, wall-clock ns of the whole call).
fn test_run(prog_fd: i32, data: &[u8], ctx: &[u8], repeat: u32) -> Result<(u32, u32, u64)> {
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, prog_fd as u32);
    put32(&mut attr, 8, data.len() as u32);
    put64(&mut attr, 16, data.as_ptr() as u64);
    put32(&mut attr, 32, repeat);
    put32(&mut attr, 40, ctx.len() as u32);
    put64(&mut attr, 48, ctx.as_ptr() as u64);
    let start = Instant::now();
    bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN")?;
    let wall = start.elapsed().as_nanos() as u64;
    let get = |off: usize| u32::from_ne_bytes(attr[off..off + 4].try_into().expect("4 bytes"));
    Ok((get(4), get(36), wall))
}

/// A program under test: its fd and the context every run gets.
#[derive(Clone, Copy)]
struct Prog<'a> {
    fd: i32,
    ctx: &'a [u8],
}

/// `struct xdp_md` with the ingress interface (see `firewall/tests/common`).
fn xdp_ctx(frame_len: usize, ingress_ifindex: u32) -> Vec<u8> {
    [0, frame_len as u32, 0, ingress_ifindex, 0, 0]
        .iter()
        .flat_map(|v: &u32| v.to_ne_bytes())
        .collect()
}

/// The start of `struct __sk_buff` up to `ifindex`.
fn skb_ctx(ingress_ifindex: u32, ifindex: u32) -> Vec<u8> {
    let mut ctx = vec![0u8; 44];
    ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// How a measurement drives the kernel.
#[derive(Clone, Copy)]
enum Method {
    /// One call per sample with `repeat` iterations: for packets the program does not
    /// change, so every iteration sees the same input.
    Repeat(u32),
    /// `calls` calls of one iteration each; the sample is the median of the kernel's
    /// per-call figures. For programs that rewrite the packet in place: with `repeat`
    /// the second iteration would see the rewritten packet.
    Single(u32),
}

impl Method {
    fn runs(self) -> u64 {
        match self {
            Method::Repeat(n) | Method::Single(n) => u64::from(n),
        }
    }

    fn describe(self) -> String {
        match self {
            Method::Repeat(n) => format!("repeat={n} per sample"),
            Method::Single(n) => format!(
                "{n} single-iteration runs per sample, median (includes the kernel timer's own \
                 cost, compare with the repeat=1 floor)"
            ),
        }
    }
}

const WARMUP_RUNS: u32 = 10_000;

/// Samples of ns/packet; checks the return value of every call.
fn sample(prog: Prog, frame: &[u8], method: Method, samples: usize, want: u32) -> Result<Vec<f64>> {
    // One untimed call first (caches, branch predictors, the first touch of the
    // entry); `WARMUP_RUNS` counts it for the counter check.
    // A packet the program rewrites in place is only rewritten by the first iteration
    // of a call, so single-iteration methods warm up with single iterations.
    let warmup = match method {
        Method::Repeat(_) => WARMUP_RUNS,
        Method::Single(_) => 1,
    };
    for _ in 0..WARMUP_RUNS / warmup {
        let (ret, _, _) = test_run(prog.fd, frame, prog.ctx, warmup)?;
        ensure!(ret == want, "program returned {ret}, expected {want}");
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        match method {
            Method::Repeat(n) => {
                let (ret, ns, wall) = test_run(prog.fd, frame, prog.ctx, n)?;
                ensure!(ret == want, "program returned {ret}, expected {want}");
                // The kernel's figure is per iteration; the wall clock of the call over
                // `n` must be close to it (a sanity check of that reading).
                let wall_per = wall as f64 / f64::from(n);
                ensure!(
                    wall_per + 1.0 >= f64::from(ns),
                    "kernel says {ns} ns/iteration but the call took {wall_per:.1} ns/iteration"
                );
                out.push(f64::from(ns));
            }
            Method::Single(n) => {
                let mut per = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (ret, ns, _) = test_run(prog.fd, frame, prog.ctx, 1)?;
                    ensure!(ret == want, "program returned {ret}, expected {want}");
                    per.push(f64::from(ns));
                }
                out.push(median(&per));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Packets and keys.

fn sa(s: &str) -> SocketAddrV4 {
    s.parse().expect("socket address")
}

const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const WAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

fn tcp(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(WAN_MAC, LAN_MAC)
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .tcp(src.port(), dst.port(), seq, 64240);
    if flags & TCP_SYN != 0 {
        b = b.syn();
    }
    if flags & TCP_FIN != 0 {
        b = b.fin();
    }
    if flags & TCP_PSH != 0 {
        b = b.psh();
    }
    if flags & TCP_ACK != 0 {
        b = b.ack(ack);
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("building TCP segment");
    out
}

fn arp() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&LAN_MAC);
    out.extend_from_slice(&0x0806u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    out.extend_from_slice(&[6, 4]);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&LAN_MAC);
    out.extend_from_slice(&[10, 0, 1, 5]);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[10, 0, 1, 1]);
    out
}

fn tcp_key(src: SocketAddrV4, dst: SocketAddrV4) -> CtKey {
    CtKey {
        src: [u32::from_ne_bytes(src.ip().octets()), 0, 0, 0],
        dst: [u32::from_ne_bytes(dst.ip().octets()), 0, 0, 0],
        sport: src.port().to_be(),
        dport: dst.port().to_be(),
        proto: 6,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

// ---------------------------------------------------------------------------
// A private firewall instance.

struct Instance {
    ebpf: Ebpf,
    maps: Maps,
    cfg: config::Config,
    ifaces: Vec<loader::Iface>,
    wan: u32,
    lan: u32,
    capacity: u32,
}

impl Instance {
    fn new(wan_keys: &str, rest: &str, capacity: u32) -> Result<Instance> {
        Instance::with_top("", wan_keys, rest, capacity)
    }

    /// With `top` (top-level keys such as `fast_path`) before the interfaces.
    fn with_top(top: &str, wan_keys: &str, rest: &str, capacity: u32) -> Result<Instance> {
        let text = format!(
            "{top}[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n{wan_keys}\n\n\
             [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n\n{rest}"
        );
        let cfg = config::parse(&text, "bench.toml")?;
        let mut ebpf = loader::load_object(None, capacity)?;
        let mut maps = Maps::from_ebpf(&mut ebpf)?;
        let ifaces = loader::resolve_interfaces(&cfg)?;
        loader::configure(&mut maps, &cfg, &ifaces)?;
        Ok(Instance {
            ebpf,
            maps,
            cfg,
            ifaces,
            wan: ifindex("wan0")?,
            lan: ifindex("lan0")?,
            capacity,
        })
    }

    fn xdp_fd(&self) -> Result<i32> {
        let prog: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .context("XDP program")?
            .try_into()?;
        Ok(prog.fd()?.as_fd().as_raw_fd())
    }

    /// The bench-only `bare_forward` program of this instance's object, loaded on
    /// first use.
    fn bare_forward_fd(&mut self) -> Result<i32> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(BARE_FORWARD_PROGRAM)
            .context("bare_forward program")?
            .try_into()?;
        if prog.fd().is_err() {
            prog.load().context("loading bare_forward")?;
        }
        Ok(prog.fd()?.as_fd().as_raw_fd())
    }

    fn tc_fd(&self, name: &str) -> Result<i32> {
        let prog: &SchedClassifier = self.ebpf.program(name).context("TC program")?.try_into()?;
        Ok(prog.fd()?.as_fd().as_raw_fd())
    }

    fn counters(&self) -> BTreeMap<&'static str, u64> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.maps.counter(c as u32)))
            .collect()
    }

    /// Runs `frame` once through XDP on `ingress`, asserting the verdict.
    fn xdp_once(&self, ingress: u32, frame: &[u8], want: &[u32]) -> Result<()> {
        let ctx = xdp_ctx(frame.len(), ingress);
        let (ret, _, _) = test_run(self.xdp_fd()?, frame, &ctx, 1)?;
        ensure!(
            want.contains(&ret),
            "XDP returned {ret}, expected one of {want:?}"
        );
        Ok(())
    }

    /// Runs `frame` once through a TC program; returns the frame as it left.
    fn tc_once(&self, name: &str, ingress: u32, ifindex: u32, frame: &[u8]) -> Result<Vec<u8>> {
        let ctx = skb_ctx(ingress, ifindex);
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = [0u8; 128];
        put32(&mut attr, 0, self.tc_fd(name)? as u32);
        put32(&mut attr, 8, frame.len() as u32);
        put32(&mut attr, 12, out.len() as u32);
        put64(&mut attr, 16, frame.as_ptr() as u64);
        put64(&mut attr, 24, out.as_mut_ptr() as u64);
        put32(&mut attr, 32, 1);
        put32(&mut attr, 40, ctx.len() as u32);
        put64(&mut attr, 48, ctx.as_ptr() as u64);
        bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN (TC)")?;
        let ret = u32::from_ne_bytes(attr[4..8].try_into()?);
        ensure!(
            ret == TC_ACT_UNSPEC,
            "{name} returned {ret}, expected TC_ACT_UNSPEC"
        );
        out.truncate(u32::from_ne_bytes(attr[12..16].try_into()?) as usize);
        Ok(out)
    }

    /// The handshake and first data segment of `CLIENT` → `SERVER` through every hook
    /// a router runs, as `firewall/tests/nat.rs` does. `public` is where the server
    /// sees the client (the client itself without NAT).
    fn establish(&self, public: SocketAddrV4) -> Result<()> {
        let (client, server) = (sa(CLIENT), sa(SERVER));
        let syn = tcp(client, server, TCP_SYN, 1000, 0, &[]);
        self.xdp_once(self.lan, &syn, &[XDP_PASS])?;
        self.tc_once(TC_PROGRAM, self.lan, self.wan, &syn)?;
        let syn_ack = tcp(server, public, TCP_SYN | TCP_ACK, 7000, 1001, &[]);
        self.xdp_once(self.wan, &syn_ack, &[XDP_PASS])?;
        let back = self.tc_once(TC_INGRESS_PROGRAM, self.wan, self.wan, &syn_ack)?;
        self.tc_once(TC_PROGRAM, self.wan, self.lan, &back)?;
        let ack = tcp(
            client,
            server,
            TCP_PSH | TCP_ACK,
            1001,
            7001,
            b"GET / HTTP/1.0\r\n\r\n",
        );
        // Established: the fast path forwards it unless NAT or the config says no.
        self.xdp_once(self.lan, &ack, &[XDP_PASS, XDP_REDIRECT])?;
        self.tc_once(TC_PROGRAM, self.lan, self.wan, &ack)?;
        let entry = self
            .maps
            .conntrack
            .get(&tcp_key(client, server), 0)
            .context("no conntrack entry after the handshake")?;
        ensure!(
            TcpState::from_u8(entry.tcp_state) == Some(TcpState::Established),
            "connection is in state {} after the handshake, not established",
            entry.tcp_state
        );
        Ok(())
    }

    /// Measures and checks that `counter` grew by exactly one per run.
    #[allow(clippy::too_many_arguments)]
    fn measure(
        &self,
        prog: Prog,
        frame: &[u8],
        method: Method,
        samples: usize,
        want: u32,
        counter: Counter,
    ) -> Result<Vec<f64>> {
        let before = self.counters();
        let out = sample(prog, frame, method, samples, want)?;
        let after = self.counters();
        let runs = method.runs() * samples as u64 + u64::from(WARMUP_RUNS);
        let delta = after[counter.name()] - before[counter.name()];
        ensure!(
            delta == runs,
            "{} grew by {delta} over {runs} runs: the packet did not take the path measured \
             (all changes: {:?})",
            counter.name(),
            after
                .iter()
                .filter(|(k, v)| before[*k] != **v)
                .map(|(k, v)| (*k, v - before[*k]))
                .collect::<Vec<_>>()
        );
        Ok(out)
    }

    /// Adds synthetic established connections (pairs of entries copied from the real
    /// one) until the table holds `conns` connections.
    fn fill(&mut self, from: u32, conns: u32) -> Result<()> {
        let (client, server) = (sa(CLIENT), sa(SERVER));
        let orig = self.maps.conntrack.get(&tcp_key(client, server), 0)?;
        let reply = self.maps.conntrack.get(&tcp_key(server, client), 0)?;
        let far = sa("198.18.0.1:443");
        for i in from..conns {
            // 10.128.0.0/9 hosts, 65000 ports each: unique for up to ~500M pairs.
            let host = 0x0a80_0000u32 + i / 65000 + 1;
            let c = SocketAddrV4::new(Ipv4Addr::from(host), 1024 + (i % 65000) as u16);
            let (ko, kr) = (tcp_key(c, far), tcp_key(far, c));
            let (mut eo, mut er) = (orig, reply);
            eo.peer = kr;
            er.peer = ko;
            self.maps.conntrack.insert(ko, eo, 0)?;
            self.maps.conntrack.insert(kr, er, 0)?;
        }
        Ok(())
    }

    /// `/proc/self/fdinfo` of the first map of this process that `which` picks
    /// (`memlock`, layout).
    fn fdinfo(
        &self,
        which: impl Fn(&BTreeMap<String, u64>) -> bool,
    ) -> Result<BTreeMap<String, u64>> {
        for entry in std::fs::read_dir("/proc/self/fdinfo")? {
            let Ok(text) = std::fs::read_to_string(entry?.path()) else {
                continue;
            };
            let fields: BTreeMap<String, u64> = text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .filter_map(|(k, v)| Some((k.trim().to_owned(), v.trim().parse().ok()?)))
                .collect();
            if which(&fields) {
                return Ok(fields);
            }
        }
        bail!("the map's fd was not found in /proc/self/fdinfo")
    }
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: c is a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    ensure!(i != 0, "interface {name} not found");
    Ok(i)
}

fn enter_private_netns() -> Result<()> {
    // SAFETY: plain syscall; this process is still single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "unshare(CLONE_NEWNET): {} (the benchmark needs root)",
            std::io::Error::last_os_error()
        );
    }
    for words in ROUTER {
        let out = Command::new("ip").args(words.split_whitespace()).output()?;
        ensure!(
            out.status.success(),
            "ip {words}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for key in ["ipv4/conf/all/forwarding", "ipv6/conf/all/forwarding"] {
        std::fs::write(format!("/proc/sys/net/{key}"), "1")?;
    }
    Ok(())
}

fn rules_toml(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[[rule]]\nchain = \"forward\"\nproto = \"tcp\"\ndport = {}\naction = \"accept\"\n\n",
                10_000 + i
            )
        })
        .collect()
}

/// The iptables form of [`rules_toml`] (`dport_base` 1xxxx or 3xxxx).
fn iptables_rules(n: usize, dport_base: u32) -> String {
    let mut out =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..n {
        out += &format!(
            "-A FORWARD -p tcp -m tcp --dport {} -j ACCEPT\n",
            dport_base + i as u32
        );
    }
    out += "COMMIT\n";
    out
}

/// Time of `iptables-restore` replacing one n-rule FORWARD chain by another, in
/// this process's private namespace.
fn iptables_restore_samples(n: usize, samples: usize) -> Result<Vec<f64>> {
    let files = [iptables_rules(n, 10_000), iptables_rules(n, 30_000)];
    let mut turn = 0;
    time_samples(samples, || {
        turn += 1;
        let mut child = std::process::Command::new("iptables-restore")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("starting iptables-restore")?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("iptables-restore stdin")?
            .write_all(files[turn % 2].as_bytes())?;
        let status = child.wait()?;
        ensure!(status.success(), "iptables-restore failed: {status}");
        Ok(())
    })
}

fn time_samples(samples: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// `bench kernel`.

fn kernel(o: &Options) -> Result<()> {
    enter_private_netns()?;
    let mut r = Report::default();
    let k = o.samples;
    let rep = Method::Repeat(o.repeat);
    // Single-iteration runs: fewer, since each is a syscall.
    let single = Method::Single(20_000);
    let (client, server, public) = (sa(CLIENT), sa(SERVER), sa(PUBLIC));
    let g = "per-packet (BPF_PROG_TEST_RUN)";

    // The floors.
    let bare_xdp = load_bare(BPF_PROG_TYPE_XDP, XDP_PASS as i32)?;
    let bare_tc = load_bare(BPF_PROG_TYPE_SCHED_CLS, -1)?;
    let ack_reply = tcp(server, client, TCP_ACK, 7001, 1019, &[0u8; 10]);

    let mut plain = Instance::new("", "", 2 * o.conns + 100_000)?;
    let wan_xdp_ctx = xdp_ctx(ack_reply.len(), plain.wan);
    let bare_xdp_prog = Prog {
        fd: bare_xdp.as_raw_fd(),
        ctx: &wan_xdp_ctx,
    };
    let s = sample(bare_xdp_prog, &ack_reply, rep, k, XDP_PASS)?;
    r.add(
        "bare_xdp",
        g,
        "bare XDP program (r0 = XDP_PASS; exit): the floor",
        "ns/pkt",
        &s,
        &rep.describe(),
    );
    let s = sample(bare_xdp_prog, &ack_reply, single, k, XDP_PASS)?;
    r.add(
        "bare_xdp_single",
        g,
        "bare XDP program, single-iteration runs (floor of that method)",
        "ns/pkt",
        &s,
        &single.describe(),
    );
    let fwd_ctx = skb_ctx(plain.lan, plain.wan);
    let s = sample(
        Prog {
            fd: bare_tc.as_raw_fd(),
            ctx: &fwd_ctx,
        },
        &ack_reply,
        single,
        k,
        TC_ACT_UNSPEC,
    )?;
    r.add(
        "bare_tc_single",
        g,
        "bare TC program (r0 = TC_ACT_UNSPEC; exit), single-iteration runs",
        "ns/pkt",
        &s,
        &single.describe(),
    );

    // Non-IP: the firewall's earliest exit.
    let arp = arp();
    let arp_ctx = xdp_ctx(arp.len(), plain.lan);
    let xdp_fd = plain.xdp_fd()?;
    let s = plain.measure(
        Prog {
            fd: xdp_fd,
            ctx: &arp_ctx,
        },
        &arp,
        rep,
        k,
        XDP_PASS,
        Counter::AcceptNonIp,
    )?;
    r.add(
        "fw_xdp_arp",
        g,
        "firewall XDP, non-IP (ARP) early exit",
        "ns/pkt",
        &s,
        &rep.describe(),
    );

    // Established TCP, no NAT, one connection in the table.
    plain.establish(client)?;
    let wan_prog = Prog {
        fd: xdp_fd,
        ctx: &wan_xdp_ctx,
    };
    let s = plain.measure(
        wan_prog,
        &ack_reply,
        rep,
        k,
        XDP_PASS,
        Counter::AcceptEstablished,
    )?;
    r.add(
        "est_tcp",
        g,
        "established TCP (reply direction, XDP on wan0), 1 connection tracked; the fast path \
         is tried and falls back (no neighbour entry for the client)",
        "ns/pkt",
        &s,
        &rep.describe(),
    );

    // The fast path: the client's next segment, forwarded in XDP out of wan0 to the
    // gateway. Rewritten in place (TTL), so single-iteration runs.
    let fwd_ack = tcp(client, server, TCP_ACK, 1019, 7011, &[0u8; 10]);
    let lan_ctx = xdp_ctx(fwd_ack.len(), plain.lan);
    let s = plain.measure(
        Prog {
            fd: xdp_fd,
            ctx: &lan_ctx,
        },
        &fwd_ack,
        single,
        k,
        XDP_REDIRECT,
        Counter::FastPathForwarded,
    )?;
    r.add(
        "est_fastpath_single",
        g,
        "established TCP forwarded by the fast path (XDP on lan0: track, FIB, rewrite, \
         redirect), single-iteration runs",
        "ns/pkt",
        &s,
        &single.describe(),
    );
    let bare_fwd = plain.bare_forward_fd()?;
    let s = sample(
        Prog {
            fd: bare_fwd,
            ctx: &lan_ctx,
        },
        &fwd_ack,
        single,
        k,
        XDP_REDIRECT,
    )?;
    r.add(
        "bare_forward_single",
        g,
        "bare forwarding program (FIB, rewrite, redirect; no state), the same packet, \
         single-iteration runs",
        "ns/pkt",
        &s,
        &single.describe(),
    );
    {
        let off = Instance::with_top("fast_path = false\n", "", "", 4096)?;
        off.establish(client)?;
        let ctx = xdp_ctx(ack_reply.len(), off.wan);
        let s = off.measure(
            Prog {
                fd: off.xdp_fd()?,
                ctx: &ctx,
            },
            &ack_reply,
            rep,
            k,
            XDP_PASS,
            Counter::AcceptEstablished,
        )?;
        r.add(
            "est_tcp_nofp",
            g,
            "established TCP (reply direction, XDP on wan0) with fast_path = false: tracking \
             only",
            "ns/pkt",
            &s,
            &rep.describe(),
        );
    }

    // Invalid: SYN|FIN from the WAN.
    let synfin = tcp(
        sa("198.51.100.20:5555"),
        client,
        TCP_SYN | TCP_FIN,
        1,
        0,
        &[],
    );
    let synfin_ctx = xdp_ctx(synfin.len(), plain.wan);
    let s = plain.measure(
        Prog {
            fd: xdp_fd,
            ctx: &synfin_ctx,
        },
        &synfin,
        rep,
        k,
        XDP_DROP,
        Counter::DropInvalidTcpFlags,
    )?;
    r.add(
        "invalid_synfin",
        g,
        "invalid packet (SYN|FIN from the WAN), dropped",
        "ns/pkt",
        &s,
        &rep.describe(),
    );

    // Table size: the same established packet with 1k and 1M connections tracked.
    let gs = "scale";
    for (id, conns, label) in [
        (
            "est_tcp_1k",
            1_000u32,
            "established TCP, 1,000 connections tracked",
        ),
        (
            "est_tcp_1m",
            o.conns,
            "established TCP, 1,000,000 connections tracked",
        ),
    ] {
        let have = (plain.conntrack_count_hint() / 2) as u32;
        let start = Instant::now();
        plain.fill(have, conns)?;
        let fill_s = start.elapsed().as_secs_f64();
        let s = plain.measure(
            wan_prog,
            &ack_reply,
            rep,
            k,
            XDP_PASS,
            Counter::AcceptEstablished,
        )?;
        let label = if conns == 1_000 || conns == 1_000_000 {
            label.to_owned()
        } else {
            format!("established TCP, {conns} connections tracked")
        };
        r.add(
            id,
            g,
            &label,
            "ns/pkt",
            &s,
            &format!(
                "{}; table filled from userspace with synthetic pairs ({:.1} s); the measured \
                 entry stays cache-hot, so this shows hash-table depth, not cache misses of a \
                 real mix",
                rep.describe(),
                fill_s
            ),
        );
    }

    // The ager over the full table.
    let mut entries = 0;
    let snap = time_samples(3, || {
        entries = plain.maps.conntrack_snapshot().len();
        Ok(())
    })?;
    ensure!(
        entries >= 2 * o.conns as usize,
        "the table holds {entries} entries after filling {} connections",
        o.conns
    );
    r.add(
        "ager_snapshot",
        gs,
        &format!(
            "ager: conntrack_snapshot() of {entries} entries ({} connections)",
            entries / 2
        ),
        "ms",
        &snap,
        "map iteration from userspace (get_next_key + lookup per entry); 3 samples",
    );
    let snapshot = plain.maps.conntrack_snapshot();
    let plan = time_samples(3, || {
        let (doomed, _) = ager::plan(
            &snapshot,
            firewall::sys::monotonic_ns(),
            Duration::from_secs(60),
        );
        ensure!(
            doomed.is_empty(),
            "synthetic connections should not be expired"
        );
        Ok(())
    })?;
    r.add(
        "ager_plan",
        gs,
        &format!("ager: plan() over {} entries", snapshot.len()),
        "ms",
        &plan,
        "pure userspace decision over the snapshot; 3 samples",
    );
    drop(snapshot);

    // Memory.
    let info = plain.fdinfo(|f| {
        f.get("max_entries") == Some(&u64::from(plain.capacity)) && f.get("key_size") == Some(&40)
    })?;
    let memlock = info.get("memlock").copied().unwrap_or(0) as f64;
    let (ks, vs) = (info["key_size"] as f64, info["value_size"] as f64);
    let cap_conns = f64::from(plain.capacity) / 2.0;
    r.add(
        "mem_per_conn_memlock",
        gs,
        &format!(
            "memory per connection: CONNTRACK memlock / capacity ({} entries = {} connections)",
            plain.capacity, cap_conns
        ),
        "bytes",
        &[memlock / cap_conns],
        &format!(
            "memlock {memlock} bytes from /proc/self/fdinfo (the kernel's estimate for the \
             preallocated hash: paid at load, whatever the occupancy)"
        ),
    );
    r.add(
        "mem_per_conn_kv",
        gs,
        "memory per connection: 2 × (key + value), payload only",
        "bytes",
        &[2.0 * (ks + vs)],
        &format!("key {ks} + value {vs} bytes, two entries per connection"),
    );
    let ring = firewall_common::early_drop::RingGeometry::for_table(
        plain.capacity,
        aya::util::nr_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))? as u32,
    );
    let ring_memlock = plain
        .fdinfo(|f| {
            f.get("max_entries") == Some(&u64::from(ring.slots()))
                && f.get("key_size") == Some(&4)
                && f.get("value_size") == Some(&40)
        })
        .ok()
        .and_then(|f| f.get("memlock").map(|m| *m as f64));
    table::memory(&mut r, plain.capacity, ring_memlock)?;
    drop(plain);

    // A full table under a SYN flood: the first packets of new connections.
    table::new_connections(&mut r, k)?;

    // NAT: masquerade on wan0.
    let nat = Instance::new("masquerade = true", "", 4096)?;
    nat.establish(public)?;
    let nat_reply = tcp(server, public, TCP_ACK, 7001, 1019, &[0u8; 10]);
    let nat_xdp_ctx = xdp_ctx(nat_reply.len(), nat.wan);
    let s = nat.measure(
        Prog {
            fd: nat.xdp_fd()?,
            ctx: &nat_xdp_ctx,
        },
        &nat_reply,
        rep,
        k,
        XDP_PASS,
        Counter::AcceptEstablished,
    )?;
    r.add(
        "nat_xdp_reply",
        g,
        "established + masquerade: XDP on wan0, reply direction (lookup, no rewrite)",
        "ns/pkt",
        &s,
        &rep.describe(),
    );
    let ing_ctx = skb_ctx(nat.wan, nat.wan);
    let s = nat.measure(
        Prog {
            fd: nat.tc_fd(TC_INGRESS_PROGRAM)?,
            ctx: &ing_ctx,
        },
        &nat_reply,
        single,
        k,
        TC_ACT_UNSPEC,
        Counter::NatDstRewritten,
    )?;
    r.add(
        "nat_tc_ingress_reply",
        g,
        "established + masquerade: TC ingress on wan0, reply destination rewrite",
        "ns/pkt",
        &s,
        &single.describe(),
    );
    let orig = tcp(client, server, TCP_ACK, 1019, 7011, &[0u8; 10]);
    let eg_ctx = skb_ctx(nat.lan, nat.wan);
    let s = nat.measure(
        Prog {
            fd: nat.tc_fd(TC_PROGRAM)?,
            ctx: &eg_ctx,
        },
        &orig,
        single,
        k,
        TC_ACT_UNSPEC,
        Counter::NatSrcRewritten,
    )?;
    r.add(
        "nat_tc_egress_orig",
        g,
        "established + masquerade: TC egress on wan0, forwarded original direction, source \
         rewrite",
        "ns/pkt",
        &s,
        &single.describe(),
    );
    frag::later_fragments(&mut r, &nat, server, public, g, rep, single, k)?;
    frag::memory(&mut r, &nat, gs)?;
    drop(nat);

    // NEW packets against rulesets of n FORWARD rules, each accepting one TCP port
    // (10000 + i). "none": a SYN to port 22, which no rule names, so the policy drops
    // it; "last": a SYN to the last rule's port, which only that rule accepts (the
    // worst case of a linear list). The repeated SYN finds its unreplied entry and is
    // NEW again each time, so every run walks the rules.
    for n in [0usize, 10, 1_000, 10_000] {
        let mut inst = Instance::new("", &rules_toml(n), 4096)?;
        let mut cases = vec![("none", 22u16, XDP_DROP, Counter::DropPolicy)];
        if n > 0 {
            cases.push(("last", 10_000 + n as u16 - 1, XDP_PASS, Counter::AcceptRule));
        }
        for (which, port, want, counter) in cases {
            let syn = tcp(
                sa("198.51.100.20:5555"),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 5), port),
                TCP_SYN,
                1,
                0,
                &[],
            );
            let ctx = xdp_ctx(syn.len(), inst.wan);
            let s = inst.measure(
                Prog {
                    fd: inst.xdp_fd()?,
                    ctx: &ctx,
                },
                &syn,
                rep,
                k,
                want,
                counter,
            )?;
            let what = if which == "none" {
                "no rule matches, policy drop"
            } else {
                "the last rule matches"
            };
            r.add(
                &format!("new_rules_{n}_{which}"),
                g,
                &format!("NEW TCP SYN from the WAN, {n} rules, {what}"),
                "ns/pkt",
                &s,
                &rep.describe(),
            );
        }
        if n == 10_000 {
            // Two different rulesets in turn, so that every install replaces every
            // rule (compile, fill the idle bank, flip).
            let other = config::parse(
                &format!(
                    "[[interface]]\nname = \"wan0\"\nrole = \"wan\"\n\n\
                     [[interface]]\nname = \"lan0\"\nrole = \"lan\"\n\n{}",
                    rules_toml(n).replace("dport = 1", "dport = 3")
                ),
                "bench.toml",
            )?;
            let cfgs = [other, inst.cfg.clone()];
            let ifaces = inst.ifaces.clone();
            let mut turn = 0;
            let s = time_samples(k, || {
                turn += 1;
                loader::configure(&mut inst.maps, &cfgs[turn % 2], &ifaces)?;
                Ok(())
            })?;
            r.add(
                "install_10000",
                gs,
                "replace a 10,000-rule ruleset (loader::configure: compile, fill the idle bank, flip)",
                "ms",
                &s,
                "alternating between two different 10,000-rule rulesets",
            );
            let s = iptables_restore_samples(n, k)?;
            r.add(
                "iptables_restore_10000",
                gs,
                "iptables-restore of the same 10,000 rules",
                "ms",
                &s,
                "alternating between the two rulesets, in a scratch namespace",
            );
        }
    }

    let out = json!({
        "repeat": o.repeat,
        "samples": o.samples,
        "results": r.results,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

impl Instance {
    /// Entries in CONNTRACK, counted by iterating (used only before filling, when the
    /// table is small or holds what `fill` put there).
    fn conntrack_count_hint(&self) -> usize {
        self.maps.conntrack.keys().count()
    }
}

// ---------------------------------------------------------------------------
// Bare XDP programs for the lab.

/// Attaches `program` (`bare_forward` or `bare_pass` from the firewall's object) to
/// `ifaces` in `mode` and keeps it there until the process is killed (the links are
/// not pinned: they go with the process).
fn hold_xdp(program: &str, mode: &str, ifaces: &[&str]) -> Result<()> {
    ensure!(
        [BARE_FORWARD_PROGRAM, BARE_PASS_PROGRAM].contains(&program),
        "bench xdp attaches {BARE_FORWARD_PROGRAM} or {BARE_PASS_PROGRAM}, not {program}"
    );
    let flags = match mode {
        "native" => XdpMode::Driver,
        "generic" => XdpMode::Skb,
        other => bail!("mode {other}: native or generic"),
    };
    // The bare programs use no map; keep the object's table small.
    let mut ebpf = aya::EbpfLoader::new()
        .map_max_entries("CONNTRACK", 16)
        .load(firewall::ebpf_object())
        .context("loading the object")?;
    let prog: &mut Xdp = ebpf
        .program_mut(program)
        .with_context(|| format!("no program {program}"))?
        .try_into()?;
    prog.load().with_context(|| format!("loading {program}"))?;
    for iface in ifaces {
        prog.attach(iface, flags)
            .with_context(|| format!("attaching {program} to {iface} ({mode})"))?;
    }
    println!("attached");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------
// New-connections-per-second load.

/// Accepts and closes connections until killed.
fn serve(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    // std listens with a backlog of 128; a full accept queue drops SYNs and stalls a
    // client thread for the 1 s SYN retransmit, which swamps the rate being measured.
    // SAFETY: listen(2) again on a listening socket only changes its backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        bail!("listen: {}", std::io::Error::last_os_error());
    }
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let l = listener.try_clone().expect("listener clone");
            std::thread::spawn(move || {
                for stream in l.incoming() {
                    drop(stream);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Opens and closes connections to `addr:port` for `dur` on `threads` threads; each
/// connection completes the handshake and is reset (SO_LINGER 0), so no TIME_WAIT
/// exhausts the source ports. Prints `{"connections": N, "seconds": S, "errors": E}`.
fn connect(addr: Ipv4Addr, port: u16, dur: Duration, threads: usize) -> Result<()> {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let target = SocketAddr::V4(SocketAddrV4::new(addr, port));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (done, count, errors) = (done.clone(), count.clone(), errors.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                        Ok(s) => {
                            reset_on_close(&s);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(dur);
    done.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    for h in handles {
        let _ = h.join();
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        json!({"connections": n, "seconds": secs, "errors": errors.load(Ordering::Relaxed)})
    )?;
    Ok(())
}

/// SO_LINGER with a zero timeout: close sends RST and leaves no TIME_WAIT.
fn reset_on_close(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

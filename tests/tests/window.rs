//! TCP window tracking end to end (issue 11), through the two-hop WAN ([`wan2`]) with
//! masquerade on `wan0` and the default ruleset:
//!
//! - segments injected from the WAN with a live connection's tuple but numbers far
//!   outside its window (RSTs, data, an ACK of data never sent) are dropped and counted
//!   by reason, never reach the LAN host, and the download they aim at completes;
//! - bulk transfers both ways under random loss on the WAN router, over IPv4 through
//!   masquerade and over IPv6 (routed), with window scaling and SACK negotiated and
//!   retransmissions happening, arrive intact with no segment dropped as out of window;
//! - a connection idle under TCP keepalive stays established and usable.
//!
//! Every scenario also runs with netfilter guarding the router instead of the firewall
//! (module [`netfilter`]): the seeds' ruleset in iptables with the usual
//! `--ctstate INVALID -j DROP`, which counts the drops only as a sum. Those runs show
//! that each expectation is the kernel's own behaviour on this kernel, in this lab.
//!
//! Checks of what the window tracking did are gathered in [`WindowChecks`] and
//! reported last, after every check of the traffic itself.

use std::{collections::BTreeMap, net::IpAddr, path::Path, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};
use tests::{
    Config, Family, Firewall, Netns, Probe, poll,
    traffic::{self, Transport},
    wan2::{self, FAR_HOST, ROUTER_WAN, Wan2Topology},
    window::{
        HeldServer, Hold, PYTHON, RandomLoss, Segment, SegmentCapture, TcpCounters, WindowChecks,
        ensure_no_window_drops, segment_lines, window_drops,
    },
};

/// Distance of the injected sequence and ACK numbers from the live ones: beyond any
/// window the hosts here advertise (megabytes), and short of the half of the sequence
/// space where "after" becomes "before".
const FAR_OFF: u32 = 1 << 30;
/// Time for an injected segment to cross the router before a capture is read.
const SETTLE: Duration = Duration::from_millis(700);
/// Bound on the firewall counting segments already sent.
const COUNT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one transfer; they take a few seconds.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// What guards the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The firewall with the default ruleset and masquerade on `wan0`.
    Firewall,
    /// The reference: netfilter with [`NETFILTER_RULES`] (and MASQUERADE on `wan0`).
    Netfilter,
}

/// The seeds' ruleset (as in `tests/rules.rs`) with INVALID dropped first, where its
/// counter shows it. INPUT accepts the rest: nothing here is addressed to the router
/// but what conntrack could not match (a forged segment is not translated back to
/// the LAN host when it is INVALID, so it arrives for the router itself).
const NETFILTER_RULES: &str = "*filter\n\
    :INPUT ACCEPT [0:0]\n\
    :FORWARD DROP [0:0]\n\
    :OUTPUT ACCEPT [0:0]\n\
    -A INPUT -m conntrack --ctstate INVALID -j DROP\n\
    -A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
    -A FORWARD -i lan0 -o wan0 -j ACCEPT\n\
    COMMIT\n";
const NETFILTER_MASQUERADE: &str = "*nat\n\
    :POSTROUTING ACCEPT [0:0]\n\
    -A POSTROUTING -o wan0 -j MASQUERADE\n\
    COMMIT\n";

/// The guard running on the router during a test.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per test, never moved around: boxing would only add noise"
)]
enum Guarded<'ns> {
    Firewall(Firewall<'ns>),
    Netfilter(&'ns Netns),
}

impl<'ns> Guarded<'ns> {
    fn start(rtr: &'ns Netns, guard: Guard) -> Result<Self> {
        Ok(match guard {
            Guard::Firewall => Self::Firewall(Firewall::start(
                rtr,
                &Config::router().with_masquerade("wan0"),
            )?),
            Guard::Netfilter => {
                let v4 = format!("{NETFILTER_RULES}{NETFILTER_MASQUERADE}");
                rtr.exec_with_input(["iptables-restore"], v4.as_bytes())?;
                rtr.exec_with_input(["ip6tables-restore"], NETFILTER_RULES.as_bytes())?;
                Self::Netfilter(rtr)
            }
        })
    }

    /// Out-of-window drops so far: the firewall's `drop_tcp_window_*` counters (an
    /// error if it has none), or netfilter's INVALID drops as `invalid`.
    fn drops(&self) -> Result<BTreeMap<String, u64>> {
        match self {
            Self::Firewall(fw) => {
                let stats = fw.stats()?;
                window_drops(&stats)?;
                Ok(stats
                    .counters
                    .into_iter()
                    .filter(|(name, _)| name.starts_with(tests::window::WINDOW_DROP_PREFIX))
                    .collect())
            }
            Self::Netfilter(rtr) => Ok(BTreeMap::from([(
                "invalid".to_owned(),
                netfilter_invalid_drops(rtr)?,
            )])),
        }
    }

    /// The drops `by_reason` as [`Guarded::drops`] counts them.
    fn expected(&self, by_reason: &[(&str, u64)]) -> BTreeMap<String, u64> {
        match self {
            Self::Firewall(_) => by_reason
                .iter()
                .map(|(name, count)| ((*name).to_owned(), *count))
                .collect(),
            Self::Netfilter(_) => BTreeMap::from([(
                "invalid".to_owned(),
                by_reason.iter().map(|(_, count)| count).sum(),
            )]),
        }
    }

    /// Packets the firewall's XDP fast path forwarded so far (0 for netfilter).
    fn fast_pathed(&self) -> Result<u64> {
        match self {
            Self::Firewall(fw) => fw.counter("fastpath_forwarded"),
            Self::Netfilter(_) => Ok(0),
        }
    }

    /// Nothing was dropped as out of window (the firewall must count such drops).
    fn ensure_no_window_drops(&self) -> Result<()> {
        match self {
            Self::Firewall(fw) => ensure_no_window_drops(&fw.stats()?),
            Self::Netfilter(rtr) => {
                let invalid = netfilter_invalid_drops(rtr)?;
                ensure!(invalid == 0, "netfilter dropped {invalid} INVALID packets");
                Ok(())
            }
        }
    }

    /// The only TCP connection to `port` is ESTABLISHED and ASSURED; returns its
    /// reply tuple's destination port (the translated source port).
    fn established_reply_port(&self, port: u16) -> Result<u16> {
        let port_text = port.to_string();
        match self {
            Self::Firewall(fw) => {
                let entries = fw.conntrack(&["-p", "tcp", "--dport", &port_text])?;
                let [entry] = entries.as_slice() else {
                    bail!("expected one TCP entry to port {port}: {entries:#?}");
                };
                ensure!(
                    entry.tcp_state.as_deref() == Some("ESTABLISHED") && entry.has_flag("ASSURED"),
                    "the connection is {:?} with flags {:?}, not ESTABLISHED and ASSURED: \
                     {entry:?}",
                    entry.tcp_state,
                    entry.flags
                );
                entry.reply.dport.context("a TCP reply tuple without dport")
            }
            Self::Netfilter(rtr) => {
                let listing = rtr.exec(["conntrack", "-L", "-p", "tcp", "--dport", &port_text])?;
                let [line] = listing.lines().collect::<Vec<_>>()[..] else {
                    bail!("expected one conntrack entry to port {port}:\n{listing}");
                };
                // `tcp 6 431999 ESTABLISHED src=.. dst=.. sport=.. dport=.. src=.. dst=..
                // sport=.. dport=.. [ASSURED] mark=0 use=1`
                let words: Vec<&str> = line.split_whitespace().collect();
                ensure!(
                    words.get(3) == Some(&"ESTABLISHED") && words.contains(&"[ASSURED]"),
                    "the connection is not ESTABLISHED and ASSURED: {line}"
                );
                let reply_dport = words
                    .iter()
                    .filter_map(|word| word.strip_prefix("dport="))
                    .nth(1)
                    .with_context(|| format!("no reply dport in {line}"))?;
                reply_dport
                    .parse()
                    .with_context(|| format!("reply dport in {line}"))
            }
        }
    }
}

/// Packets the `--ctstate INVALID -j DROP` rules of [`NETFILTER_RULES`] dropped,
/// both chains, both families.
fn netfilter_invalid_drops(rtr: &Netns) -> Result<u64> {
    let mut total = 0;
    for tool in ["iptables", "ip6tables"] {
        for chain in ["INPUT", "FORWARD"] {
            let listing = rtr.exec([tool, "-w", "-L", chain, "-v", "-x", "-n"])?;
            let line = listing
                .lines()
                .find(|line| line.contains("ctstate INVALID"))
                .with_context(|| format!("no INVALID rule in {tool} {chain}:\n{listing}"))?;
            let packets: u64 = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("packet count in {line:?}"))?;
            total += packets;
        }
    }
    Ok(total)
}

/// Waits until the drops have grown from `before` by at least `by_reason` (summed, for
/// netfilter), then requires exactly that. A firewall without the counters fails at
/// once.
fn ensure_dropped(
    guarded: &Guarded,
    before: &BTreeMap<String, u64>,
    by_reason: &[(&str, u64)],
) -> Result<()> {
    let expected = guarded.expected(by_reason);
    let grown = poll(
        &format!("the router to drop {expected:?}"),
        COUNT_TIMEOUT,
        || {
            let now = guarded.drops()?;
            let mut grown = BTreeMap::new();
            for name in expected.keys() {
                let (Some(now), Some(then)) = (now.get(name), before.get(name)) else {
                    bail!("no drop counter {name} in {now:?}");
                };
                grown.insert(name.clone(), now.saturating_sub(*then));
            }
            Ok(if grown.iter().all(|(name, n)| *n >= expected[name]) {
                Probe::Ready(grown)
            } else {
                Probe::Pending(format!("{grown:?}"))
            })
        },
    )?;
    ensure!(
        grown == expected,
        "dropped {grown:?}, expected exactly {expected:?}"
    );
    Ok(())
}

fn path_text(path: &Path) -> Result<&str> {
    path.to_str().context("non-UTF-8 path")
}

/// `socat` address of a TCP connection to `addr:port`.
fn tcp_connect(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(addr) => format!("TCP4:{addr}:{port}"),
        IpAddr::V6(addr) => format!("TCP6:[{addr}]:{port}"),
    }
}

/// `socat` address listening on `port`, IPv4 and IPv6, with `extra` options.
fn tcp_listen(port: u16, extra: &str) -> String {
    format!("TCP6-LISTEN:{port},ipv6only=0,reuseaddr{extra}")
}

const INJECT_PORT: u16 = 9000;
/// Large enough that the paced part of [`HeldServer`] lasts over a second.
const INJECT_SIZE: usize = 2 << 20;
/// RSTs sent while the download runs.
const RSTS_IN_FLIGHT: u32 = 10;

/// Scapy script for the WAN router: releases the held download, then sends RSTs to
/// the router with the download's translated tuple while the data flows.
/// Args: release file, then `count`, then the packet expression with `{i}` for 0..count.
const INJECT_IN_FLIGHT: &str = r#"
import sys, time
from scapy.all import *
release, count, template = sys.argv[1], int(sys.argv[2]), sys.argv[3]
open(release, "w").close()
time.sleep(0.1)
for i in range(count):
    send(eval(template.replace("{i}", str(i))), verbose=False)
    time.sleep(0.05)
"#;

/// A LAN host downloads from the far host through masquerade. While the download is
/// held open, the WAN router forges segments from the far host with the translated
/// tuple: two RSTs and a data segment 2^30 beyond the far host's next sequence number,
/// and an ACK 2^30 beyond anything the LAN host sent; then, while the rest of the data
/// flows, ten more RSTs. The download must complete intact with the LAN host's TCP
/// never seeing a reset; the router must drop every forged segment, counted by reason,
/// and keep the connection ESTABLISHED.
fn check_forged_segments(guard: Guard) -> Result<()> {
    let topo = wan2::wan2("win")?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let (far, rtr_wan) = (FAR_HOST.get(Family::V4), ROUTER_WAN.get(Family::V4));
    let dir = tempfile::Builder::new().prefix("fw-window-").tempdir()?;
    let (source, target) = (dir.path().join("served"), dir.path().join("received"));
    std::fs::write(&source, traffic::pseudo_random_bytes(INJECT_SIZE))?;
    let mut server = HeldServer::start(&topo.far, INJECT_PORT, &source)?;
    let wan_side = SegmentCapture::start(&topo.wanr, "eth0", &format!("tcp port {INJECT_PORT}"))?;
    let lan_before = TcpCounters::read(&topo.lan)?;
    let mut client = topo.lan.spawn([
        "socat".to_owned(),
        "-u".to_owned(),
        tcp_connect(far, INJECT_PORT),
        format!("CREATE:{}", path_text(&target)?),
    ])?;

    // The connection's numbers as the WAN sees them, once the client has everything
    // the server sends before its first hold.
    let syn = wan_side.wait_for("the SYN on the WAN side", TRANSFER_TIMEOUT, |s| {
        s.is_syn() && s.dst.port() == INJECT_PORT
    })?;
    let nat_port = syn.src.port();
    let syn_ack = wan_side.wait_for("the SYN-ACK on the WAN side", TRANSFER_TIMEOUT, |s| {
        s.is_syn_ack() && s.dst == syn.src
    })?;
    let (Some(client_isn), Some(server_isn)) = (syn.seq, syn_ack.seq) else {
        bail!("no sequence numbers in {syn:?} and {syn_ack:?}");
    };
    let client_next = client_isn.wrapping_add(1);
    let head = u32::try_from(HeldServer::HEAD)?;
    let server_next = server_isn.wrapping_add(1).wrapping_add(head);
    wan_side.wait_for(
        "the client to acknowledge the server's first bytes",
        TRANSFER_TIMEOUT,
        |s| s.src == syn.src && s.ack == Some(server_next),
    )?;
    let reply_port = router.established_reply_port(INJECT_PORT)?;
    ensure!(
        reply_port == nat_port,
        "the translated port on the WAN side is {nat_port}, the entry's {reply_port}"
    );

    let lan_from_far = SegmentCapture::start(
        &topo.lan,
        "eth0",
        &format!("tcp port {INJECT_PORT} and src host {far}"),
    )?;
    let lan_resets = SegmentCapture::start(
        &topo.lan,
        "eth0",
        &format!("tcp port {INJECT_PORT} and tcp[13] & 4 != 0"),
    )?;
    let forged = |fields: &str| {
        format!(
            "IP(src='{far}', dst='{rtr_wan}')/TCP(sport={INJECT_PORT}, dport={nat_port}, {fields})"
        )
    };
    let seq_above = server_next.wrapping_add(FAR_OFF);
    let held = [
        forged(&format!("flags='R', seq={seq_above}")),
        forged(&format!("flags='RA', seq={seq_above}, ack={client_next}")),
        forged(&format!("flags='PA', seq={seq_above}, ack={client_next}")) + "/Raw(b'X' * 100)",
        forged(&format!(
            "flags='A', seq={server_next}, ack={}",
            client_next.wrapping_add(FAR_OFF)
        )),
    ];
    let mut window = WindowChecks::default();
    let before = router.drops();
    tests::packets::scapy_send(&topo.wanr, &format!("[{}]", held.join(", ")))?;
    window.check(before.and_then(|before| {
        ensure_dropped(
            &router,
            &before,
            &[
                ("drop_tcp_window_rst", 2),
                ("drop_tcp_window_seq_above", 1),
                ("drop_tcp_window_ack_above", 1),
            ],
        )
    }));
    let delivered = lan_from_far.segments_after(SETTLE);
    window.check(if delivered.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} forged segments reached the LAN host:{}",
            delivered.len(),
            segment_lines(&delivered)
        ))
    });
    window.check(router.established_reply_port(INJECT_PORT).map(drop));

    // The rest of the data flows while more RSTs come, each a segment further on
    // (the script replaces `{i}`).
    let in_flight_seq = |i: u32| seq_above.wrapping_add((i + 1) * 1448);
    let rst = forged(&format!(
        "flags='R', seq=({seq_above} + ({{i}} + 1) * 1448) % 2**32"
    ));
    let before = router.drops();
    topo.wanr.exec([
        PYTHON,
        "-c",
        INJECT_IN_FLIGHT,
        path_text(&server.release_path(Hold::AfterHead))?,
        &RSTS_IN_FLIGHT.to_string(),
        &rst,
    ])?;
    window.check(before.and_then(|before| {
        ensure_dropped(
            &router,
            &before,
            &[("drop_tcp_window_rst", u64::from(RSTS_IN_FLIGHT))],
        )
    }));
    // The WAN router's capture holds the forged RSTs it sent too, in order: the far
    // host's data must have been flowing between the first and the last.
    let on_the_wan = wan_side.segments();
    let position = |seq: u32| {
        on_the_wan
            .iter()
            .position(|s| s.flags == "R" && s.seq == Some(seq))
            .with_context(|| format!("the WAN router's capture lacks its RST with seq {seq}"))
    };
    let (first, last) = (
        position(in_flight_seq(0))?,
        position(in_flight_seq(RSTS_IN_FLIGHT - 1))?,
    );
    let data_meanwhile = on_the_wan[first..last]
        .iter()
        .filter(|s| s.src.ip() == far && s.end.is_some())
        .count();
    eprintln!("{data_meanwhile} data segments crossed the WAN while the RSTs were sent");
    ensure!(
        data_meanwhile > 0,
        "no data flowed while the RSTs were sent: the pacing of the held server no longer \
         covers them"
    );
    ensure!(
        client.is_running()?,
        "the download ended before it was released: {}",
        client.log()
    );
    server.release(Hold::BeforeLastChunk)?;

    let status = client.wait_timeout(TRANSFER_TIMEOUT)?;
    ensure!(
        status.success(),
        "the download failed ({status}): {}",
        client.log()
    );
    server.wait(TRANSFER_TIMEOUT)?;
    ensure!(
        traffic::sha256_file(&target)? == traffic::sha256_file(&source)?,
        "the LAN host received {} bytes that are not the served {INJECT_SIZE}",
        std::fs::metadata(&target)?.len()
    );
    let resets = TcpCounters::read(&topo.lan)?.grew(&lan_before, "EstabResets")?;
    ensure!(
        resets == 0,
        "the LAN host's TCP reset {resets} established connections"
    );
    let rsts = lan_resets.segments();
    window.check(if rsts.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} RSTs reached the LAN host (its TCP ignored them as out of window):{}",
            rsts.len(),
            segment_lines(&rsts)
        ))
    });
    window.finish()
}

#[test]
fn forged_rst_and_data_outside_the_window_do_not_reset_a_masqueraded_download() -> Result<()> {
    check_forged_segments(Guard::Firewall)
}

/// Random loss on the WAN router, each way.
const LOSS: f64 = 0.02;
/// Bytes per transfer: thousands of segments, so the loss hits many of them.
const BULK_SIZE: usize = 16 << 20;
const UPLOAD_PORT: u16 = 9001;
const DOWNLOAD_PORT: u16 = 9002;

#[derive(Debug, Clone, Copy)]
enum Direction {
    /// LAN host to far host.
    Upload,
    /// Far host to LAN host.
    Download,
}

/// pcap filter for the SYNs and SYN-ACKs of connections to `port`; IPv6 reads the
/// flags at a fixed offset (libpcap's `tcp[]` is IPv4 only; no extension headers here).
fn syn_filter(family: Family, port: u16) -> String {
    match family {
        Family::V4 => format!("tcp port {port} and tcp[13] & 2 != 0"),
        Family::V6 => format!("tcp port {port} and ip6[53] & 2 != 0"),
    }
}

/// The window scale a SYN or SYN-ACK offers, requiring it also to offer SACK.
fn offered_scale(segment: &Segment) -> Result<u8> {
    let options: Vec<&str> = segment.options.split(',').collect();
    ensure!(
        options.contains(&"sackOK"),
        "no SACK-permitted option: {segment:?}"
    );
    options
        .iter()
        .find_map(|option| option.strip_prefix("wscale "))
        .with_context(|| format!("no window scale option: {segment:?}"))?
        .parse()
        .with_context(|| format!("window scale of {segment:?}"))
}

/// One transfer of `source` between the LAN host and the far host under loss. It must
/// arrive intact, with window scaling (a non-zero scale) and SACK offered by both ends
/// in the handshake each of them received. The loss must have been felt: the rule
/// dropped packets, the sender retransmitted, entered SACK recovery and walked SACK
/// blocks that came back through the firewall.
fn transfer_under_loss(
    topo: &Wan2Topology,
    router: &Guarded,
    loss: &RandomLoss,
    family: Family,
    direction: Direction,
    source: &Path,
    target: &Path,
) -> Result<()> {
    let (port, sender) = match direction {
        Direction::Upload => (UPLOAD_PORT, &topo.lan),
        Direction::Download => (DOWNLOAD_PORT, &topo.far),
    };
    let what = format!("{direction:?} over {family}");
    let syns_at_lan = SegmentCapture::start(&topo.lan, "eth0", &syn_filter(family, port))?;
    let syns_at_far = SegmentCapture::start(&topo.far, "eth0", &syn_filter(family, port))?;
    let sender_before = TcpCounters::read(sender)?;
    let dropped_before = loss.dropped(family)?;
    let fast_pathed_before = router.fast_pathed()?;
    let (source_text, target_text) = (path_text(source)?, path_text(target)?);
    let (server_from, server_to) = match direction {
        Direction::Upload => (tcp_listen(port, ""), format!("CREATE:{target_text}")),
        Direction::Download => (format!("OPEN:{source_text}"), tcp_listen(port, "")),
    };
    let mut server = topo.far.spawn(["socat", "-u", &server_from, &server_to])?;
    traffic::wait_for_listener(&topo.far, Transport::Tcp, port, &mut server)?;
    let far = tcp_connect(FAR_HOST.get(family), port);
    let (client_from, client_to) = match direction {
        Direction::Upload => (format!("OPEN:{source_text}"), far),
        Direction::Download => (far, format!("CREATE:{target_text}")),
    };
    let started = std::time::Instant::now();
    let limit = TRANSFER_TIMEOUT.as_secs().to_string();
    topo.lan
        .exec(["timeout", &limit, "socat", "-u", &client_from, &client_to])
        .with_context(|| format!("the {what} failed"))?;
    // The uploading client is done once its data is in the socket buffer; the
    // server has everything when it exits.
    let status = server.wait_timeout(TRANSFER_TIMEOUT)?;
    ensure!(status.success(), "the {what} server failed: {status}");
    let elapsed = started.elapsed();
    ensure!(
        traffic::sha256_file(target)? == traffic::sha256_file(source)?,
        "the {what} delivered {} bytes that are not the {BULK_SIZE} sent",
        std::fs::metadata(target)?.len()
    );

    let sender_after = TcpCounters::read(sender)?;
    let grew = |name| sender_after.grew(&sender_before, name);
    let dropped = loss.dropped(family)? - dropped_before;
    let retransmitted = grew("RetransSegs")?;
    let recoveries = grew("TCPSackRecovery")?;
    // Incremented only while the sender walks the SACK blocks of an ACK
    // (`tcp_sacktag_walk`, `tcp_shift_skb_data`): blocks crossed the firewall.
    let sack_walks =
        grew("TCPSackShifted")? + grew("TCPSackMerged")? + grew("TCPSackShiftFallback")?;
    let fast_pathed = router.fast_pathed()? - fast_pathed_before;
    eprintln!(
        "{what}: {BULK_SIZE} bytes in {elapsed:?}; {dropped} packets lost on the path; the \
         sender retransmitted {retransmitted} segments, entered SACK recovery {recoveries} \
         times, walked SACK blocks {sack_walks} times, timed out {} times, got {} D-SACKs; \
         {fast_pathed} packets fast-pathed",
        grew("TCPTimeouts")?,
        grew("TCPDSACKRecv")?,
    );
    ensure!(
        dropped > 0 && retransmitted > 0 && recoveries > 0 && sack_walks > 0,
        "the {what} did not exercise loss and SACK: {dropped} packets dropped on the path, \
         {retransmitted} retransmitted, {recoveries} SACK recoveries, {sack_walks} SACK \
         block walks"
    );

    let client = topo.lan.name();
    let syn = syns_at_far
        .segments()
        .into_iter()
        .find(Segment::is_syn)
        .with_context(|| format!("the far host received no SYN from {client}"))?;
    let syn_ack = syns_at_lan
        .segments()
        .into_iter()
        .find(Segment::is_syn_ack)
        .with_context(|| format!("{client} received no SYN-ACK"))?;
    for (segment, side) in [
        (&syn, "the LAN host's SYN"),
        (&syn_ack, "the far host's SYN-ACK"),
    ] {
        let scale = offered_scale(segment).with_context(|| format!("{side} as received"))?;
        ensure!(scale > 0, "{side} offers window scale 0: {segment:?}");
    }
    Ok(())
}

/// An upload and a download of [`BULK_SIZE`] bytes each under [`LOSS`] random loss on
/// the WAN router, each way. Every MTU-sized segment is its own packet at both ends
/// (`gso_max_segs 1`), so the loss drops segments one at a time as a lossy link does,
/// not 64 KB GSO batches. Nothing the hosts send may be dropped as out of window.
fn check_bulk_under_loss(family: Family, guard: Guard) -> Result<()> {
    let topo = wan2::wan2("winl")?;
    for netns in [&topo.lan, &topo.far] {
        netns.ip("link set eth0 gso_max_segs 1")?;
    }
    let loss = RandomLoss::install(&topo.wanr, LOSS)?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let dir = tempfile::Builder::new().prefix("fw-window-").tempdir()?;
    let source = dir.path().join("sent");
    std::fs::write(&source, traffic::pseudo_random_bytes(BULK_SIZE))?;
    for direction in [Direction::Upload, Direction::Download] {
        let target = dir.path().join(format!("{direction:?}"));
        transfer_under_loss(&topo, &router, &loss, family, direction, &source, &target)?;
    }
    if let Guarded::Firewall(fw) = &router {
        let stats = fw.stats()?;
        ensure!(
            stats.counter("drop_invalid_tcp_state")? == 0,
            "segments were dropped as INVALID by the state table: {:?}",
            stats.counters
        );
    }
    let mut window = WindowChecks::default();
    window.check(router.ensure_no_window_drops());
    window.finish()
}

#[test]
fn bulk_transfers_under_loss_through_masquerade_arrive_intact_with_scaling_and_sack() -> Result<()>
{
    check_bulk_under_loss(Family::V4, Guard::Firewall)
}

#[test]
fn bulk_transfers_v6_under_loss_arrive_intact_with_scaling_and_sack() -> Result<()> {
    check_bulk_under_loss(Family::V6, Guard::Firewall)
}

const KEEPALIVE_PORT: u16 = 9003;
/// Keepalive probes each end must have sent while idle. With `keepcnt=2` a connection
/// whose probes go unanswered is aborted after the second, so a third proves the
/// answers came back through the firewall.
const PROBES: u64 = 3;

/// The LAN end of the keepalive test: probes after 1 s idle, every 1 s, gives up after
/// 2 unanswered. Echoes a line, prints `IDLE`, waits for the release file, echoes
/// another line. Args: address, port, release file.
const KEEPALIVE_CLIENT: &str = r#"
import os, socket, sys, time
host, port, release = sys.argv[1], int(sys.argv[2]), sys.argv[3]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
s.settimeout(10)
s.connect((host, port))

def echo(line):
    s.sendall(line)
    got = b""
    while len(got) < len(line):
        part = s.recv(4096)
        if not part:
            sys.exit("the server closed the connection")
        got += part
    if got != line:
        sys.exit(f"echoed {got!r} for {line!r}")
    print(got.decode().strip(), flush=True)

echo(b"before the idle time\n")
print("IDLE", flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(release):
    if time.monotonic() > deadline:
        sys.exit("never released")
    time.sleep(0.05)
echo(b"after the idle time\n")
s.close()
"#;

/// A connection between the LAN host and an echo server on the far host, both ends
/// with keepalive after 1 s, sits idle until each end has sent [`PROBES`] probes. The
/// firewall keeps it ESTABLISHED, a line still echoes, and no probe or answer was
/// dropped as out of window (a probe repeats the byte before the window: netfilter
/// accepts it).
fn check_keepalive(family: Family, guard: Guard) -> Result<()> {
    let topo = wan2::wan2("wink")?;
    let router = Guarded::start(&topo.rtr, guard)?;
    let mut echo = topo.far.spawn([
        "socat".to_owned(),
        tcp_listen(
            KEEPALIVE_PORT,
            ",fork,keepalive,keepidle=1,keepintvl=1,keepcnt=2",
        ),
        "PIPE".to_owned(),
    ])?;
    traffic::wait_for_listener(&topo.far, Transport::Tcp, KEEPALIVE_PORT, &mut echo)?;
    let dir = tempfile::Builder::new().prefix("fw-window-").tempdir()?;
    let release = dir.path().join("release");
    let ends: [&Netns; 2] = [&topo.lan, &topo.far];
    let before = [TcpCounters::read(ends[0])?, TcpCounters::read(ends[1])?];
    let mut client = topo.lan.spawn([
        PYTHON.to_owned(),
        "-c".to_owned(),
        KEEPALIVE_CLIENT.to_owned(),
        FAR_HOST.get(family).to_string(),
        KEEPALIVE_PORT.to_string(),
        path_text(&release)?.to_owned(),
    ])?;
    poll("the client to go idle", TRANSFER_TIMEOUT, || {
        if let Some(status) = client.try_wait()? {
            bail!("the client exited with {status}: {}", client.log());
        }
        let log = client.log();
        Ok(if log.lines().any(|line| line == "IDLE") {
            Probe::Ready(())
        } else {
            Probe::Pending(log)
        })
    })?;
    poll(
        &format!("both ends to send {PROBES} keepalive probes"),
        Duration::from_secs(15),
        || {
            let mut probes = Vec::new();
            for (netns, before) in ends.iter().zip(&before) {
                probes.push(TcpCounters::read(netns)?.grew(before, "TCPKeepAlive")?);
            }
            if let Some(status) = client.try_wait()? {
                bail!(
                    "the client exited while idle ({status}), probes sent {probes:?}: {}",
                    client.log()
                );
            }
            Ok(if probes.iter().all(|&sent| sent >= PROBES) {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("LAN and far host sent {probes:?} probes"))
            })
        },
    )?;
    router.established_reply_port(KEEPALIVE_PORT)?;
    std::fs::write(&release, b"")?;
    let status = client.wait_timeout(TRANSFER_TIMEOUT)?;
    ensure!(
        status.success() && client.log().contains("after the idle time"),
        "the connection did not survive its idle time ({status}): {}",
        client.log()
    );
    let mut window = WindowChecks::default();
    window.check(router.ensure_no_window_drops());
    window.finish()
}

#[test]
fn idle_connection_with_keepalive_through_masquerade_stays_usable() -> Result<()> {
    check_keepalive(Family::V4, Guard::Firewall)
}

#[test]
fn idle_connection_v6_with_keepalive_stays_usable() -> Result<()> {
    check_keepalive(Family::V6, Guard::Firewall)
}

/// The same scenarios with netfilter guarding the router: the reference the
/// firewall's window tracking must match.
mod netfilter {
    use super::*;

    #[test]
    fn forged_rst_and_data_outside_the_window_do_not_reset_a_masqueraded_download() -> Result<()> {
        check_forged_segments(Guard::Netfilter)
    }

    #[test]
    fn bulk_transfers_under_loss_through_masquerade_arrive_intact_with_scaling_and_sack()
    -> Result<()> {
        check_bulk_under_loss(Family::V4, Guard::Netfilter)
    }

    #[test]
    fn bulk_transfers_v6_under_loss_arrive_intact_with_scaling_and_sack() -> Result<()> {
        check_bulk_under_loss(Family::V6, Guard::Netfilter)
    }

    #[test]
    fn idle_connection_with_keepalive_through_masquerade_stays_usable() -> Result<()> {
        check_keepalive(Family::V4, Guard::Netfilter)
    }

    #[test]
    fn idle_connection_v6_with_keepalive_stays_usable() -> Result<()> {
        check_keepalive(Family::V6, Guard::Netfilter)
    }
}

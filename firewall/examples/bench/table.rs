//! The bench's full-table figures: the first packet of a new connection when the
//! table is full of a flood's unassured connections (each one must displace the
//! oldest), against the same packet with room in the table; and the memory a
//! connection costs, next to netfilter's.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context as _, Result, ensure};
use firewall_common::{early_drop::RingGeometry, stats::Counter, tcp::TCP_SYN};

use super::{Instance, Report, SERVER, XDP_PASS, median, sa, tcp, test_run, xdp_ctx};

/// Connections in the flooded table (131,072 entries).
const FLOOD_CONNS: u32 = 65_536;
/// First packets measured per sample, each a new connection.
const RUNS: u32 = 10_000;

const TCP_FORWARD: &str = "[[port_forward]]\nproto = \"tcp\"\nport = 8080\nto = \"10.0.1.10:80\"\n";

/// The `i`-th spoofed SYN of a flood through the port forward (198.18.0.0/15).
fn flood_syn(i: u32) -> Vec<u8> {
    let src = SocketAddrV4::new(Ipv4Addr::from(0xc612_0000 + i), 1024 + (i % 60_000) as u16);
    tcp(src, sa("10.0.2.1:8080"), TCP_SYN, i, 0, &[])
}

/// The `i`-th LAN host's SYN to the server (untranslated).
fn lan_syn(i: u32) -> Vec<u8> {
    let src = SocketAddrV4::new(
        Ipv4Addr::new(10, 0, 1, 5 + (i / 60_000) as u8),
        1024 + (i % 60_000) as u16,
    );
    tcp(src, sa(SERVER), TCP_SYN, i, 0, &[])
}

/// First packets through XDP on `ingress`, `frames.len() / samples` single-iteration
/// runs per sample (each frame once: every run creates a connection); the sample is
/// the median of the kernel's per-run figures. Checks that `counter` grew by exactly
/// one per frame.
fn first_packets(
    inst: &Instance,
    ingress: u32,
    frames: &[Vec<u8>],
    samples: usize,
    counter: Counter,
) -> Result<Vec<f64>> {
    let fd = inst.xdp_fd()?;
    let ctx = xdp_ctx(frames[0].len(), ingress);
    let before = inst.counters()[counter.name()];
    let mut out = Vec::with_capacity(samples);
    for chunk in frames.chunks(frames.len() / samples) {
        let mut per = Vec::with_capacity(chunk.len());
        for frame in chunk {
            let (ret, ns, _) = test_run(fd, frame, &ctx, 1)?;
            ensure!(ret == XDP_PASS, "XDP returned {ret} for a first packet");
            per.push(f64::from(ns));
        }
        out.push(median(&per));
    }
    let delta = inst.counters()[counter.name()] - before;
    ensure!(
        delta == frames.len() as u64,
        "{} grew by {delta} over {} first packets: not the path measured",
        counter.name(),
        frames.len()
    );
    Ok(out)
}

/// The four first-packet figures: a LAN SYN and a flood SYN (through the port
/// forward), with room in the table and with the table full of the flood.
pub fn new_connections(r: &mut Report, samples: usize) -> Result<()> {
    let g = "per-packet (BPF_PROG_TEST_RUN)";
    let runs = RUNS as usize * samples;
    let note = format!(
        "{RUNS} single-iteration runs per sample, each the first packet of a different \
         connection; median (includes the kernel timer, compare with the single-run floor)"
    );
    let lan_frames: Vec<Vec<u8>> = (0..runs as u32).map(lan_syn).collect();
    let flood_frames: Vec<Vec<u8>> = (FLOOD_CONNS..FLOOD_CONNS + runs as u32)
        .map(flood_syn)
        .collect();

    // Room: a table big enough for everything measured.
    let room = Instance::new("", TCP_FORWARD, 4 * (FLOOD_CONNS + runs as u32))?;
    let s = first_packets(&room, room.lan, &lan_frames, samples, Counter::CtCreated)?;
    r.add(
        "new_lan_room_single",
        g,
        "NEW TCP SYN from the LAN, its connection created, table with room",
        "ns/pkt",
        &s,
        &note,
    );
    let s = first_packets(&room, room.wan, &flood_frames, samples, Counter::CtCreated)?;
    r.add(
        "new_flood_room_single",
        g,
        "NEW TCP SYN through a port forward (a flood's packet), its connection and NAT \
         binding created, table with room",
        "ns/pkt",
        &s,
        &note,
    );
    drop(room);

    // Full: the flood's SYNs fill the table through the datapath (so the early-drop
    // ring names them), then every first packet displaces the oldest.
    let full = Instance::new("", TCP_FORWARD, 2 * FLOOD_CONNS)?;
    let fill: Vec<Vec<u8>> = (0..FLOOD_CONNS).map(flood_syn).collect();
    first_packets(&full, full.wan, &fill, 1, Counter::CtCreated).context("filling the table")?;
    ensure!(
        full.counters()[Counter::CtEarlyDrop.name()] == 0,
        "early drops while filling"
    );
    let s = first_packets(&full, full.lan, &lan_frames, samples, Counter::CtEarlyDrop)?;
    r.add(
        "new_lan_full_single",
        g,
        &format!(
            "NEW TCP SYN from the LAN while a SYN flood fills the table ({FLOOD_CONNS} \
             unassured connections): displaces the oldest (both halves), then is created"
        ),
        "ns/pkt",
        &s,
        &note,
    );
    let s = first_packets(
        &full,
        full.wan,
        &flood_frames,
        samples,
        Counter::CtEarlyDrop,
    )?;
    r.add(
        "new_flood_full_single",
        g,
        "NEW TCP SYN through the port forward into the full table (the flood's own \
         packet): displaces the oldest, claims its binding, is created",
        "ns/pkt",
        &s,
        &note,
    );
    ensure!(
        full.counters()[Counter::DropTableFull.name()] == 0,
        "first packets refused with unassured connections in the table"
    );
    Ok(())
}

/// Memory per connection beside the table's: the early-drop ring, and netfilter's
/// (`nf_conn` slab object plus a hash bucket), read from this kernel when it has the
/// `nf_conntrack` slab.
pub fn memory(r: &mut Report, capacity: u32, memlock_ring: Option<f64>) -> Result<()> {
    let gs = "scale";
    let conns = f64::from(capacity) / 2.0;
    let cpus = aya::util::nr_cpus().map_err(|(p, e)| anyhow::anyhow!("{p}: {e}"))? as u32;
    let ring = RingGeometry::for_table(capacity, cpus);
    let payload = f64::from(ring.slots()) * 40.0 / conns;
    r.add(
        "mem_per_conn_ring",
        gs,
        &format!(
            "memory per connection: the early-drop ring ({} regions × {} keys of 40 bytes, \
             for {conns} connections)",
            ring.regions,
            ring.region_len()
        ),
        "bytes",
        &[memlock_ring.map_or(payload, |m| m / conns)],
        &format!(
            "{}; preallocated like the table",
            match memlock_ring {
                Some(m) => format!("CT_EARLY_DROP memlock {m} bytes from /proc/self/fdinfo"),
                None => format!("key payload ({payload:.1} bytes), memlock not found"),
            }
        ),
    );
    let read = |p: &str| -> Option<f64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let slab = read("/sys/kernel/slab/nf_conntrack/slab_size");
    let object = read("/sys/kernel/slab/nf_conntrack/object_size");
    let buckets = read("/proc/sys/net/netfilter/nf_conntrack_buckets");
    let max = read("/proc/sys/net/netfilter/nf_conntrack_max");
    let (value, note) = match (slab, object, buckets, max) {
        (Some(slab), Some(object), Some(b), Some(m)) if m > 0.0 => (
            slab + 8.0 * b / m,
            format!(
                "this kernel: struct nf_conn {object} bytes in a {slab}-byte slab slot, plus \
                 an 8-byte hash bucket per {:.2} connections ({b} buckets, \
                 nf_conntrack_max {m}); extensions (NAT, accounting, events) are a separate \
                 allocation on top, not counted. Allocated per live connection, where the \
                 firewall's table is preallocated for max_entries",
                m / b
            ),
        ),
        // Without the module there is nothing to read: this kernel's figure
        // (6.18, x86-64), as docs/PERFORMANCE.md records it.
        _ => (
            264.0,
            "not read: nf_conntrack's slab is not on this kernel; the figure is 6.18's on \
             x86-64 (struct nf_conn 248 bytes in a 256-byte slot, one 8-byte bucket per \
             connection at the default nf_conntrack_buckets = nf_conntrack_max), extensions \
             not counted"
                .to_owned(),
        ),
    };
    r.add(
        "mem_per_conn_netfilter",
        gs,
        "memory per connection: netfilter (nf_conn slab object and hash bucket)",
        "bytes",
        &[value],
        &note,
    );
    Ok(())
}

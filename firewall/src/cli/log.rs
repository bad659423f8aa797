//! `firewall log`: follows the events LOG rules emit, printed like the
//! kernel's netfilter log lines (`IN= OUT= SRC= DST= ... PROTO= SPT= DPT=`).
//!
//! The events come from a BPF ring buffer with a single read position: run
//! one `firewall log` per instance (two would each see part of the
//! events). Events emitted while nobody reads wait in the buffer (1 MiB)
//! until it fills; after that the datapath counts them as `log_lost`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::ExitCode,
};

use anyhow::Context as _;
use aya::maps::{Map, MapData, RingBuf};
use firewall::{pins::PinDir, sys};
use firewall_common::{
    FAMILY_V4, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
    rule::{LogEvent, prefix_bytes},
};
use serde::Serialize;
use tokio::io::unix::AsyncFd;

#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// Exit after this many events (default: follow until interrupted).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// One JSON object per line instead of the kernel's format.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Line {
    /// Seconds since the Unix epoch.
    time: f64,
    rule: u32,
    chain: &'static str,
    prefix: String,
    level: u8,
    #[serde(rename = "in")]
    iif: String,
    out: String,
    src: IpAddr,
    dst: IpAddr,
    len: u32,
    ttl: u8,
    proto: String,
    sport: Option<u16>,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    tcp_flags: Vec<&'static str>,
}

fn ifname(idx: u32) -> String {
    if idx == 0 {
        return String::new();
    }
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes.
    let p = unsafe { libc::if_indextoname(idx, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{idx}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

fn addr(words: &[u32; 4], family: u8) -> IpAddr {
    // SAFETY: [u32; 4] and [u8; 16] have the same size.
    let b: [u8; 16] = unsafe { std::mem::transmute(*words) };
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

/// Offset from `bpf_ktime_get_ns` (CLOCK_MONOTONIC) to the wall clock.
fn clock_offset_ns() -> i128 {
    let mono = sys::monotonic_ns() as i128;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    wall - mono
}

fn line(e: &LogEvent, offset: i128) -> Line {
    let prefix = prefix_bytes(&e.prefix);
    let prefix_end = prefix.iter().position(|&b| b == 0).unwrap_or(prefix.len());
    let (tcp, udp) = (e.proto == IPPROTO_TCP, e.proto == IPPROTO_UDP);
    let icmp = e.proto == IPPROTO_ICMP || e.proto == IPPROTO_ICMPV6;
    let flags = [
        (0x20, "URG"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x04, "RST"),
        (0x02, "SYN"),
        (0x01, "FIN"),
    ];
    Line {
        time: (e.ktime_ns as i128 + offset) as f64 / 1e9,
        rule: (e.rule & 0x7fff_ffff) + 1,
        chain: match e.chain {
            0 => "INPUT",
            1 => "FORWARD",
            _ => "OUTPUT",
        },
        prefix: String::from_utf8_lossy(&prefix[..prefix_end]).into_owned(),
        level: e.log_level,
        iif: ifname(e.iif),
        out: ifname(e.oif),
        src: addr(&e.src, e.family),
        dst: addr(&e.dst, e.family),
        len: e.l3_len,
        ttl: e.ttl,
        proto: match e.proto {
            IPPROTO_TCP => "TCP".into(),
            IPPROTO_UDP => "UDP".into(),
            IPPROTO_ICMP => "ICMP".into(),
            IPPROTO_ICMPV6 => "ICMPv6".into(),
            p => p.to_string(),
        },
        sport: (tcp || udp).then_some(e.sport),
        dport: (tcp || udp).then_some(e.dport),
        icmp_type: icmp.then_some((e.sport >> 8) as u8),
        icmp_code: icmp.then_some(e.sport as u8),
        tcp_flags: if tcp {
            flags
                .iter()
                .filter(|(b, _)| e.tcp_flags & b != 0)
                .map(|(_, n)| *n)
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// `secs` since the Unix epoch as a UTC date and time (the civil-from-days
/// conversion of Howard Hinnant's date algorithms).
fn utc(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The kernel's LOG format, after a timestamp and the rule number.
fn kernel_format(l: &Line) -> String {
    let secs = l.time as i64;
    let mut s = format!(
        "{} rule {} ({}) {}IN={} OUT={} SRC={} DST={} LEN={} TTL={} PROTO={}",
        utc(secs, ((l.time - secs as f64) * 1e6) as u32),
        l.rule,
        l.chain,
        l.prefix,
        l.iif,
        l.out,
        l.src,
        l.dst,
        l.len,
        l.ttl,
        l.proto
    );
    if let (Some(sp), Some(dp)) = (l.sport, l.dport) {
        s += &format!(" SPT={sp} DPT={dp}");
    }
    if let (Some(t), Some(c)) = (l.icmp_type, l.icmp_code) {
        s += &format!(" TYPE={t} CODE={c}");
    }
    for f in &l.tcp_flags {
        s += &format!(" {f}");
    }
    s
}

pub fn log(pins: &PinDir, a: LogArgs) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let path = pins.map("LOG_EVENTS");
    let data = MapData::from_pin(&path).map_err(|_| {
        anyhow::anyhow!(
            "no firewall is loaded at {} (no pinned LOG_EVENTS); start one with `firewall run`",
            pins.root().display()
        )
    })?;
    let map = Map::from_map_data(data).context("opening LOG_EVENTS")?;
    let ring = RingBuf::try_from(map).context("LOG_EVENTS is not a ring buffer")?;
    let offset = clock_offset_ns();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        // SAFETY: the ring buffer owns its descriptor and is moved into
        // the AsyncFd, which deregisters it before dropping it.
        let mut fd = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow::anyhow!("polling LOG_EVENTS: {e}"))?;
        let mut seen = 0u64;
        loop {
            let mut guard = fd.readable_mut().await.context("waiting for LOG events")?;
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if item.len() < std::mem::size_of::<LogEvent>() {
                    continue;
                }
                // SAFETY: the datapath writes whole LogEvents.
                let e: LogEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                let l = line(&e, offset);
                if a.json {
                    println!("{}", serde_json::to_string(&l)?);
                } else {
                    println!("{}", kernel_format(&l));
                }
                seen += 1;
                if a.count.is_some_and(|n| seen >= n) {
                    return anyhow::Ok(());
                }
            }
            guard.clear_ready();
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(utc(1_795_640_332, 952_709), "2026-11-25T20:58:52.952709Z");
    }
}

//! What the TCP window-tracking tests need besides the router: the firewall's window
//! counters, loss on the path, the end hosts' own TCP counters, the sequence numbers of
//! a live connection, and a download that waits where the test tells it to.
//!
//! The tests assert two kinds of things: that real traffic (loss, keepalives, injected
//! segments) ends as the hosts expect, which holds with or without window tracking, and
//! what the firewall's window tracking did about it. [`WindowChecks`] gathers failures of
//! the second kind so that a test checks everything of the first kind before it
//! reports them: while the datapath has no window tracking, a failing test still shows
//! that the traffic itself behaved.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{Family, Netns, Probe, Process, Stats, poll, traffic};

/// Debian's python, which has scapy (the `python3` first on PATH may be another).
pub const PYTHON: &str = "/usr/bin/python3";

/// Prefix of the counters of packets dropped by `tcp_in_window`'s INVALID outcomes.
pub const WINDOW_DROP_PREFIX: &str = "drop_tcp_window_";

/// The window drop counters the datapath must have: sequence above the receiver's
/// window, ACK of data never sent, RST outside the window.
pub const WINDOW_DROP_COUNTERS: [&str; 3] = [
    "drop_tcp_window_seq_above",
    "drop_tcp_window_ack_above",
    "drop_tcp_window_rst",
];

/// The sum of every `drop_tcp_window_*` counter. An error if any of
/// [`WINDOW_DROP_COUNTERS`] is missing, so that "no window drops" can never hold merely
/// because the datapath does not count them.
pub fn window_drops(stats: &Stats) -> Result<u64> {
    let missing: Vec<_> = WINDOW_DROP_COUNTERS
        .iter()
        .filter(|name| !stats.counters.contains_key(**name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "`stats --json` has no {missing:?}: the datapath does not count TCP window \
             drops; its TCP counters are {:?}",
            tcp_counter_names(stats)
        );
    }
    Ok(stats
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with(WINDOW_DROP_PREFIX))
        .map(|(_, count)| count)
        .sum())
}

/// The names of the firewall's counters about TCP, for error messages (all of them
/// would bury the point).
pub fn tcp_counter_names(stats: &Stats) -> Vec<&str> {
    stats
        .counters
        .keys()
        .map(String::as_str)
        .filter(|name| name.contains("tcp"))
        .collect()
}

/// No `drop_tcp_window_*` counter has counted anything (see [`window_drops`]).
pub fn ensure_no_window_drops(stats: &Stats) -> Result<()> {
    let total = window_drops(stats)?;
    let counted: BTreeMap<_, _> = stats
        .counters
        .iter()
        .filter(|(name, count)| name.starts_with(WINDOW_DROP_PREFIX) && **count > 0)
        .collect();
    ensure!(
        total == 0,
        "the firewall dropped {total} packets of real traffic as out of window: {counted:?}"
    );
    Ok(())
}

/// Failures of assertions about the firewall's window tracking, kept until
/// [`WindowChecks::finish`] so that the test first checks the traffic itself.
#[derive(Debug, Default)]
pub struct WindowChecks {
    failures: Vec<String>,
}

impl WindowChecks {
    /// Keeps `result`'s error, if any.
    pub fn check(&mut self, result: Result<()>) {
        if let Err(err) = result {
            self.failures.push(format!("{err:#}"));
        }
    }

    /// An error listing every kept failure; `Ok` if there were none.
    pub fn finish(self) -> Result<()> {
        let Self { failures } = self;
        ensure!(
            failures.is_empty(),
            "{} window-tracking check(s) failed (the traffic itself behaved):\n- {}",
            failures.len(),
            failures.join("\n- ")
        );
        Ok(())
    }
}

/// Random loss on a router namespace: `-m statistic --mode random` DROP rules at the
/// top of its FORWARD chain, for IPv4 and IPv6, in both directions. netem is not in
/// every kernel; the statistic match is in nf_tables' xt compatibility, which is. The
/// rules go with the namespace.
pub struct RandomLoss<'ns> {
    netns: &'ns Netns,
}

impl<'ns> RandomLoss<'ns> {
    /// Drops each forwarded packet with `probability` (0 to 1).
    pub fn install(netns: &'ns Netns, probability: f64) -> Result<Self> {
        ensure!(
            (0.0..=1.0).contains(&probability),
            "loss probability {probability} is not between 0 and 1"
        );
        let probability = probability.to_string();
        for tool in ["iptables", "ip6tables"] {
            netns
                .exec([
                    tool,
                    "-w",
                    "-I",
                    "FORWARD",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ])
                .with_context(|| format!("adding the loss rule with {tool}"))?;
        }
        Ok(Self { netns })
    }

    /// How many packets of `family` the rule has dropped so far.
    pub fn dropped(&self, family: Family) -> Result<u64> {
        let tool = match family {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let listing = self
            .netns
            .exec([tool, "-w", "-L", "FORWARD", "-v", "-x", "-n"])?;
        // `    pkts      bytes target ...` then one line per rule.
        let line = listing
            .lines()
            .find(|line| line.contains("statistic mode random"))
            .with_context(|| format!("no loss rule in `{tool} -L FORWARD`:\n{listing}"))?;
        let packets = line.split_whitespace().next().unwrap_or_default();
        packets
            .parse()
            .with_context(|| format!("packet count in {line:?}"))
    }
}

/// The TCP counters of a namespace's stack: `Tcp` of `/proc/net/snmp` (both families;
/// `RetransSegs`, `EstabResets`) and `TcpExt` of `/proc/net/netstat` (`TCPSackRecovery`,
/// `TCPKeepAlive`...), by name.
#[derive(Debug, Clone)]
pub struct TcpCounters {
    netns: String,
    counters: BTreeMap<String, u64>,
}

impl TcpCounters {
    pub fn read(netns: &Netns) -> Result<Self> {
        let text = netns.exec(["cat", "/proc/net/snmp", "/proc/net/netstat"])?;
        Ok(Self {
            netns: netns.name().to_owned(),
            counters: parse_mib(&text, &["Tcp", "TcpExt"])?,
        })
    }

    pub fn get(&self, name: &str) -> Result<u64> {
        self.counters
            .get(name)
            .copied()
            .with_context(|| format!("no TCP counter {name} in {}", self.netns))
    }

    /// How much `name` grew from `before` to `self`.
    pub fn grew(&self, before: &Self, name: &str) -> Result<u64> {
        Ok(self.get(name)?.saturating_sub(before.get(name)?))
    }
}

/// The counters of `sections` in the `Section: names` / `Section: values` line pairs of
/// `/proc/net/snmp` and `/proc/net/netstat`.
fn parse_mib(text: &str, sections: &[&str]) -> Result<BTreeMap<String, u64>> {
    let mut counters = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let Some((section, names)) = names.split_once(": ") else {
            continue;
        };
        let Some(values) = lines.next() else {
            bail!("{section}: names without values");
        };
        if !sections.contains(&section) {
            continue;
        }
        let values = values
            .strip_prefix(&format!("{section}: "))
            .with_context(|| format!("{section}: names followed by {values:?}"))?;
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            // `Tcp: MaxConn` is -1.
            if let Ok(value) = value.parse() {
                counters.insert(name.to_owned(), value);
            }
        }
    }
    ensure!(!counters.is_empty(), "no {sections:?} counters in {text:?}");
    Ok(counters)
}

/// One TCP segment as `tcpdump -n -S` prints it: absolute sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// tcpdump's flags: `S`, `S.`, `.`, `P.`, `R`, `F.`...
    pub flags: String,
    /// The first sequence number, when tcpdump prints one (SYN, FIN, RST, data).
    pub seq: Option<u32>,
    /// One past the last byte of data, for segments with data.
    pub end: Option<u32>,
    pub ack: Option<u32>,
    /// TCP options as printed, e.g. `mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7`.
    pub options: String,
}

impl Segment {
    /// Parses one line of `tcpdump -n -S` (without `-e` or `-v`); `None` for a line
    /// that is not a TCP segment.
    pub fn parse(line: &str) -> Option<Self> {
        // `12:00:00.000000 IP 10.0.2.1.40000 > 10.0.4.2.9000: Flags [P.], seq 1:101,
        // ack 7, win 502, options [nop,nop,TS val 1 ecr 2], length 100`
        let (_, rest) = line
            .split_once(" IP ")
            .or_else(|| line.split_once(" IP6 "))?;
        let (src, rest) = rest.split_once(" > ")?;
        let (dst, rest) = rest.split_once(": ")?;
        let endpoint = |text: &str| -> Option<SocketAddr> {
            let (addr, port) = text.rsplit_once('.')?;
            Some(SocketAddr::new(addr.parse().ok()?, port.parse().ok()?))
        };
        let rest = rest.strip_prefix("Flags [")?;
        let (flags, rest) = rest.split_once(']')?;
        let options = rest
            .split_once("options [")
            .and_then(|(_, options)| options.split_once(']'))
            .map(|(options, _)| options.to_owned())
            .unwrap_or_default();
        let mut segment = Self {
            src: endpoint(src)?,
            dst: endpoint(dst)?,
            flags: flags.to_owned(),
            seq: None,
            end: None,
            ack: None,
            options,
        };
        for field in rest.split(", ") {
            if let Some(seq) = field.strip_prefix("seq ") {
                match seq.split_once(':') {
                    Some((start, end)) => {
                        segment.seq = Some(start.parse().ok()?);
                        segment.end = Some(end.parse().ok()?);
                    }
                    None => segment.seq = Some(seq.parse().ok()?),
                }
            } else if let Some(ack) = field.strip_prefix("ack ") {
                segment.ack = Some(ack.parse().ok()?);
            }
        }
        Some(segment)
    }

    pub fn is_syn(&self) -> bool {
        self.flags == "S"
    }

    pub fn is_syn_ack(&self) -> bool {
        self.flags == "S."
    }
}

/// tcpdump's form, in short: `10.0.4.2:9000 > 10.0.1.2:40000 [R.] seq 7 ack 9`.
impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            src,
            dst,
            flags,
            seq,
            end,
            ack,
            options,
        } = self;
        write!(f, "{src} > {dst} [{flags}]")?;
        match (seq, end) {
            (Some(seq), Some(end)) => write!(f, " seq {seq}:{end}")?,
            (Some(seq), None) => write!(f, " seq {seq}")?,
            _ => {}
        }
        if let Some(ack) = ack {
            write!(f, " ack {ack}")?;
        }
        if !options.is_empty() {
            write!(f, " options [{options}]")?;
        }
        Ok(())
    }
}

/// One segment a line, for error messages.
pub fn segment_lines(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|segment| format!("\n  {segment}"))
        .collect()
}

/// tcpdump on one link printing TCP segments with absolute sequence numbers, to learn
/// a live connection's numbers (NAT rewrites addresses and ports, never sequence
/// numbers) and to see which segments crossed.
pub struct SegmentCapture {
    process: Process,
}

impl SegmentCapture {
    /// Starts capturing what `filter` (pcap syntax) matches on `iface` in `netns`, and
    /// returns once tcpdump listens.
    pub fn start(netns: &Netns, iface: &str, filter: &str) -> Result<Self> {
        let mut args = vec![
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-S",
            "-l",
            "-p",
            "--immediate-mode",
        ];
        args.extend(filter.split_whitespace());
        let mut process = netns.spawn(args)?;
        poll(
            "tcpdump to listen",
            Duration::from_secs(10),
            || -> Result<Probe<()>> {
                if !process.is_running()? {
                    bail!("tcpdump exited: {}", process.log());
                }
                let log = process.log();
                Ok(if log.contains("listening on") {
                    Probe::Ready(())
                } else {
                    Probe::Pending(log)
                })
            },
        )?;
        Ok(Self { process })
    }

    /// The segments captured so far.
    pub fn segments(&self) -> Vec<Segment> {
        self.process
            .log()
            .lines()
            .filter_map(Segment::parse)
            .collect()
    }

    /// The segments captured so far, after giving in-flight packets `settle`.
    pub fn segments_after(&self, settle: Duration) -> Vec<Segment> {
        std::thread::sleep(settle);
        self.segments()
    }

    /// Waits until a captured segment satisfies `wanted`, and returns it.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Segment) -> bool,
    ) -> Result<Segment> {
        poll(what, timeout, || {
            let segments = self.segments();
            Ok(match segments.iter().find(|segment| wanted(segment)) {
                Some(segment) => Probe::Ready(segment.clone()),
                None => Probe::Pending(format!(
                    "{} segments, the last {:?}",
                    segments.len(),
                    segments.last()
                )),
            })
        })
    }
}

/// Where a [`HeldServer`] stops and waits for the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// After the first [`HeldServer::HEAD`] bytes.
    AfterHead,
    /// Before the last [`HeldServer::CHUNK`] bytes.
    BeforeLastChunk,
}

/// A TCP server (python) that sends one file to the first client, paced, holding twice
/// on the way until the test releases it: the connection stays open, with its
/// sequence numbers still, for as long as the test needs. It then half-closes and
/// reads until the client closes, so its close never resets the connection.
pub struct HeldServer {
    process: Process,
    dir: tempfile::TempDir,
}

impl HeldServer {
    /// Bytes sent before the first hold.
    pub const HEAD: usize = 64 << 10;
    /// Bytes per paced send after the first hold, and held back at the second.
    pub const CHUNK: usize = 16 << 10;
    /// Pause between paced sends.
    const PACE: Duration = Duration::from_millis(10);

    /// Serves `file` on `port` (IPv4 and IPv6) in `netns`; returns once it listens.
    pub fn start(netns: &Netns, port: u16, file: &Path) -> Result<Self> {
        let size = std::fs::metadata(file)
            .with_context(|| format!("reading {}", file.display()))?
            .len();
        ensure!(
            size > (Self::HEAD + 2 * Self::CHUNK) as u64,
            "{} is too small to hold twice",
            file.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("fw-held-")
            .tempdir()
            .context("creating the server's directory")?;
        let mut args = vec![
            PYTHON.to_owned(),
            "-c".to_owned(),
            HELD_SERVER.to_owned(),
            path_text(file)?.to_owned(),
            port.to_string(),
            Self::HEAD.to_string(),
            Self::CHUNK.to_string(),
            Self::PACE.as_secs_f64().to_string(),
        ];
        for hold in [Hold::AfterHead, Hold::BeforeLastChunk] {
            args.push(path_text(&release_path(dir.path(), hold))?.to_owned());
        }
        let mut process = netns.spawn(args)?;
        traffic::wait_for_listener(netns, traffic::Transport::Tcp, port, &mut process)?;
        Ok(Self { process, dir })
    }

    /// Lets the server go on from `hold` (the file is in the filesystem, which every
    /// namespace shares).
    pub fn release(&self, hold: Hold) -> Result<()> {
        let path = self.release_path(hold);
        std::fs::write(&path, b"").with_context(|| format!("creating {}", path.display()))
    }

    /// The file whose creation releases `hold`, for a script that releases it itself.
    pub fn release_path(&self, hold: Hold) -> PathBuf {
        release_path(self.dir.path(), hold)
    }

    /// Waits for the server to exit after serving the whole file.
    pub fn wait(&mut self, timeout: Duration) -> Result<()> {
        let status = self.process.wait_timeout(timeout)?;
        ensure!(
            status.success(),
            "the held server failed ({status}): {}",
            self.process.log()
        );
        Ok(())
    }
}

fn release_path(dir: &Path, hold: Hold) -> PathBuf {
    dir.join(match hold {
        Hold::AfterHead => "release-head",
        Hold::BeforeLastChunk => "release-last",
    })
}

fn path_text(path: &Path) -> Result<&str> {
    path.to_str().context("non-UTF-8 path")
}

/// [`HeldServer`]. A hold waits at most a minute, so a failed test cannot leave it
/// behind for long (the namespace's removal kills it anyway).
const HELD_SERVER: &str = r#"
import os, socket, sys, time
path, port, head, chunk, pace, release_head, release_last = sys.argv[1:]
port, head, chunk, pace = int(port), int(head), int(chunk), float(pace)
data = open(path, "rb").read()

def hold(release):
    deadline = time.monotonic() + 60
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            sys.exit(f"{release} never appeared")
        time.sleep(0.01)

server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
server.bind(("::", port))
server.listen(1)
conn, _ = server.accept()
conn.sendall(data[:head])
hold(release_head)
last = len(data) - chunk
for start in range(head, last, chunk):
    conn.sendall(data[start:min(start + chunk, last)])
    time.sleep(pace)
hold(release_last)
conn.sendall(data[last:])
conn.shutdown(socket.SHUT_WR)
conn.settimeout(30)
while conn.recv(4096):
    pass
conn.close()
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpdump_lines_parse() {
        let data = Segment::parse(
            "19:01:02.123456 IP 10.0.4.2.9000 > 10.0.2.1.40000: Flags [P.], seq \
             1000:1100, ack 7, win 502, options [nop,nop,TS val 1 ecr 2], length 100",
        )
        .unwrap();
        assert_eq!(data.src, "10.0.4.2:9000".parse().unwrap());
        assert_eq!(data.dst, "10.0.2.1:40000".parse().unwrap());
        assert_eq!(data.flags, "P.");
        assert_eq!(
            data.to_string(),
            "10.0.4.2:9000 > 10.0.2.1:40000 [P.] seq 1000:1100 ack 7 options [nop,nop,TS val 1 ecr 2]"
        );
        assert_eq!(
            (data.seq, data.end, data.ack),
            (Some(1000), Some(1100), Some(7))
        );

        let syn = Segment::parse(
            "19:01:02.000001 IP6 fd00:1::2.41000 > fd00:4::2.9000: Flags [S], seq \
             4294967295, win 64800, options [mss 1440,sackOK,TS val 5 ecr 0,nop,wscale 7], \
             length 0",
        )
        .unwrap();
        assert!(syn.is_syn());
        assert_eq!(syn.src, "[fd00:1::2]:41000".parse().unwrap());
        assert_eq!((syn.seq, syn.end, syn.ack), (Some(u32::MAX), None, None));
        assert_eq!(syn.options, "mss 1440,sackOK,TS val 5 ecr 0,nop,wscale 7");

        let ack = Segment::parse(
            "19:01:02.2 IP 10.0.2.1.40000 > 10.0.4.2.9000: Flags [.], ack 66537, win 1024, \
             length 0",
        )
        .unwrap();
        assert_eq!((ack.seq, ack.ack), (None, Some(66537)));
        assert!(ack.options.is_empty());

        assert_eq!(Segment::parse("tcpdump: verbose output suppressed"), None);
        assert_eq!(
            Segment::parse("19:01:02.3 IP 10.0.1.2 > 10.0.4.2: ICMP echo request, id 1"),
            None
        );
    }

    #[test]
    fn mib_sections_parse() {
        let text = "Tcp: RtoAlgorithm MaxConn RetransSegs\nTcp: 1 -1 17\n\
                    Udp: InDatagrams\nUdp: 4\n\
                    TcpExt: SyncookiesSent TCPSackRecovery\nTcpExt: 0 3\n";
        let counters = parse_mib(text, &["Tcp", "TcpExt"]).unwrap();
        assert_eq!(counters["RetransSegs"], 17);
        assert_eq!(counters["TCPSackRecovery"], 3);
        assert!(!counters.contains_key("MaxConn"));
        assert!(!counters.contains_key("InDatagrams"));
    }

    use crate::firewall::stats_with_counters as stats;

    #[test]
    fn window_drops_are_never_zero_by_absence() {
        let without = stats(&[("accept_new", 3), ("drop_invalid_tcp_state", 0)]);
        let err = window_drops(&without).unwrap_err().to_string();
        assert!(err.contains("drop_tcp_window_rst"), "{err}");
        assert!(ensure_no_window_drops(&without).is_err());

        let quiet = stats(&[
            ("drop_tcp_window_seq_above", 0),
            ("drop_tcp_window_ack_above", 0),
            ("drop_tcp_window_rst", 0),
            ("tcp_window_seq_below", 9),
        ]);
        assert_eq!(window_drops(&quiet).unwrap(), 0);
        ensure_no_window_drops(&quiet).unwrap();

        let dropped = stats(&[
            ("drop_tcp_window_seq_above", 1),
            ("drop_tcp_window_ack_above", 0),
            ("drop_tcp_window_rst", 2),
            ("drop_tcp_window_seq_below", 4),
        ]);
        assert_eq!(window_drops(&dropped).unwrap(), 7);
        let err = ensure_no_window_drops(&dropped).unwrap_err().to_string();
        assert!(err.contains("drop_tcp_window_rst"), "{err}");
    }

    #[test]
    fn window_checks_report_every_failure() {
        let mut checks = WindowChecks::default();
        checks.check(Ok(()));
        WindowChecks::default().finish().unwrap();
        checks.check(Err(anyhow::anyhow!("first")));
        checks.check(Err(anyhow::anyhow!("second")));
        let err = checks.finish().unwrap_err().to_string();
        assert!(
            err.contains("2 window-tracking") && err.contains("- second"),
            "{err}"
        );
    }
}

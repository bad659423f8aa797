//! Traffic for the full-table tests: a spoofed SYN flood that runs until told to stop,
//! and idle TCP connections whose server speaks again on demand.

use std::{net::SocketAddrV4, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail, ensure};
use tempfile::TempDir;

use crate::{
    Netns, Probe, Process, poll,
    traffic::{Transport, wait_for_listener},
};

/// Debian's python (the `python3` first on PATH may be another).
const PYTHON: &str = "/usr/bin/python3";

/// How long an idle connection's client may take to see what its server sent.
const DATA_TIMEOUT: Duration = Duration::from_secs(10);

/// SYNs from spoofed sources (198.18.0.0/15, a new address and port per packet) to one
/// address and port, sent as raw Ethernet frames out of an interface, at up to a fixed
/// rate, until [`SynFlood::stop`] and at least the minimum count. Python with a raw
/// `AF_PACKET` socket and precomputed headers rather than scapy, which builds a few
/// thousand packets a second.
pub struct SynFlood {
    process: Process,
    dir: TempDir,
}

/// Packets per second the flood stays under, so that the router under test and the
/// hosts share the machine's CPUs with it.
const FLOOD_RATE: u32 = 20_000;

const SYN_FLOOD: &str = r#"
import os, random, socket, struct, sys, time
iface, dst_mac, dst_ip, dport, minimum, rate, stop = sys.argv[1:8]
dport, minimum, rate = int(dport), int(minimum), int(rate)

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
src_mac = open("/sys/class/net/%s/address" % iface).read().strip()
eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
dst = socket.inet_aton(dst_ip)
sent, start = 0, time.monotonic()
print("started", flush=True)
while sent < minimum or not os.path.exists(stop):
    i = sent
    src = bytes([198, 18 + ((i >> 16) & 1), (i >> 8) & 0xFF, i & 0xFF])
    sport = 1024 + (i * 7919) % 64000
    tcp = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.send(eth + ip + tcp)
    sent += 1
    if sent % 500 == 0:
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
print("sent", sent, flush=True)
"#;

impl SynFlood {
    /// Starts flooding `dst` from `netns` out of `iface` towards the MAC address
    /// `dst_mac` (the router's); it sends at least `minimum` SYNs. Returns once the
    /// sender runs.
    pub fn start(
        netns: &Netns,
        iface: &str,
        dst_mac: &str,
        dst: SocketAddrV4,
        minimum: u32,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("fw-flood-")
            .tempdir()
            .context("creating a temp dir")?;
        let stop = dir.path().join("stop");
        let mut process = netns.spawn([
            PYTHON,
            "-c",
            SYN_FLOOD,
            iface,
            dst_mac,
            &dst.ip().to_string(),
            &dst.port().to_string(),
            &minimum.to_string(),
            &FLOOD_RATE.to_string(),
            &stop.display().to_string(),
        ])?;
        poll("the SYN flood to start", Duration::from_secs(10), || {
            if !process.is_running()? {
                bail!("the SYN flood exited: {}", process.log());
            }
            Ok(if process.log().contains("started") {
                Probe::Ready(())
            } else {
                Probe::Pending(process.log())
            })
        })?;
        Ok(Self { process, dir })
    }

    /// Whether it is still sending.
    pub fn is_running(&mut self) -> Result<bool> {
        self.process.is_running()
    }

    /// Tells the sender to stop once it has sent its minimum, waits, and returns how
    /// many SYNs it sent.
    pub fn stop(mut self) -> Result<u64> {
        std::fs::write(self.dir.path().join("stop"), b"").context("writing the stop file")?;
        let status = self.process.wait_timeout(Duration::from_secs(60))?;
        let log = self.process.log();
        ensure!(status.success(), "the SYN flood failed ({status}): {log}");
        log.lines()
            .find_map(|l| l.strip_prefix("sent "))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no count in the SYN flood's output: {log}"))
    }
}

/// An idle TCP connection: the client sent a line and got one back (so the connection
/// is ESTABLISHED and ASSURED wherever it is tracked), then both sides wait.
/// [`IdleConnection::server_speaks`] makes the server send one more line, and checks
/// that the client receives it. The server keeps listening meanwhile, so SYNs to its
/// port are answered (with SYN cookies when its queue is full) rather than reset.
pub struct IdleConnection {
    server: Process,
    client: Process,
    trigger: PathBuf,
    _dir: TempDir,
}

const IDLE_SERVER: &str = r#"
import os, socket, sys, time
port, trigger = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(128)
conn, peer = srv.accept()
data = b""
while b"\n" not in data:
    chunk = conn.recv(64)
    if not chunk:
        sys.exit("the client closed before its line")
    data += chunk
conn.sendall(b"hello\n")
print("accepted %s:%d" % peer, flush=True)
while not os.path.exists(trigger):
    time.sleep(0.05)
conn.sendall(b"later\n")
print("sent later", flush=True)
time.sleep(600)
"#;

const IDLE_CLIENT: &str = r#"
import socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
c = socket.create_connection((addr, port), timeout=10)
c.settimeout(None)
c.sendall(b"ping\n")
data = b""
for want in (b"hello\n", b"later\n"):
    while want not in data:
        chunk = c.recv(64)
        if not chunk:
            sys.exit("closed by the server side: %r" % data)
        data += chunk
    print(want.decode().strip(), flush=True)
# Stay connected: the test reads the connection's state afterwards.
time.sleep(600)
"#;

impl IdleConnection {
    /// A server on `port` in `server_ns` and a client in `client_ns` connecting to
    /// `connect_to` (the server itself, or a port forward to it). Returns once they
    /// have exchanged their first lines.
    pub fn open(
        server_ns: &Netns,
        port: u16,
        client_ns: &Netns,
        connect_to: SocketAddrV4,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("fw-idle-")
            .tempdir()
            .context("creating a temp dir")?;
        let trigger = dir.path().join("speak");
        let mut server = server_ns.spawn([
            PYTHON,
            "-c",
            IDLE_SERVER,
            &port.to_string(),
            &trigger.display().to_string(),
        ])?;
        wait_for_listener(server_ns, Transport::Tcp, port, &mut server)?;
        let client = client_ns.spawn([
            PYTHON,
            "-c",
            IDLE_CLIENT,
            &connect_to.ip().to_string(),
            &connect_to.port().to_string(),
        ])?;
        let mut idle = Self {
            server,
            client,
            trigger,
            _dir: dir,
        };
        idle.wait_for_client_line("hello")
            .with_context(|| format!("opening an idle connection to {connect_to}"))?;
        Ok(idle)
    }

    /// The port the server saw the client connect from (`ADDR:PORT`).
    pub fn client_as_seen_by_server(&self) -> Result<SocketAddrV4> {
        let log = self.server.log();
        log.lines()
            .find_map(|l| l.strip_prefix("accepted "))
            .and_then(|a| a.trim().parse().ok())
            .with_context(|| format!("no peer in the idle server's output: {log}"))
    }

    /// The server sends its next line; Ok once the client has it.
    pub fn server_speaks(&mut self) -> Result<()> {
        std::fs::write(&self.trigger, b"").context("writing the trigger file")?;
        self.wait_for_client_line("later")
    }

    fn wait_for_client_line(&mut self, line: &str) -> Result<()> {
        let Self { server, client, .. } = self;
        poll(
            &format!("the idle connection's client to read {line:?}"),
            DATA_TIMEOUT,
            || {
                let log = client.log();
                if log.lines().any(|l| l == line) {
                    return Ok(Probe::Ready(()));
                }
                if !client.is_running()? {
                    bail!("the client exited: {log}\nserver: {}", server.log());
                }
                Ok(Probe::Pending(format!(
                    "client: {log}\nserver: {}",
                    server.log()
                )))
            },
        )
    }
}

//! Servers and clients for real traffic: python's http.server and curl for TCP, socat
//! for UDP, ping for ICMP, vsftpd and curl for FTP.
//!
//! curl gets `--noproxy '*'`: a proxy in the environment must never see test traffic.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{Netns, Probe, Process, poll};

/// How long a server may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds a connection attempt waits before it counts as blocked (dropped, not refused).
pub const CONNECT_TIMEOUT_SECS: &str = "2";

/// `http://ADDR:PORT/PATH`, with brackets around an IPv6 address.
pub fn url(addr: IpAddr, port: u16, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match addr {
        IpAddr::V4(addr) => format!("http://{addr}:{port}/{path}"),
        IpAddr::V6(addr) => format!("http://[{addr}]:{port}/{path}"),
    }
}

/// An HTTP server (`/usr/bin/python3 -m http.server`) serving `dir` on `port`, on IPv4
/// and IPv6 (python's dual-stack server clears IPV6_V6ONLY for `--bind ::`). Returns
/// once it listens.
pub fn http_server(netns: &Netns, port: u16, dir: &Path) -> Result<Process> {
    let port_text = port.to_string();
    let dir = dir.to_str().context("non-UTF-8 directory")?;
    let mut server = netns.spawn([
        "/usr/bin/python3",
        "-m",
        "http.server",
        "--bind",
        "::",
        "--directory",
        dir,
        &port_text,
    ])?;
    wait_for_listener(netns, Transport::Tcp, port, &mut server)?;
    Ok(server)
}

/// A UDP echo server on `port`, IPv4 and IPv6: socat answers each datagram from a child
/// process with the same bytes. Returns once it listens.
pub fn udp_echo_server(netns: &Netns, port: u16) -> Result<Process> {
    let mut server = netns.spawn([
        "socat",
        &format!("UDP6-RECVFROM:{port},ipv6only=0,reuseaddr,fork"),
        "PIPE",
    ])?;
    wait_for_listener(netns, Transport::Udp, port, &mut server)?;
    Ok(server)
}

#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Waits until a socket listens on `port` in `netns` (per `ss`), failing early with
/// the server's output if `server` exits.
pub fn wait_for_listener(
    netns: &Netns,
    transport: Transport,
    port: u16,
    server: &mut Process,
) -> Result<()> {
    let flags = match transport {
        Transport::Tcp => "-Hltn",
        Transport::Udp => "-Hlun",
    };
    let what = format!("{transport:?} port {port} to listen in {}", netns.name());
    poll(&what, LISTEN_TIMEOUT, || {
        if let Some(status) = server.try_wait()? {
            bail!(
                "`{}` exited with {status}: {}",
                server.description(),
                server.log()
            );
        }
        let sockets = netns.exec(["ss", flags, "sport", "=", &format!(":{port}")])?;
        Ok(if sockets.trim().is_empty() {
            Probe::Pending("no socket".to_owned())
        } else {
            Probe::Ready(())
        })
    })
}

/// GETs `url` with curl and returns the body; any failure is an error.
pub fn http_get(netns: &Netns, url: &str) -> Result<Vec<u8>> {
    Ok(curl(netns, url, &[])?.stdout)
}

/// Like [`http_get`], from local port `local_port`.
pub fn http_get_from_port(netns: &Netns, url: &str, local_port: u16) -> Result<Vec<u8>> {
    let port = local_port.to_string();
    Ok(curl(netns, url, &["--local-port", &port])?.stdout)
}

/// GETs `url` and returns the body with the address and port curl's connection
/// ended at (`%{remote_ip}:%{remote_port}`): the peer whose replies it accepted.
pub fn http_get_with_peer(netns: &Netns, url: &str) -> Result<(Vec<u8>, SocketAddr)> {
    // `%{stderr}` sends the rest of the write-out to stderr, away from the body; with
    // `--fail` curl writes nothing else there on success.
    let output = curl(
        netns,
        url,
        &["--write-out", "%{stderr}%{remote_ip} %{remote_port}"],
    )?;
    let peer = String::from_utf8_lossy(&output.stderr);
    let peer = parse_peer(&peer).with_context(|| format!("curl's peer of {url}"))?;
    Ok((output.stdout, peer))
}

/// Downloads `url` into the file `target` with no time limit worth the name
/// (`--max-time 120`), for large transfers.
pub fn http_download(netns: &Netns, url: &str, target: &Path) -> Result<()> {
    let target = target.to_str().context("non-UTF-8 path")?;
    curl(netns, url, &["--max-time", "120", "--output", target]).map(drop)
}

/// curl with the suite's fixed options, `extra` (a later `--max-time` wins), then
/// `url`; a failed transfer is an error quoting curl's message.
fn curl(netns: &Netns, url: &str, extra: &[&str]) -> Result<std::process::Output> {
    let mut args = vec![
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--globoff",
        "--noproxy",
        "*",
        "--max-time",
        "10",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let output = netns.run(args)?;
    if !output.status.success() {
        bail!(
            "curl {url} from {} failed ({}): {}",
            netns.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// `ADDR PORT` (as curl's write-out and [`peer_address_server`] print them) as a
/// socket address.
pub fn parse_peer(text: &str) -> Result<SocketAddr> {
    let mut words = text.split_whitespace();
    let (Some(addr), Some(port), None) = (words.next(), words.next(), words.next()) else {
        bail!("expected `ADDR PORT`, got {text:?}");
    };
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("address in {text:?}"))?;
    let port: u16 = port.parse().with_context(|| format!("port in {text:?}"))?;
    Ok(SocketAddr::new(addr, port))
}

/// What happened to a TCP connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    Connected,
    /// A RST or an ICMP error came back: something answered.
    Refused,
    /// Nothing came back within [`CONNECT_TIMEOUT_SECS`]: dropped on the way.
    TimedOut,
}

/// Tries an HTTP request to `addr:port` with a short connect timeout.
pub fn try_connect(netns: &Netns, addr: IpAddr, port: u16) -> Result<ConnectOutcome> {
    let url = url(addr, port, "");
    let output = netns.run([
        "curl",
        "--silent",
        "--globoff",
        "--noproxy",
        "*",
        "--connect-timeout",
        CONNECT_TIMEOUT_SECS,
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        &url,
    ])?;
    // curl's exit codes: 7 = failed to connect, 28 = timeout.
    match output.status.code() {
        Some(0) => Ok(ConnectOutcome::Connected),
        Some(7) => Ok(ConnectOutcome::Refused),
        Some(28) => Ok(ConnectOutcome::TimedOut),
        _ => bail!(
            "curl {url} from {} failed unexpectedly ({}): {}",
            netns.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// What a UDP datagram to a closed or filtered port met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpOutcome {
    Answered,
    /// An ICMP port unreachable came back (ECONNREFUSED on the socket).
    Refused,
    TimedOut,
}

/// Sends one datagram from a connected UDP socket and waits 2 s for an
/// answer or an ICMP error (which a connected socket reports as
/// ECONNREFUSED; socat would only log it).
pub fn udp_probe(netns: &Netns, addr: IpAddr, port: u16) -> Result<UdpOutcome> {
    let family = if addr.is_ipv4() {
        "AF_INET"
    } else {
        "AF_INET6"
    };
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
         s.settimeout(2)\n\
         s.connect(('{addr}', {port}))\n\
         s.send(b'probe')\n\
         try:\n    s.recv(100); print('answered')\n\
         except ConnectionRefusedError:\n    print('refused')\n\
         except socket.timeout:\n    print('timeout')\n"
    );
    let out = netns.exec(["/usr/bin/python3", "-c", &script])?;
    match out.trim() {
        "answered" => Ok(UdpOutcome::Answered),
        "refused" => Ok(UdpOutcome::Refused),
        "timeout" => Ok(UdpOutcome::TimedOut),
        other => bail!("UDP probe of {addr}:{port} printed {other:?}"),
    }
}

/// Sends `payload` to `addr:port` over UDP with socat and returns what came back within
/// a second (empty if nothing did).
pub fn udp_request(netns: &Netns, addr: IpAddr, port: u16, payload: &str) -> Result<String> {
    socat_request(netns, Transport::Udp, addr, port, None, payload)
}

/// Like [`udp_request`], from source port `sport`.
pub fn udp_request_from_port(
    netns: &Netns,
    addr: IpAddr,
    port: u16,
    sport: u16,
    payload: &str,
) -> Result<String> {
    socat_request(netns, Transport::Udp, addr, port, Some(sport), payload)
}

/// Connects to `addr:port` over TCP, sends `payload`, half-closes, and returns what
/// came back before the server closed (or within a second of the half-close).
pub fn tcp_request(netns: &Netns, addr: IpAddr, port: u16, payload: &str) -> Result<String> {
    socat_request(netns, Transport::Tcp, addr, port, None, payload)
}

fn socat_request(
    netns: &Netns,
    transport: Transport,
    addr: IpAddr,
    port: u16,
    sport: Option<u16>,
    payload: &str,
) -> Result<String> {
    let scheme = match transport {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    };
    let mut target = match addr {
        IpAddr::V4(addr) => format!("{scheme}4:{addr}:{port}"),
        IpAddr::V6(addr) => format!("{scheme}6:[{addr}]:{port}"),
    };
    if let Some(sport) = sport {
        target.push_str(&format!(",sourceport={sport}"));
    }
    if let Transport::Tcp = transport {
        target.push_str(&format!(",connect-timeout={CONNECT_TIMEOUT_SECS}"));
    }
    // After stdin's EOF socat waits `-t` seconds for the reply, then exits.
    netns
        .exec_with_input(["socat", "-t", "1", "-", &target], payload.as_bytes())
        .with_context(|| format!("{transport:?} request to {target} from {}", netns.name()))
}

/// A server on IPv4 `port` that answers every TCP connection or UDP datagram with the
/// address and port it came from, `ADDR PORT\n` ([`parse_peer`]): what a server beyond
/// a NAT router sees. Returns once it listens.
pub fn peer_address_server(netns: &Netns, transport: Transport, port: u16) -> Result<Process> {
    let transport_text = match transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    let mut server = netns.spawn([
        "/usr/bin/python3",
        "-c",
        PEER_ADDRESS_SERVER,
        transport_text,
        &port.to_string(),
    ])?;
    wait_for_listener(netns, transport, port, &mut server)?;
    Ok(server)
}

/// [`peer_address_server`]. Python rather than socat's `SYSTEM:`, whose child can die of
/// EPIPE writing the request to a command that has already exited, losing the answer.
/// TCP: the answer, a half-close, then the client's data is drained so closing does not
/// reset the connection.
const PEER_ADDRESS_SERVER: &str = r#"
import socket, sys
transport, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
server = socket.socket(socket.AF_INET, kind)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", port))
if transport == "udp":
    while True:
        _, peer = server.recvfrom(65535)
        server.sendto(f"{peer[0]} {peer[1]}\n".encode(), peer)
server.listen()
while True:
    conn, peer = server.accept()
    with conn:
        conn.settimeout(5)
        try:
            conn.sendall(f"{peer[0]} {peer[1]}\n".encode())
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
        except OSError:
            pass
"#;

/// One echo request with a 2 s wait; `true` if the reply came.
pub fn ping(netns: &Netns, addr: IpAddr) -> Result<bool> {
    let addr_text = addr.to_string();
    let output = netns.run(["ping", "-n", "-c", "1", "-W", "2", &addr_text])?;
    // ping exits 1 when no reply came, 2 on other errors.
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!(
            "ping {addr} from {} failed ({}): {}",
            netns.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// Sends `count` echo requests with identifier `id`, 0.2 s apart, and returns how many
/// replies came back (ping counts only replies that carry its identifier).
pub fn ping_with_id(netns: &Netns, addr: IpAddr, id: u16, count: u32) -> Result<u32> {
    ping_count(netns, addr, count, &["-e", &id.to_string()])
}

/// Sends `count` echo requests of `size` bytes of data (`ping -s`), 0.2 s apart, and
/// returns how many replies came back whole (ping ignores a truncated reply).
pub fn ping_sized(netns: &Netns, addr: IpAddr, size: u32, count: u32) -> Result<u32> {
    ping_count(netns, addr, count, &["-s", &size.to_string()])
}

/// `ping -n -q -c COUNT -i 0.2 -W 2 EXTRA... ADDR`: how many replies came back.
fn ping_count(netns: &Netns, addr: IpAddr, count: u32, extra: &[&str]) -> Result<u32> {
    let (addr_text, count_text) = (addr.to_string(), count.to_string());
    let mut args = vec![
        "ping",
        "-n",
        "-q",
        "-c",
        &count_text,
        "-i",
        "0.2",
        "-W",
        "2",
    ];
    args.extend_from_slice(extra);
    args.push(&addr_text);
    let output = netns.run(args)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `3 packets transmitted, 3 received, 0% packet loss, time 404ms`
    let received = stdout
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| {
            format!(
                "ping {addr} from {} ({}): no summary in {stdout:?}; stderr {:?}",
                netns.name(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
    Ok(received)
}

/// Contents of `hello.txt` in [`web_root`].
pub const HELLO: &[u8] = b"hello through the firewall\n";

/// A temporary directory to serve, holding `hello.txt` ([`HELLO`]).
pub fn web_root() -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("fw-www-")
        .tempdir()
        .context("creating a web root")?;
    std::fs::write(dir.path().join("hello.txt"), HELLO).context("writing hello.txt")?;
    Ok(dir)
}

/// `size` bytes that do not compress and are the same on every run.
pub fn pseudo_random_bytes(size: usize) -> Vec<u8> {
    let mut rng = firewall_common::testing::Rng::xorshift64(0x9e37_79b9_7f4a_7c15);
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The passive data ports [`FtpServer`] announces (`pasv_min_port`-`pasv_max_port`).
pub const FTP_PASV_PORTS: (u16, u16) = (30000, 30100);

/// `ftp://ADDR/PATH`, with brackets around an IPv6 address.
pub fn ftp_url(addr: IpAddr, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match addr {
        IpAddr::V4(addr) => format!("ftp://{addr}/{path}"),
        IpAddr::V6(addr) => format!("ftp://[{addr}]/{path}"),
    }
}

/// An anonymous FTP server: vsftpd in the foreground in a namespace, listening on one
/// address, port 21, with its own config and root in a temp dir. Files to download go
/// in [`FtpServer::pub_dir`] (`/pub`), uploads land in [`FtpServer::upload_dir`]
/// (`/upload`). Killed on drop.
pub struct FtpServer {
    process: Process,
    dir: tempfile::TempDir,
}

impl FtpServer {
    /// Starts vsftpd on `addr` in `netns` (passive and active mode, anonymous downloads
    /// and uploads) and returns once port 21 listens.
    pub fn start(netns: &Netns, addr: IpAddr) -> Result<Self> {
        use std::os::unix::fs::{PermissionsExt as _, chown};

        let dir = tempfile::Builder::new()
            .prefix("fw-ftp-")
            .tempdir()
            .context("creating the FTP server's directory")?;
        let set_mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {mode:o} {}", path.display()))
        };
        // vsftpd refuses a chroot it can write to; the anonymous user (`ftp`) must be
        // able to reach the root, read `pub` and write `upload`.
        set_mode(dir.path(), 0o755)?;
        let root = dir.path().join("root");
        for sub in [root.clone(), root.join("pub"), root.join("upload")] {
            std::fs::create_dir(&sub).with_context(|| format!("creating {}", sub.display()))?;
            set_mode(&sub, 0o755)?;
        }
        let (uid, gid) = ftp_user()?;
        chown(root.join("upload"), Some(uid), Some(gid)).context("chown ftp upload/")?;
        std::fs::create_dir_all(SECURE_CHROOT_DIR)
            .with_context(|| format!("creating {SECURE_CHROOT_DIR}"))?;

        let listen = match addr {
            IpAddr::V4(addr) => format!("listen=YES\nlisten_ipv6=NO\nlisten_address={addr}\n"),
            IpAddr::V6(addr) => format!("listen=NO\nlisten_ipv6=YES\nlisten_address6={addr}\n"),
        };
        let (pasv_min, pasv_max) = FTP_PASV_PORTS;
        let config = format!(
            "{listen}\
             anonymous_enable=YES\n\
             local_enable=NO\n\
             anon_root={root}\n\
             no_anon_password=YES\n\
             write_enable=YES\n\
             anon_upload_enable=YES\n\
             anon_other_write_enable=YES\n\
             anon_umask=022\n\
             pasv_enable=YES\n\
             port_enable=YES\n\
             connect_from_port_20=NO\n\
             seccomp_sandbox=NO\n\
             background=NO\n\
             xferlog_enable=NO\n\
             pasv_min_port={pasv_min}\n\
             pasv_max_port={pasv_max}\n\
             secure_chroot_dir={SECURE_CHROOT_DIR}\n",
            root = root.display(),
        );
        let config_path = dir.path().join("vsftpd.conf");
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        // vsftpd refuses a config file that is not owned by root or is writable by others.
        set_mode(&config_path, 0o600)?;
        let mut process = netns.spawn([Path::new("/usr/sbin/vsftpd"), &config_path])?;
        wait_for_listener(netns, Transport::Tcp, 21, &mut process)?;
        Ok(Self { process, dir })
    }

    /// The directory served as `/pub`.
    pub fn pub_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("root").join("pub")
    }

    /// The directory served as `/upload`, where anonymous uploads are stored.
    pub fn upload_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("root").join("upload")
    }

    /// The vsftpd process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Where vsftpd's unprivileged processes chroot (`secure_chroot_dir`).
const SECURE_CHROOT_DIR: &str = "/var/run/vsftpd/empty";

/// Uid and gid of the `ftp` user, vsftpd's anonymous user (Debian's package creates it).
fn ftp_user() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["ftp", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .context("no `ftp` user in /etc/passwd: install Debian's vsftpd package")
}

/// How the FTP client opens its data connection; curl's commands for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpMode {
    /// The server listens: EPSV (229), curl's default.
    Epsv,
    /// The server listens: PASV (227) (`--disable-epsv`).
    Pasv,
    /// The client listens: EPRT (`-P -`), curl's default for active mode.
    Eprt,
    /// The client listens: PORT (`-P - --disable-eprt`).
    Port,
}

impl FtpMode {
    fn curl_args(self) -> &'static [&'static str] {
        match self {
            Self::Epsv => &[],
            Self::Pasv => &["--disable-epsv"],
            Self::Eprt => &["--ftp-port", "-"],
            Self::Port => &["--ftp-port", "-", "--disable-eprt"],
        }
    }
}

/// Seconds curl waits for a control or data connection before giving up.
const FTP_CONNECT_TIMEOUT_SECS: &str = "3";

/// Downloads `url` (`ftp://...`) into the file `target` in `mode`.
pub fn ftp_download(netns: &Netns, url: &str, target: &Path, mode: FtpMode) -> Result<()> {
    let target = target.to_str().context("non-UTF-8 path")?;
    let mut extra = vec![
        "--max-time",
        "60",
        "--connect-timeout",
        FTP_CONNECT_TIMEOUT_SECS,
        "--output",
        target,
    ];
    extra.extend_from_slice(mode.curl_args());
    curl(netns, url, &extra).map(drop)
}

/// Uploads the file `source` to `url` (`ftp://.../upload/NAME`) in `mode`.
pub fn ftp_upload(netns: &Netns, source: &Path, url: &str, mode: FtpMode) -> Result<()> {
    let source = source.to_str().context("non-UTF-8 path")?;
    let mut extra = vec![
        "--max-time",
        "60",
        "--connect-timeout",
        FTP_CONNECT_TIMEOUT_SECS,
        "--upload-file",
        source,
    ];
    extra.extend_from_slice(mode.curl_args());
    curl(netns, url, &extra).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            url("fd00:2::2".parse().unwrap(), 8080, "/f"),
            "http://[fd00:2::2]:8080/f"
        );
        assert_eq!(
            url("10.0.2.2".parse().unwrap(), 80, ""),
            "http://10.0.2.2:80/"
        );
        assert_eq!(
            ftp_url("fd00:2::2".parse().unwrap(), "/pub/f"),
            "ftp://[fd00:2::2]/pub/f"
        );
    }
}

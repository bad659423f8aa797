//! Servers and clients for real traffic: python's http.server and curl for TCP, socat
//! for UDP, ping for ICMP.
//!
//! curl gets `--noproxy '*'`: a proxy in the environment must never see test traffic.

use std::{net::IpAddr, path::Path, time::Duration};

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
    let output = netns.run([
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--globoff",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        url,
    ])?;
    if !output.status.success() {
        bail!(
            "curl {url} from {} failed ({}): {}",
            netns.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
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

/// Sends `payload` to `addr:port` over UDP with socat and returns what came back within
/// a second (empty if nothing did).
pub fn udp_request(netns: &Netns, addr: IpAddr, port: u16, payload: &str) -> Result<String> {
    let target = match addr {
        IpAddr::V4(addr) => format!("UDP4:{addr}:{port}"),
        IpAddr::V6(addr) => format!("UDP6:[{addr}]:{port}"),
    };
    // After stdin's EOF socat waits `-t` seconds for the reply, then exits.
    netns
        .exec_with_input(["socat", "-t", "1", "-", &target], payload.as_bytes())
        .with_context(|| format!("UDP request to {addr}:{port} from {}", netns.name()))
}

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

/// `size` bytes that do not compress and are the same on every run (xorshift64).
pub fn pseudo_random_bytes(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(size + 8);
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
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
    }
}

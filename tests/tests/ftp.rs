//! The FTP helper (`[[helper]] proto = "tcp" port = 21 kind = "ftp"`): a vsftpd server,
//! curl as the client. In the router topology the WAN host has no IPv4 route back to
//! the LAN ([`RouterOptions::nat`]), so an active-mode data connection from the server
//! reaches the client only if the helper rewrote the PORT/EPRT command and let the
//! connection in as RELATED. In host mode the passive data connection to the firewalled
//! host is let in only by the expectation the 227/229 reply created.

use std::{net::IpAddr, path::Path};

use anyhow::{Context as _, Result, bail, ensure};
use tests::{
    Chain, Config, CtEntry, DualAddr, Family, Firewall, Helper, Probe, Rule, Stats, poll,
    topology::{self, HOST, PEER, ROUTER_WAN, RouterOptions, RouterTopology, WAN_HOST},
    traffic::{self, ConnectOutcome, FtpMode, FtpServer},
};

/// Size of the file downloaded and uploaded: several MB, so the transfer spans many
/// segments after the control connection's sequence numbers were shifted.
const FILE_SIZE: usize = 4 << 20;
const FILE_NAME: &str = "file.bin";

fn v4(addr: DualAddr) -> IpAddr {
    addr.get(Family::V4)
}

/// LAN host, router and WAN host; the WAN host reaches the LAN over IPv6 only.
fn nat_topology() -> Result<RouterTopology> {
    topology::router_with("ftp", RouterOptions::nat())
}

/// The router with `masquerade = true` on `wan0` and the FTP helper on port 21.
fn masquerade_with_ftp() -> Config {
    Config::router()
        .with_masquerade("wan0")
        .with_helper(Helper::ftp(21))
}

/// The host of the host topology serving FTP: port 21 open, with or without the helper.
fn host_ftp_server_config(helper: bool) -> Config {
    let config = Config::host().with_rule(Rule::accept_tcp_port(Chain::Input, 21));
    if helper {
        config.with_helper(Helper::ftp(21))
    } else {
        config
    }
}

/// How much counter `name` grew from `before` to `after`.
fn grew(before: &Stats, after: &Stats, name: &str) -> Result<u64> {
    Ok(after.counter(name)?.saturating_sub(before.counter(name)?))
}

/// No `drop_ftp_*` or `drop_nat_*` counter has counted anything, nor was a bounce refused.
fn ensure_no_ftp_drops(stats: &Stats) -> Result<()> {
    let drops: Vec<_> = stats
        .counters
        .iter()
        .filter(|(name, count)| {
            (name.starts_with("drop_ftp_")
                || name.starts_with("drop_nat_")
                || *name == "ftp_bounce_refused")
                && **count > 0
        })
        .collect();
    ensure!(drops.is_empty(), "FTP or NAT dropped packets: {drops:?}");
    Ok(())
}

/// An FTP server on `addr` in `netns` with [`FILE_NAME`] ([`FILE_SIZE`] bytes) in
/// `/pub`; returns the server and the file's SHA-256.
fn server_with_file(netns: &tests::Netns, addr: IpAddr) -> Result<(FtpServer, String)> {
    let server = FtpServer::start(netns, addr)?;
    let path = server.pub_dir().join(FILE_NAME);
    std::fs::write(&path, traffic::pseudo_random_bytes(FILE_SIZE))
        .with_context(|| format!("writing {}", path.display()))?;
    let sha = traffic::sha256_file(&path)?;
    Ok((server, sha))
}

/// Downloads `/pub/FILE_NAME` from `addr` in `mode` and checks it is intact.
fn download_intact(
    fw: &Firewall,
    netns: &tests::Netns,
    addr: IpAddr,
    mode: FtpMode,
    expected_sha: &str,
    scratch: &Path,
) -> Result<()> {
    let url = traffic::ftp_url(addr, &format!("pub/{FILE_NAME}"));
    let target = scratch.join(format!("{mode:?}.bin"));
    traffic::ftp_download(netns, &url, &target, mode)
        .with_context(|| format!("{mode:?} download of {url}; {}", drops_seen(fw)))?;
    let sha = traffic::sha256_file(&target)?;
    ensure!(
        sha == expected_sha,
        "{mode:?} download of {url} is corrupt: sha256 {sha}, expected {expected_sha} \
         ({} of {FILE_SIZE} bytes)",
        std::fs::metadata(&target)?.len()
    );
    Ok(())
}

/// The firewall's non-zero drop counters, to explain a failed transfer.
fn drops_seen(fw: &Firewall) -> String {
    match fw.stats() {
        Ok(stats) => {
            let drops: Vec<_> = stats
                .counters
                .iter()
                .filter(|(name, count)| name.starts_with("drop_") && **count > 0)
                .collect();
            format!("firewall drops so far: {drops:?}")
        }
        Err(err) => format!("stats unavailable: {err:#}"),
    }
}

fn scratch_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("fw-ftp-client-")
        .tempdir()
        .context("creating a scratch dir")
}

#[test]
fn passive_ftp_download_through_masquerade_is_intact() -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade_with_ftp())?;
    let (_server, sha) = server_with_file(&topo.wan, v4(WAN_HOST))?;
    let scratch = scratch_dir()?;

    let before = fw.stats()?;
    for mode in [FtpMode::Epsv, FtpMode::Pasv] {
        download_intact(&fw, &topo.lan, v4(WAN_HOST), mode, &sha, scratch.path())?;
    }
    let after = fw.stats()?;
    ensure!(
        grew(&before, &after, "ftp_expect_created")? >= 2,
        "ftp_expect_created did not count the 229 and 227 replies: {after:?}"
    );
    ensure_no_ftp_drops(&after)
}

/// Active mode: the server connects from the WAN to the address and port the helper
/// wrote into the client's command; only the expectation lets that in.
fn active_ftp_download_through_masquerade(mode: FtpMode) -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade_with_ftp())?;
    let (_server, sha) = server_with_file(&topo.wan, v4(WAN_HOST))?;
    let scratch = scratch_dir()?;

    let before = fw.stats()?;
    download_intact(&fw, &topo.lan, v4(WAN_HOST), mode, &sha, scratch.path())?;
    let after = fw.stats()?;
    for counter in ["ftp_rewritten", "ftp_expect_created", "accept_expected"] {
        ensure!(
            grew(&before, &after, counter)? >= 1,
            "{counter} did not grow in a {mode:?} download: {after:?}"
        );
    }
    ensure_no_ftp_drops(&after)?;

    // The data connection, as the router saw it arrive: from the server to the
    // router's WAN address, translated to the LAN host.
    let data = data_connection_from_the_wan(&fw)?;
    ensure!(
        data.reply.src == v4(topology::LAN_HOST),
        "the data connection was not translated to the LAN host: {data:#?}"
    );
    Ok(())
}

/// The one TCP connection the WAN host opened to the router's WAN address: an
/// active-mode data connection.
fn data_connection_from_the_wan(fw: &Firewall) -> Result<CtEntry> {
    let server = v4(WAN_HOST).to_string();
    let router = v4(ROUTER_WAN).to_string();
    let entries = fw.conntrack(&["-p", "tcp", "-s", &server, "-d", &router])?;
    match <[CtEntry; 1]>::try_from(entries) {
        Ok([entry]) => Ok(entry),
        Err(entries) => bail!(
            "expected one data connection from {server} to {router}, found {}: {entries:#?}",
            entries.len()
        ),
    }
}

#[test]
fn active_ftp_download_with_eprt_through_masquerade_is_let_in_as_related() -> Result<()> {
    active_ftp_download_through_masquerade(FtpMode::Eprt)
}

#[test]
fn active_ftp_download_with_port_through_masquerade_is_let_in_as_related() -> Result<()> {
    active_ftp_download_through_masquerade(FtpMode::Port)
}

#[test]
fn passive_and_active_uploads_through_masquerade_are_stored_intact() -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade_with_ftp())?;
    let server = FtpServer::start(&topo.wan, v4(WAN_HOST))?;
    let scratch = scratch_dir()?;
    let source = scratch.path().join("upload.bin");
    std::fs::write(&source, traffic::pseudo_random_bytes(FILE_SIZE))?;
    let sha = traffic::sha256_file(&source)?;

    for mode in [FtpMode::Epsv, FtpMode::Eprt] {
        let name = format!("{mode:?}.bin");
        let url = traffic::ftp_url(v4(WAN_HOST), &format!("upload/{name}"));
        let ((), expected) = fw.count_during("accept_expected", || {
            traffic::ftp_upload(&topo.lan, &source, &url, mode)
                .with_context(|| format!("{mode:?} upload to {url}; {}", drops_seen(&fw)))
        })?;
        let stored = server.upload_dir().join(&name);
        let stored_sha = traffic::sha256_file(&stored)?;
        ensure!(
            stored_sha == sha,
            "{mode:?} upload stored {} bytes with sha256 {stored_sha}, expected {sha}",
            std::fs::metadata(&stored)?.len()
        );
        if mode == FtpMode::Eprt {
            ensure!(
                expected >= 1,
                "accept_expected did not count the active upload's data connection"
            );
        }
    }
    ensure_no_ftp_drops(&fw.stats()?)
}

#[test]
fn ports_never_announced_stay_closed_after_an_ftp_session() -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade_with_ftp())?;
    let (_server, sha) = server_with_file(&topo.wan, v4(WAN_HOST))?;
    let scratch = scratch_dir()?;
    download_intact(
        &fw,
        &topo.lan,
        v4(WAN_HOST),
        FtpMode::Eprt,
        &sha,
        scratch.path(),
    )?;
    let announced = data_connection_from_the_wan(&fw)?
        .orig
        .dport
        .context("data connection without dport")?;

    // One past the announced port, a port nothing announced, and the announced port
    // itself: its expectation was consumed by the data connection.
    let unannounced = if announced == 47_123 { 47_124 } else { 47_123 };
    let router = v4(ROUTER_WAN);
    for port in [announced.wrapping_add(1), unannounced, announced] {
        let (outcome, dropped) = fw.count_during("drop_policy", || {
            traffic::try_connect(&topo.wan, router, port)
        })?;
        ensure!(
            outcome == ConnectOutcome::TimedOut,
            "TCP {router}:{port} from the WAN after an FTP session announcing port \
             {announced}: {outcome:?}, expected the SYN dropped"
        );
        ensure!(
            dropped >= 1,
            "drop_policy did not count the SYN to port {port}"
        );
    }
    Ok(())
}

/// The firewalled host serves FTP; the peer downloads passively (EPSV on IPv6, PASV
/// and EPSV on IPv4), so each data connection comes in to the host's passive port.
fn passive_download_from_a_firewalled_host(family: Family) -> Result<()> {
    let topo = topology::host("ftph")?;
    let fw = Firewall::start(&topo.host, &host_ftp_server_config(true))?;
    let (_server, sha) = server_with_file(&topo.host, HOST.get(family))?;
    let scratch = scratch_dir()?;
    let modes: &[FtpMode] = match family {
        Family::V4 => &[FtpMode::Pasv, FtpMode::Epsv],
        Family::V6 => &[FtpMode::Epsv],
    };

    let before = fw.stats()?;
    for &mode in modes {
        download_intact(
            &fw,
            &topo.peer,
            HOST.get(family),
            mode,
            &sha,
            scratch.path(),
        )?;
    }
    let after = fw.stats()?;
    let expected = grew(&before, &after, "accept_expected")?;
    ensure!(
        expected >= modes.len() as u64,
        "accept_expected grew by {expected} in {} passive downloads: {after:?}",
        modes.len()
    );
    ensure_no_ftp_drops(&after)
}

#[test]
fn passive_ftp_data_connection_to_a_firewalled_host_is_let_in_as_related() -> Result<()> {
    passive_download_from_a_firewalled_host(Family::V4)
}

#[test]
fn passive_ftp_download_from_a_firewalled_host_fails_without_the_helper() -> Result<()> {
    let topo = topology::host("ftph")?;
    let fw = Firewall::start(&topo.host, &host_ftp_server_config(false))?;
    let (_server, _sha) = server_with_file(&topo.host, v4(HOST))?;
    let scratch = scratch_dir()?;

    let url = traffic::ftp_url(v4(HOST), &format!("pub/{FILE_NAME}"));
    let target = scratch.path().join("blocked.bin");
    let (result, dropped) = fw.count_during("drop_policy", || {
        Ok(traffic::ftp_download(
            &topo.peer,
            &url,
            &target,
            FtpMode::Pasv,
        ))
    })?;
    ensure!(
        result.is_err(),
        "a passive download without the helper succeeded: the data connection got in \
         without an expectation"
    );
    ensure!(
        dropped >= 1,
        "drop_policy did not count the blocked data connection ({:#})",
        result.unwrap_err()
    );
    let stats = fw.stats()?;
    ensure!(
        stats.counter("accept_expected")? == 0 && stats.counter("ftp_expect_created")? == 0,
        "expectations without a helper: {stats:?}"
    );
    // The control connection itself worked: the input rule let it in.
    let control = fw.conntrack(&["-p", "tcp", "--dport", "21"])?;
    ensure!(
        !control.is_empty(),
        "no control connection in the table: the failure was not the data connection"
    );
    Ok(())
}

#[test]
fn epsv_over_ipv6_through_the_router_works() -> Result<()> {
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade_with_ftp())?;
    let server_addr = WAN_HOST.get(Family::V6);
    let (_server, sha) = server_with_file(&topo.wan, server_addr)?;
    let scratch = scratch_dir()?;

    let before = fw.stats()?;
    download_intact(
        &fw,
        &topo.lan,
        server_addr,
        FtpMode::Epsv,
        &sha,
        scratch.path(),
    )?;
    let after = fw.stats()?;
    ensure!(
        grew(&before, &after, "ftp_expect_created")? >= 1,
        "ftp_expect_created did not count the 229 reply over IPv6: {after:?}"
    );
    ensure!(
        grew(&before, &after, "ftp_rewritten")? == 0,
        "an IPv6 command was rewritten, but IPv6 is never translated: {after:?}"
    );
    ensure_no_ftp_drops(&after)
}

#[test]
fn epsv_data_connection_to_a_firewalled_host_over_ipv6_is_let_in_as_related() -> Result<()> {
    passive_download_from_a_firewalled_host(Family::V6)
}

#[test]
fn conntrack_list_shows_the_ftp_helper_of_the_control_connection() -> Result<()> {
    // Host mode: the control connection is the peer's, to the firewalled host.
    let topo = topology::host("ftph")?;
    let fw = Firewall::start(&topo.host, &host_ftp_server_config(true))?;
    let (_server, sha) = server_with_file(&topo.host, v4(HOST))?;
    let scratch = scratch_dir()?;
    download_intact(
        &fw,
        &topo.peer,
        v4(HOST),
        FtpMode::Pasv,
        &sha,
        scratch.path(),
    )?;

    // Right after the transfer the control connection is closing, but still listed.
    let filter = ["-p", "tcp", "--dport", "21"];
    let text = fw.cli(["conntrack", "list"].iter().chain(&filter))?;
    ensure!(
        text.lines().count() == 1 && text.contains("helper=ftp"),
        "expected one control connection with `helper=ftp`, as conntrack -L shows it: {text}"
    );
    let json = fw.cli(["conntrack", "list", "--json"].iter().chain(&filter))?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&json).context("parsing `conntrack list --json`")?;
    let [control] = entries.as_slice() else {
        bail!("expected one control connection entry: {json}");
    };
    ensure!(
        control["orig"]["src"] == v4(topology::PEER).to_string()
            && control["orig"]["dst"] == v4(HOST).to_string(),
        "wrong control connection: {control:#}"
    );
    // The JSON form has no helper field yet: a missing feature, reported, not a
    // failure of this test.
    let names_helper = control.as_object().is_some_and(|fields| {
        fields
            .iter()
            .any(|(key, value)| key.contains("helper") || value.to_string().contains("ftp"))
    });
    if !names_helper {
        eprintln!(
            "note: `conntrack list --json` does not name the FTP helper that the text \
             form shows as helper=ftp: {control}"
        );
    }
    Ok(())
}

#[test]
fn conntrack_expect_list_shows_the_announced_data_connection() -> Result<()> {
    let topo = topology::host("ftpx")?;
    let fw = Firewall::start(&topo.host, &host_ftp_server_config(true))?;
    let (_server, _sha) = server_with_file(&topo.host, HOST.get(Family::V4))?;
    // A client that asks for passive mode and then waits, so the
    // expectation stays pending while we look at it.
    let script = format!(
        "import ftplib, time\n\
         f = ftplib.FTP()\n\
         f.connect('{}', 21, timeout=5)\n\
         f.login()\n\
         print(f.sendcmd('PASV'), flush=True)\n\
         time.sleep(8)\n",
        HOST.get(Family::V4)
    );
    let client = topo.peer.spawn(["/usr/bin/python3", "-c", &script])?;
    let shown = poll(
        "an expectation in `conntrack expect list --json`",
        std::time::Duration::from_secs(6),
        || {
            let out = fw.cli(["conntrack", "expect", "list", "--json"])?;
            let list: serde_json::Value = serde_json::from_str(&out)?;
            Ok(match list.as_array() {
                Some(items) if !items.is_empty() => Probe::Ready(items.clone()),
                _ => Probe::Pending(format!("{out}; client log: {}", client.log())),
            })
        },
    )?;
    // The 227 announced HOST:port; the expectation is peer → host:port.
    let log = client.log();
    let nums: Vec<u16> = log
        .split(['(', ')'])
        .nth(1)
        .context("a 227 reply with numbers in parentheses")?
        .split(',')
        .map(|n| n.trim().parse::<u16>())
        .collect::<std::result::Result<_, _>>()?;
    ensure!(nums.len() == 6, "227 reply: {log}");
    let port = nums[4] * 256 + nums[5];
    let x = &shown[0];
    ensure!(
        x["dport"].as_u64() == Some(u64::from(port))
            && x["dst"].as_str() == Some(&HOST.get(Family::V4).to_string())
            && x["src"].as_str() == Some(&PEER.get(Family::V4).to_string())
            && x["helper"].as_str() == Some("ftp"),
        "expectation {x} for a 227 announcing port {port}"
    );
    let text = fw.cli(["conntrack", "expect", "list"])?;
    ensure!(
        text.contains(&format!("dport={port}")) && text.contains("helper=ftp"),
        "text form: {text}"
    );
    Ok(())
}

#[test]
fn active_ftp_over_ipv6_eprt_data_connection_from_the_wan_is_let_in_as_related() -> Result<()> {
    // IPv6 is not translated: the WAN server connects back to the LAN
    // host's own address, which only the EPRT |2| expectation lets in.
    // (curl cannot do active mode over IPv6 in these namespaces: it fails
    // formatting its own address; Python's ftplib sends EPRT |2|.)
    let topo = nat_topology()?;
    let fw = Firewall::start(&topo.rtr, &masquerade_with_ftp())?;
    let server_addr = WAN_HOST.get(Family::V6);
    let (_server, sha) = server_with_file(&topo.wan, server_addr)?;
    let scratch = scratch_dir()?;
    let out = scratch.path().join("active6.bin");

    let before = fw.stats()?;
    let script = format!(
        "import ftplib\n\
         f = ftplib.FTP()\n\
         f.connect('{server_addr}', 21, timeout=10)\n\
         f.login()\n\
         f.set_pasv(False)\n\
         with open('{}', 'wb') as o:\n    f.retrbinary('RETR pub/{FILE_NAME}', o.write)\n\
         f.quit()\n",
        out.display()
    );
    topo.lan
        .exec(["/usr/bin/python3", "-c", &script])
        .with_context(|| {
            format!(
                "active IPv6 download; firewall drops so far: {}",
                drops_seen(&fw)
            )
        })?;
    ensure!(
        traffic::sha256_file(&out)? == sha,
        "the file downloaded over active IPv6 FTP differs"
    );
    let after = fw.stats()?;
    ensure!(
        grew(&before, &after, "accept_expected")? >= 1,
        "the server's IPv6 data connection was not let in as expected: {after:?}"
    );
    ensure!(
        grew(&before, &after, "ftp_rewritten")? == 0,
        "an IPv6 command was rewritten, but IPv6 is never translated: {after:?}"
    );
    ensure_no_ftp_drops(&after)
}

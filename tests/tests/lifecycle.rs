//! The daemon's life: enforcing survives the daemon (pins), a restarted daemon adopts
//! the live table, `down` and `--detach-on-exit` leave nothing behind, and `check`
//! validates a config without touching the kernel.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use tests::{
    Config, Family, Firewall, Probe, attachments, firewall_bin, has_xdp_program, poll,
    topology::{self, LAN_HOST, WAN_HOST},
    traffic::{self, ConnectOutcome},
};

/// Size of the restart test's download and its rate: long enough to restart mid-way.
const TRANSFER_BYTES: usize = 40 << 20;
const TRANSFER_RATE: &str = "5M";

/// Inbound to the LAN is dropped and counted, outbound works, for both families.
fn check_enforcing(fw: &Firewall, topo: &topology::RouterTopology) -> Result<()> {
    for family in [Family::V4, Family::V6] {
        let (outcome, dropped) = fw.count_during("drop_policy", || {
            traffic::try_connect(&topo.wan, LAN_HOST.get(family), 8080)
        })?;
        ensure!(
            outcome == ConnectOutcome::TimedOut && dropped >= 1,
            "WAN → LAN over {family}: {outcome:?} with {dropped} policy drops, expected dropped"
        );
        let url = traffic::url(WAN_HOST.get(family), 8080, "hello.txt");
        traffic::http_get(&topo.lan, &url).with_context(|| format!("outbound over {family}"))?;
    }
    Ok(())
}

#[test]
fn status_reports_attachment_only_while_attached() -> Result<()> {
    let topo = topology::router("lc")?;
    let mut fw = Firewall::prepare(&topo.rtr, &Config::router())?;
    ensure!(!fw.is_attached()?, "status exits 0 before anything ran");
    fw.run(&[])?;
    ensure!(fw.is_attached()?, "status exits 1 while running");
    let found = attachments(&topo.rtr)?;
    ensure!(
        ["lan0", "wan0"]
            .iter()
            .all(|ifname| found.iter().any(|line| line.starts_with(ifname))),
        "status exits 0 but lan0 and wan0 are not both attached: {found:?}"
    );
    Ok(())
}

#[test]
fn firewall_keeps_enforcing_after_the_daemon_is_killed() -> Result<()> {
    let topo = topology::router("lc")?;
    let mut fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let _lan_http = traffic::http_server(&topo.lan, 8080, www.path())?;
    let _wan_http = traffic::http_server(&topo.wan, 8080, www.path())?;

    fw.kill()?;
    ensure!(fw.is_attached()?, "status exits 1 after SIGKILL");
    check_enforcing(&fw, &topo).context("after SIGKILL of the daemon")
}

fn tcp_entry_to_wan(fw: &Firewall) -> Result<tests::CtEntry> {
    let mut entries = fw.conntrack(&["-p", "tcp", "--dport", "8080"])?;
    ensure!(entries.len() == 1, "expected one TCP entry: {entries:#?}");
    Ok(entries.remove(0))
}

fn restarted_daemon_adopts_a_live_transfer(family: Family) -> Result<()> {
    let topo = topology::router("lc")?;
    // Keep the client's receive buffer small: with autotuning it can grow
    // to hold most of the file, the server then finishes sending before the
    // restart, and the connection is already closing when we look at it.
    topo.lan
        .sysctl("net.ipv4.tcp_rmem", "4096 131072 1048576")?;
    let mut fw = Firewall::start(&topo.rtr, &Config::router())?;
    let www = traffic::web_root()?;
    let source = www.path().join("big.bin");
    std::fs::write(&source, traffic::pseudo_random_bytes(TRANSFER_BYTES))?;
    let _server = traffic::http_server(&topo.wan, 8080, www.path())?;
    let out_dir = tempfile::tempdir()?;
    let target = out_dir.path().join("big.bin");
    let target_text = target.to_str().context("non-UTF-8 temp path")?;
    let url = traffic::url(WAN_HOST.get(family), 8080, "big.bin");

    let mut download = topo.lan.spawn([
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--globoff",
        "--noproxy",
        "*",
        "--limit-rate",
        TRANSFER_RATE,
        "--max-time",
        "120",
        "--output",
        target_text,
        &url,
    ])?;
    let file_size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    poll(
        "the download to pass 1 MiB",
        Duration::from_secs(10),
        || {
            if let Some(status) = download.try_wait()? {
                anyhow::bail!("curl exited early ({status}): {}", download.log());
            }
            let size = file_size(&target);
            Ok(if size >= 1 << 20 {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{size} bytes"))
            })
        },
    )?;

    let before = tcp_entry_to_wan(&fw)?;
    ensure!(
        before.tcp_state.as_deref() == Some("ESTABLISHED"),
        "transfer not ESTABLISHED: {before:#?}"
    );
    let scans_before = fw.stats()?.ager.scans;

    let status = fw.stop()?;
    ensure!(status.success(), "daemon exited with {status} on SIGTERM");
    ensure!(
        fw.is_attached()?,
        "status exits 1 after SIGTERM: pins must stay"
    );
    fw.run(&[])?;
    ensure!(
        download.is_running()?,
        "the transfer ended before the restart; lower TRANSFER_RATE to test anything"
    );

    // Adoption: the entry survived with its counters, and the new daemon's ager runs.
    poll(
        "the adopted entry to keep counting",
        Duration::from_secs(5),
        || {
            let now = tcp_entry_to_wan(&fw)?;
            Ok(if now.packets.reply > before.packets.reply {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{now:?}"))
            })
        },
    )?;
    poll(
        "the restarted daemon's ager to scan",
        Duration::from_secs(30),
        || {
            let scans = fw.stats()?.ager.scans;
            Ok(if scans > scans_before {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{scans} scans, {scans_before} before the restart"))
            })
        },
    )?;

    let status = download.wait_timeout(Duration::from_secs(120))?;
    ensure!(
        status.success(),
        "curl failed ({status}): {}",
        download.log()
    );
    let (sent, received) = (
        traffic::sha256_file(&source)?,
        traffic::sha256_file(&target)?,
    );
    ensure!(
        sent == received,
        "the download differs from the source ({} of {TRANSFER_BYTES} bytes)",
        file_size(&target)
    );
    let daemon = fw.daemon().context("no daemon")?;
    ensure!(
        daemon.is_running()?,
        "the restarted daemon died: {}",
        daemon.log()
    );
    Ok(())
}

#[test]
fn restarted_daemon_adopts_a_live_transfer_over_ipv4() -> Result<()> {
    restarted_daemon_adopts_a_live_transfer(Family::V4)
}

#[test]
fn restarted_daemon_adopts_a_live_transfer_over_ipv6() -> Result<()> {
    restarted_daemon_adopts_a_live_transfer(Family::V6)
}

/// Nothing of ours in `netns`: no XDP, no tcx, nothing in `bpftool net show`.
fn check_nothing_attached(topo: &topology::RouterTopology) -> Result<()> {
    let found = attachments(&topo.rtr)?;
    ensure!(found.is_empty(), "still attached: {found:?}");
    for ifname in ["lan0", "wan0"] {
        ensure!(
            !has_xdp_program(&topo.rtr, ifname)?,
            "`ip -d link show {ifname}` still shows xdp"
        );
    }
    let net = topo.rtr.exec(["bpftool", "-j", "net", "show"])?;
    let net: serde_json::Value = serde_json::from_str(&net).context("bpftool net show")?;
    let listed = net
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_object)
        .flat_map(|sections| sections.values())
        .any(|section| section.as_array().is_some_and(|progs| !progs.is_empty()));
    ensure!(!listed, "`bpftool net show` still lists programs: {net}");
    Ok(())
}

fn check_pin_dir_empty(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let left: Vec<_> = entries.flatten().map(|entry| entry.file_name()).collect();
        ensure!(left.is_empty(), "{} still holds {left:?}", dir.display());
    }
    Ok(())
}

#[test]
fn down_removes_every_attachment_and_pin() -> Result<()> {
    let topo = topology::router("lc")?;
    let mut fw = Firewall::start(&topo.rtr, &Config::router())?;
    ensure!(
        !attachments(&topo.rtr)?.is_empty(),
        "nothing attached while running: the checks below would prove nothing"
    );
    let www = traffic::web_root()?;
    let _lan_http = traffic::http_server(&topo.lan, 8080, www.path())?;

    fw.stop()?;
    fw.down()?;
    check_nothing_attached(&topo)?;
    check_pin_dir_empty(fw.pin_dir())?;
    ensure!(!fw.is_attached()?, "status exits 0 after down");
    fw.down().context("a second down must succeed too")?;

    let outcome = traffic::try_connect(&topo.wan, LAN_HOST.get(Family::V4), 8080)?;
    ensure!(
        outcome == ConnectOutcome::Connected,
        "the WAN still cannot reach the LAN after down: {outcome:?}"
    );
    Ok(())
}

#[test]
fn detach_on_exit_detaches_on_sigterm() -> Result<()> {
    let topo = topology::router("lc")?;
    let mut fw = Firewall::prepare(&topo.rtr, &Config::router())?;
    fw.run(&["--detach-on-exit"])?;
    let status = fw.stop()?;
    ensure!(status.success(), "daemon exited with {status} on SIGTERM");
    ensure!(!fw.is_attached()?, "status exits 0 after a detaching exit");
    check_nothing_attached(&topo)
}

#[test]
fn check_accepts_a_valid_config_and_rejects_an_unknown_role() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let check = |text: &str| -> Result<std::process::Output> {
        let path = dir.path().join("firewall.toml");
        std::fs::write(&path, text)?;
        let output = std::process::Command::new(firewall_bin()?)
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()?;
        Ok(output)
    };
    let valid = Config::router()
        .with_rule(tests::Rule::accept_tcp_port(tests::Chain::Forward, 22))
        .to_toml();
    let output = check(&valid)?;
    ensure!(
        output.status.success(),
        "check rejected a valid config ({}): {}\n{valid}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let output = check("[[interface]]\nname = \"eth0\"\nrole = \"dmz\"\n")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "check accepted role \"dmz\"");
    ensure!(
        stderr.contains("dmz"),
        "the error does not name the bad value: {stderr}"
    );
    // Valid rules that the datapath's tables cannot hold: 5,000 address
    // ranges of ~15 prefixes each, more than the 65,536 prefixes per bank.
    let mut big = Config::router().to_toml();
    for i in 0..5000u32 {
        let (a, b) = (i / 100, (i % 100) * 2);
        big += &format!(
            "\n[[rule]]\nchain = \"input\"\nsrc_range = \"10.{a}.{b}.1-10.{a}.{}.254\"\naction = \"drop\"\n",
            b + 1
        );
    }
    let output = check(&big)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "check accepted a ruleset the tables cannot hold"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("firewall: error:"))
        .collect();
    ensure!(
        errors.len() == 1 && errors[0].contains("address prefixes"),
        "not a one-line error about the tables' capacity: {stderr}"
    );
    Ok(())
}

#[test]
fn run_refuses_to_adopt_pins_of_an_incompatible_layout() -> Result<()> {
    // Pins left by a version whose connection entries had another size: the
    // new programs would read them with the wrong offsets, so `run` must
    // refuse with a clear error and attach nothing.
    let topo = topology::router("lc")?;
    let fw = Firewall::prepare(&topo.rtr, &Config::router())?;
    let maps = fw.pin_dir().join("maps");
    std::fs::create_dir_all(&maps)?;
    let conntrack = maps.join("CONNTRACK");
    let path = conntrack.to_string_lossy().into_owned();
    topo.rtr.exec([
        "bpftool",
        "map",
        "create",
        &path,
        // The table's type is this version's (an LRU is refused for its
        // type first: see `tests/table.rs`); its entry size is not.
        "type",
        "hash",
        "key",
        "40",
        "value",
        "104",
        "entries",
        "1024",
        "name",
        "CONNTRACK",
    ])?;

    let out = fw.command(["run", "--config", &fw.config_path().to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "run adopted an incompatible table: {stderr}"
    );
    ensure!(
        stderr.contains("incompatible version")
            && stderr.contains("value size 104,")
            && stderr.contains("down"),
        "unclear error: {stderr}"
    );
    ensure!(
        stderr
            .lines()
            .filter(|l| l.starts_with("firewall: error:"))
            .count()
            == 1,
        "the error is not one line: {stderr}"
    );
    check_nothing_attached(&topo)?;
    ensure!(
        conntrack.exists(),
        "the old pins must be left for the user to remove"
    );
    Ok(())
}

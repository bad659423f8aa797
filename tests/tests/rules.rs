//! Rules at run time: `firewall reload` swaps the ruleset under live traffic
//! without losing a packet or a tracked connection, keeps the counters of
//! rules that did not change, and refuses a bad config or a change it cannot
//! apply in place, leaving the running ruleset alone.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use tests::{
    Chain, Config, Family, Firewall, Probe, Rule, poll,
    topology::{self, LAN_HOST, WAN_HOST},
    traffic::{self, ConnectOutcome},
};

const TRANSFER_BYTES: usize = 24 << 20;
const TRANSFER_RATE: &str = "4M";

/// The router config plus `extra` FORWARD accepts of ports 20000.. and
/// finally `open` ports.
fn config_with(extra: u16, open: &[u16]) -> Config {
    let mut config = Config::router();
    for i in 0..extra {
        config = config.with_rule(Rule::accept_tcp_port(Chain::Forward, 20_000 + i));
    }
    for &port in open {
        config = config.with_rule(Rule::accept_tcp_port(Chain::Forward, port));
    }
    config
}

fn write_config(fw: &Firewall, config: &Config) -> Result<()> {
    std::fs::write(fw.config_path(), config.to_toml())
        .with_context(|| format!("writing {}", fw.config_path().display()))
}

/// `rules list --json`: (rule text, packets) of the FORWARD chain.
fn forward_rules(fw: &Firewall) -> Result<Vec<(String, u64)>> {
    let out = fw.cli(["rules", "list", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("rules list --json")?;
    let chain = v
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["chain"] == "FORWARD")
        .context("no FORWARD chain")?;
    Ok(chain["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or_default().to_owned(),
                r["packets"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

fn packets_of(rules: &[(String, u64)], needle: &str) -> Result<u64> {
    rules
        .iter()
        .find(|(text, _)| text.contains(needle))
        .map(|(_, p)| *p)
        .with_context(|| format!("no rule with {needle:?} in {rules:?}"))
}

#[test]
fn reload_under_a_transfer_loses_nothing_and_keeps_unchanged_counters() -> Result<()> {
    let family = Family::V4;
    let topo = topology::router("rl")?;
    // A small receive buffer keeps the transfer running across the reloads.
    topo.lan
        .sysctl("net.ipv4.tcp_rmem", "4096 131072 1048576")?;
    let mut fw = Firewall::start(&topo.rtr, &config_with(0, &[8081]))?;
    let www = traffic::web_root()?;
    let source = www.path().join("big.bin");
    std::fs::write(&source, traffic::pseudo_random_bytes(TRANSFER_BYTES))?;
    let _wan_http = traffic::http_server(&topo.wan, 8080, www.path())?;
    let _lan_8081 = traffic::http_server(&topo.lan, 8081, www.path())?;
    let _lan_8082 = traffic::http_server(&topo.lan, 8082, www.path())?;

    // The 8081 accept counts one connection before any reload.
    let lan = LAN_HOST.get(family);
    ensure!(traffic::try_connect(&topo.wan, lan, 8081)? == ConnectOutcome::Connected);
    let counted = packets_of(&forward_rules(&fw)?, "dport 8081")?;
    ensure!(counted >= 1, "the 8081 rule did not count");
    ensure!(
        traffic::try_connect(&topo.wan, lan, 8082)? == ConnectOutcome::TimedOut,
        "8082 open before the reload"
    );

    let out_dir = tempfile::tempdir()?;
    let target = out_dir.path().join("big.bin");
    let target_text = target.to_str().context("non-UTF-8 temp path")?;
    let url = traffic::url(WAN_HOST.get(family), 8080, "big.bin");
    let mut download = topo.lan.spawn([
        "curl",
        "--silent",
        "--show-error",
        "--fail",
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
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    poll("the download to start", Duration::from_secs(10), || {
        Ok(if size(&target) >= 1 << 20 {
            Probe::Ready(())
        } else {
            Probe::Pending(format!("{} bytes", size(&target)))
        })
    })?;

    // Four reloads mid-transfer, between a small and a 2,000-rule ruleset;
    // the last one opens 8082.
    let plans: [(u16, &[u16]); 4] = [
        (2000, &[8081]),
        (0, &[8081]),
        (2000, &[8081]),
        (0, &[8081, 8082]),
    ];
    for (extra, open) in plans {
        write_config(&fw, &config_with(extra, open))?;
        let out = fw.cli(["reload"])?;
        ensure!(
            out.contains(&format!("{} rules live", extra as usize + open.len())),
            "reload said: {out}"
        );
    }
    ensure!(
        download.is_running()?,
        "the transfer ended before the reloads; lower TRANSFER_RATE to test anything"
    );
    let rules = forward_rules(&fw)?;
    ensure!(
        packets_of(&rules, "dport 8081")? >= counted,
        "the unchanged 8081 rule lost its count: {rules:?}"
    );
    ensure!(
        traffic::try_connect(&topo.wan, lan, 8082)? == ConnectOutcome::Connected,
        "8082 still closed after the reload that opened it"
    );

    let status = download.wait_timeout(Duration::from_secs(120))?;
    ensure!(
        status.success(),
        "curl failed ({status}): {}",
        download.log()
    );
    ensure!(
        traffic::sha256_file(&source)? == traffic::sha256_file(&target)?,
        "the download differs from the source"
    );
    let daemon = fw.daemon().context("no daemon")?;
    ensure!(daemon.is_running()?, "the daemon died: {}", daemon.log());
    Ok(())
}

#[test]
fn a_bad_reload_is_refused_and_the_running_rules_stay() -> Result<()> {
    let topo = topology::router("rb")?;
    let fw = Firewall::start(&topo.rtr, &config_with(0, &[8081]))?;
    let before = forward_rules(&fw)?;

    // A rule the config refuses: the CLI reports it, the daemon is not asked.
    let mut text = config_with(0, &[8081, 8082]).to_toml();
    text += "\n[[rule]]\nchain = \"forward\"\nproto = \"icmp\"\ndport = 80\naction = \"accept\"\n";
    std::fs::write(fw.config_path(), &text)?;
    let out = fw.command(["reload"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a bad config reloaded: {err}");
    ensure!(
        err.trim().lines().count() == 1 && err.contains("dport") && err.contains("firewall.toml:"),
        "not a one-line error naming the file, line and key: {err}"
    );

    // A change only a restart can make: the daemon refuses it.
    topo.rtr.exec([
        "ip", "link", "add", "extra0", "type", "veth", "peer", "name", "extra1",
    ])?;
    let moved = config_with(0, &[8081, 8082]).with_interface("extra0", tests::Role::Lan);
    write_config(&fw, &moved)?;
    let out = fw.command(["reload"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "an interface change reloaded: {err}");
    ensure!(err.contains("refused"), "unexpected error: {err}");
    ensure!(
        fw.daemon_log().contains("[[interface]] changed"),
        "the daemon's log does not say why: {}",
        fw.daemon_log()
    );

    ensure!(
        forward_rules(&fw)? == before,
        "the running rules changed after refused reloads"
    );
    ensure!(
        traffic::try_connect(&topo.wan, LAN_HOST.get(Family::V4), 8082)?
            == ConnectOutcome::TimedOut,
        "a refused reload opened 8082"
    );
    Ok(())
}

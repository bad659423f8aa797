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

/// TCP and UDP to the LAN host, and ping, from `from`: what each met.
fn probes(topo: &topology::RouterTopology, from_wan: bool, family: Family) -> Result<Vec<String>> {
    let (src, dst) = if from_wan {
        (&topo.wan, LAN_HOST.get(family))
    } else {
        (&topo.lan, WAN_HOST.get(family))
    };
    let mut out = Vec::new();
    for port in [8081u16, 8082, 8083, 8084] {
        out.push(format!(
            "tcp {port}: {:?}",
            traffic::try_connect(src, dst, port)?
        ));
    }
    out.push(format!(
        "udp 5353: {:?}",
        traffic::udp_probe(src, dst, 5353)?
    ));
    out.push(format!("ping: {}", traffic::ping(src, dst)?));
    Ok(out)
}

/// Servers on every probed port of the LAN and WAN hosts.
fn servers(topo: &topology::RouterTopology, www: &Path) -> Result<Vec<tests::Process>> {
    let mut all = Vec::new();
    for ns in [&topo.lan, &topo.wan] {
        for port in [8081u16, 8082, 8083, 8084] {
            all.push(traffic::http_server(ns, port, www)?);
        }
        all.push(traffic::udp_echo_server(ns, 5353)?);
    }
    Ok(all)
}

#[test]
fn reject_refuses_tcp_and_udp_at_once_and_log_lines_reach_firewall_log() -> Result<()> {
    let topo = topology::router("rj")?;
    let config = Config::router().with_tail(
        "[[rule]]\nchain = \"forward\"\nproto = \"tcp\"\ndport = 8081\naction = \"log\"\nlog_prefix = \"wan-8081 \"\n\n\
         [[rule]]\nchain = \"forward\"\nproto = \"tcp\"\ndport = 8081\naction = \"reject\"\nreject_with = \"tcp-reset\"\n\n\
         [[rule]]\nchain = \"forward\"\nproto = \"udp\"\ndport = 5353\naction = \"reject\"\n",
    );
    let fw = Firewall::start(&topo.rtr, &config)?;
    let www = traffic::web_root()?;
    let _servers = servers(&topo, www.path())?;
    let bin = tests::firewall_bin()?;
    let pin_dir = fw.pin_dir().to_str().context("pin dir")?.to_owned();
    for family in [Family::V4, Family::V6] {
        let mut log = topo.rtr.spawn([
            bin.to_str().context("binary path")?,
            "--pin-dir",
            &pin_dir,
            "log",
            "-n",
            "1",
        ])?;
        let lan = LAN_HOST.get(family);
        let started = std::time::Instant::now();
        let tcp = traffic::try_connect(&topo.wan, lan, 8081)?;
        ensure!(
            tcp == ConnectOutcome::Refused,
            "TCP to a REJECTed port over {family}: {tcp:?}"
        );
        let udp = traffic::udp_probe(&topo.wan, lan, 5353)?;
        ensure!(
            udp == traffic::UdpOutcome::Refused,
            "UDP to a REJECTed port over {family}: {udp:?}"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "refusals took {:?}: not immediate",
            started.elapsed()
        );
        let status = log.wait_timeout(Duration::from_secs(5))?;
        let text = log.log();
        ensure!(status.success(), "firewall log failed: {text}");
        let want = format!(
            "wan-8081 IN=wan0 OUT=lan0 SRC={} DST={lan}",
            WAN_HOST.get(family)
        );
        ensure!(
            text.contains(&want) && text.contains("PROTO=TCP") && text.contains("DPT=8081 SYN"),
            "no LOG line like {want:?} in: {text}"
        );
    }
    ensure!(
        fw.counter("drop_reject")? >= 4,
        "drop_reject: {:?}",
        fw.stats()?
    );
    ensure!(fw.counter("log_emitted")? >= 2);
    // Everything else stays closed, and the LAN still gets out.
    ensure!(
        traffic::try_connect(&topo.wan, LAN_HOST.get(Family::V4), 8082)?
            == ConnectOutcome::TimedOut
    );
    ensure!(
        traffic::try_connect(&topo.lan, WAN_HOST.get(Family::V4), 8082)?
            == ConnectOutcome::Connected
    );
    Ok(())
}

/// The seeds' ruleset as iptables lines, on interfaces that are both `wan`
/// (so only the rules decide), behaves like the TOML default (`lan0` lan,
/// `wan0` wan, no rules).
#[test]
fn seeds_ruleset_as_iptables_lines_enforces_the_default_policy() -> Result<()> {
    let topo = topology::router("rs")?;
    let www = traffic::web_root()?;
    let _servers = servers(&topo, www.path())?;
    let mut outcomes = Vec::new();
    let seeds = Config {
        interfaces: vec![
            tests::Interface::new("lan0", tests::Role::Wan),
            tests::Interface::new("wan0", tests::Role::Wan),
        ],
        ..Config::default()
    }
    .with_head(
        "iptables = [\n\
         \"-P INPUT DROP\",\n\
         \"-P FORWARD DROP\",\n\
         \"-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\",\n\
         \"-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\",\n\
         \"-A FORWARD -i lan0 -o wan0 -j ACCEPT\",\n\
         ]",
    );
    for config in [Config::router(), seeds] {
        let fw = Firewall::start(&topo.rtr, &config)?;
        let mut seen = Vec::new();
        for from_wan in [false, true] {
            seen.extend(probes(&topo, from_wan, Family::V4)?);
        }
        outcomes.push(seen);
        drop(fw);
    }
    ensure!(
        outcomes[0] == outcomes[1],
        "TOML default: {:?}\niptables lines: {:?}",
        outcomes[0],
        outcomes[1]
    );
    // And the outcomes are the stateful policy, not an accident.
    ensure!(outcomes[0][0] == "tcp 8081: Connected", "{:?}", outcomes[0]);
    ensure!(outcomes[0][6] == "tcp 8081: TimedOut", "{:?}", outcomes[0]);
    Ok(())
}

/// Real `iptables-save` output: a ruleset enforced by iptables, dumped,
/// imported with `firewall import`, and enforced by the firewall gives the
/// same verdicts to the same probes.
#[test]
fn imported_iptables_save_gives_the_same_verdicts_as_iptables() -> Result<()> {
    let ruleset = "*filter\n\
        :INPUT DROP [0:0]\n\
        :FORWARD DROP [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n\
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A FORWARD -i lan0 -o wan0 -j ACCEPT\n\
        -A FORWARD -i wan0 -p tcp -m multiport --dports 8081,8082 -j ACCEPT\n\
        -A FORWARD -i wan0 -p tcp --dport 8083 -j REJECT --reject-with tcp-reset\n\
        -A FORWARD -i wan0 -p udp --dport 5353 -j REJECT --reject-with icmp-port-unreachable\n\
        -A FORWARD -i wan0 -p icmp --icmp-type echo-request -j ACCEPT\n\
        COMMIT\n";
    let topo = topology::router("ri")?;
    let www = traffic::web_root()?;
    let _servers = servers(&topo, www.path())?;
    topo.rtr
        .exec_with_input(["iptables-restore"], ruleset.as_bytes())?;
    let mut by_iptables = Vec::new();
    for from_wan in [false, true] {
        by_iptables.extend(probes(&topo, from_wan, Family::V4)?);
    }
    let saved = topo.rtr.exec(["iptables-save"])?;
    topo.rtr.exec_with_input(
        ["iptables-restore"],
        b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    )?;

    let dir = tempfile::tempdir()?;
    let dump = dir.path().join("saved.rules");
    std::fs::write(&dump, &saved)?;
    let imported = std::process::Command::new(tests::firewall_bin()?)
        .arg("import")
        .arg(&dump)
        .output()?;
    ensure!(
        imported.status.success(),
        "firewall import refused real iptables-save output:\n{saved}\n{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let mut fw = Firewall::prepare(&topo.rtr, &Config::router())?;
    std::fs::write(fw.config_path(), &imported.stdout)?;
    fw.run(&[])?;
    let mut by_firewall = Vec::new();
    for from_wan in [false, true] {
        by_firewall.extend(probes(&topo, from_wan, Family::V4)?);
    }
    ensure!(
        by_iptables == by_firewall,
        "iptables: {by_iptables:?}\nfirewall: {by_firewall:?}\nconfig:\n{}",
        String::from_utf8_lossy(&imported.stdout)
    );
    // The probes exercise every kind of verdict.
    for want in ["Connected", "Refused", "TimedOut"] {
        ensure!(
            by_iptables.iter().any(|o| o.ends_with(want)),
            "no probe {want}: {by_iptables:?}"
        );
    }
    Ok(())
}

//! `cargo xtask bench`: per-packet cost of the datapath in the kernel (BPF_PROG_TEST_RUN,
//! measured by `firewall/examples/bench.rs`), scale figures, and end-to-end rates in the
//! lab topology for plain routing, iptables (conntrack + MASQUERADE) and this firewall.
//!
//! Prints one Markdown table and writes the same data as JSON to
//! `target/bench/<unix-seconds>.json`. Every figure is the median of several samples,
//! with min–max; ratios are computed from figures of the same run.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail, ensure};
use tests::{
    Config, Firewall, Netns, Process,
    topology::{self, RouterOptions, RouterTopology, WAN_HOST},
};

use crate::{cargo, heading, run_visible, setup, target_dir};

/// End-to-end samples per figure.
const E2E_SAMPLES: usize = 5;
const UDP_DST_PORT: u16 = 9;
const IPERF_PORT: u16 = 5201;
const CONN_PORT: u16 = 8081;
/// The bench-only programs of the firewall's object (`firewall::BARE_*`; xtask cannot
/// depend on the firewall crate).
const BARE_FORWARD: &str = "bare_forward";
const BARE_PASS: &str = "bare_pass";

pub fn run() -> Result<()> {
    setup::run()?;
    heading("build (release)");
    run_visible(&mut cargo([
        "build",
        "--release",
        "-p",
        "firewall",
        "--bins",
        "--examples",
    ]))?;
    let release = target_dir().join("release");
    let bench_bin = release.join("examples").join("bench");

    heading("per-packet and scale (BPF_PROG_TEST_RUN)");
    let output = Command::new(&bench_bin)
        .arg("kernel")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bench_bin.display()))?;
    ensure!(
        output.status.success(),
        "{} kernel failed ({})",
        bench_bin.display(),
        output.status
    );
    let kernel_text = String::from_utf8(output.stdout).context("bench output is not UTF-8")?;
    let kernel = Json::parse(&kernel_text).context("parsing the bench example's JSON")?;

    heading("end to end (lab topology)");
    // SAFETY: no other thread exists yet that could read the environment.
    unsafe { std::env::set_var("FIREWALL_BIN", release.join("firewall")) };
    let e2e = end_to_end(&bench_bin);

    let mut rows = kernel_rows(&kernel)?;
    match &e2e {
        Ok(results) => rows.extend(e2e_rows(results)),
        Err(err) => {
            eprintln!("error: end-to-end part failed: {err:#}");
            rows.push(Row::missing(
                "end to end",
                "all end-to-end figures",
                &format!("failed: {err:#}"),
            ));
        }
    }
    let machine = machine();
    let goals = goals(&kernel, e2e.as_deref().ok());
    let table = markdown(&rows, &machine) + &goals_markdown(&goals);
    heading("results");
    print!("{table}");

    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let path = dir.join(format!("{stamp}.json"));
    std::fs::write(&path, to_json(stamp, &machine, &rows, &goals, &kernel_text))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("\nwritten to {}", path.display());
    e2e.map(|_| ())
}

// ---------------------------------------------------------------------------
// Rows of the table.

struct Row {
    group: String,
    label: String,
    unit: String,
    samples: Vec<f64>,
    /// e.g. `1.42× bare XDP`.
    ratio: String,
    note: String,
}

impl Row {
    fn missing(group: &str, label: &str, note: &str) -> Row {
        Row {
            group: group.into(),
            label: label.into(),
            unit: String::new(),
            samples: Vec::new(),
            ratio: String::new(),
            note: note.into(),
        }
    }

    fn median(&self) -> Option<f64> {
        median(&self.samples)
    }
}

fn median(samples: &[f64]) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn spread(samples: &[f64]) -> Option<(f64, f64)> {
    let min = samples.iter().copied().reduce(f64::min)?;
    let max = samples.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// What each per-packet figure is compared with: (id, baseline id, baseline name).
const KERNEL_RATIOS: [(&str, &str, &str); 24] = [
    ("fw_xdp_arp", "bare_xdp", "bare XDP"),
    ("est_tcp", "est_tcp_nofp", "fast path off"),
    ("est_tcp_nofp", "bare_xdp", "bare XDP"),
    (
        "est_fastpath_single",
        "bare_forward_single",
        "bare forwarding program",
    ),
    (
        "bare_forward_single",
        "bare_xdp_single",
        "bare XDP (single runs)",
    ),
    ("invalid_synfin", "bare_xdp", "bare XDP"),
    ("est_tcp_1k", "bare_xdp", "bare XDP"),
    ("est_tcp_1m", "est_tcp_1k", "1k connections"),
    ("nat_xdp_reply", "bare_xdp", "bare XDP"),
    ("frag_xdp_later", "nat_xdp_reply", "established packet"),
    (
        "frag_tc_ingress_later",
        "nat_tc_ingress_reply",
        "established packet",
    ),
    (
        "nat_tc_ingress_reply",
        "bare_tc_single",
        "bare TC (single runs)",
    ),
    (
        "nat_tc_egress_orig",
        "bare_tc_single",
        "bare TC (single runs)",
    ),
    ("new_rules_0_none", "bare_xdp", "bare XDP"),
    ("new_rules_10_none", "new_rules_0_none", "0 rules"),
    ("new_rules_1000_none", "new_rules_10_none", "10 rules"),
    ("new_rules_10000_none", "new_rules_10_none", "10 rules"),
    ("new_rules_10_last", "new_rules_0_none", "0 rules"),
    ("new_rules_1000_last", "new_rules_10_last", "10 rules"),
    ("new_rules_10000_last", "new_rules_10_last", "10 rules"),
    (
        "install_10000",
        "iptables_restore_10000",
        "iptables-restore",
    ),
    ("bare_xdp_single", "bare_xdp", "bare XDP (repeat)"),
    (
        "bare_tc_single",
        "bare_xdp_single",
        "bare XDP (single runs)",
    ),
    ("ager_plan", "ager_snapshot", "snapshot"),
];

fn kernel_rows(kernel: &Json) -> Result<Vec<Row>> {
    let results = kernel
        .get("results")
        .and_then(Json::as_array)
        .context("no results in the bench output")?;
    let mut medians = BTreeMap::new();
    let mut rows = Vec::new();
    for r in results {
        let text = |k: &str| r.get(k).and_then(Json::as_str).unwrap_or("").to_owned();
        let samples: Vec<f64> = r
            .get("samples")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_f64).collect())
            .unwrap_or_default();
        let id = text("id");
        if let Some(m) = median(&samples) {
            medians.insert(id.clone(), m);
        }
        rows.push((
            id,
            Row {
                group: text("group"),
                label: text("label"),
                unit: text("unit"),
                samples,
                ratio: String::new(),
                note: text("note"),
            },
        ));
    }
    for (id, row) in &mut rows {
        if let Some((_, base, name)) = KERNEL_RATIOS.iter().find(|(i, ..)| i == id)
            && let (Some(m), Some(b)) = (medians.get(id.as_str()), medians.get(*base))
        {
            row.ratio = format!("{:.2}× {name}", m / b);
        }
    }
    Ok(rows.into_iter().map(|(_, row)| row).collect())
}

// ---------------------------------------------------------------------------
// End to end.

/// XDP attach mode of a lab setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Generic,
    Native,
}

impl Mode {
    fn word(self) -> &'static str {
        match self {
            Mode::Generic => "generic",
            Mode::Native => "native",
        }
    }
}

/// A router configuration of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    Routing,
    /// iptables with conntrack, the seeds' policy and MASQUERADE.
    Iptables,
    /// The same policy without NAT: the stateful half alone.
    IptablesNoNat,
    /// The bench's stateless `bare_forward` XDP program: the hook's limit.
    Bare(Mode),
    /// This firewall with the same policy and masquerade (`xdp_mode = auto`: generic
    /// on veth). Translated flows never take the fast path.
    FirewallMasq,
    /// This firewall without NAT.
    Firewall {
        mode: Mode,
        fast_path: bool,
    },
    /// iptables with this many FORWARD rules before the LAN → WAN accept, none
    /// matching the flood, whose packets stay NEW (unreplied): each walks them all.
    RulesIptables(usize),
    /// This firewall with the same rules (`xdp_mode = auto`, no NAT).
    RulesFirewall(usize),
}

impl Setup {
    const ALL: [Setup; 13] = [
        Setup::Routing,
        Setup::Iptables,
        Setup::IptablesNoNat,
        Setup::Bare(Mode::Generic),
        Setup::Bare(Mode::Native),
        Setup::FirewallMasq,
        Setup::Firewall {
            mode: Mode::Generic,
            fast_path: true,
        },
        Setup::Firewall {
            mode: Mode::Generic,
            fast_path: false,
        },
        Setup::Firewall {
            mode: Mode::Native,
            fast_path: true,
        },
        Setup::RulesIptables(10),
        Setup::RulesIptables(10_000),
        Setup::RulesFirewall(10),
        Setup::RulesFirewall(10_000),
    ];

    fn name(self) -> String {
        match self {
            Setup::Routing => "plain routing".into(),
            Setup::RulesIptables(n) => {
                format!("iptables conntrack, {n} FORWARD rules, NEW (unreplied) UDP")
            }
            Setup::RulesFirewall(n) => {
                format!("firewall, {n} forward rules, NEW (unreplied) UDP")
            }
            Setup::Iptables => "iptables conntrack + MASQUERADE".into(),
            Setup::IptablesNoNat => "iptables conntrack, no NAT".into(),
            Setup::Bare(mode) => format!("bare XDP forwarding program, {}", mode.word()),
            Setup::FirewallMasq => "firewall + masquerade (generic, fast path on)".into(),
            Setup::Firewall { mode, fast_path } => format!(
                "firewall, no NAT, {}, fast path {}",
                mode.word(),
                if fast_path { "on" } else { "off" }
            ),
        }
    }

    fn nat(self) -> bool {
        matches!(self, Setup::Iptables | Setup::FirewallMasq)
    }

    fn native(self) -> bool {
        matches!(
            self,
            Setup::Bare(Mode::Native)
                | Setup::Firewall {
                    mode: Mode::Native,
                    ..
                }
        )
    }

    /// The setups each figure of this one is compared with, and their short names.
    /// UDP only: these setups measure the rule walk, which TCP figures would not.
    fn rules(self) -> bool {
        matches!(self, Setup::RulesIptables(_) | Setup::RulesFirewall(_))
    }

    fn baselines(self) -> Vec<(Setup, &'static str)> {
        let fw_generic_on = Setup::Firewall {
            mode: Mode::Generic,
            fast_path: true,
        };
        match self {
            Setup::Routing | Setup::RulesIptables(10) => vec![],
            Setup::RulesIptables(_) => vec![(Setup::RulesIptables(10), "10 rules")],
            Setup::RulesFirewall(n) => vec![
                (Setup::RulesIptables(n), "iptables, same rules"),
                (Setup::RulesFirewall(10), "10 rules"),
            ],
            Setup::Iptables | Setup::IptablesNoNat | Setup::Bare(Mode::Generic) => {
                vec![(Setup::Routing, "routing")]
            }
            Setup::Bare(Mode::Native) => vec![
                (Setup::Bare(Mode::Generic), "bare generic"),
                (Setup::Routing, "routing"),
            ],
            Setup::FirewallMasq => vec![
                (Setup::Iptables, "iptables+MASQ"),
                (Setup::Routing, "routing"),
            ],
            Setup::Firewall {
                mode: Mode::Generic,
                fast_path,
            } => {
                let mut v = vec![
                    (Setup::IptablesNoNat, "iptables"),
                    (Setup::Bare(Mode::Generic), "bare generic"),
                ];
                if fast_path {
                    v.push((
                        Setup::Firewall {
                            mode: Mode::Generic,
                            fast_path: false,
                        },
                        "fast path off",
                    ));
                }
                v
            }
            Setup::Firewall {
                mode: Mode::Native, ..
            } => vec![
                (Setup::Bare(Mode::Native), "bare native"),
                (fw_generic_on, "firewall generic"),
            ],
        }
    }
}

struct E2e {
    setup: Setup,
    udp_pps: Vec<f64>,
    /// Share of the UDP packets the fast path forwarded, for the firewall setups.
    udp_fast_pathed: Option<f64>,
    tcp_mbps: Vec<f64>,
    conns_per_s: Vec<f64>,
    /// Metrics (`tcp`, `conn`) that could not be measured, with the error.
    failed: Vec<(&'static str, String)>,
}

fn end_to_end(bench_bin: &Path) -> Result<Vec<E2e>> {
    let mut out = Vec::new();
    for setup in Setup::ALL {
        println!("--- {}", setup.name());
        // One configuration that cannot be measured (native XDP on veth is
        // fragile) is reported in its rows; it does not void the others.
        let result = e2e_one(setup, bench_bin).unwrap_or_else(|err| {
            eprintln!("{} failed: {err:#}", setup.name());
            let why = format!("{err:#}");
            E2e {
                setup,
                udp_pps: Vec::new(),
                udp_fast_pathed: None,
                tcp_mbps: Vec::new(),
                conns_per_s: Vec::new(),
                failed: vec![("udp", why.clone()), ("tcp", why.clone()), ("conn", why)],
            }
        });
        out.push(result);
    }
    Ok(out)
}

/// Runs `bench xdp PROGRAM MODE IFACES...` in `netns` and waits until the program is
/// attached; the returned guard detaches it when dropped.
fn hold_xdp(
    bench_bin: &Path,
    netns: &Netns,
    program: &str,
    mode: Mode,
    ifaces: &[&str],
) -> Result<Process> {
    let bin = bench_bin.to_string_lossy().into_owned();
    let mut args = vec![bin.as_str(), "xdp", program, mode.word()];
    args.extend_from_slice(ifaces);
    let process = netns.spawn(args)?;
    for iface in ifaces {
        tests::poll(
            &format!("{program} on {iface} in {}", netns.name()),
            Duration::from_secs(10),
            || {
                Ok(if tests::has_xdp_program(netns, iface)? {
                    tests::Probe::Ready(())
                } else {
                    tests::Probe::Pending(String::new())
                })
            },
        )?;
    }
    Ok(process)
}

fn e2e_one(setup: Setup, bench_bin: &Path) -> Result<E2e> {
    // Without NAT the WAN host needs return routes; with it, it must not have them.
    let options = if setup.nat() {
        RouterOptions::nat()
    } else {
        RouterOptions::default()
    };
    let topo = topology::router_with("bench", options)?;
    let mut programs = Vec::new();
    if setup.native() {
        // A veth delivers XDP frames redirected to it only if its peer has NAPI on,
        // which an XDP program does (the issue's measurement did the same).
        for netns in [&topo.lan, &topo.wan] {
            programs.push(hold_xdp(
                bench_bin,
                netns,
                BARE_PASS,
                Mode::Native,
                &["eth0"],
            )?);
        }
    }
    let mut firewall = None;
    match setup {
        Setup::Routing => {}
        Setup::Iptables | Setup::IptablesNoNat => {
            let mut rules = vec![
                "-P FORWARD DROP",
                "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                "-A FORWARD -i lan0 -o wan0 -j ACCEPT",
            ];
            if setup == Setup::Iptables {
                rules.push("-t nat -A POSTROUTING -o wan0 -j MASQUERADE");
            }
            for rule in rules {
                topo.rtr
                    .exec(std::iter::once("iptables").chain(rule.split_whitespace()))?;
            }
        }
        Setup::Bare(mode) => {
            programs.push(hold_xdp(
                bench_bin,
                &topo.rtr,
                BARE_FORWARD,
                mode,
                &["lan0", "wan0"],
            )?);
        }
        Setup::FirewallMasq => {
            firewall = Some(Firewall::start(
                &topo.rtr,
                &Config::router().with_masquerade("wan0"),
            )?);
        }
        Setup::Firewall { mode, fast_path } => {
            firewall = Some(Firewall::start(
                &topo.rtr,
                &Config::router()
                    .with_fast_path(fast_path)
                    .with_xdp_mode(mode.word()),
            )?);
        }
        Setup::RulesIptables(n) => {
            let mut dump = String::from(
                "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
            );
            for port in rule_ports(n) {
                dump += &format!("-A FORWARD -p udp -m udp --dport {port} -j DROP\n");
            }
            dump += "-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n";
            topo.rtr
                .exec_with_input(["iptables-restore"], dump.as_bytes())?;
        }
        Setup::RulesFirewall(n) => {
            let mut config = Config::router();
            for port in rule_ports(n) {
                config = config.with_tail(&format!(
                    "[[rule]]\nchain = \"forward\"\nproto = \"udp\"\ndport = {port}\naction = \"drop\"\n"
                ));
            }
            firewall = Some(Firewall::start(&topo.rtr, &config)?);
        }
    }
    if setup.rules() {
        // A one-way flood: every packet is NEW and meets the rules.
        let (udp_pps, _) = udp_pps_primed(&topo, false, None, false)?;
        println!("udp 64B: {udp_pps:.0?} packets/s");
        drop(firewall);
        drop(programs);
        return Ok(E2e {
            setup,
            udp_pps,
            udp_fast_pathed: None,
            tcp_mbps: Vec::new(),
            conns_per_s: Vec::new(),
            failed: ["tcp", "conn"]
                .into_iter()
                .map(|m| {
                    (
                        m,
                        "not measured: this setup measures the rule walk (UDP)".into(),
                    )
                })
                .collect(),
        });
    }
    let (udp_pps, udp_fast_pathed) = udp_pps(&topo, setup.nat(), firewall.as_ref())?;
    println!("udp 64B: {udp_pps:.0?} packets/s, fast-pathed {udp_fast_pathed:.2?}");
    if setup
        == (Setup::Firewall {
            mode: Mode::Generic,
            fast_path: true,
        })
    {
        // As the per-packet figures check their counters: a figure of the fast
        // path that did not take it would be meaningless.
        ensure!(
            udp_fast_pathed.is_some_and(|f| f > 0.5),
            "the fast path forwarded only {udp_fast_pathed:?} of the UDP packets"
        );
    }
    // A TCP figure that cannot be taken (see `failed`) does not void the others.
    let mut failed = Vec::new();
    let mut attempt = |what: &'static str, result: Result<Vec<f64>>| {
        result.unwrap_or_else(|err| {
            eprintln!("{what} failed: {err:#}");
            failed.push((what, format!("{err:#}")));
            Vec::new()
        })
    };
    let tcp_mbps = attempt("tcp", iperf(&topo));
    println!("tcp: {tcp_mbps:.0?} Mbit/s");
    let conns_per_s = attempt("conn", conn_rate(&topo, bench_bin));
    println!("new connections: {conns_per_s:.0?} /s");
    drop(firewall);
    drop(programs);
    Ok(E2e {
        setup,
        udp_pps,
        udp_fast_pathed,
        tcp_mbps,
        conns_per_s,
        failed,
    })
}

fn mac_of(netns: &Netns, dev: &str) -> Result<String> {
    let out = netns.ip(&format!("link show {dev}"))?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .with_context(|| format!("no MAC address for {dev} in {}", netns.name()))
}

fn rx_packets(netns: &Netns, dev: &str) -> Result<u64> {
    let out = netns.ip(&format!("-s link show {dev}"))?;
    let mut lines = out.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("RX:") {
            let values = lines.next().context("no RX values")?;
            let packets = values.split_whitespace().nth(1).context("no RX packets")?;
            return packets.parse().context("RX packets");
        }
    }
    bail!("no RX line in `ip -s link show {dev}`")
}

/// 64-byte UDP frames (60 on the wire plus FCS) from the LAN host to a WAN-side address
/// for which the router has a static neighbour entry naming the WAN host's MAC: the WAN
/// host's `eth0` receives them and drops them (not its address, no forwarding), so no
/// socket or ICMP error adds load. Counted as `eth0` RX packets, in 1 s windows.
///
/// One datagram is sent back from the sink's address first (crafted by trafgen on the
/// WAN host, to the LAN host or, under NAT, to the router's WAN address), so that the
/// flow is replied and its packets are ESTABLISHED, as the packets of any real
/// exchange are; a one-way flood would stay NEW (unreplied) and never meet the fast
/// path. Returns the samples and, with a firewall, the share of the packets counted
/// in the windows that the fast path forwarded.
/// Destination ports of the rules setups' rules: none is the flood's.
fn rule_ports(n: usize) -> impl Iterator<Item = u32> {
    (0..n as u32).map(|i| 10_000 + i)
}

fn udp_pps(
    topo: &RouterTopology,
    nat: bool,
    firewall: Option<&Firewall>,
) -> Result<(Vec<f64>, Option<f64>)> {
    udp_pps_primed(topo, nat, firewall, true)
}

/// [`udp_pps`]; without `prime`, no reply is sent and the flow stays NEW.
fn udp_pps_primed(
    topo: &RouterTopology,
    nat: bool,
    firewall: Option<&Firewall>,
    prime: bool,
) -> Result<(Vec<f64>, Option<f64>)> {
    let sink = "10.0.2.3";
    let sport = 4000;
    let wan_mac = mac_of(&topo.wan, "eth0")?;
    let rtr_lan_mac = mac_of(&topo.rtr, "lan0")?;
    let rtr_wan_mac = mac_of(&topo.rtr, "wan0")?;
    let lan_mac = mac_of(&topo.lan, "eth0")?;
    topo.rtr
        .ip(&format!("neigh replace {sink} lladdr {wan_mac} dev wan0"))?;
    let dir = tempfile_dir()?;
    let conf = dir.join("udp64.cfg");
    std::fs::write(
        &conf,
        format!(
            "{{ eth(da={rtr_lan_mac}, sa={lan_mac}), ipv4(sa={lan}, da={sink}, ttl=64), \
             udp(sp={sport}, dp={UDP_DST_PORT}), fill(0x00, 18) }}\n",
            lan = topology::LAN_HOST.v4,
        ),
    )?;
    let reply = dir.join("reply.cfg");
    let reply_to = if nat {
        topology::ROUTER_WAN.v4
    } else {
        topology::LAN_HOST.v4
    };
    std::fs::write(
        &reply,
        format!(
            "{{ eth(da={rtr_wan_mac}, sa={wan_mac}), ipv4(sa={sink}, da={reply_to}, ttl=64), \
             udp(sp={UDP_DST_PORT}, dp={sport}), fill(0x00, 18) }}\n"
        ),
    )?;
    let conf_arg = conf.to_string_lossy().into_owned();
    let reply_arg = reply.to_string_lossy().into_owned();
    let _trafgen = topo.lan.spawn([
        "trafgen", "--dev", "eth0", "--conf", &conf_arg, "--cpus", "1",
    ])?;
    std::thread::sleep(Duration::from_millis(500));
    if prime {
        topo.wan.exec([
            "trafgen", "--dev", "eth0", "--conf", &reply_arg, "--num", "1", "--cpus", "1",
        ])?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let forwarded =
        || -> Result<u64> { firewall.map_or(Ok(0), |fw| fw.counter("fastpath_forwarded")) };
    let mut samples = Vec::new();
    let fp_start = forwarded()?;
    let first = rx_packets(&topo.wan, "eth0")?;
    let mut last = first;
    let mut at = std::time::Instant::now();
    for _ in 0..E2E_SAMPLES {
        std::thread::sleep(Duration::from_secs(1));
        let now = rx_packets(&topo.wan, "eth0")?;
        let t = std::time::Instant::now();
        samples.push((now - last) as f64 / (t - at).as_secs_f64());
        (last, at) = (now, t);
    }
    let fast_pathed = firewall
        .map(|_| -> Result<f64> {
            let delivered = (last - first).max(1) as f64;
            Ok((forwarded()? - fp_start) as f64 / delivered)
        })
        .transpose()?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        samples.iter().all(|s| *s > 0.0),
        "no UDP packets reached the WAN host"
    );
    Ok((samples, fast_pathed))
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fw-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// iperf3 LAN → WAN, one stream, `E2E_SAMPLES` runs of 2 s; the receiver's rate.
fn iperf(topo: &RouterTopology) -> Result<Vec<f64>> {
    let port = IPERF_PORT.to_string();
    let _server = topo.wan.spawn(["iperf3", "-s", "-p", &port])?;
    wait_listening(&topo.wan, IPERF_PORT)?;
    let mut samples = Vec::new();
    for _ in 0..E2E_SAMPLES {
        let out = topo.lan.exec([
            "timeout",
            "10",
            "iperf3",
            "-c",
            WAN_HOST.v4,
            "-p",
            &port,
            "-t",
            "2",
            "-J",
        ])?;
        let at = out
            .find("\"sum_received\"")
            .context("no sum_received in iperf3 -J output")?;
        let rest = &out[at..];
        let bps = json_number_after(rest, "\"bits_per_second\"")
            .context("no bits_per_second in sum_received")?;
        samples.push(bps / 1e6);
    }
    Ok(samples)
}

fn json_number_after(text: &str, key: &str) -> Option<f64> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn wait_listening(netns: &Netns, port: u16) -> Result<()> {
    let needle = format!(":{port} ");
    tests::poll(
        &format!("a listener on port {port}"),
        Duration::from_secs(5),
        || {
            let out = netns.exec(["ss", "-Hltn"])?;
            Ok(if out.contains(&needle) {
                tests::Probe::Ready(())
            } else {
                tests::Probe::Pending(out)
            })
        },
    )
}

/// New TCP connections per second LAN → WAN: `bench connect` (2 threads, connect then
/// reset) against `bench serve` (accept and close), `E2E_SAMPLES` runs of 2 s.
fn conn_rate(topo: &RouterTopology, bench_bin: &Path) -> Result<Vec<f64>> {
    let bin = bench_bin.to_string_lossy().into_owned();
    let port = CONN_PORT.to_string();
    let _server = topo.wan.spawn([bin.as_str(), "serve", &port])?;
    wait_listening(&topo.wan, CONN_PORT)?;
    let mut samples = Vec::new();
    for _ in 0..E2E_SAMPLES {
        let out = topo
            .lan
            .exec([bin.as_str(), "connect", WAN_HOST.v4, &port, "2", "2"])?;
        let n = json_number_after(&out, "\"connections\"").context("connections")?;
        let secs = json_number_after(&out, "\"seconds\"").context("seconds")?;
        ensure!(n > 0.0, "no connection completed: {out}");
        samples.push(n / secs);
    }
    Ok(samples)
}

fn e2e_rows(results: &[E2e]) -> Vec<Row> {
    let find = |s: Setup| results.iter().find(|r| r.setup == s);
    type Pick = fn(&E2e) -> &Vec<f64>;
    let metrics: [(&str, &str, &str, Pick); 3] = [
        ("udp", "UDP 64-byte packets delivered", "pkt/s", |r| {
            &r.udp_pps
        }),
        ("tcp", "TCP throughput, 1 stream (iperf3)", "Mbit/s", |r| {
            &r.tcp_mbps
        }),
        ("conn", "new TCP connections", "conn/s", |r| &r.conns_per_s),
    ];
    let mut rows = Vec::new();
    for (id, what, unit, pick) in metrics {
        for r in results {
            if id != "udp" && r.setup.rules() {
                // Those configurations measure the rule walk only.
                continue;
            }
            let m = median(pick(r));
            let ratios: Vec<String> = r
                .setup
                .baselines()
                .into_iter()
                .filter_map(|(base, name)| {
                    let b = median(pick(find(base)?))?;
                    Some(format!("{:.2}× {name}", m? / b))
                })
                .collect();
            let mut note = format!("{E2E_SAMPLES} samples");
            if id == "udp"
                && let Some(share) = r.udp_fast_pathed
            {
                let _ = write!(note, "; {:.0} % fast-pathed", share * 100.0);
            }
            if let Some((_, err)) = r.failed.iter().find(|(m, _)| *m == id) {
                // The first line says what failed; iperf's JSON after it does not.
                let first = err.lines().next().unwrap_or_default();
                note = format!("failed: {first}");
            }
            rows.push(Row {
                group: "end to end (veth lab)".into(),
                label: format!("{what}: {}", r.setup.name()),
                unit: unit.into(),
                samples: pick(r).clone(),
                ratio: ratios.join(", "),
                note,
            });
        }
    }
    rows
}

// ---------------------------------------------------------------------------
// Goals of the issue, from figures of this run.

struct Goal {
    goal: &'static str,
    measured: String,
    /// `None` when a figure is missing.
    met: Option<bool>,
}

/// Median of a kernel figure by id.
fn kernel_median(kernel: &Json, id: &str) -> Option<f64> {
    kernel
        .get("results")?
        .as_array()?
        .iter()
        .find(|r| r.get("id").and_then(Json::as_str) == Some(id))
        .and_then(|r| {
            let samples: Vec<f64> = r
                .get("samples")?
                .as_array()?
                .iter()
                .filter_map(Json::as_f64)
                .collect();
            median(&samples)
        })
}

fn goals(kernel: &Json, e2e: Option<&[E2e]>) -> Vec<Goal> {
    let udp = |s: Setup| {
        e2e.and_then(|r| r.iter().find(|r| r.setup == s))
            .and_then(|r| median(&r.udp_pps))
    };
    let ratio_goal = |goal, pairs: &[(Setup, Setup, &str)], min: f64| {
        let mut measured = Vec::new();
        let mut met = Some(true);
        for (a, b, what) in pairs {
            match (udp(*a), udp(*b)) {
                (Some(x), Some(y)) => {
                    let q = x / y;
                    measured.push(format!("{what}: {q:.3}× ({x:.0} vs {y:.0} pkt/s)"));
                    met = met.map(|m| m && q >= min);
                }
                _ => {
                    measured.push(format!("{what}: not measured"));
                    met = None;
                }
            }
        }
        Goal {
            goal,
            measured: measured.join("; "),
            met,
        }
    };
    let fw = |mode, fast_path| Setup::Firewall { mode, fast_path };
    let mut out = vec![
        ratio_goal(
            "lab UDP-64B ≥ 1.3× iptables",
            &[
                (
                    fw(Mode::Generic, true),
                    Setup::IptablesNoNat,
                    "no NAT, fast path",
                ),
                (Setup::FirewallMasq, Setup::Iptables, "masquerade"),
            ],
            1.3,
        ),
        ratio_goal(
            "lab UDP-64B ≥ 0.95× the bare forwarding program, same mode",
            &[
                (
                    fw(Mode::Generic, true),
                    Setup::Bare(Mode::Generic),
                    "generic",
                ),
                (fw(Mode::Native, true), Setup::Bare(Mode::Native), "native"),
            ],
            0.95,
        ),
    ];
    // Program time: a figure minus the floor of its method (the test-run loop and,
    // for single runs, the kernel's timer).
    let k = |id| kernel_median(kernel, id);
    out.push(
        match (
            k("nat_xdp_reply"),
            k("nat_tc_ingress_reply"),
            k("bare_tc_single"),
            k("bare_forward_single"),
            k("bare_xdp_single"),
        ) {
            (Some(xdp), Some(tc), Some(tc_floor), Some(bare), Some(xdp_floor)) => {
                let ours = xdp + (tc - tc_floor);
                let base = bare - xdp_floor;
                let q = ours / base;
                Goal {
                    goal: "established packet with NAT ≤ 2× the bare program's ns/packet",
                    measured: format!(
                        "{q:.2}×: XDP {xdp:.0} ns + TC rewrite {:.0} ns vs bare forwarding \
                         program {base:.0} ns (floors of each method subtracted)",
                        tc - tc_floor
                    ),
                    met: Some(q <= 2.0),
                }
            }
            _ => Goal {
                goal: "established packet with NAT ≤ 2× the bare program's ns/packet",
                measured: "not measured".into(),
                met: None,
            },
        },
    );
    for which in ["none", "last"] {
        let goal = if which == "none" {
            "NEW packet, 10,000 rules ≤ 1.3× 10 (no rule matches)"
        } else {
            "NEW packet, 10,000 rules ≤ 1.3× 10 (the last rule matches)"
        };
        let (big_id, small_id) = (
            format!("new_rules_10000_{which}"),
            format!("new_rules_10_{which}"),
        );
        out.push(
            match (
                kernel_median(kernel, &big_id),
                kernel_median(kernel, &small_id),
            ) {
                (Some(big), Some(small)) => Goal {
                    goal,
                    measured: format!("{:.2}× ({big:.0} vs {small:.0} ns)", big / small),
                    met: Some(big / small <= 1.3),
                },
                _ => Goal {
                    goal,
                    measured: "not measured".into(),
                    met: None,
                },
            },
        );
    }
    out.push(
        match (
            udp(Setup::RulesFirewall(10_000)),
            udp(Setup::RulesIptables(10_000)),
            udp(Setup::RulesFirewall(10)),
        ) {
            (Some(fw), Some(ipt), Some(fw10)) => Goal {
                goal: "lab: NEW packets through 10,000 rules vs iptables with the same rules",
                measured: format!(
                    "{:.1}× iptables ({fw:.0} vs {ipt:.0} pkt/s); {:.2}× the firewall with 10 rules",
                    fw / ipt,
                    fw / fw10
                ),
                met: Some(fw / fw10 >= 1.0 / 1.3),
            },
            _ => Goal {
                goal: "lab: NEW packets through 10,000 rules vs iptables with the same rules",
                measured: "not measured".into(),
                met: None,
            },
        },
    );
    out.push(match (k("est_tcp_1m"), k("est_tcp_1k")) {
        (Some(m), Some(t)) => Goal {
            goal: "1M tracked connections ≤ 1.3× 1k",
            measured: format!("{:.2}× ({m:.0} vs {t:.0} ns)", m / t),
            met: Some(m / t <= 1.3),
        },
        _ => Goal {
            goal: "1M tracked connections ≤ 1.3× 1k",
            measured: "not measured".into(),
            met: None,
        },
    });
    out
}

fn goals_markdown(goals: &[Goal]) -> String {
    let mut out = String::from("\n| goal | measured | status |\n|---|---|---|\n");
    for g in goals {
        let status = match g.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {status} |", g.goal, g.measured);
    }
    out
}

// ---------------------------------------------------------------------------
// Output.

struct Machine {
    nproc: usize,
    kernel: String,
    cpu: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(String::new, |(_, v)| v.trim().to_owned()),
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn markdown(rows: &[Row], m: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {} CPUs, {}, kernel {}\n",
        m.nproc, m.cpu, m.kernel
    );
    let _ = writeln!(
        out,
        "| group | measurement | median | min–max | unit | ratio |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---|---|");
    for r in rows {
        let (med, range) = match (r.median(), spread(&r.samples)) {
            (Some(med), Some((lo, hi))) => {
                (fmt_num(med), format!("{}–{}", fmt_num(lo), fmt_num(hi)))
            }
            _ => (r.note.clone(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {med} | {range} | {} | {} |",
            r.group, r.label, r.unit, r.ratio
        );
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn to_json(stamp: u64, m: &Machine, rows: &[Row], goals: &[Goal], kernel_raw: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\n  \"timestamp\": {stamp},\n  \"machine\": {{\"nproc\": {}, \"cpu\": {}, \"kernel\": {}}},\n  \"rows\": [",
        m.nproc,
        json_string(&m.cpu),
        json_string(&m.kernel)
    );
    for (i, r) in rows.iter().enumerate() {
        let samples: Vec<String> = r.samples.iter().map(|v| json_f64(*v)).collect();
        let (lo, hi) = spread(&r.samples).unwrap_or((f64::NAN, f64::NAN));
        let _ = write!(
            out,
            "{}\n    {{\"group\": {}, \"label\": {}, \"unit\": {}, \"median\": {}, \"min\": {}, \
             \"max\": {}, \"samples\": [{}], \"ratio\": {}, \"note\": {}}}",
            if i == 0 { "" } else { "," },
            json_string(&r.group),
            json_string(&r.label),
            json_string(&r.unit),
            json_f64(r.median().unwrap_or(f64::NAN)),
            json_f64(lo),
            json_f64(hi),
            samples.join(", "),
            json_string(&r.ratio),
            json_string(&r.note),
        );
    }
    let _ = write!(out, "\n  ],\n  \"goals\": [");
    for (i, g) in goals.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n    {{\"goal\": {}, \"measured\": {}, \"met\": {}}}",
            if i == 0 { "" } else { "," },
            json_string(g.goal),
            json_string(&g.measured),
            g.met.map_or("null".into(), |m| m.to_string()),
        );
    }
    let _ = write!(out, "\n  ],\n  \"kernel_raw\": {}\n}}\n", kernel_raw.trim());
    out
}

// ---------------------------------------------------------------------------
// A minimal JSON reader for the bench example's output (xtask has no serde_json).

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        ensure!(p.i == p.s.len(), "trailing data at byte {}", p.i);
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            bail!("unexpected end of JSON");
        };
        match c {
            b'{' => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(key) = self.value()? else {
                        bail!("object key is not a string at byte {}", self.i);
                    };
                    self.ws();
                    ensure!(self.eat(":"), "expected ':' at byte {}", self.i);
                    fields.push((key, self.value()?));
                    self.ws();
                    if self.eat("}") {
                        return Ok(Json::Obj(fields));
                    }
                    ensure!(self.eat(","), "expected ',' at byte {}", self.i);
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    ensure!(self.eat(","), "expected ',' at byte {}", self.i);
                }
            }
            b'"' => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    let Some(&c) = self.s.get(self.i) else {
                        bail!("unterminated string");
                    };
                    self.i += 1;
                    match c {
                        b'"' => return Ok(Json::Str(out)),
                        b'\\' => {
                            let e = *self.s.get(self.i).context("bad escape")?;
                            self.i += 1;
                            match e {
                                b'n' => out.push('\n'),
                                b't' => out.push('\t'),
                                b'u' => {
                                    let hex = std::str::from_utf8(
                                        self.s.get(self.i..self.i + 4).context("bad \\u")?,
                                    )?;
                                    self.i += 4;
                                    out.push(
                                        char::from_u32(u32::from_str_radix(hex, 16)?)
                                            .unwrap_or('\u{fffd}'),
                                    );
                                }
                                other => out.push(other as char),
                            }
                        }
                        _ => {
                            // Copy a whole UTF-8 sequence.
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.s.len() && (self.s[end] & 0xc0) == 0x80 {
                                end += 1;
                            }
                            out.push_str(std::str::from_utf8(&self.s[start..end])?);
                            self.i = end;
                        }
                    }
                }
            }
            b't' if self.eat("true") => Ok(Json::Bool(true)),
            b'f' if self.eat("false") => Ok(Json::Bool(false)),
            b'n' if self.eat("null") => Ok(Json::Null),
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                ensure!(self.i > start, "unexpected byte {c:#x} at {start}");
                Ok(Json::Num(
                    std::str::from_utf8(&self.s[start..self.i])?.parse()?,
                ))
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn json_reader_reads_the_bench_shape() {
        let v = Json::parse(
            r#"{"results": [{"id": "a\"b", "samples": [1, 2.5e1, -3], "x": null, "y": true}]}"#,
        )
        .unwrap();
        let r = &v.get("results").unwrap().as_array().unwrap()[0];
        assert_eq!(r.get("id").unwrap().as_str(), Some("a\"b"));
        let s: Vec<f64> = r
            .get("samples")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Json::as_f64)
            .collect();
        assert_eq!(s, [1.0, 25.0, -3.0]);
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
        assert_eq!(json_number_after(r#""n": 12.5,"#, "\"n\""), Some(12.5));
    }
}

//! `cargo xtask lab`: a LAN host, a router running the firewall and a WAN host, with real
//! traffic through it, then the firewall's own view of what happened.
//!
//! The router masquerades IPv4 on `wan0` and the WAN host has no IPv4 route back to the
//! LAN, as behind a home router: IPv4 works only through the translation, and the table
//! shows the translated reply tuples (`dst=10.0.2.1`). IPv6 is routed untranslated.
//!
//! Everything lives in guards from the `tests` harness, so the lab is torn down when it
//! ends, fails, or is interrupted with Ctrl-C.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, Result, bail};
use tests::{
    Config, Family, Firewall,
    topology::{self, LAN_HOST, ROUTER_WAN, RouterOptions, WAN_HOST},
    traffic::{self, ConnectOutcome},
};

use crate::{cargo, heading, run_visible, setup};

const HTTP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;

pub fn run() -> Result<()> {
    // Background servers and the daemon run in their own process groups, so Ctrl-C
    // reaches only this process (and a foreground curl or ping); the lab then stops at
    // the next step and its guards tear everything down in order.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || {
        eprintln!("\ninterrupted: tearing the lab down");
        flag.store(true, Ordering::SeqCst);
    })
    .context("installing the Ctrl-C handler")?;
    let step = |title: &str| -> Result<()> {
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        heading(title);
        Ok(())
    };

    setup::run()?;
    step("build")?;
    run_visible(&mut cargo(["build", "-p", "firewall"]))?;

    let result = lab(&step);
    // The guards inside `lab` have run by now, whether it succeeded or not.
    println!("lab torn down");
    if interrupted.load(Ordering::SeqCst) {
        // Whatever failed was most likely a foreground command hit by the same Ctrl-C.
        bail!("interrupted");
    }
    result
}

fn lab(step: &dyn Fn(&str) -> Result<()>) -> Result<()> {
    step("topology")?;
    let topo = topology::router_with("lab", RouterOptions::nat())?;
    println!(
        "[{lan}] eth0 {lan4} {lan6}  <->  lan0 [{rtr}] wan0 {rtr4}  <->  eth0 {wan4} {wan6} [{wan}]",
        lan = topo.lan.name(),
        rtr = topo.rtr.name(),
        wan = topo.wan.name(),
        lan4 = LAN_HOST.v4,
        lan6 = LAN_HOST.v6,
        rtr4 = ROUTER_WAN.v4,
        wan4 = WAN_HOST.v4,
        wan6 = WAN_HOST.v6,
    );
    println!("the WAN host routes only IPv6 back to the LAN: IPv4 needs the router's masquerade");

    step("firewall run (router mode, masquerade on wan0, a LOG and a REJECT rule)")?;
    let config = Config::router().with_masquerade("wan0").with_tail(
        "[[rule]]\nchain = \"forward\"\nproto = \"tcp\"\ndport = 22\naction = \"log\"\n\
         log_prefix = \"wan-ssh \"\n\n\
         [[rule]]\nchain = \"forward\"\nproto = \"tcp\"\ndport = 22\naction = \"reject\"\n\
         reject_with = \"tcp-reset\"\n",
    );
    let fw = Firewall::start(&topo.rtr, &config)?;
    println!("config {}:", fw.config_path().display());
    print!("{}", config.to_toml());
    println!("pins in {}", fw.pin_dir().display());

    let www = traffic::web_root()?;
    let _wan_http = traffic::http_server(&topo.wan, HTTP_PORT, www.path())?;
    let _lan_http = traffic::http_server(&topo.lan, HTTP_PORT, www.path())?;
    let _wan_echo = traffic::udp_echo_server(&topo.wan, UDP_PORT)?;

    step("outbound HTTP: curl LAN -> WAN")?;
    for family in [Family::V4, Family::V6] {
        let url = traffic::url(WAN_HOST.get(family), HTTP_PORT, "hello.txt");
        let body = traffic::http_get(&topo.lan, &url)?;
        print!("{url}: {}", String::from_utf8_lossy(&body));
    }

    step("UDP request/reply: socat LAN -> WAN echo server")?;
    for family in [Family::V4, Family::V6] {
        let server = WAN_HOST.get(family);
        let reply = traffic::udp_request(&topo.lan, server, UDP_PORT, "hello over udp\n")?;
        if reply.is_empty() {
            bail!("no UDP reply from {server}:{UDP_PORT}");
        }
        print!("{server}:{UDP_PORT} replied: {reply}");
    }

    step("ping LAN -> WAN")?;
    for family in [Family::V4, Family::V6] {
        let target = WAN_HOST.get(family).to_string();
        let output = topo
            .lan
            .exec(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", &target])?;
        print!("{output}");
    }

    step("inbound TCP: curl WAN -> LAN server (must be blocked)")?;
    // Over IPv4 the WAN sees only the router's address, and no port is forwarded there;
    // over IPv6 the LAN host is routed, and only the firewall stands in the way.
    for target in [ROUTER_WAN.get(Family::V4), LAN_HOST.get(Family::V6)] {
        match traffic::try_connect(&topo.wan, target, HTTP_PORT)? {
            ConnectOutcome::TimedOut => println!("{target}:{HTTP_PORT}: blocked as expected"),
            outcome => bail!("{target}:{HTTP_PORT} from the WAN: {outcome:?}, not blocked"),
        }
    }

    step("REJECT and LOG: curl WAN -> LAN port 22 over IPv6 (refused at once, logged)")?;
    let bin = tests::firewall_bin()?;
    let pin_dir = fw.pin_dir().to_string_lossy().into_owned();
    let mut log = topo.rtr.spawn([
        bin.to_string_lossy().as_ref(),
        "--pin-dir",
        &pin_dir,
        "log",
        "-n",
        "1",
    ])?;
    let target = LAN_HOST.get(Family::V6);
    match traffic::try_connect(&topo.wan, target, 22)? {
        ConnectOutcome::Refused => {
            println!("[{target}]:22: connection refused (RST from the firewall)")
        }
        outcome => bail!("[{target}]:22 from the WAN: {outcome:?}, not refused"),
    }
    log.wait_timeout(std::time::Duration::from_secs(5))?;
    println!("firewall log:");
    print!("{}", log.log());

    step("firewall rules list")?;
    print!("{}", fw.cli(["rules", "list"])?);
    step("firewall conntrack list")?;
    print!("{}", fw.cli(["conntrack", "list"])?);
    step("firewall stats")?;
    print!("{}", fw.cli(["stats"])?);

    step("teardown")?;
    Ok(())
}

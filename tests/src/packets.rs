//! Packets a socket cannot produce, and what a namespace's stack saw: scapy to send
//! crafted frames, tcpdump to watch a link, and the kernel's SNMP counters.

use std::{thread, time::Duration};

use anyhow::{Context as _, Result, bail};

use crate::{Family, Netns, Probe, Process, poll};

/// Debian's python, which has scapy (the `python3` first on PATH may be another).
const PYTHON: &str = "/usr/bin/python3";

/// Sends one layer-3 packet built by the scapy expression `packet` from `netns`.
pub fn scapy_send(netns: &Netns, packet: &str) -> Result<()> {
    let script = format!("from scapy.all import *\nsend({packet}, verbose=False)\n");
    netns.exec([PYTHON, "-c", &script]).map(drop)
}

/// Sends one Ethernet frame built by the scapy expression `frame` out of `iface` in
/// `netns` (for VLAN tags and other layer-2 framing).
pub fn scapy_sendp(netns: &Netns, iface: &str, frame: &str) -> Result<()> {
    let script =
        format!("from scapy.all import *\nsendp({frame}, iface='{iface}', verbose=False)\n");
    netns.exec([PYTHON, "-c", &script]).map(drop)
}

/// The MAC address of `iface` in `netns`.
pub fn mac_address(netns: &Netns, iface: &str) -> Result<String> {
    let text = netns.exec(["cat", &format!("/sys/class/net/{iface}/address")])?;
    Ok(text.trim().to_owned())
}

/// `counter` of `section` in `/proc/net/snmp` of `netns` (IPv4: `Ip`, `Icmp`, `Tcp`,
/// `Udp`; a header line of names and a line of values each).
pub fn snmp(netns: &Netns, section: &str, counter: &str) -> Result<u64> {
    let text = netns.exec(["cat", "/proc/net/snmp"])?;
    let tag = format!("{section}:");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&tag)).collect();
    let [names, values] = lines.as_slice() else {
        bail!("unexpected {section} lines in /proc/net/snmp:\n{text}");
    };
    let value = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == counter)
        .map(|(_, value)| value.to_owned())
        .with_context(|| format!("no {section} {counter} in {}", netns.name()))?;
    value
        .parse()
        .with_context(|| format!("{counter} = {value:?}"))
}

/// `counter` in `/proc/net/snmp6` of `netns` (`name value` lines).
pub fn snmp6(netns: &Netns, counter: &str) -> Result<u64> {
    let text = netns.exec(["cat", "/proc/net/snmp6"])?;
    let value = text
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(counter)).then(|| words.next().unwrap_or("").to_owned())
        })
        .with_context(|| format!("no {counter} in {}", netns.name()))?;
    value
        .parse()
        .with_context(|| format!("{counter} = {value:?}"))
}

/// An ICMP counter of either family (`Icmp` in `/proc/net/snmp`, or `/proc/net/snmp6`).
pub fn icmp_counter(netns: &Netns, family: Family, counter: &str) -> Result<u64> {
    match family {
        Family::V4 => snmp(netns, "Icmp", counter),
        Family::V6 => snmp6(netns, counter),
    }
}

/// tcpdump on one link, printing a line per packet that matches a filter.
pub struct Capture {
    process: Process,
}

impl Capture {
    /// Starts capturing on `iface` in `netns` what `filter` (pcap syntax) matches, and
    /// returns once tcpdump listens.
    pub fn start(netns: &Netns, iface: &str, filter: &str) -> Result<Self> {
        let mut args = vec![
            "tcpdump",
            "-i",
            iface,
            "-n",
            "-l",
            "-p",
            "--immediate-mode",
            "-e",
        ];
        args.extend(filter.split_whitespace());
        let process = netns.spawn(args)?;
        let mut capture = Self { process };
        poll(
            "tcpdump to listen",
            Duration::from_secs(10),
            || -> Result<Probe<()>> {
                if !capture.process.is_running()? {
                    bail!("tcpdump exited: {}", capture.process.log());
                }
                Ok(if capture.process.log().contains("listening on") {
                    Probe::Ready(())
                } else {
                    Probe::Pending(capture.process.log())
                })
            },
        )?;
        Ok(capture)
    }

    /// The packet lines captured so far, after giving in-flight packets `settle`.
    pub fn packets(&mut self, settle: Duration) -> Vec<String> {
        thread::sleep(settle);
        self.process
            .log()
            .lines()
            .filter(|l| {
                !l.starts_with("tcpdump:") && !l.starts_with("listening on") && !l.is_empty()
            })
            .map(str::to_owned)
            .collect()
    }
}

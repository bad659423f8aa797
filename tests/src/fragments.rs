//! What the fragment tests need besides the router: the firewall's fragment counters,
//! the stacks' own fragmentation counters (who fragmented what), a DNS server whose
//! answer does not fit one packet and `dig` to ask it, and a UDP exchange of one large
//! datagram each way.

use std::{net::IpAddr, path::Path};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    Family, Netns, Process, Stats,
    packets::{snmp, snmp6},
    traffic::{self, Transport},
    window::PYTHON,
};

/// Prefix of the counters of fragments the firewall dropped.
pub const FRAGMENT_DROP_PREFIX: &str = "drop_fragment";

/// The fragment drop counters the datapath must have: a later fragment from a WAN with
/// no first fragment on record, one whose first fragment was dropped, and the checks a
/// fragment must pass (size, overlap, reassembled length, protocol, translation).
pub const FRAGMENT_DROP_COUNTERS: [&str; 7] = [
    "drop_fragment",
    "drop_fragment_follows",
    "drop_fragment_tiny",
    "drop_fragment_overlap",
    "drop_fragment_oversize",
    "drop_fragment_proto",
    "drop_fragment_untranslated",
];

/// Later fragments the firewall let through because their first fragment was accepted.
pub const ACCEPT_FRAGMENT: &str = "accept_fragment";

/// The sum of every `drop_fragment*` counter; an error if there is none at all.
pub fn fragment_drops(stats: &Stats) -> Result<u64> {
    ensure!(
        stats
            .counters
            .keys()
            .any(|name| name.starts_with(FRAGMENT_DROP_PREFIX)),
        "`stats --json` has no {FRAGMENT_DROP_PREFIX}* counter: {:?}",
        stats.counters.keys()
    );
    Ok(stats
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with(FRAGMENT_DROP_PREFIX))
        .map(|(_, count)| count)
        .sum())
}

/// No `drop_fragment*` counter grew from `before` to `after`. An error if any of
/// [`FRAGMENT_DROP_COUNTERS`] is missing, so that "no drops" never holds merely because
/// the datapath does not count them.
pub fn ensure_no_fragment_drops(before: &Stats, after: &Stats) -> Result<()> {
    let missing: Vec<_> = FRAGMENT_DROP_COUNTERS
        .iter()
        .filter(|name| !after.counters.contains_key(**name))
        .collect();
    ensure!(
        missing.is_empty(),
        "`stats --json` has no {missing:?}: the datapath does not count fragment drops by \
         reason; its fragment counters are {:?}",
        fragment_counters(after)
    );
    let dropped = fragment_drops(after)?.saturating_sub(fragment_drops(before)?);
    ensure!(
        dropped == 0,
        "the firewall dropped {dropped} fragments of real traffic: {:?}",
        fragment_counters(after)
    );
    Ok(())
}

/// The firewall's counters about fragments and untranslated packets, for messages (all
/// of them would bury the point).
pub fn fragment_counters(stats: &Stats) -> Vec<(&str, u64)> {
    stats
        .counters
        .iter()
        .filter(|(name, _)| name.contains("fragment") || name.contains("untranslated"))
        .map(|(name, count)| (name.as_str(), *count))
        .collect()
}

/// How much each of [`fragment_counters`] grew from `before` to `after`, those that
/// did: which paths the fragments took.
pub fn fragment_counters_grown<'a>(before: &Stats, after: &'a Stats) -> Vec<(&'a str, u64)> {
    fragment_counters(after)
        .into_iter()
        .map(|(name, count)| {
            let then = before.counters.get(name).copied().unwrap_or(0);
            (name, count.saturating_sub(then))
        })
        .filter(|(_, grown)| *grown > 0)
        .collect()
}

/// Datagrams the stack of `netns` fragmented on output, sent or forwarded (`FragOKs`,
/// `Ip6FragOKs`): who fragmented what.
pub fn fragmented_datagrams(netns: &Netns, family: Family) -> Result<u64> {
    match family {
        Family::V4 => snmp(netns, "Ip", "FragOKs"),
        Family::V6 => snmp6(netns, "Ip6FragOKs"),
    }
}

/// How many fragments after the first a datagram of `transport_len` bytes (transport
/// header and data) becomes on a link of `mtu`: each fragment carries a multiple of 8
/// bytes after the IPv4 header, or after the IPv6 header and its fragment header.
pub fn later_fragments(family: Family, transport_len: u32, mtu: u32) -> u32 {
    let headers = match family {
        Family::V4 => 20,
        Family::V6 => 40 + 8,
    };
    let per_fragment = (mtu - headers) & !7;
    transport_len.div_ceil(per_fragment).saturating_sub(1)
}

/// The name [`dns_server`] answers with [`big_txt`].
pub const BIG_NAME: &str = "big.test";
/// Strings in [`big_txt`], and bytes in each.
const BIG_TXT_STRINGS: usize = 12;
const BIG_TXT_STRING_LEN: usize = 250;

/// The strings of [`BIG_NAME`]'s TXT record: 3,000 bytes in all, each string told apart
/// by its first two characters, so that a lost or repeated fragment shows.
pub fn big_txt() -> Vec<String> {
    (0..BIG_TXT_STRINGS)
        .map(|index| {
            let mut text = format!("{:02}", index + 10);
            while text.len() < BIG_TXT_STRING_LEN {
                text.push(char::from(b'a' + ((text.len() - 2) % 26) as u8));
            }
            text
        })
        .collect()
}

/// dnsmasq (Debian's `dnsmasq-base`) in the foreground on port 53 of `listen`, with no
/// upstream, no hosts file and no config file, answering [`BIG_NAME`] TXT with
/// [`big_txt`]. `--edns-packet-max` lifts its own limit on the answer (1232 bytes by
/// default, DNS Flag Day 2020) to what the clients here offer. Returns once it listens.
pub fn dns_server(netns: &Netns, listen: &[IpAddr]) -> Result<Process> {
    let mut args = vec![
        "/usr/sbin/dnsmasq".to_owned(),
        "--no-daemon".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        // Debian's dnsmasq-base creates no `dnsmasq` user to drop to.
        "--user=root".to_owned(),
        "--pid-file".to_owned(),
        "--port=53".to_owned(),
        "--bind-interfaces".to_owned(),
        "--edns-packet-max=4096".to_owned(),
        // Strings without quotes: on the command line dnsmasq would keep them.
        format!("--txt-record={BIG_NAME},{}", big_txt().join(",")),
    ];
    args.extend(listen.iter().map(|addr| format!("--listen-address={addr}")));
    let mut server = netns.spawn(args)?;
    traffic::wait_for_listener(netns, Transport::Udp, 53, &mut server)?;
    Ok(server)
}

/// A DNS answer as `dig` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigAnswer {
    /// The header's TC flag: the server cut the answer short.
    pub truncated: bool,
    /// `MSG SIZE rcvd`: the DNS message's size, the UDP payload.
    pub size: usize,
    /// The strings of each TXT record of the answer section.
    pub txt: Vec<Vec<String>>,
}

impl DigAnswer {
    /// Parses `dig`'s default output; an error if it has no header or size.
    pub fn parse(text: &str) -> Result<Self> {
        // `;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1`
        let flags = text
            .lines()
            .find_map(|line| line.strip_prefix(";; flags: "))
            .and_then(|rest| rest.split_once(';'))
            .map(|(flags, _)| flags)
            .with_context(|| format!("no flags line in dig's output:\n{text}"))?;
        let size = text
            .lines()
            .find_map(|line| line.strip_prefix(";; MSG SIZE  rcvd: "))
            .with_context(|| format!("no message size in dig's output:\n{text}"))?;
        let size = size
            .trim()
            .parse()
            .with_context(|| format!("message size {size:?}"))?;
        // `big.test.		0	IN	TXT	"10ab..." "11ab..."`
        let txt = text
            .lines()
            .filter(|line| !line.starts_with(';'))
            .filter_map(|line| line.split_once("\tTXT\t"))
            .map(|(_, strings)| quoted_strings(strings))
            .collect::<Result<_>>()?;
        Ok(Self {
            truncated: flags.split_whitespace().any(|flag| flag == "tc"),
            size,
            txt,
        })
    }
}

/// The `"..."` strings of a TXT record's presentation form, unescaped.
fn quoted_strings(text: &str) -> Result<Vec<String>> {
    let mut strings = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut string = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => string.push(chars.next().context("escape at the end")?),
                        Some(c) => string.push(c),
                        None => bail!("unterminated string in {text:?}"),
                    }
                }
                strings.push(string);
            }
            c if c.is_whitespace() => {}
            _ => bail!("unquoted text in the TXT record {text:?}"),
        }
    }
    Ok(strings)
}

/// Asks `server` for [`BIG_NAME`] TXT over UDP only, offering a 4096-byte EDNS0 buffer:
/// `+notcp +ignore` keep dig from retrying a truncated answer over TCP, so only the UDP
/// answer counts. `None` if no answer came within 3 s.
pub fn dig_big_txt(netns: &Netns, server: IpAddr) -> Result<Option<DigAnswer>> {
    let output = netns.run([
        "/usr/bin/dig",
        &format!("@{server}"),
        BIG_NAME,
        "TXT",
        "+bufsize=4096",
        "+notcp",
        "+ignore",
        "+tries=1",
        "+time=3",
    ])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // dig exits 9 when no reply came.
    match output.status.code() {
        Some(0) => DigAnswer::parse(&stdout).map(Some),
        Some(9) => Ok(None),
        _ => bail!(
            "dig @{server} from {} failed ({}): {stdout}{}",
            netns.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Sends the file `request` as one UDP datagram to `addr:port` from a connected socket
/// and writes the first datagram that comes back within 3 s to the file `answer`;
/// `false` if none came. Over IPv4 the datagram leaves with DF clear
/// (`IP_PMTUDISC_DONT`), so a router whose next link is smaller fragments it, as it
/// does for any sender that does not do path MTU discovery.
pub fn udp_exchange(
    netns: &Netns,
    addr: IpAddr,
    port: u16,
    request: &Path,
    answer: &Path,
) -> Result<bool> {
    let path = |path: &Path| path.to_str().context("non-UTF-8 path").map(str::to_owned);
    let out = netns.exec([
        PYTHON.to_owned(),
        "-c".to_owned(),
        UDP_EXCHANGE.to_owned(),
        addr.to_string(),
        port.to_string(),
        path(request)?,
        path(answer)?,
    ])?;
    match out.trim() {
        "answered" => Ok(true),
        "timeout" => Ok(false),
        other => bail!("the UDP exchange with {addr}:{port} printed {other:?}"),
    }
}

/// [`udp_exchange`]. Python's socket module has no `IP_MTU_DISCOVER`: 10 and
/// `IP_PMTUDISC_DONT` 0 are Linux's values (`linux/in.h`).
const UDP_EXCHANGE: &str = r#"
import socket, sys
host, port, request, answer = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
if family == socket.AF_INET:
    s.setsockopt(socket.IPPROTO_IP, 10, 0)
s.settimeout(3)
s.connect((host, port))
s.send(open(request, "rb").read())
try:
    data = s.recv(65535)
except socket.timeout:
    print("timeout")
    sys.exit(0)
open(answer, "wb").write(data)
print("answered")
"#;

/// A UDP socket on `port` (IPv4 and IPv6) that writes every datagram it receives to its
/// log ([`Process::log`]): empty as long as nothing arrived. Returns once it listens.
pub fn udp_sink(netns: &Netns, port: u16) -> Result<Process> {
    let mut sink = netns.spawn([
        "socat",
        "-u",
        &format!("UDP6-RECV:{port},ipv6only=0,reuseaddr"),
        "STDOUT",
    ])?;
    traffic::wait_for_listener(netns, Transport::Udp, port, &mut sink)?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_per_datagram_follow_the_mtu() {
        // ping -s 4000: 4008 bytes of ICMP in 1480 + 1480 + 1048 (IPv4), 1448 +
        // 1448 + 1112 (IPv6).
        assert_eq!(later_fragments(Family::V4, 4008, 1500), 2);
        assert_eq!(later_fragments(Family::V6, 4008, 1500), 2);
        assert_eq!(later_fragments(Family::V4, 1480, 1500), 0);
        assert_eq!(later_fragments(Family::V4, 1481, 1500), 1);
        assert_eq!(later_fragments(Family::V4, 8008, 1500), 5);
        assert_eq!(later_fragments(Family::V6, 8008, 1500), 5);
    }

    #[test]
    fn big_txt_is_3000_bytes_in_strings_dnsmasq_takes() {
        let strings = big_txt();
        assert_eq!(strings.iter().map(String::len).sum::<usize>(), 3000);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert!(
            strings
                .iter()
                .all(|s| s.bytes().all(|b| b.is_ascii_alphanumeric()))
        );
        assert_eq!(&strings[0][..4], "10ab");
        assert_eq!(&strings[11][..2], "21");
    }

    #[test]
    fn dig_output_parses() {
        let text = "; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @10.0.2.2 big.test TXT\n\
            ;; global options: +cmd\n;; Got answer:\n\
            ;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 7\n\
            ;; flags: qr aa rd ra; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n\n\
            ;; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags:; udp: 4096\n\
            ;; QUESTION SECTION:\n;big.test.\t\t\tIN\tTXT\n\n\
            ;; ANSWER SECTION:\n\
            big.test.\t\t0\tIN\tTXT\t\"10ab\" \"a \\\"q\\\"\"\n\
            big.test.\t\t0\tIN\tTXT\t\"x\"\n\n\
            ;; Query time: 4 msec\n;; MSG SIZE  rcvd: 2965\n";
        let answer = DigAnswer::parse(text).unwrap();
        assert_eq!(
            answer,
            DigAnswer {
                truncated: false,
                size: 2965,
                txt: vec![
                    vec!["10ab".to_owned(), "a \"q\"".to_owned()],
                    vec!["x".to_owned()]
                ],
            }
        );

        let cut = "\n;; flags: qr aa tc rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 0, \
                   ADDITIONAL: 1\n;; MSG SIZE  rcvd: 37\n";
        let answer = DigAnswer::parse(cut).unwrap();
        assert!(answer.truncated && answer.txt.is_empty() && answer.size == 37);
        assert!(DigAnswer::parse(";; communications error: timed out\n").is_err());
    }

    use crate::firewall::stats_with_counters as stats;

    #[test]
    fn no_fragment_drops_is_never_true_by_absence() {
        let old = stats(&[("drop_fragment", 0), ("accept_fragment", 4)]);
        assert_eq!(fragment_drops(&old).unwrap(), 0);
        let err = ensure_no_fragment_drops(&old, &old)
            .unwrap_err()
            .to_string();
        assert!(err.contains("drop_fragment_follows"), "{err}");
        assert!(fragment_drops(&stats(&[("accept_new", 1)])).is_err());

        let all = |follows| {
            let mut counters: Vec<_> = FRAGMENT_DROP_COUNTERS.iter().map(|n| (*n, 0)).collect();
            counters[1].1 = follows;
            stats(&counters)
        };
        ensure_no_fragment_drops(&all(3), &all(3)).unwrap();
        let err = ensure_no_fragment_drops(&all(3), &all(5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dropped 2 fragments"), "{err}");
        assert_eq!(fragment_drops(&all(5)).unwrap(), 5);
    }
}

use std::{net::IpAddr, process::ExitCode};

use anyhow::Context as _;
use clap::Subcommand;
use firewall::{
    maps::Maps,
    pins::PinDir,
    syntax, sys,
    table::{self, Filter, NatFilter},
};

#[derive(clap::Args, Debug)]
pub struct ConntrackArgs {
    #[command(subcommand)]
    pub command: ConntrackCommand,
}

#[derive(Subcommand, Debug)]
pub enum ConntrackCommand {
    /// List connections, like `conntrack -L`.
    List(ListArgs),
    /// Delete the connections the filters match, both halves and their NAT
    /// binding, like `conntrack -D`. Deleting nothing is an error.
    Delete(FilterArgs),
    /// Delete every connection, like `conntrack -F`.
    Flush,
    /// Count the connections the filters match, like `conntrack -C`.
    Count(FilterArgs),
    /// Pending expectations (announced data connections), like
    /// `conntrack -L expect`.
    Expect(ExpectArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExpectArgs {
    #[command(subcommand)]
    pub command: ExpectCommand,
}

#[derive(Subcommand, Debug)]
pub enum ExpectCommand {
    /// List live expectations.
    List {
        /// JSON array instead of conntrack lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// JSON array instead of conntrack lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `conntrack`'s original-tuple filters.
#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    /// Protocol: tcp, udp, icmp, icmpv6 or a number.
    #[arg(short = 'p', long = "proto", value_parser = parse_proto)]
    pub proto: Option<u8>,
    /// Original-direction source address.
    #[arg(short = 's', long)]
    pub src: Option<IpAddr>,
    /// Original-direction destination address.
    #[arg(short = 'd', long)]
    pub dst: Option<IpAddr>,
    #[arg(long)]
    pub sport: Option<u16>,
    #[arg(long)]
    pub dport: Option<u16>,
    /// Reply-direction source address.
    #[arg(short = 'r', long)]
    pub reply_src: Option<IpAddr>,
    /// Reply-direction destination address (a masqueraded connection's
    /// public address).
    #[arg(short = 'q', long)]
    pub reply_dst: Option<IpAddr>,
    #[arg(long = "reply-port-src")]
    pub reply_sport: Option<u16>,
    #[arg(long = "reply-port-dst")]
    pub reply_dport: Option<u16>,
    /// Address family: ipv4 or ipv6.
    #[arg(short = 'f', long, value_parser = ["ipv4", "ipv6"])]
    pub family: Option<String>,
    /// TCP or SCTP state, e.g. ESTABLISHED or TIME_WAIT.
    #[arg(long)]
    pub state: Option<String>,
    /// Flags that must all be set: ASSURED, SEEN_REPLY, UNREPLIED, EXPECTED
    /// (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = ["ASSURED", "SEEN_REPLY", "UNREPLIED", "EXPECTED"], ignore_case = true)]
    pub status: Vec<String>,
    /// Only source-translated connections (masquerade, SNAT).
    #[arg(long, group = "nat")]
    pub src_nat: bool,
    /// Only destination-translated connections (port forwards).
    #[arg(long, group = "nat")]
    pub dst_nat: bool,
    /// Only translated connections, either way.
    #[arg(long, group = "nat")]
    pub any_nat: bool,
}

fn parse_proto(s: &str) -> Result<u8, String> {
    syntax::proto_number(s).ok_or_else(|| format!("unknown protocol {s:?}"))
}

pub fn conntrack(pins: &PinDir, a: ConntrackArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        ConntrackCommand::List(l) => list(pins, l),
        ConntrackCommand::Delete(f) => delete(pins, Some(f)),
        ConntrackCommand::Flush => delete(pins, None),
        ConntrackCommand::Count(f) => {
            let (_, conns) = matching(pins, &f)?;
            println!("{}", conns.len());
            Ok(ExitCode::SUCCESS)
        }
        ConntrackCommand::Expect(ExpectArgs {
            command: ExpectCommand::List { json },
        }) => expect_list(pins, json),
    }
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            reply_src: self.reply_src,
            reply_dst: self.reply_dst,
            reply_sport: self.reply_sport,
            reply_dport: self.reply_dport,
            family: self
                .family
                .as_deref()
                .map(|f| if f == "ipv6" { "ipv6" } else { "ipv4" }),
            state: self.state.clone(),
            status: self.status.clone(),
            nat: if self.src_nat {
                Some(NatFilter::Src)
            } else if self.dst_nat {
                Some(NatFilter::Dst)
            } else if self.any_nat {
                Some(NatFilter::Any)
            } else {
                None
            },
        }
    }
}

/// The pinned maps and the live connections `f` matches.
fn matching(pins: &PinDir, f: &FilterArgs) -> anyhow::Result<(Maps, Vec<table::Connection>)> {
    matching_filter(pins, &f.filter())
}

fn matching_filter(
    pins: &PinDir,
    filter: &Filter,
) -> anyhow::Result<(Maps, Vec<table::Connection>)> {
    sys::require_root()?;
    let maps = Maps::from_pins(pins).context("reading the connection table")?;
    let conns = table::connections(&maps.conntrack_snapshot(), sys::monotonic_ns())
        .into_iter()
        .filter(|c| filter.matches(c))
        .collect();
    Ok((maps, conns))
}

fn list(pins: &PinDir, l: ListArgs) -> anyhow::Result<ExitCode> {
    let (_, conns) = matching(pins, &l.filter)?;
    if l.json {
        println!("{}", serde_json::to_string_pretty(&conns)?);
    } else {
        for c in &conns {
            println!("{}", table::conntrack_line(c));
        }
        // Like conntrack(8), the trailer goes to stderr so pipes see only
        // entries.
        eprintln!("{} flow entries have been shown.", conns.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `delete` (with filters) or `flush` (`None`): each connection's original
/// half first, then its reply half. Traffic may flow meanwhile: a packet
/// that meets the reply half alone is refused as a broken pair, which the
/// datapath removes, and the next one starts a fresh connection.
fn delete(pins: &PinDir, f: Option<FilterArgs>) -> anyhow::Result<ExitCode> {
    let flush = f.is_none();
    let (mut maps, conns) = match &f {
        Some(f) => matching(pins, f)?,
        None => matching_filter(pins, &Filter::default())?,
    };
    let mut deleted = 0;
    for c in &conns {
        let mut gone = false;
        for k in &c.keys {
            gone |= maps.conntrack.remove(k).is_ok();
        }
        if gone {
            deleted += 1;
            if !flush {
                println!("{}", table::conntrack_line(c));
            }
        }
    }
    if flush {
        eprintln!("connection tracking table has been emptied ({deleted} flow entries deleted).");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{deleted} flow entries have been deleted.");
    if deleted == 0 {
        anyhow::bail!("no connection matches the filters: nothing was deleted");
    }
    Ok(ExitCode::SUCCESS)
}

fn expect_list(pins: &PinDir, json: bool) -> anyhow::Result<ExitCode> {
    sys::require_root()?;
    let maps = Maps::from_pins(pins).context("reading the expectation table")?;
    let entries: Vec<_> = maps.expect.iter().filter_map(Result::ok).collect();
    let list = table::expectations(&entries, sys::monotonic_ns());
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for x in &list {
            println!("{}", table::expect_line(x));
        }
        eprintln!("{} expectations have been shown.", list.len());
    }
    Ok(ExitCode::SUCCESS)
}

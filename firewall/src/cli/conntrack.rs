use std::{net::IpAddr, process::ExitCode};

use anyhow::Context as _;
use clap::Subcommand;
use firewall::{
    maps::Maps,
    pins::PinDir,
    syntax, sys,
    table::{self, Filter},
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
}

fn parse_proto(s: &str) -> Result<u8, String> {
    syntax::proto_number(s).ok_or_else(|| format!("unknown protocol {s:?}"))
}

pub fn conntrack(pins: &PinDir, a: ConntrackArgs) -> anyhow::Result<ExitCode> {
    let l = match a.command {
        ConntrackCommand::List(l) => l,
        ConntrackCommand::Expect(ExpectArgs {
            command: ExpectCommand::List { json },
        }) => return expect_list(pins, json),
    };
    sys::require_root()?;
    let maps = Maps::from_pins(pins).context("reading the connection table")?;
    let filter = Filter {
        proto: l.proto,
        src: l.src,
        dst: l.dst,
        sport: l.sport,
        dport: l.dport,
    };
    let conns: Vec<_> = table::connections(&maps.conntrack_snapshot(), sys::monotonic_ns())
        .into_iter()
        .filter(|c| filter.matches(c))
        .collect();
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

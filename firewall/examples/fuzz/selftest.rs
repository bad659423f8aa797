//! `fuzz --self-test`: each invariant's check, shown to fail on a state
//! that breaks it. A check that cannot fail proves nothing; here every one
//! of them is given a broken table, counter or frame, made by hand through
//! the maps, and must name the invariant that broke.
//!
//! Not covered: the return-code check (the programs cannot be made to
//! return something else) and the ager's (it checks the daemon's ager,
//! which cannot be made to remove a live entry from here).

use anyhow::{Result, bail};
use aya::maps::PerCpuValues;
use firewall_common::{
    stats::Counter,
    tcp::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use crate::{
    common::{sa, tcp, tcp_key},
    masquerade,
    replay::{self, Failed},
    router::{Origin, Router, Side},
    state,
    topology::PHASES,
};

/// A broken state, named, the invariant that must catch it, and the case
/// that makes it and returns what the checks said.
type Case = (&'static str, &'static str, fn() -> Option<Failed>);

/// Runs every case; an error names the first check that did not fire.
pub fn run() -> Result<()> {
    let cases: [Case; 6] = [
        (
            "a connection without its reply half",
            "both halves of every connection exist and point at each other",
            half_missing,
        ),
        (
            "a translation its reply does not undo",
            "no two connections hold the same translated tuple",
            translation_undone_wrongly,
        ),
        (
            "a verdict counted with no run",
            "the verdict counters add up to the packets processed",
            counter_without_run,
        ),
        (
            "a verdict counted twice in one run",
            "every run counts exactly one verdict, the one it returned",
            two_verdicts,
        ),
        (
            "an entry that changed while a packet was dropped",
            "a dropped packet changes no connection entry",
            changed_on_drop,
        ),
        (
            "a LAN source leaving wan0",
            "no packet leaves a masquerading interface with an untranslated LAN source",
            lan_source_out,
        ),
    ];
    for (what, invariant, case) in cases {
        match case() {
            Some(f) if f.invariant == invariant => {
                println!("self-test: {what}: caught ({})", f.detail)
            }
            Some(f) => bail!(
                "self-test: {what}: caught as {:?}, not {invariant:?}",
                f.invariant
            ),
            None => bail!("self-test: {what}: not caught by {invariant:?}"),
        }
    }
    println!("self-test: every check fired");
    Ok(())
}

const CLIENT: &str = "10.0.1.5:40000";
const SERVER: &str = "203.0.113.7:80";
const PUBLIC: &str = "10.0.2.1:40000";

/// The `nat` phase with one masqueraded connection, answered.
fn with_connection() -> Router {
    let mut r = Router::new(PHASES[0], true);
    let (client, server, public) = (sa(CLIENT), sa(SERVER), sa(PUBLIC));
    for (origin, frame) in [
        (Side::Lan, tcp(client, server, TCP_SYN, 1000, 0, b"")),
        (
            Side::Wan,
            tcp(server, public, TCP_SYN | TCP_ACK, 5000, 1001, b""),
        ),
        (Side::Lan, tcp(client, server, TCP_ACK, 1001, 5001, b"")),
    ] {
        r.inject(Origin::From(origin), &frame)
            .expect("a plain handshake passes every check");
    }
    r
}

fn half_missing() -> Option<Failed> {
    let mut r = with_connection();
    let _ = r.h.maps.conntrack.remove(&tcp_key(sa(SERVER), sa(PUBLIC)));
    r.resync();
    replay::whole_table(&mut r).err()
}

fn translation_undone_wrongly() -> Option<Failed> {
    let mut r = with_connection();
    let key = tcp_key(sa(CLIENT), sa(SERVER));
    let mut e = r.h.entry(&key)?;
    e.nat_port = e.nat_port.wrapping_add(1);
    r.h.maps.conntrack.insert(key, e, 0).ok()?;
    r.resync();
    replay::whole_table(&mut r).err()
}

/// Counts `c` once more (on the first CPU).
fn bump(r: &mut Router, c: Counter) -> Option<()> {
    let mut values: Vec<u64> = r.h.maps.stats.get(&(c as u32), 0).ok()?.to_vec();
    values[0] += 1;
    let values = PerCpuValues::try_from(values).ok()?;
    r.h.maps.stats.set(c as u32, values, 0).ok()
}

fn counter_without_run() -> Option<Failed> {
    let mut r = with_connection();
    bump(&mut r, Counter::AcceptNew)?;
    r.resync();
    replay::whole_table(&mut r).err()
}

fn two_verdicts() -> Option<Failed> {
    let mut r = with_connection();
    // Counted between runs without a resync: the next run seems to count it.
    bump(&mut r, Counter::DropRule)?;
    let frame = tcp(sa(CLIENT), sa(SERVER), TCP_ACK, 1001, 5001, b"data");
    r.inject(Origin::From(Side::Lan), &frame)
        .err()
        .map(Failed::from)
}

fn changed_on_drop() -> Option<Failed> {
    let mut r = with_connection();
    let key = tcp_key(sa(CLIENT), sa(SERVER));
    let mut e = r.h.entry(&key)?;
    e.flags ^= 0x80;
    r.h.maps.conntrack.insert(key, e, 0).ok()?;
    // SYN|FIN|RST is never valid: dropped before any lookup.
    let frame = tcp(
        sa(SERVER),
        sa(PUBLIC),
        TCP_SYN | TCP_FIN | TCP_RST,
        1,
        1,
        b"",
    );
    r.inject(Origin::From(Side::Wan), &frame)
        .err()
        .map(Failed::from)
}

fn lan_source_out() -> Option<Failed> {
    let frame = tcp(sa(CLIENT), sa(SERVER), TCP_ACK, 1, 1, b"");
    masquerade::no_untranslated_lan_source(&frame, false, false, true, state::Table::new)
        .err()
        .map(|d| {
            Failed::table(
                "no packet leaves a masquerading interface with an untranslated LAN source",
                d,
            )
        })
}

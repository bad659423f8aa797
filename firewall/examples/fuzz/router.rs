//! A frame's way through the router, as the kernel would take it: XDP on
//! the arrival interface, tcx ingress, routing, tcx egress on the way out;
//! or, for what the host itself sends, tcx egress alone. Every program run
//! is followed by the per-run invariants (`checks`), with the counters and
//! the connection table read before and after it.
//!
//! Between the hooks, the kernel's part is emulated by `stack`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use firewall_common::stats::Counter;

use crate::{
    checks::{self, HookKind, RunRecord},
    common::{Harness, Verdict},
    masquerade, stack,
    state::{self, RawTable, Table},
    topology::{self, Phase},
    view,
};

/// One of the router's two interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Lan,
    Wan,
}

/// Where a frame enters the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Received on `lan0` or `wan0`.
    From(Side),
    /// Sent by the host's stack out of that interface: from one of its own
    /// addresses, an ICMP error from the address the offending packet was
    /// sent to.
    Host(Side),
    /// Sent by the host out of that interface through a raw socket: any
    /// bytes. The masquerade invariant makes no promise about these (the
    /// host's OUTPUT policy accepts what it forges).
    Raw(Side),
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::From(Side::Lan) => "lan",
            Origin::From(Side::Wan) => "wan",
            Origin::Host(Side::Lan) => "host-lan",
            Origin::Host(Side::Wan) => "host-wan",
            Origin::Raw(Side::Lan) => "raw-lan",
            Origin::Raw(Side::Wan) => "raw-wan",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        Some(match s {
            "lan" => Origin::From(Side::Lan),
            "wan" => Origin::From(Side::Wan),
            "host-lan" => Origin::Host(Side::Lan),
            "host-wan" => Origin::Host(Side::Wan),
            "raw-lan" => Origin::Raw(Side::Lan),
            "raw-wan" => Origin::Raw(Side::Wan),
            _ => return None,
        })
    }

    /// The same origin for bytes the host's stack would not have made.
    pub fn raw(self) -> Origin {
        match self {
            Origin::Host(s) => Origin::Raw(s),
            other => other,
        }
    }

    pub fn is_host(self) -> bool {
        matches!(self, Origin::Host(_) | Origin::Raw(_))
    }
}

/// One program run, named for reports.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    Xdp(Side),
    TcIngress(Side),
    /// tcx egress on the interface, for a packet that arrived on `from`
    /// (`None`: the host's own).
    TcEgress {
        on: Side,
        from: Option<Side>,
    },
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |s: &Side| match s {
            Side::Lan => "lan0",
            Side::Wan => "wan0",
        };
        match self {
            Hook::Xdp(s) => write!(f, "XDP on {}", name(s)),
            Hook::TcIngress(s) => write!(f, "tcx ingress on {}", name(s)),
            Hook::TcEgress { on, from: None } => write!(f, "tcx egress on {} (host)", name(on)),
            Hook::TcEgress { on, from: Some(i) } => {
                write!(f, "tcx egress on {} (from {})", name(on), name(i))
            }
        }
    }
}

/// Where a frame ended.
#[derive(Clone, Debug)]
pub enum Fate {
    /// Left the router, as these bytes.
    Out(Vec<u8>),
    /// Delivered to the host (these bytes, after tcx ingress).
    Local(Vec<u8>),
    /// Dropped by a program, sent back by XDP (REJECT), forwarded by the
    /// XDP fast path, or not something the stack would route.
    Gone,
}

/// An invariant that did not hold.
#[derive(Debug)]
pub struct Failure {
    pub invariant: &'static str,
    pub detail: String,
    pub hook: Hook,
    /// The frame the failing run was given.
    pub frame: Vec<u8>,
}

/// Runs per hook, for the summary and the counters' sum.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub xdp: u64,
    pub tc_ingress: u64,
    pub tc_egress: u64,
    /// Runs that counted two verdicts (accepted, then dropped by NAT or the
    /// FTP helper at tcx egress).
    pub accepted_then_dropped: u64,
    /// tcx ingress runs that passed without a verdict counter (it counts
    /// only drops and rewrites).
    pub tc_ingress_silent: u64,
    /// tcx egress runs of forwarded packets whose verdict was their
    /// translation (`nat_src_rewritten`, which elsewhere only notes a
    /// rewrite).
    pub forwarded_translations: u64,
    /// Frames a tc test run cannot take (see `stack::tc_runnable`), not run.
    pub not_runnable: u64,
    /// Entries the ager removed.
    pub aged: u64,
}

pub struct Router {
    pub h: Harness,
    pub phase: Phase,
    cpus: usize,
    /// The state after the last run.
    counters: Vec<u64>,
    table: RawTable,
    /// The buffers the next run's table is read into.
    spare: RawTable,
    /// How much each counter grew in the last run.
    last_delta: Vec<u64>,
    pub tally: Tally,
    /// Known deviations are failures (`--strict`).
    pub strict: bool,
    /// How often each known deviation was tolerated.
    pub known: Vec<(checks::Known, u64)>,
    /// Entries whose peer another connection took over
    /// (`ReplyEntryReplacesAnother`): the pairing check passes over them.
    pub victims: std::collections::HashSet<firewall_common::CtKey>,
    /// Self-inverse entries seen (`SelfInverseTuple`), counted once each.
    pub selves: std::collections::HashSet<firewall_common::CtKey>,
}

impl Router {
    pub fn new(phase: Phase, strict: bool) -> Router {
        let setup = crate::common::Setup {
            interfaces: phase.interfaces,
            ip: topology::ROUTER_IP,
            sysctls: topology::SYSCTLS,
        };
        let h = Harness::with_table(&setup, phase.config, phase.table);
        let cpus = state::possible_cpus();
        let counters = state::counters(&h.maps, cpus);
        let table = RawTable::new(&h.maps);
        let spare = RawTable::new(&h.maps);
        Router {
            h,
            phase,
            cpus,
            counters,
            table,
            spare,
            last_delta: vec![0; Counter::COUNT as usize],
            tally: Tally::default(),
            strict,
            known: checks::Known::ALL.iter().map(|k| (*k, 0)).collect(),
            victims: Default::default(),
            selves: Default::default(),
        }
    }

    pub fn counters(&self) -> &[u64] {
        &self.counters
    }

    /// The connection table after the last run, decoded.
    pub fn table(&self) -> Table {
        self.table.decode()
    }

    /// Reads the state again after something other than a program run
    /// (the ager, a change of clock) changed it.
    pub fn resync(&mut self) {
        self.counters = state::counters(&self.h.maps, self.cpus);
        self.table.read(&self.h.maps);
    }

    /// Pushes `frame` in at `origin` and follows it through the router.
    pub fn inject(&mut self, origin: Origin, frame: &[u8]) -> Result<Fate, Failure> {
        match origin {
            Origin::Host(side) => self.egress(side, None, frame.to_vec(), true),
            Origin::Raw(side) => self.egress(side, None, frame.to_vec(), false),
            Origin::From(side) => {
                let (v, out) = self.run(Hook::Xdp(side), frame)?;
                if v != Verdict::Pass {
                    return Ok(Fate::Gone);
                }
                if !stack::tc_runnable(&out) {
                    self.tally.not_runnable += 1;
                    return Ok(Fate::Gone);
                }
                let (v, out) = self.run(Hook::TcIngress(side), &out)?;
                if v != Verdict::Pass {
                    return Ok(Fate::Gone);
                }
                match stack::route(side, &out) {
                    stack::Next::Local => Ok(Fate::Local(out)),
                    stack::Next::Gone => Ok(Fate::Gone),
                    stack::Next::TimeExceeded(error) => {
                        // The stack's answer leaves through tcx egress.
                        self.egress(side, None, error, true)?;
                        Ok(Fate::Gone)
                    }
                    stack::Next::Forward(to, fwd) => self.egress(to, Some(side), fwd, true),
                }
            }
        }
    }

    /// tcx egress on `on`; `promised`: the masquerade invariant applies (not
    /// to raw bytes from the host).
    fn egress(
        &mut self,
        on: Side,
        from: Option<Side>,
        frame: Vec<u8>,
        promised: bool,
    ) -> Result<Fate, Failure> {
        if !stack::tc_runnable(&frame) {
            self.tally.not_runnable += 1;
            return Ok(Fate::Gone);
        }
        let hook = Hook::TcEgress { on, from };
        let (v, out) = self.run(hook, &frame)?;
        if v != Verdict::Pass {
            return Ok(Fate::Gone);
        }
        let local_error = self.last_delta[Counter::AcceptLocalIcmpError as usize] > 0;
        if on == Side::Wan && self.phase.masquerade && promised {
            match masquerade::no_untranslated_lan_source(
                &out,
                from.is_none(),
                local_error,
                self.strict,
                || self.table.decode(),
            ) {
                Ok(None) => {}
                Ok(Some(k)) => self.note(k, 1),
                Err(detail) => {
                    return Err(Failure {
                        invariant: "no packet leaves a masquerading interface with an untranslated LAN source",
                        detail,
                        hook,
                        frame,
                    });
                }
            }
        }
        Ok(Fate::Out(out))
    }

    /// One program run and the per-run invariants.
    fn run(&mut self, hook: Hook, frame: &[u8]) -> Result<(Verdict, Vec<u8>), Failure> {
        let result = {
            let h = &self.h;
            let (lan, wan) = (h.lan, h.wan);
            let idx = |s: Side| if s == Side::Lan { lan } else { wan };
            quiet_panics(true);
            let result = catch_unwind(AssertUnwindSafe(|| match hook {
                Hook::Xdp(s) => h.xdp_out(idx(s), frame),
                Hook::TcIngress(s) => h.tc_ingress(idx(s), frame),
                Hook::TcEgress { on, from } => h.tc_egress_on(from.map_or(0, idx), idx(on), frame),
            }));
            quiet_panics(false);
            result
        };
        let fail = |invariant, detail| Failure {
            invariant,
            detail,
            hook,
            frame: frame.to_vec(),
        };
        let (verdict, out) = result.map_err(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            // The harness panics on a return code it does not know
            // ("... returned N") and on a test run the kernel refused.
            if msg.contains(" returned ") {
                fail("every return code is one the program defines", msg)
            } else {
                fail(
                    "BPF_PROG_TEST_RUN takes the frame (a limit of the harness, not the datapath)",
                    msg,
                )
            }
        })?;
        let before_counters =
            std::mem::replace(&mut self.counters, state::counters(&self.h.maps, self.cpus));
        self.spare.read(&self.h.maps);
        std::mem::swap(&mut self.table, &mut self.spare);
        // `spare` now holds the table before the run; decoded only if a
        // drop changed it.
        let changed = !self.table.same(&self.spare);
        let created = self.counters[Counter::CtCreated as usize]
            > before_counters[Counter::CtCreated as usize];
        let (before_table, after_table) = if changed && (is_drop(verdict) || created) {
            (self.spare.decode(), self.table.decode())
        } else {
            (Table::new(), Table::new())
        };
        if changed && created {
            // Creation is where an entry of another connection could be
            // taken over: checked at the moment, with the frame.
            let victims =
                checks::creation_keeps_others(&before_table, &after_table).map_err(|d| {
                    fail(
                        "both halves of every connection exist and point at each other",
                        d,
                    )
                })?;
            if !victims.is_empty() {
                if self.strict {
                    return Err(fail(
                        "both halves of every connection exist and point at each other",
                        format!("creating a connection replaced the peers of {victims:?}"),
                    ));
                }
                self.note(checks::Known::ReplyEntryReplacesAnother, 1);
                self.victims.extend(victims);
            }
        }
        let kind = match hook {
            Hook::Xdp(_) => {
                self.tally.xdp += 1;
                HookKind::Xdp
            }
            Hook::TcIngress(_) => {
                self.tally.tc_ingress += 1;
                HookKind::TcIngress
            }
            Hook::TcEgress { from: None, .. } => {
                self.tally.tc_egress += 1;
                HookKind::TcEgressLocal
            }
            Hook::TcEgress { from: Some(_), .. } => {
                self.tally.tc_egress += 1;
                HookKind::TcEgressForwarded
            }
        };
        for ((d, a), b) in self
            .last_delta
            .iter_mut()
            .zip(&self.counters)
            .zip(&before_counters)
        {
            *d = a.wrapping_sub(*b);
        }
        let delta = &self.last_delta;
        let seen = view::view(frame);
        let record = RunRecord {
            kind,
            verdict,
            delta,
            before: &before_table,
            after: &after_table,
            now: firewall::sys::monotonic_ns(),
            frame_len: frame.len(),
            first_fragment: seen.as_ref().is_some_and(|v| v.first_fragment),
            tcp_flags: seen.as_ref().and_then(|v| v.tcp_flags(frame)),
            strict: self.strict,
        };
        let shape = checks::verdict_counters(&record).map_err(|d| {
            fail(
                "every run counts exactly one verdict, the one it returned",
                d,
            )
        })?;
        match shape {
            checks::Shape::Single(c) if is_drop(verdict) => {
                let mut known = Vec::new();
                checks::dropped_changes_nothing(&record, c, &mut known)
                    .map_err(|d| fail("a dropped packet changes no connection entry", d))?;
                for k in known {
                    self.note(k, 1);
                }
            }
            checks::Shape::Single(Counter::NatSrcRewritten) => {
                self.tally.forwarded_translations += 1;
            }
            checks::Shape::Single(_) => {}
            checks::Shape::AcceptedThenDropped => self.tally.accepted_then_dropped += 1,
            checks::Shape::Silent => self.tally.tc_ingress_silent += 1,
        }
        Ok((verdict, out))
    }

    /// Moves the clock `secs` seconds forward for every connection (see
    /// `table::advance_clock`), then runs the ager and checks it. Returns
    /// the entries the ager removed.
    pub fn advance_clock(&mut self, secs: u64) -> Result<u64, crate::replay::Failed> {
        let snapshot = self.table();
        crate::table::advance_clock(&mut self.h.maps, &snapshot, secs * 1_000_000_000);
        let aged = crate::table::age(&mut self.h.maps)
            .map_err(|d| crate::replay::Failed::table("the ager removes only what has expired", d));
        self.resync();
        if let Ok(n) = aged {
            self.tally.aged += n;
        }
        aged
    }

    /// Counts `n` tolerations of the known deviation `k`.
    pub fn note(&mut self, k: checks::Known, n: u64) {
        if let Some(slot) = self.known.iter_mut().find(|(known, _)| *known == k) {
            slot.1 += n;
        }
    }

    /// The sum of every verdict counter, against the runs the fuzzer made.
    pub fn check_counter_sum(&self) -> Result<(), String> {
        let sum: u64 = Counter::ALL
            .iter()
            .filter(|c| checks::is_verdict(**c))
            .map(|c| self.counters[*c as usize])
            .sum();
        let Tally {
            xdp,
            tc_ingress,
            tc_egress,
            accepted_then_dropped,
            tc_ingress_silent,
            forwarded_translations: forwarded_nat,
            not_runnable: _,
            aged: _,
        } = self.tally;
        let want = xdp + tc_ingress - tc_ingress_silent + tc_egress + accepted_then_dropped;
        // tcx egress of forwarded packets counts a translation as its pass.
        if sum + forwarded_nat != want {
            return Err(format!(
                "verdict counters sum to {sum} (+{forwarded_nat} forwarded translations), \
                 but the runs make {want}: {xdp} XDP, {tc_ingress} tcx ingress \
                 ({tc_ingress_silent} without a verdict), {tc_egress} tcx egress, \
                 {accepted_then_dropped} counted twice"
            ));
        }
        Ok(())
    }
}

fn is_drop(v: Verdict) -> bool {
    matches!(v, Verdict::Drop | Verdict::Tx)
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The harness panics on a return code it does not know; the fuzzer
/// catches that and reports it with the frame, so the panic message is not
/// printed twice (nor with a backtrace) while a program runs.
fn quiet_panics(on: bool) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
    QUIET.with(|q| q.set(on));
}

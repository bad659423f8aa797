//! The `firewall` daemon under test, and typed views of its JSON output.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Output},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use serde::Deserialize;
use tempfile::TempDir;

use crate::{
    Config, Netns, Probe, TEST_BPFFS,
    cmd::{self, Process},
    poll,
};

/// How long `run` may take to attach and pin before `status` reports it.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary under test: `$FIREWALL_BIN`, else `target/debug/firewall` of this
/// workspace (honouring `$CARGO_TARGET_DIR`).
pub fn firewall_bin() -> Result<PathBuf> {
    let bin = match std::env::var_os("FIREWALL_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the tests crate lives in the workspace");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target"));
            target.join("debug").join("firewall")
        }
    };
    ensure!(
        bin.is_file(),
        "firewall binary {} not found: run `cargo build -p firewall` or set FIREWALL_BIN",
        bin.display()
    );
    Ok(bin)
}

/// Mounts the bpffs at [`TEST_BPFFS`] unless it is mounted already.
pub fn mount_test_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next(), fields.next(), fields.next());
        target == Some(TEST_BPFFS) && fstype == Some("bpf")
    });
    if mounted {
        return Ok(());
    }
    std::fs::create_dir_all(TEST_BPFFS).with_context(|| format!("creating {TEST_BPFFS}"))?;
    let output = cmd::output_of(
        &mut cmd::command(None, ["mount", "-t", "bpf", "bpf", TEST_BPFFS]),
        None,
    )?;
    // Another test process may have won the race to mount it; that is fine too.
    if !output.status.success() && !is_bpffs_mounted()? {
        bail!(
            "mounting bpffs at {TEST_BPFFS}: {}",
            cmd::failure_text(&output)
        );
    }
    Ok(())
}

fn is_bpffs_mounted() -> Result<bool> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(TEST_BPFFS)))
}

/// A firewall daemon running in one namespace, with its own pin dir under
/// [`TEST_BPFFS`].
///
/// Borrowing the namespace makes the compiler drop the firewall first. On drop the daemon
/// is killed, `firewall down` removes links and pins, and the pin dir is deleted.
pub struct Firewall<'ns> {
    netns: &'ns Netns,
    bin: PathBuf,
    pin_dir: PathBuf,
    config: PathBuf,
    /// Config file and daemon logs; kept until drop so failures can quote the logs.
    workdir: TempDir,
    daemon: Option<Process>,
    /// Logs of daemons that were stopped or killed, for error messages.
    past_logs: String,
}

impl<'ns> Firewall<'ns> {
    /// Writes `config` and picks a pin dir, without starting anything.
    pub fn prepare(netns: &'ns Netns, config: &Config) -> Result<Self> {
        let bin = firewall_bin()?;
        mount_test_bpffs()?;
        let workdir = tempfile::Builder::new()
            .prefix("fw-test-")
            .tempdir()
            .context("creating a temp dir")?;
        let config_path = workdir.path().join("firewall.toml");
        std::fs::write(&config_path, config.to_toml())
            .with_context(|| format!("writing {}", config_path.display()))?;
        let pin_dir = Path::new(TEST_BPFFS).join(netns.name());
        Ok(Self {
            netns,
            bin,
            pin_dir,
            config: config_path,
            workdir,
            daemon: None,
            past_logs: String::new(),
        })
    }

    /// [`Firewall::prepare`] and [`Firewall::run`].
    pub fn start(netns: &'ns Netns, config: &Config) -> Result<Self> {
        let mut firewall = Self::prepare(netns, config)?;
        firewall.run(&[])?;
        Ok(firewall)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn netns(&self) -> &'ns Netns {
        self.netns
    }

    /// Starts `firewall run --config FILE EXTRA...` and waits until `status --json`
    /// names this daemon's pid: it has then attached every interface (or, when it
    /// adopts a previous run's pins, swapped its programs into them).
    pub fn run(&mut self, extra: &[&str]) -> Result<()> {
        ensure!(self.daemon.is_none(), "the daemon is already running");
        let mut args: Vec<&OsStr> = vec![
            self.bin.as_os_str(),
            "--pin-dir".as_ref(),
            self.pin_dir.as_os_str(),
            "run".as_ref(),
            "--config".as_ref(),
            self.config.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let daemon = self.netns.spawn(args)?;
        let daemon = self.daemon.insert(daemon);
        let netns = self.netns;
        let (bin, pin_dir) = (&self.bin, &self.pin_dir);
        let pid = daemon.pid();
        poll(
            "`firewall status` to report this daemon",
            READY_TIMEOUT,
            || {
                if let Some(exit) = daemon.try_wait()? {
                    bail!("`firewall run` exited with {exit}");
                }
                let output = firewall_command(netns, bin, pin_dir, ["status", "--json"])?;
                let status: serde_json::Value = serde_json::from_slice(&output.stdout)
                    .with_context(|| {
                        format!("parsing `status --json`: {}", cmd::failure_text(&output))
                    })?;
                Ok(
                    if output.status.success()
                        && status["daemon_pid"].as_u64() == Some(u64::from(pid))
                    {
                        Probe::Ready(())
                    } else {
                        Probe::Pending(status.to_string())
                    },
                )
            },
        )
        .with_context(|| {
            format!(
                "starting the firewall in {}; daemon log:\n{}",
                netns.name(),
                self.daemon_log()
            )
        })
    }

    /// What every daemon of this firewall wrote to stdout and stderr so far.
    pub fn daemon_log(&self) -> String {
        let current = self.daemon.as_ref().map(Process::log).unwrap_or_default();
        format!("{}{current}", self.past_logs)
    }

    /// Ends the daemon with `end` and keeps its log.
    fn end_daemon(
        &mut self,
        end: impl FnOnce(&mut Process) -> Result<ExitStatus>,
    ) -> Result<ExitStatus> {
        let mut daemon = self.daemon.take().context("the daemon is not running")?;
        let status = end(&mut daemon);
        self.past_logs.push_str(&daemon.log());
        self.past_logs.push_str("-- daemon ended --\n");
        status
    }

    /// The daemon process, while one runs.
    pub fn daemon(&mut self) -> Option<&mut Process> {
        self.daemon.as_mut()
    }

    /// SIGTERM, then waits for the exit. Pins stay unless run with `--detach-on-exit`.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.end_daemon(|daemon| {
            daemon
                .terminate(STOP_TIMEOUT)
                .context("stopping the firewall with SIGTERM")
        })
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.end_daemon(Process::kill)
    }

    /// SIGTERM, then `run` again with the same pin dir and config.
    pub fn restart(&mut self) -> Result<()> {
        let status = self.stop()?;
        ensure!(
            status.success(),
            "the daemon exited with {status} on SIGTERM"
        );
        self.run(&[])
    }

    /// `firewall --pin-dir DIR ARGS...` in the namespace, whatever its exit status.
    pub fn command<I>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        firewall_command(self.netns, &self.bin, &self.pin_dir, args)
    }

    /// Like [`Firewall::command`], but a non-zero exit is an error; returns stdout.
    pub fn cli<I>(&self, args: I) -> Result<String>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().collect();
        let output = self.command(&args)?;
        if !output.status.success() {
            let words: Vec<_> = args
                .iter()
                .map(|arg| arg.as_ref().to_string_lossy())
                .collect();
            bail!(
                "`firewall {}` failed ({}): {}",
                words.join(" "),
                output.status,
                cmd::failure_text(&output)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `status`: `true` on exit 0 (attached), `false` on exit 1, an error otherwise.
    pub fn is_attached(&self) -> Result<bool> {
        let output = self.command(["status"])?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => bail!(
                "`firewall status` failed ({}): {}",
                output.status,
                cmd::failure_text(&output)
            ),
        }
    }

    /// `conntrack list --json FILTER...`, e.g. `&["-p", "tcp", "--dport", "8080"]`.
    pub fn conntrack(&self, filter: &[&str]) -> Result<Vec<CtEntry>> {
        let args = ["conntrack", "list", "--json"].iter().chain(filter);
        let json = self.cli(args)?;
        serde_json::from_str(&json)
            .with_context(|| format!("parsing `conntrack list --json` output:\n{json}"))
    }

    /// `stats --json`.
    pub fn stats(&self) -> Result<Stats> {
        let json = self.cli(["stats", "--json"])?;
        serde_json::from_str(&json)
            .with_context(|| format!("parsing `stats --json` output:\n{json}"))
    }

    /// One counter of `stats --json`.
    pub fn counter(&self, name: &str) -> Result<u64> {
        self.stats()?.counter(name)
    }

    /// Runs `action` and returns its result with how much counter `name` grew meanwhile.
    pub fn count_during<T>(
        &self,
        name: &str,
        action: impl FnOnce() -> Result<T>,
    ) -> Result<(T, u64)> {
        let before = self.counter(name)?;
        let result = action()?;
        let after = self.counter(name)?;
        Ok((result, after.saturating_sub(before)))
    }

    /// `down`: removes every link and pin.
    pub fn down(&self) -> Result<()> {
        self.cli(["down"]).map(drop)
    }
}

impl Drop for Firewall<'_> {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
        }
        if let Err(err) = self.down() {
            eprintln!("warning: {err:#}");
        }
        if self.pin_dir.exists()
            && let Err(err) = std::fs::remove_dir_all(&self.pin_dir)
        {
            eprintln!("warning: removing {}: {err}", self.pin_dir.display());
        }
        let Self { workdir, .. } = self;
        if std::thread::panicking() {
            // Keep the evidence of a failed test.
            eprintln!("firewall test files kept in {}", workdir.path().display());
            workdir.disable_cleanup(true);
        }
    }
}

fn firewall_command<I>(netns: &Netns, bin: &Path, pin_dir: &Path, args: I) -> Result<Output>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    let mut words: Vec<&OsStr> = vec![bin.as_os_str(), "--pin-dir".as_ref(), pin_dir.as_os_str()];
    let args: Vec<_> = args.into_iter().collect();
    words.extend(args.iter().map(AsRef::as_ref));
    netns.run(words)
}

/// One entry of `conntrack list --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct CtEntry {
    pub proto: String,
    pub family: String,
    /// Netfilter's TCP state name; TCP only.
    #[serde(default)]
    pub tcp_state: Option<String>,
    pub orig: CtTuple,
    pub reply: CtTuple,
    pub expires_in: u64,
    pub flags: Vec<String>,
    pub packets: CtCounters,
    pub bytes: CtCounters,
}

impl CtEntry {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// A direction's tuple: ports for TCP and UDP, `id` and `type` for ICMP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CtTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    #[serde(default)]
    pub sport: Option<u16>,
    #[serde(default)]
    pub dport: Option<u16>,
    #[serde(default)]
    pub id: Option<u16>,
    #[serde(default, rename = "type")]
    pub icmp_type: Option<u8>,
}

impl CtTuple {
    /// A TCP or UDP tuple, to compare a listed one with.
    pub fn ports(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport: Some(sport),
            dport: Some(dport),
            id: None,
            icmp_type: None,
        }
    }

    /// An ICMP query tuple, to compare a listed one with.
    pub fn icmp(src: IpAddr, dst: IpAddr, id: u16, icmp_type: u8) -> Self {
        Self {
            src,
            dst,
            sport: None,
            dport: None,
            id: Some(id),
            icmp_type: Some(icmp_type),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CtCounters {
    pub orig: u64,
    pub reply: u64,
}

/// `stats --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Stats {
    pub counters: BTreeMap<String, u64>,
    pub rules: Vec<RuleStats>,
    pub conntrack: ConntrackSummary,
    pub ager: AgerStats,
}

impl Stats {
    /// A counter by name; an unknown name is an error listing the known ones.
    pub fn counter(&self, name: &str) -> Result<u64> {
        self.counters.get(name).copied().with_context(|| {
            let known: Vec<_> = self.counters.keys().map(String::as_str).collect();
            format!("no counter {name:?} in `stats --json`; it has {known:?}")
        })
    }

    /// The rule with 1-based `index`.
    pub fn rule(&self, index: u32) -> Result<&RuleStats> {
        self.rules
            .iter()
            .find(|rule| rule.index == index)
            .with_context(|| format!("no rule {index} in `stats --json`: {:?}", self.rules))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuleStats {
    pub index: u32,
    pub chain: String,
    /// The rule in words. Not read by any test, so optional.
    #[serde(default)]
    pub summary: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// The `conntrack` section of `stats --json`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ConntrackSummary {
    pub entries: u64,
    /// The fields below are read by the full-table tests only.
    #[serde(default)]
    pub connections: u64,
    #[serde(default)]
    pub max_entries: u64,
    #[serde(default)]
    pub early_drops: u64,
    #[serde(default)]
    pub table_full_drops: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct AgerStats {
    pub scans: u64,
    pub removed: u64,
}

/// A `stats --json` answer holding only `counters`, for the unit tests of
/// what reads them.
#[cfg(test)]
pub(crate) fn stats_with_counters(counters: &[(&str, u64)]) -> Stats {
    let counters: BTreeMap<_, _> = counters
        .iter()
        .map(|(name, count)| ((*name).to_owned(), *count))
        .collect();
    serde_json::from_value(serde_json::json!({
        "counters": counters,
        "rules": [],
        "conntrack": {"entries": 0},
        "ager": {"scans": 0, "removed": 0},
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_conntrack_json_parses() {
        let json = r#"[
          {"proto":"tcp","family":"ipv4","tcp_state":"ESTABLISHED",
           "orig":{"src":"10.0.1.2","dst":"10.0.2.2","sport":40000,"dport":8080},
           "reply":{"src":"10.0.2.2","dst":"10.0.1.2","sport":8080,"dport":40000},
           "expires_in":431999,"flags":["ASSURED"],
           "packets":{"orig":5,"reply":4},"bytes":{"orig":400,"reply":900}},
          {"proto":"icmpv6","family":"ipv6",
           "orig":{"src":"fd00:1::2","dst":"fd00:2::2","id":7,"type":128},
           "reply":{"src":"fd00:2::2","dst":"fd00:1::2","id":7,"type":129},
           "expires_in":29,"flags":[],
           "packets":{"orig":1,"reply":1},"bytes":{"orig":104,"reply":104}}
        ]"#;
        let entries: Vec<CtEntry> = serde_json::from_str(json).unwrap();
        assert!(entries[0].has_flag("ASSURED"));
        assert_eq!(entries[0].reply.sport, Some(8080));
        assert_eq!(entries[1].tcp_state, None);
        assert_eq!(entries[1].reply.icmp_type, Some(129));
        assert_eq!(entries[1].orig.src, "fd00:1::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn spec_stats_json_parses() {
        let json = r#"{"counters":{"accept_new":3,"drop_policy":1},
          "rules":[{"index":1,"chain":"input","summary":"tcp dport 22 accept",
                    "packets":2,"bytes":120}],
          "conntrack":{"entries":3},"ager":{"scans":10,"removed":1}}"#;
        let stats: Stats = serde_json::from_str(json).unwrap();
        assert_eq!(stats.counter("drop_policy").unwrap(), 1);
        let err = stats.counter("nope").unwrap_err().to_string();
        assert!(err.contains("accept_new"), "{err}");
        assert_eq!(stats.rule(1).unwrap().packets, 2);
    }
}

//! Named network namespaces (`ip netns`), deleted with everything in them on drop.

use std::{ffi::OsStr, fs::File, os::fd::AsRawFd as _, process::Output};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, Process};

/// A named network namespace with `lo` up. Dropping it kills every process inside and
/// deletes it, which also destroys its interfaces (and so detaches their programs).
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        cmd::checked(&mut cmd::command(None, ["ip", "netns", "add", &name]), None)
            .with_context(|| format!("creating namespace {name}"))?;
        let netns = Self { name };
        netns.ip("link set lo up")?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `args` here and returns stdout; a non-zero exit is an error.
    pub fn exec<I>(&self, args: I) -> Result<String>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        cmd::exec(&self.name, args)
    }

    /// Like [`Netns::exec`], feeding `input` to stdin.
    pub fn exec_with_input<I>(&self, args: I, input: &[u8]) -> Result<String>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        cmd::checked(&mut cmd::command(Some(&self.name), args), Some(input))
    }

    /// Runs `args` here and returns the output whatever the exit status.
    pub fn run<I>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        cmd::run(&self.name, args)
    }

    /// Starts `args` here in the background.
    pub fn spawn<I>(&self, args: I) -> Result<Process>
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        cmd::spawn(&self.name, args)
    }

    /// `ip -n NAME <words>`, for the many one-line iproute2 calls of a topology.
    pub fn ip(&self, words: &str) -> Result<String> {
        let args = ["ip", "-n", &self.name]
            .into_iter()
            .chain(words.split_whitespace());
        cmd::checked(&mut cmd::command(None, args), None)
    }

    /// Writes `value` to `/proc/sys/<key with dots as slashes>` inside this namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.enter(|| std::fs::write(&path, value))
            .and_then(|written| written.map_err(Into::into))
            .with_context(|| format!("setting {key}={value} in {}", self.name))
    }

    /// Runs `f` on a thread that has entered this namespace; the caller's threads stay
    /// where they are. For what needs a syscall in the namespace, not a command.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let handle = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on a valid fd; it changes only this thread, which
                    // ends when `f` returns.
                    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error())
                            .with_context(|| format!("entering namespace {}", self.name));
                    }
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// Names of all named namespaces.
pub(crate) fn list() -> Result<Vec<String>> {
    let out = cmd::checked(&mut cmd::command(None, ["ip", "netns", "list"]), None)?;
    // Lines look like `name (id: 3)` or just `name`.
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Kills every process in namespace `name`, then deletes it. Errors are printed, not
/// returned: this runs in destructors.
pub(crate) fn remove(name: &str) {
    if let Err(err) = try_remove(name) {
        eprintln!("warning: removing namespace {name}: {err:#}");
    }
}

fn try_remove(name: &str) -> Result<()> {
    let pids = cmd::checked(&mut cmd::command(None, ["ip", "netns", "pids", name]), None)?;
    for pid in pids.split_whitespace() {
        let pid: libc::pid_t = pid.parse().with_context(|| format!("pid {pid:?}"))?;
        // SAFETY: kill(2) has no memory-safety preconditions; a process that has already
        // gone gives ESRCH, which is what we want anyway.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let output = cmd::output_of(&mut cmd::command(None, ["ip", "netns", "del", name]), None)?;
    if !output.status.success() {
        bail!("ip netns del: {}", cmd::failure_text(&output));
    }
    Ok(())
}

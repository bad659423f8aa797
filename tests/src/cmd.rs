//! Running commands inside a network namespace, in the foreground or as guarded
//! background processes.

use std::{
    ffi::OsStr,
    fs::OpenOptions,
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use tempfile::NamedTempFile;

/// `ip netns exec NS args...`; `ns == None` runs in the current namespace.
///
/// `ip netns exec` execs the command after `setns`, so the child's pid is the command's.
pub(crate) fn command<I>(ns: Option<&str>, args: I) -> Command
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    let mut args = args.into_iter();
    let mut command = match ns {
        Some(ns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns]);
            command.args(args);
            command
        }
        None => {
            let program = args.next().expect("a command has a program");
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    };
    command.stdin(Stdio::null());
    command
}

pub(crate) fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    words.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    words.join(" ")
}

/// Runs `command` to completion, whatever its exit status.
pub(crate) fn output_of(command: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    let line = describe(command);
    let output = match input {
        None => command.output(),
        Some(input) => {
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command
                .spawn()
                .with_context(|| format!("starting `{line}`"))?;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin
                .write_all(input)
                .with_context(|| format!("writing stdin of `{line}`"))?;
            drop(stdin);
            child.wait_with_output()
        }
    };
    output.with_context(|| format!("starting `{line}`"))
}

/// Like [`output_of`], but a non-zero exit is an error that quotes stderr.
pub(crate) fn checked(command: &mut Command, input: Option<&[u8]>) -> Result<String> {
    let output = output_of(command, input)?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            output.status,
            failure_text(&output)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The most useful text of a failed command: stderr, else stdout.
pub(crate) fn failure_text(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout)
    } else {
        stderr
    };
    match text.trim() {
        "" => "no output".to_owned(),
        text => text.to_owned(),
    }
}

/// Runs `args` in namespace `ns` and returns its stdout; a non-zero exit is an error
/// that quotes the command and its stderr.
pub fn exec<I>(ns: &str, args: I) -> Result<String>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    checked(&mut command(Some(ns), args), None)
}

/// Runs `args` in namespace `ns` and returns its output whatever the exit status.
pub fn run<I>(ns: &str, args: I) -> Result<Output>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    output_of(&mut command(Some(ns), args), None)
}

/// Starts `args` in namespace `ns` in the background; see [`Process`].
pub fn spawn<I>(ns: &str, args: I) -> Result<Process>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    Process::spawn(command(Some(ns), args))
}

/// A background process, killed (with its whole process group) when dropped.
///
/// It runs in its own process group, so a Ctrl-C at the terminal reaches only the
/// foreground tool, whose guards then stop it in order. Its stdout and stderr go to a log
/// file that [`Process::log`] reads, to quote in error messages.
pub struct Process {
    description: String,
    child: Child,
    log: NamedTempFile,
    status: Option<ExitStatus>,
}

impl Process {
    pub(crate) fn spawn(mut command: Command) -> Result<Self> {
        let description = describe(&command);
        let log = NamedTempFile::with_prefix("fw-process-").context("creating a log file")?;
        let open = || {
            OpenOptions::new()
                .append(true)
                .open(log.path())
                .context("opening the log file")
        };
        command.stdout(open()?).stderr(open()?).process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting `{description}`"))?;
        Ok(Self {
            description,
            child,
            log,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log.path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("<log unreadable: {err}>"))
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for `{}`", self.description))?;
        }
        Ok(self.status)
    }

    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.try_wait()?.is_none())
    }

    /// Sends `signal` to the process itself (not its group).
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        if self.status.is_some() {
            bail!("`{}` has already exited", self.description);
        }
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: kill(2) has no memory-safety preconditions. The child is not reaped
        // (status is None), so the pid still names it.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending signal {signal} to `{}`", self.description));
        }
        Ok(())
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{}` still running after {timeout:?}; its output:\n{}",
                    self.description,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits at most `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal(libc::SIGTERM)?;
        self.wait_timeout(timeout)
    }

    /// SIGKILL to the whole process group, then reaps the process.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.kill_group();
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .with_context(|| format!("reaping `{}`", self.description))?;
        self.status = Some(status);
        Ok(status)
    }

    fn kill_group(&self) {
        let Ok(pgid) = libc::pid_t::try_from(self.pid()) else {
            return;
        };
        // SAFETY: as in `signal`. The group may outlive its leader (socat forks per
        // peer), so it is signalled even after the leader was reaped; ESRCH is fine.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(err) = self.kill() {
            eprintln!("warning: {err:#}");
        }
    }
}

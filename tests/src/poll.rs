//! Bounded polling: every wait in the suite is a poll with a deadline, never a sleep.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// One look at the condition being waited for.
pub enum Probe<T> {
    Ready(T),
    /// Not yet; the text says what was seen, for the timeout message.
    Pending(String),
}

const INTERVAL: Duration = Duration::from_millis(100);

/// Calls `probe` every 100 ms until it is [`Probe::Ready`] or `timeout` has passed.
///
/// An `Err` from `probe` ends the wait at once. On timeout the error names `what` and
/// quotes the last observation.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Probe<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe()? {
            Probe::Ready(value) => return Ok(value),
            Probe::Pending(seen) if Instant::now() >= deadline => {
                bail!("timed out after {timeout:?} waiting for {what}; last seen: {seen}")
            }
            Probe::Pending(_) => std::thread::sleep(INTERVAL),
        }
    }
}

//! `cargo xtask test`: setup, lint, build, then the test layers from the cheapest to the
//! most realistic, stopping at the first failing layer. Ends with the plain summary line
//! `N passed, N failed` summed over every `test result:` line cargo printed, and the
//! fuzzer's deterministic run counted as one test.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{Reported, cargo, describe, firewall_bin, fuzz, heading, lint, run_visible, setup};

/// One `cargo test` run, or the fuzzer's run.
enum Layer {
    Cargo {
        title: &'static str,
        krate: &'static str,
    },
    Fuzz,
}

const LAYERS: [Layer; 4] = [
    Layer::Cargo {
        title: "host unit tests",
        krate: "firewall-common",
    },
    Layer::Cargo {
        title: "firewall unit tests and BPF_PROG_TEST_RUN tests",
        krate: "firewall",
    },
    // After the BPF_PROG_TEST_RUN tests, whose harness it drives, and before the
    // slowest layer.
    Layer::Fuzz,
    Layer::Cargo {
        title: "end-to-end tests in veth namespaces",
        krate: "tests",
    },
];

/// Counts from libtest's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Adds the counts of `line` if it is a libtest summary, e.g.
    /// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
    fn add_line(&mut self, line: &str) -> bool {
        let Some((_, counts)) = line.split_once("test result:") else {
            return false;
        };
        for part in counts.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                "ignored" => self.ignored += number,
                _ => {}
            }
        }
        true
    }

    fn summary(&self) -> String {
        let Self {
            passed,
            failed,
            ignored,
        } = *self;
        if ignored > 0 {
            format!("{passed} passed, {failed} failed, {ignored} skipped")
        } else {
            format!("{passed} passed, {failed} failed")
        }
    }
}

pub fn run() -> Result<()> {
    let mut tally = Tally::default();
    let result = run_all(&mut tally);
    // The error first, so the summary is the last line of the run.
    if let Err(err) = &result {
        eprintln!("error: {err:#}");
    }
    println!();
    println!("{}", tally.summary());
    result.map_err(|_| Reported.into())
}

fn run_all(tally: &mut Tally) -> Result<()> {
    setup::run()?;
    lint::run()?;
    heading("build");
    run_visible(&mut cargo(["build", "-p", "firewall"]))?;
    let bin = firewall_bin();
    for (number, layer) in LAYERS.iter().enumerate() {
        let (title, krate) = match layer {
            Layer::Cargo { title, krate } => (*title, *krate),
            Layer::Fuzz => {
                let title = format!(
                    "fuzzer, {} packets, seed {}",
                    fuzz::CI_PACKETS,
                    fuzz::CI_SEED
                );
                heading(&format!("layer {}/{}: {title}", number + 1, LAYERS.len()));
                if fuzz::ci()? {
                    tally.passed += 1;
                } else {
                    tally.failed += 1;
                    bail!("layer {title}: an invariant failed (the report is above)");
                }
                continue;
            }
        };
        heading(&format!("layer {}/{}: {title}", number + 1, LAYERS.len()));
        // Within a layer every test binary runs, so one report shows all failures.
        let mut command = cargo(["test", "--no-fail-fast", "-p", krate]);
        if krate == "tests" {
            command.env("FIREWALL_BIN", &bin);
            // Errors print their cause chain; an anyhow backtrace per failure only buries it.
            command.env("RUST_LIB_BACKTRACE", "0");
            // Network tests mostly wait on timeouts, so more threads than cores help.
            if std::env::var_os("RUST_TEST_THREADS").is_none() {
                command.env("RUST_TEST_THREADS", "4");
            }
        }
        run_counting(&mut command, tally).with_context(|| format!("layer {title}"))?;
    }
    Ok(())
}

/// Runs `command`, echoing its stdout line by line while adding up the test results.
fn run_counting(command: &mut Command, tally: &mut Tally) -> Result<()> {
    let line = describe(command);
    println!("$ {line}");
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{line}`"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut out = std::io::stdout().lock();
    let mut layer = Tally::default();
    for text in BufReader::new(stdout).lines() {
        let text = text.context("reading cargo's output")?;
        layer.add_line(&text);
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    drop(out);
    let status = child.wait().context("waiting for cargo")?;
    tally.passed += layer.passed;
    tally.failed += layer.failed;
    tally.ignored += layer.ignored;
    if !status.success() {
        bail!(
            "`{line}` failed ({status}): {} passed, {} failed",
            layer.passed,
            layer.failed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_summed() {
        let mut tally = Tally::default();
        assert!(tally.add_line(
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
             finished in 0.01s"
        ));
        assert!(tally.add_line(
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
        ));
        assert!(!tally.add_line("test foo ... ok"));
        assert_eq!(
            tally,
            Tally {
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
        assert_eq!(tally.summary(), "15 passed, 2 failed, 1 skipped");
    }
}

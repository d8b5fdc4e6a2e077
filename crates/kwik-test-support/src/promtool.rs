//! `promtool check metrics` on a Prometheus text exposition, shared by every test that scrapes.

use std::io::Write;
use std::process::{Command, Stdio};

/// What [`check_metrics`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PromtoolCheck {
    /// promtool ran and accepted the exposition without a lint message.
    Passed,
    /// promtool is not installed and `KWIK_REQUIRE_PROMTOOL=1` is not set: nothing was checked
    /// (a notice went to stderr). The caller should still check what it can without promtool.
    Skipped,
}

/// Pipes `text` through `promtool check metrics` and panics, with promtool's output, unless it
/// exits 0 with nothing to say (its default lints print problems yet may still exit 0).
///
/// A missing promtool is a visible skip, or a panic under `KWIK_REQUIRE_PROMTOOL=1` (CI sets
/// it and installs the Debian package `prometheus`, so CI cannot pass without really checking).
pub fn check_metrics(text: &str) -> PromtoolCheck {
    let required = std::env::var("KWIK_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            eprintln!(
                "SKIPPED: promtool not found; `promtool check metrics` was not run (install the \
                 `prometheus` package; KWIK_REQUIRE_PROMTOOL=1 makes this fatal)"
            );
            return PromtoolCheck::Skipped;
        }
        Err(e) => panic!("promtool could not be run (KWIK_REQUIRE_PROMTOOL={required}): {e}"),
    };
    child
        .stdin
        .take()
        .expect("promtool stdin is piped")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.trim().is_empty() && stderr.trim().is_empty(),
        "promtool:\n{stdout}\n{stderr}"
    );
    PromtoolCheck::Passed
}

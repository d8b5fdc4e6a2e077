//! What a run measured, the table printed for people and the `--json` document for tools.

use std::fmt::Write as _;

use std::time::Duration;

use kwik::metrics::RequestStats;
use serde::{Deserialize, Serialize};

/// The workload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Open-loop echo of `--size` messages at `--rate` (the seed's scenario).
    Echo,
    /// Unpaced echo: each session keeps a window of messages in flight; measures throughput.
    Bulk,
    /// Only establish the sessions, concurrently: setup time and memory per session.
    Connect,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Latency {
    /// The percentiles of a latency recorder's snapshot.
    pub(crate) fn from_stats(stats: &RequestStats) -> Self {
        // Microseconds with one decimal: finer than the histogram's 3 significant digits.
        let us = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
        Self {
            p50: us(stats.p50),
            p95: us(stats.p95),
            p99: us(stats.p99),
            p999: us(stats.p999),
            max: us(stats.max),
        }
    }
}

/// Everything one variant measured; also what a child process hands its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Measured {
    pub(crate) variant: String,
    pub(crate) mode: Mode,
    /// Sessions asked for.
    pub(crate) connections: usize,
    /// Sessions established.
    pub(crate) sessions: usize,
    /// Messages per second asked for (0 when unpaced).
    pub(crate) target_rate: f64,
    /// Messages per second echoed back over the send window.
    pub(crate) achieved_rate: f64,
    pub(crate) latency_us: Latency,
    /// Whole-process CPU over the send window (connect mode: over the process life), in
    /// percent of one core.
    pub(crate) cpu_percent: f64,
    pub(crate) rss_peak_bytes: u64,
    /// Connect mode: RSS growth divided by the sessions established.
    pub(crate) rss_per_session_bytes: Option<u64>,
    pub(crate) tasks_peak: usize,
    pub(crate) errors: u64,
    /// Payload bytes sent plus received.
    pub(crate) bytes: u64,
    /// Time to establish every session.
    pub(crate) setup_seconds: f64,
    pub(crate) first_error: Option<String>,
}

/// The `--json` document: `{"runs": [...]}` with exactly the documented keys.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JsonReport {
    pub(crate) runs: Vec<JsonRun>,
}

/// One run in the `--json` document.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct JsonRun {
    pub(crate) variant: String,
    /// The server driven: `embedded`, or the `--target` address.
    pub(crate) target: String,
    pub(crate) connections: usize,
    pub(crate) target_rate: f64,
    pub(crate) achieved_rate: f64,
    pub(crate) latency_us: Latency,
    pub(crate) cpu_percent: f64,
    pub(crate) rss_peak_bytes: u64,
    pub(crate) tasks_peak: usize,
    pub(crate) errors: u64,
    pub(crate) setup_seconds: f64,
}

impl JsonRun {
    /// The documented figures of `m`, a run against `target`.
    pub(crate) fn new(m: &Measured, target: String) -> Self {
        Self {
            variant: m.variant.clone(),
            target,
            connections: m.connections,
            target_rate: m.target_rate,
            achieved_rate: m.achieved_rate,
            latency_us: m.latency_us,
            cpu_percent: m.cpu_percent,
            rss_peak_bytes: m.rss_peak_bytes,
            tasks_peak: m.tasks_peak,
            errors: m.errors,
            setup_seconds: m.setup_seconds,
        }
    }
}

/// The report table: one row per figure, one column per variant.
pub(crate) fn table(runs: &[Measured]) -> String {
    let mut rows: Vec<(&str, Vec<String>)> = Vec::new();
    let mut row = |name, cell: &dyn Fn(&Measured) -> String| {
        rows.push((name, runs.iter().map(cell).collect()));
    };
    let connect = runs.iter().all(|m| m.mode == Mode::Connect);
    row("sessions", &|m| format!("{}/{}", m.sessions, m.connections));
    row("setup", &|m| format!("{:.1} ms", m.setup_seconds * 1000.0));
    if connect {
        row("RSS / session", &|m| {
            m.rss_per_session_bytes.map_or_else(
                || "-".to_owned(),
                |b| format!("{:.1} KiB", b as f64 / 1024.0),
            )
        });
    } else {
        row("target rate", &|m| match m.target_rate {
            0.0 => "unpaced".to_owned(),
            rate => format!("{rate:.0} msg/s"),
        });
        row("achieved rate", &|m| {
            format!("{:.0} msg/s", m.achieved_rate)
        });
        row("p50", &|m| micros(m.latency_us.p50));
        row("p95", &|m| micros(m.latency_us.p95));
        row("p99", &|m| micros(m.latency_us.p99));
        row("p99.9", &|m| micros(m.latency_us.p999));
        row("max", &|m| micros(m.latency_us.max));
        row("CPU", &|m| format!("{:.1}%", m.cpu_percent));
    }
    row("peak RSS", &|m| mib(m.rss_peak_bytes));
    row("alive tasks", &|m| m.tasks_peak.to_string());
    row("errors", &|m| m.errors.to_string());
    if !connect {
        row("bytes", &|m| mib(m.bytes));
    }

    let label_width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..runs.len())
        .map(|i| {
            rows.iter()
                .map(|(_, cells)| cells[i].len())
                .chain([runs[i].variant.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:label_width$}", "");
    for (run, width) in runs.iter().zip(&widths) {
        let _ = write!(out, "  {:>width$}", run.variant);
    }
    out.push('\n');
    for (name, cells) in &rows {
        let _ = write!(out, "{name:label_width$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>width$}");
        }
        out.push('\n');
    }
    out
}

fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(variant: &str) -> Measured {
        Measured {
            variant: variant.to_owned(),
            mode: Mode::Echo,
            connections: 20,
            sessions: 20,
            target_rate: 500.0,
            achieved_rate: 499.5,
            latency_us: Latency {
                p50: 120.0,
                p95: 300.0,
                p99: 900.0,
                p999: 1500.0,
                max: 2100.0,
            },
            cpu_percent: 12.5,
            rss_peak_bytes: 30 << 20,
            rss_per_session_bytes: None,
            tasks_peak: 45,
            errors: 0,
            bytes: 64_000,
            setup_seconds: 0.02,
            first_error: None,
        }
    }

    #[test]
    fn table_has_one_column_per_variant() {
        let text = table(&[sample("quic"), sample("kwik-pool")]);
        let header = text.lines().next().unwrap();
        assert!(header.contains("quic") && header.contains("kwik-pool"));
        let p99 = text.lines().find(|l| l.starts_with("p99 ")).unwrap();
        assert_eq!(p99.matches("900 µs").count(), 2);
        assert!(text.contains("1.50 ms"));
    }

    #[test]
    fn json_run_has_exactly_the_documented_keys() {
        let value =
            serde_json::to_value(JsonRun::new(&sample("quic"), "embedded".to_owned())).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "achieved_rate",
                "connections",
                "cpu_percent",
                "errors",
                "latency_us",
                "rss_peak_bytes",
                "setup_seconds",
                "target",
                "target_rate",
                "tasks_peak",
                "variant"
            ]
        );
        assert_eq!(value["target"], "embedded");
        let latency: Vec<&str> = value["latency_us"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(latency.len(), 5);
    }
}

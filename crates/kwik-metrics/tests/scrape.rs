//! A scrape over real HTTP: every documented family is exported with its type and help, the
//! output passes `promtool check metrics`, and the Grafana dashboard only queries exported names.

mod common;

use kwik_test_support::promtool::{PromtoolCheck, check_metrics};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use kwik_metrics::{
    Direction, FAMILIES, FamilyKind, FrameKind, JobOutcome, Metrics, MetricsServer,
    ProtocolErrorKind, Role, Stat,
};
use prometheus_parse::{Scrape, Value};

/// A registry with every kind of source fed, as the facade would.
fn populated_metrics() -> Metrics {
    let metrics = Metrics::builder()
        .routes(["/echo", "/files"])
        .build()
        .expect("builds");
    let t = metrics.transport();
    t.session_opened(Role::Client);
    t.session_opened(Role::Server);
    t.session_closed(Role::Server);
    t.paths_active().set(3);
    t.streams_active().set(12);
    t.bytes_sent().inc_by(4096);
    t.bytes_received().inc_by(8192);
    t.packets_sent().inc_by(4);
    t.packets_received().inc_by(8);
    t.frames(Direction::Received, FrameKind::Stream).inc_by(8);
    t.protocol_errors(ProtocolErrorKind::FlowControl).inc();
    t.observe_session_setup(Duration::from_millis(3));
    t.observe_rtt(Duration::from_micros(400));
    metrics.pool().observe_queue_wait(Duration::from_micros(20));
    metrics.pool().observe_run(Duration::from_micros(300));
    metrics
        .requests()
        .route("/echo")
        .observe(Duration::from_millis(1), true);
    metrics.register_stats_collector(|| {
        vec![
            (Stat::PoolQueueDepth, 2),
            (Stat::PoolRunning, 4),
            (Stat::PoolJobs(JobOutcome::Ok), 100),
            (Stat::PoolJobs(JobOutcome::Panicked), 1),
            (Stat::BufferHits, 90),
            (Stat::BufferMisses, 10),
            (Stat::BufferOutstanding, 5),
            (Stat::CacheHits, 70),
            (Stat::CacheMisses, 30),
            (Stat::CacheEvictions, 3),
            (Stat::CacheExpirations, 2),
            (Stat::CacheEntries, 65),
            (Stat::CacheWeightBytes, 65 * 1024),
        ]
    });
    metrics
}

async fn scrape_over_http(metrics: Metrics) -> String {
    let server = MetricsServer::builder()
        .addr("127.0.0.1:0".parse().expect("addr"))
        .start(metrics)
        .await
        .expect("server starts");
    let reply = common::get(server.local_addr(), "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .expect("content type")
            .starts_with("text/plain")
    );
    server.shutdown().await.expect("clean shutdown");
    reply.text()
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition parses")
}

/// `# TYPE` lines, which prometheus-parse does not keep.
fn declared_types(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect()
}

#[tokio::test]
async fn scrape_exports_every_documented_family_with_type_and_help() {
    let text = scrape_over_http(populated_metrics()).await;
    let scrape = parse(&text);
    let types = declared_types(&text);
    for family in FAMILIES {
        let help = scrape.docs.get(family.name);
        assert_eq!(
            help.map(String::as_str),
            Some(family.help),
            "help of {}",
            family.name
        );
        assert_eq!(
            types.get(family.name),
            Some(&family.kind.as_str()),
            "type of {}",
            family.name
        );
        let samples: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == family.name)
            .collect();
        assert!(!samples.is_empty(), "no sample for {}", family.name);
        for sample in samples {
            let kind_matches = matches!(
                (&sample.value, family.kind),
                (Value::Counter(_), FamilyKind::Counter)
                    | (Value::Gauge(_), FamilyKind::Gauge)
                    | (Value::Histogram(_), FamilyKind::Histogram)
            );
            assert!(kind_matches, "{} parsed as {:?}", family.name, sample.value);
            for label in family.labels {
                assert!(
                    sample.labels.get(label).is_some(),
                    "{} lacks label {label}",
                    family.name
                );
            }
        }
    }
    // Values fed through handles and stats closures come out as fed.
    let value = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value.clone())
    };
    assert_eq!(
        value("kwik_cache_hits_total", None),
        Some(Value::Counter(70.0))
    );
    assert_eq!(
        value("kwik_pool_queue_depth", None),
        Some(Value::Gauge(2.0))
    );
    assert_eq!(
        value("kwik_pool_jobs_total", Some(("outcome", "panicked"))),
        Some(Value::Counter(1.0))
    );
    assert_eq!(
        value("kwik_sessions_active", Some(("role", "server"))),
        Some(Value::Gauge(0.0))
    );
    assert_eq!(
        value("kwik_bytes_received_total", None),
        Some(Value::Counter(8192.0))
    );
    let Some(Value::Gauge(threads)) = value("process_threads", None) else {
        panic!("process_threads missing");
    };
    assert!(threads >= 1.0);
}

#[tokio::test]
async fn scrape_passes_promtool() {
    let text = scrape_over_http(populated_metrics()).await;
    if check_metrics(&text) == PromtoolCheck::Skipped {
        // Without promtool, still assert what the Rust parser can: every family is documented.
        let scrape = parse(&text);
        for family in FAMILIES {
            assert!(scrape.docs.contains_key(family.name), "{}", family.name);
        }
    }
}

/// Metric names used in a PromQL expression: identifiers that are not function calls,
/// keywords, label matchers, grouping labels (`by (..)`), durations or numbers.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_next_parens = false;
    let skip_until = |i: usize, close: u8| -> usize {
        let mut j = i;
        let mut in_string = false;
        while j < bytes.len() {
            match bytes[j] {
                b'"' => in_string = !in_string,
                c if c == close && !in_string => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            // Label matchers and range/subquery durations.
            b'{' => i = skip_until(i, b'}'),
            b'[' => i = skip_until(i, b']'),
            b'"' => i = skip_until(i + 1, b'"'),
            b'(' if skip_next_parens => {
                skip_next_parens = false;
                i = skip_until(i, b')');
            }
            b'0'..=b'9' | b'.' => {
                // A number, exponent included (1e-9).
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'0'..=b'9' | b'.' | b'e' | b'E' => i += 1,
                        b'+' | b'-' if matches!(bytes[i - 1], b'e' | b'E') => i += 1,
                        _ => break,
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                // A function call, or an aggregation followed by its grouping (`sum by (le) (..)`).
                let rest = expr[i..].trim_start();
                let is_call = rest.starts_with('(')
                    || ["by", "without"].iter().any(|kw| {
                        rest.strip_prefix(kw)
                            .is_some_and(|r| r.trim_start().starts_with('('))
                    });
                if GROUPING.contains(&word) {
                    skip_next_parens = true;
                } else if !is_call && !KEYWORDS.contains(&word) {
                    names.insert(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn grafana_dashboard_only_queries_exported_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana-dashboard.json"
    );
    let json = std::fs::read_to_string(path).expect("docs/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries found", exprs.len());
    let exported: BTreeSet<String> = FAMILIES
        .iter()
        .flat_map(|f| match f.kind {
            FamilyKind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", f.name))
                .collect::<Vec<_>>(),
            _ => vec![f.name.to_owned()],
        })
        .collect();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr:?}");
        used.extend(names);
    }
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "dashboard queries unexported metrics: {unknown:?}"
    );
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn promql_extraction_skips_functions_labels_and_ranges() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(kwik_rtt_seconds_bucket{job="kwik"}[5m])))"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["kwik_rtt_seconds_bucket"]
    );
    let names = promql_metric_names(
        "sum by (direction, type) (rate(kwik_cache_hits_total[1m])) \
         / clamp_min(sum without (a) (rate(kwik_cache_misses_total[1m])), 1e-9)",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["kwik_cache_hits_total", "kwik_cache_misses_total"]
    );
}

#[test]
fn every_family_is_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let doc = std::fs::read_to_string(path).expect("docs/metrics.md");
    for family in FAMILIES {
        assert!(
            doc.contains(&format!("`{}`", family.name)),
            "{} not in docs/metrics.md",
            family.name
        );
    }
}

//! Loading `performance.toml`: kwik-config against the bare `toml` parser.
//!
//! Group `config/parse` times the shipped configs/performance.toml (every key, with comments)
//! three ways in one run: an untyped `toml::Table` (the floor: TOML parsing alone), the typed
//! schema without range checks (`toml::from_str::<PerformanceConfig>`), and the full
//! `PerformanceConfig::from_toml_str` (typed + validated), so the costs of types and of
//! validation read directly as ratios. `config/render` times what `kwik config show` prints and
//! `config/env` one environment override.
//!
//! Run: `cargo bench -p kwik-benches --bench config -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kwik_config::PerformanceConfig;

const PERFORMANCE_TOML: &str = include_str!("../../configs/performance.toml");

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("config/parse");
    group.sample_size(50);
    group.throughput(Throughput::Bytes(PERFORMANCE_TOML.len() as u64));
    group.bench_function("toml_table_untyped", |b| {
        b.iter(|| toml::from_str::<toml::Table>(black_box(PERFORMANCE_TOML)));
    });
    group.bench_function("toml_typed_unvalidated", |b| {
        b.iter(|| toml::from_str::<PerformanceConfig>(black_box(PERFORMANCE_TOML)));
    });
    group.bench_function("kwik_config_from_toml_str", |b| {
        b.iter(|| PerformanceConfig::from_toml_str(black_box(PERFORMANCE_TOML)));
    });
    group.finish();
}

fn render(c: &mut Criterion) {
    let config = PerformanceConfig::default();
    let mut group = c.benchmark_group("config/render");
    group.sample_size(50);
    group.bench_function("display_toml", |b| {
        b.iter(|| black_box(&config).to_string());
    });
    group.finish();
}

fn env(c: &mut Criterion) {
    let mut group = c.benchmark_group("config/env");
    group.sample_size(50);
    group.bench_function("one_override", |b| {
        b.iter(|| {
            PerformanceConfig::default()
                .with_env_overrides_from(black_box([("KWIK_WORKER_POOL_SIZE", "8")]))
        });
    });
    group.finish();
}

criterion_group!(benches, parse, render, env);
criterion_main!(benches);

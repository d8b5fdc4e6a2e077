//! Process readings from the kernel (Linux): the `process_*` Prometheus families, read from
//! `/proc/self` at scrape time, and the plain readings `kwik loadtest` and the bench binaries
//! print ([`cpu_seconds`], [`current_rss_bytes`], [`peak_rss_bytes`], [`reset_peak_rss`]).
//!
//! prometheus' own `process` feature reports CPU time in whole seconds, which makes
//! `rate(process_cpu_seconds_total[1m])` jump between 0 and 1; reading `/proc` here keeps the
//! clock-tick resolution and pulls no extra dependency.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::families::{self, Family};
use crate::proto;

const FAMILIES: [Family; 7] = [
    families::PROCESS_CPU,
    families::PROCESS_RSS,
    families::PROCESS_VSIZE,
    families::PROCESS_OPEN_FDS,
    families::PROCESS_MAX_FDS,
    families::PROCESS_THREADS,
    families::PROCESS_START_TIME,
];

/// CPU time (user + system) this process has used so far, in seconds (`getrusage`, microsecond
/// resolution; `/proc/self/stat` counts 10 ms ticks). `None` if the kernel refuses.
///
/// # Examples
///
/// ```
/// let before = kwik_metrics::process::cpu_seconds().unwrap();
/// assert!(kwik_metrics::process::cpu_seconds().unwrap() >= before);
/// ```
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass, which lives on our stack.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Resident set size now, in bytes (`VmRSS` in `/proc/self/status`); `None` without `/proc`.
///
/// # Examples
///
/// ```
/// assert!(kwik_metrics::process::current_rss_bytes().unwrap() > 0);
/// ```
pub fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// Peak resident set size since the process started or the last [`reset_peak_rss`], in bytes
/// (`VmHWM` in `/proc/self/status`); `None` without `/proc`.
///
/// # Examples
///
/// ```
/// use kwik_metrics::process::{current_rss_bytes, peak_rss_bytes};
/// assert!(peak_rss_bytes().unwrap() >= current_rss_bytes().unwrap() / 2);
/// ```
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Resets the peak RSS watermark to the current RSS (writes `5` to `/proc/self/clear_refs`), so
/// that the next [`peak_rss_bytes`] covers only what follows. Returns whether the kernel
/// accepted it (some sandboxes refuse).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `<field> <n> kB` line of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// One reading of the process' resources.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ProcessSample {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) threads: u64,
    /// Process start, in clock ticks after boot.
    pub(crate) start_ticks: u64,
}

/// Parses the fields kwik exports from the content of `/proc/<pid>/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so fields are counted from the
/// last `)`. Field numbers below are those of proc(5).
pub(crate) fn parse_stat(
    stat: &str,
    ticks_per_second: u64,
    page_size: u64,
) -> Option<ProcessSample> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first token after the command name.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    Some(ProcessSample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
    })
}

/// Parses the boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub(crate) fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The collector for the `process_*` families.
pub(crate) struct ProcessCollector {
    descs: Vec<Desc>,
    ticks_per_second: u64,
    page_size: u64,
    /// Seconds since the epoch; `None` when `/proc` cannot tell.
    start_time: Option<f64>,
}

impl ProcessCollector {
    pub(crate) fn new() -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(proto::desc)
            .collect::<prometheus::Result<_>>()?;
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let ticks_per_second = u64::try_from(ticks).unwrap_or(100);
        let page_size = u64::try_from(page).unwrap_or(4096);
        let start_time = (|| {
            let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            let sample = parse_stat(&stat, ticks_per_second, page_size)?;
            Some(boot as f64 + sample.start_ticks as f64 / ticks_per_second.max(1) as f64)
        })();
        Ok(Self {
            descs,
            ticks_per_second,
            page_size,
            start_time,
        })
    }
}

fn open_fds() -> Option<u64> {
    // The directory handle used for the listing is itself counted, as in the Go client.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(FAMILIES.len());
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let Some(s) = stat.and_then(|s| parse_stat(&s, self.ticks_per_second, self.page_size)) {
            out.push(proto::single(&families::PROCESS_CPU, s.cpu_seconds));
            out.push(proto::single(
                &families::PROCESS_RSS,
                s.resident_bytes as f64,
            ));
            out.push(proto::single(
                &families::PROCESS_VSIZE,
                s.virtual_bytes as f64,
            ));
            out.push(proto::single(&families::PROCESS_THREADS, s.threads as f64));
        }
        if let Some(n) = open_fds() {
            out.push(proto::single(&families::PROCESS_OPEN_FDS, n as f64));
        }
        if let Some(n) = max_fds() {
            out.push(proto::single(&families::PROCESS_MAX_FDS, n as f64));
        }
        if let Some(t) = self.start_time {
            out.push(proto::single(&families::PROCESS_START_TIME, t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_kib_fields() {
        let status = "Name:\tkwik\nVmHWM:\t  20480 kB\nVmRSS:\t   4096 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(4096));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
        assert_eq!(parse_status_kib("VmRSS: lots kB\n", "VmRSS:"), None);
    }

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        // Fields 3..=24 of proc(5); the command name contains ") (" and spaces.
        let stat = "4242 (evil) (name x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let s = parse_stat(stat, 100, 4096).expect("parses");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 12345);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * 4096);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("1 (x) S 1 2 3", 100, 4096), None);
        assert_eq!(parse_stat("no parenthesis", 100, 4096), None);
    }

    #[test]
    fn parses_boot_time() {
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let c = ProcessCollector::new().expect("descs are valid");
        let names: Vec<String> = c.collect().iter().map(|f| f.name().to_owned()).collect();
        for family in FAMILIES {
            assert!(
                names.iter().any(|n| n == family.name),
                "{} missing",
                family.name
            );
        }
    }
}

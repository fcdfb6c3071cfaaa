//! The process's one metrics registry, served by `/metrics` (Prometheus text format).
//!
//! Invariants: every figure is a relaxed atomic (a reading may mix two instants, never
//! blocks a recorder); recording costs a clock read and a few atomic adds, so the FUSE
//! hot path can afford it. One registry per process: a daemon serves one mount.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, n) in BOUNDS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}\n"
            ));
        }
        let count = self.count();
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        out.push_str(&format!(
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}\n{name}_sum{} {}\n{name}_count{} {count}\n",
            braces(labels),
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            braces(labels),
        ));
    }
}

/// FUSE operations timed, each under its own label.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Lookup,
    Getattr,
    Setattr,
    Readlink,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Readdir,
    Create,
    Other,
}

const OPS: [&str; 18] = [
    "lookup", "getattr", "setattr", "readlink", "mkdir", "unlink", "rmdir", "symlink", "rename",
    "open", "read", "write", "flush", "release", "fsync", "readdir", "create", "other",
];

/// Every figure of the process.
#[derive(Default)]
pub struct Metrics {
    /// Sessions handed to the master.
    pub sessions: AtomicU64,
    /// Commits the master made from sessions.
    pub commits: AtomicU64,
    /// Sessions or replays parked as conflicts.
    pub conflicts: AtomicU64,
    pub push_attempts: AtomicU64,
    pub pushes: AtomicU64,
    pub push_failures: AtomicU64,
    pub push_rejections: AtomicU64,
    /// This master's unpushed commits published to its inbox ref after a rejection.
    pub inbox_pushes: AtomicU64,
    /// Other masters' sessions this master put into its push targets.
    pub sessions_helped: AtomicU64,
    /// Time of each push attempt.
    pub push_seconds: Histogram,
    pub fetches: AtomicU64,
    pub fetch_failures: AtomicU64,
    /// Decoded-blob cache.
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    fuse: [Histogram; OPS.len()],
}

/// The registry.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::default)
}

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Records the time from its creation to its drop under a FUSE operation.
pub struct Timer {
    op: Op,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        global().fuse[self.op as usize].observe(self.start.elapsed());
    }
}

/// Starts timing one FUSE operation (until the returned guard is dropped).
pub fn time(op: Op) -> Timer {
    Timer {
        op,
        start: Instant::now(),
    }
}

impl Metrics {
    /// How many operations of `op` were timed.
    pub fn fuse_count(&self, op: Op) -> u64 {
        self.fuse[op as usize].count()
    }

    /// The registry as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            ("sessions", "sessions handed to the master", &self.sessions),
            ("commits", "commits made from sessions", &self.commits),
            (
                "conflicts",
                "sessions or replays parked as conflicts",
                &self.conflicts,
            ),
            ("push_attempts", "push attempts", &self.push_attempts),
            ("pushes", "pushes that landed", &self.pushes),
            (
                "push_failures",
                "push attempts that failed",
                &self.push_failures,
            ),
            (
                "push_rejections",
                "pushes refused as not fast-forward",
                &self.push_rejections,
            ),
            (
                "inbox_pushes",
                "unpushed commits published to this master's inbox ref",
                &self.inbox_pushes,
            ),
            (
                "sessions_helped",
                "other masters' sessions carried in this master's pushes",
                &self.sessions_helped,
            ),
            ("fetches", "fetches that succeeded", &self.fetches),
            (
                "fetch_failures",
                "fetches that failed",
                &self.fetch_failures,
            ),
            ("cache_hits", "decoded-blob cache hits", &self.cache_hits),
            (
                "cache_misses",
                "decoded-blob cache misses",
                &self.cache_misses,
            ),
        ] {
            out.push_str(&format!(
                "# HELP valuesfs_{name}_total {help}\n# TYPE valuesfs_{name}_total counter\nvaluesfs_{name}_total {}\n",
                g(v)
            ));
        }
        out.push_str("# HELP valuesfs_push_seconds time of a push attempt\n");
        out.push_str("# TYPE valuesfs_push_seconds histogram\n");
        self.push_seconds
            .render(&mut out, "valuesfs_push_seconds", "");
        out.push_str("# HELP valuesfs_fuse_seconds time to answer a FUSE request\n");
        out.push_str("# TYPE valuesfs_fuse_seconds histogram\n");
        for (name, h) in OPS.iter().zip(&self.fuse) {
            if h.count() > 0 {
                h.render(&mut out, "valuesfs_fuse_seconds", &format!("op=\"{name}\""));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"read\"");
        assert!(
            out.contains("x_bucket{op=\"read\",le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"read\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{op=\"read\",le=\"10\"} 2\n"), "{out}");
        assert!(
            out.contains("x_bucket{op=\"read\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_count{op=\"read\"} 3\n"), "{out}");
    }

    #[test]
    fn timers_record_their_operation() {
        let before = global().fuse_count(Op::Readlink);
        drop(time(Op::Readlink));
        assert_eq!(global().fuse_count(Op::Readlink), before + 1);
        assert!(global().render().contains("op=\"readlink\""));
    }
}

//! The collector's ingest stage figures over a measured window: two scrapes of `/metrics`,
//! differenced (counters and histogram buckets), then averaged or interpolated the way
//! Prometheus' `histogram_quantile` does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One scrape: every sample line, keyed by its series (`name{labels}`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// Parses the text exposition format (comments skipped).
    pub(crate) fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }
}

/// What changed between two scrapes.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    before: Scrape,
    after: Scrape,
    /// Wall seconds between them.
    pub(crate) secs: f64,
}

/// The ingest pipeline's figures over one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stages {
    /// Group commits per second.
    pub(crate) groups_per_sec: f64,
    /// Mean jobs (batches, Hellos) per group.
    pub(crate) jobs_per_group: f64,
    /// Mean records per group.
    pub(crate) records_per_group: f64,
    /// Records newly stored per second (the collector's own count).
    pub(crate) stored_per_sec: f64,
    /// Mean queue depth when a group starts, jobs.
    pub(crate) queue_depth_mean: f64,
    /// 99th percentile of that depth.
    pub(crate) queue_depth_p99: f64,
    /// The writer's time per stage (idle, gather, plan, encode, commit, complete), seconds.
    pub(crate) writer_secs: Vec<(String, f64)>,
    /// Receipt-to-ack time, p50 and p99, seconds.
    pub(crate) ack_p50: f64,
    /// See `ack_p50`.
    pub(crate) ack_p99: f64,
    /// Batches acked in the window (the percentiles' sample count).
    pub(crate) acks: f64,
    /// Detection inputs dropped in the window.
    pub(crate) detection_drops: f64,
    /// Group commit (encode, journal write, fsync) p99, seconds.
    pub(crate) commit_p99: f64,
    /// Group commits that took longer than 100 ms (fjall halts writes in 100 ms steps while
    /// its flushes are behind).
    pub(crate) commits_over_100ms: f64,
}

impl Window {
    pub(crate) fn new(before: Scrape, after: Scrape, secs: f64) -> Self {
        Self {
            before,
            after,
            secs,
        }
    }

    fn delta(&self, series: &str) -> f64 {
        self.after.get(series) - self.before.get(series)
    }

    /// The histogram's bucket deltas as (upper bound, cumulative count), `+Inf` last.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut out: Vec<(f64, f64)> = self
            .after
            .0
            .keys()
            .filter_map(|k| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, self.delta(k)))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// The `q` quantile of a histogram over the window, interpolated linearly inside its
    /// bucket; a quantile in the `+Inf` bucket is reported as the largest finite bound.
    pub(crate) fn quantile(&self, name: &str, q: f64) -> f64 {
        let buckets = self.buckets(name);
        let total = buckets.last().map_or(0.0, |b| b.1);
        if total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, cum) in &buckets {
            if cum >= rank {
                if bound.is_infinite() {
                    return lower.0;
                }
                let inside = cum - lower.1;
                let frac = if inside > 0.0 {
                    (rank - lower.1) / inside
                } else {
                    1.0
                };
                return lower.0 + (bound - lower.0) * frac;
            }
            lower = (bound, cum);
        }
        lower.0
    }

    fn mean(&self, name: &str) -> f64 {
        let n = self.delta(&format!("{name}_count"));
        if n > 0.0 {
            self.delta(&format!("{name}_sum")) / n
        } else {
            f64::NAN
        }
    }

    /// The stage figures.
    pub(crate) fn stages(&self) -> Stages {
        let groups = self.delta("storepulse_writer_group_jobs_count");
        let writer_secs = ["idle", "gather", "plan", "encode", "commit", "complete"]
            .iter()
            .map(|s| {
                (
                    (*s).to_owned(),
                    self.delta(&format!("storepulse_writer_seconds_total{{stage=\"{s}\"}}")),
                )
            })
            .collect();
        Stages {
            groups_per_sec: groups / self.secs,
            jobs_per_group: self.mean("storepulse_writer_group_jobs"),
            records_per_group: self.mean("storepulse_writer_group_records"),
            stored_per_sec: self.delta("storepulse_ingest_records_total") / self.secs,
            queue_depth_mean: self.mean("storepulse_writer_queue_depth_jobs"),
            queue_depth_p99: self.quantile("storepulse_writer_queue_depth_jobs", 0.99),
            writer_secs,
            ack_p50: self.quantile("storepulse_ingest_ack_latency_seconds", 0.5),
            ack_p99: self.quantile("storepulse_ingest_ack_latency_seconds", 0.99),
            acks: self.delta("storepulse_ingest_ack_latency_seconds_count"),
            detection_drops: self.delta("storepulse_detection_dropped_inputs_total"),
            commit_p99: self.quantile("storepulse_store_commit_duration_seconds", 0.99),
            commits_over_100ms: self.delta("storepulse_store_commit_duration_seconds_count")
                - self.delta("storepulse_store_commit_duration_seconds_bucket{le=\"0.1\"}"),
        }
    }
}

impl Stages {
    /// The figures as indented lines, `secs` being the window's length.
    pub(crate) fn render(&self, secs: f64) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "  writer: {:.0} groups/s, {:.1} jobs and {:.0} records per group; queue at group start {:.1} jobs (p99 {:.0})",
            self.groups_per_sec,
            self.jobs_per_group,
            self.records_per_group,
            self.queue_depth_mean,
            self.queue_depth_p99
        );
        let groups = (self.groups_per_sec * secs).max(1.0);
        let parts: Vec<String> = self
            .writer_secs
            .iter()
            .map(|(stage, s)| {
                format!(
                    "{stage} {:.0} % ({:.2} ms/group)",
                    100.0 * s / secs,
                    1000.0 * s / groups
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "  writer thread time (commit = journal write + fsync + memtable insert): {}; group commit p99 {:.1} ms, {:.0} over 100 ms",
            parts.join(", "),
            self.commit_p99 * 1000.0,
            self.commits_over_100ms
        );
        let _ = writeln!(
            o,
            "  receipt to ack: p50 {:.1} ms, p99 {:.1} ms ({:.0} batches)",
            self.ack_p50 * 1000.0,
            self.ack_p99 * 1000.0,
            self.acks
        );
        let _ = writeln!(
            o,
            "  stored {:.0} records/s (collector count); detection inputs dropped: {:.0}",
            self.stored_per_sec, self.detection_drops
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let before = Scrape::parse(
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"2\"} 0\nh_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n",
        );
        let after = Scrape::parse(
            "# HELP h x\nh_bucket{le=\"1\"} 50\nh_bucket{le=\"2\"} 100\nh_bucket{le=\"+Inf\"} 100\nh_sum 120\nh_count 100\n",
        );
        let w = Window::new(before, after, 1.0);
        assert!((w.quantile("h", 0.5) - 1.0).abs() < 1e-9);
        assert!((w.quantile("h", 0.75) - 1.5).abs() < 1e-9);
        assert!((w.mean("h") - 1.2).abs() < 1e-9);
        assert!(w.quantile("missing", 0.5).is_nan());
    }
}

//! The detector's tunables and their defaults (the method's, not any scenario's).

use super::MINUTE_MS;

/// Tunables of the detector. The defaults are the method's, not any scenario's.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Heartbeat interval assumed until a terminal's own is learned, milliseconds.
    pub heartbeat_interval_ms: i64,
    /// A record observed this much earlier than it arrives is backlog, milliseconds.
    pub backlog_lag_ms: i64,
    /// `-log10 p` a failure count must reach to be an anomaly.
    pub min_significance: f64,
    /// `-log10 p` that keeps an open failure incident active.
    pub stay_open_significance: f64,
    /// Extra `-log10 p` (or silence score factor) an `unknown` incident needs.
    pub unknown_extra_significance: f64,
    /// Least silence score (log-likelihood ratio) of a silent group.
    pub silence_min_score: f64,
    /// Floor of the learned probability that a healthy terminal misses one heartbeat.
    pub min_heartbeat_miss_prob: f64,
    /// How long an incident's signal must be gone before it resolves, milliseconds.
    pub resolve_hold_ms: i64,
    /// A failure incident whose scope sees no payments for this long resolves, milliseconds.
    pub quiet_resolve_ms: i64,
    /// Least time between two localisation runs of one family, milliseconds.
    pub localize_every_ms: i64,
    /// Half-life of baselines, milliseconds.
    pub baseline_half_life_ms: i64,
    /// Prior failure rate per family (merchant config, terminal config, terminal fault,
    /// availability, settlement) before history is learned.
    pub prior_rates: [f64; 5],
    /// Weight of the prior rates, in attempts.
    pub prior_attempts: f64,
    /// Grace around an announced maintenance window, milliseconds.
    pub maintenance_grace_ms: i64,
    /// False single-terminal incidents per fleet-day the run test may raise: it sets how long
    /// a run of merchant-config, terminal-config or terminal-fault failures (no approval in
    /// between) must be, given the fleet size and each terminal's payments per day.
    pub run_false_per_day: f64,
    /// Floor of the fleet's share of degraded network samples (the null of the network test).
    pub min_nq_bad_share: f64,
    /// `-log10 p` an availability anomaly of an acquirer or QR channel needs inside its
    /// announced maintenance window (plus grace). The window names the scope in advance, so
    /// the test is not one of many looked at and pays no search price.
    pub announced_significance: f64,
    /// A heartbeat is *distressed* when the device is both this many degrees Celsius above
    /// its own baseline temperature and [`Self::busy_points`] above its own baseline CPU.
    pub hot_degrees: f32,
    /// CPU percentage points above the terminal's own baseline of a distressed heartbeat.
    pub busy_points: f32,
    /// Floor of the fleet's share of distressed heartbeats (the null of the device test).
    pub min_hot_share: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 60_000,
            backlog_lag_ms: 120_000,
            min_significance: 6.5,
            stay_open_significance: 3.0,
            unknown_extra_significance: 3.0,
            silence_min_score: 10.0,
            min_heartbeat_miss_prob: 0.005,
            resolve_hold_ms: 5 * MINUTE_MS,
            quiet_resolve_ms: 60 * MINUTE_MS,
            localize_every_ms: 20_000,
            baseline_half_life_ms: 24 * 60 * MINUTE_MS,
            prior_rates: [1e-5, 1e-5, 1e-5, 2e-3, 1e-5],
            prior_attempts: 20_000.0,
            maintenance_grace_ms: 10 * MINUTE_MS,
            run_false_per_day: 0.01,
            min_nq_bad_share: 0.01,
            announced_significance: 3.0,
            hot_degrees: 12.0,
            busy_points: 30.0,
            min_hot_share: 1e-4,
        }
    }
}

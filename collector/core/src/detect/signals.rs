//! The tests run every tick: device health, payment volume, silence (missed heartbeats, with
//! its greedy cover) and the failure tests per family (windows, runs, the network witness),
//! with the thresholds they must reach.

use std::collections::HashMap;

use storepulse_shared::LabelKey;

use super::state::{DIMSETS, ix};
use super::stats::{deficit, surprise, xlnx};
use super::{
    ACTIVE_WINDOW_MIN, AVAILABILITY, Anomaly, Detector, Family, MINUTE_MS, VOLUME_WINDOW_MIN,
    WINDOWS_MIN, fam_index, fisher2, plane_of, subset,
};

/// Heartbeat interval assumed for a terminal whose cadence is not learned yet, milliseconds.
const UNLEARNED_INTERVAL_MS: f64 = 300_000.0;

impl Detector {
    /// Device health of terminal `t` from a live heartbeat observed at `time`: a beat both hot
    /// and busy against the terminal's own baselines is distressed (a failing power module, a
    /// stuck scanner driver spinning); the baselines learn from healthy beats and barely move
    /// on distressed ones. Beats without a temperature, or before ten healthy ones were seen,
    /// judge nothing.
    pub(super) fn device(&mut self, t: usize, time: i64, hb: &storepulse_shared::Heartbeat) {
        let Some(temp) = hb.temperature_c.filter(|x| x.is_finite()) else {
            return;
        };
        if !hb.cpu_percent.is_finite() {
            return;
        }
        let (cpu, temp) = (hb.cpu_percent.clamp(0.0, 100.0), temp.clamp(-40.0, 120.0));
        let (hot_degrees, busy_points) = (self.cfg.hot_degrees, self.cfg.busy_points);
        let h = &mut self.st.terms[t].health;
        let distressed = h.healthy_seen >= 10
            && temp >= h.temp_base + hot_degrees
            && cpu >= h.cpu_base + busy_points;
        // A distressed beat moves the baselines with a half-life of about a day of beats, so
        // a fault lasting hours stays visible instead of becoming the device's new normal.
        let w = match (distressed, h.healthy_seen) {
            (true, _) => 0.0005,
            (false, 0) => 1.0,
            (false, _) => 0.05,
        };
        h.temp_base += w * (temp - h.temp_base);
        h.cpu_base += w * (cpu - h.cpu_base);
        h.cpu = cpu;
        h.temp = temp;
        // Terminal count fits u32 (see State::hello).
        let ti = t as u32;
        if distressed {
            if h.run == 0 {
                h.since = time;
            }
            h.run += 1;
            h.last = h.last.max(time);
            self.st.hot.insert(ti);
        } else {
            h.healthy_seen = h.healthy_seen.saturating_add(1);
            h.run = 0;
            self.st.hot.remove(&ti);
        }
        let share = &mut self.st.hot_share;
        *share = 0.999 * *share + 0.001 * f64::from(u8::from(distressed));
    }

    /// Whether terminal `t`'s device is distressed now: its current run of distressed
    /// heartbeats is fresh (the last one within two and a half intervals).
    pub(super) fn device_hot(&self, t: usize, now: i64) -> bool {
        let h = &self.st.terms[t].health;
        h.run > 0 && ((now - h.last) as f64) <= 2.5 * self.hb_interval(t) + 10_000.0
    }

    /// Terminal `t`'s heartbeat interval, milliseconds: learned from its own gaps once one
    /// was seen; before that the longest cadence an agent may be given (5 minutes) or the
    /// configured default if longer, so a new terminal on a slow cadence is not called silent
    /// before its second heartbeat could have come.
    pub(super) fn hb_interval(&self, t: usize) -> f64 {
        let term = &self.st.terms[t];
        if term.gaps_seen >= 1 {
            term.hb_interval_ms
        } else {
            (self.cfg.heartbeat_interval_ms as f64).max(UNLEARNED_INTERVAL_MS)
        }
        .max(1000.0)
    }

    /// Device-health anomalies: a terminal whose last `k` heartbeats were distressed has
    /// `-log10 p = k log10(1/q)` at the fleet's distressed share `q` (floored at
    /// [`DetectorConfig::min_hot_share`]), combined (Fisher) with its own terminal-fault
    /// failures of the last hour. Like the run test it must beat a price for every chance in a
    /// fleet-day (terminals x heartbeats per day) at [`DetectorConfig::run_false_per_day`]. A
    /// hot, busy device is found before the payment it will fail. Many terminals hot at once
    /// are a cohort (firmware, a heat wave), not one device each: the failure localiser judges
    /// those.
    ///
    /// [`DetectorConfig::min_hot_share`]: super::DetectorConfig::min_hot_share
    /// [`DetectorConfig::run_false_per_day`]: super::DetectorConfig::run_false_per_day
    pub(super) fn device_health(&self, now: i64) -> Vec<Anomaly> {
        let fi = fam_index(Family::TerminalFault);
        let hot: Vec<usize> = self
            .st
            .hot
            .iter()
            .map(|&t| t as usize)
            .filter(|&t| self.device_hot(t, now) && !self.contained(fi, &[t as u32]))
            .collect();
        if hot.is_empty() || hot.len() > 8 {
            return Vec::new();
        }
        let q = self.st.hot_share.clamp(self.cfg.min_hot_share, 0.5);
        let n = self.st.terms.len().max(1) as f64;
        let beats_per_day = 86_400_000.0 / self.cfg.heartbeat_interval_ms.max(1000) as f64;
        let need = (n * beats_per_day / self.cfg.run_false_per_day.max(1e-9)).log10();
        let now_min = now.div_euclid(MINUTE_MS);
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let mut out = Vec::new();
        for t in hot {
            let term = &self.st.terms[t];
            let h = &term.health;
            let g = term.groups[ix(LabelKey::TerminalId)] as usize;
            let (att, fails) = self.st.window(g, now_min, 60);
            let exp = att as f64 * self.st.rate(g, fi, prior, prior_n);
            let device = f64::from(h.run) * -q.log10();
            let sig = fisher2(device, surprise(fails[fi] as f64, exp));
            if sig < need {
                continue;
            }
            out.push(Anomaly {
                family: Family::TerminalFault,
                scope: vec![(LabelKey::TerminalId, term.labels[ix(LabelKey::TerminalId)])],
                members: vec![t as u32],
                attempts: att,
                observed: fails[fi] as f64,
                expected: exp,
                window_min: 60,
                significance: sig,
                silent: 0,
                onset: h.since,
            });
        }
        out
    }

    /// Payments at a group far below its usual volume at this hour: the last 30 minutes hold
    /// at most a quarter of the attempts its learned hour-of-day profile expects (at least
    /// 20), and the Poisson lower tail reaches the threshold of an `unknown` incident. Groups
    /// of which more than 30 % of terminals are silent are left to silence; groups inside an
    /// open incident are explained by it. Of overlapping groups the most significant is kept.
    /// Tested once a minute.
    pub(super) fn volume(&mut self, now: i64) -> Vec<Anomaly> {
        let now_min = now.div_euclid(MINUTE_MS);
        if now_min == self.last_volume_min {
            return Vec::new();
        }
        self.last_volume_min = now_min;
        // The minute in progress is not complete.
        let to = now_min - 1;
        let mut found: Vec<(f64, usize, u64, f64)> = Vec::new();
        for (g, grp) in self.st.groups.iter().enumerate() {
            let Some(exp) = grp
                .vol
                .as_ref()
                .and_then(|v| v.expected(to, VOLUME_WINDOW_MIN))
            else {
                continue;
            };
            if exp < 20.0 {
                continue;
            }
            let (obs, _) = self.st.window(g, to, VOLUME_WINDOW_MIN);
            if obs as f64 > 0.25 * exp {
                continue;
            }
            let sig = deficit(obs, exp);
            if sig < self.threshold(&self.st.group_scope(g)) + self.cfg.unknown_extra_significance {
                continue;
            }
            found.push((sig, g, obs, exp));
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Anomaly> = Vec::new();
        for (sig, g, obs, exp) in found {
            let members = &self.st.groups[g].members;
            let silent = members
                .iter()
                .filter(|&&t| self.missed(t as usize, now) >= 1)
                .count();
            if silent * 10 > members.len() * 3
                || self.open.iter().any(|o| subset(members, &o.members))
                || out
                    .iter()
                    .any(|a| members.iter().any(|t| a.members.binary_search(t).is_ok()))
            {
                continue;
            }
            out.push(Anomaly {
                family: Family::Volume,
                scope: self.st.group_scope(g),
                members: members.clone(),
                attempts: obs,
                observed: obs as f64,
                expected: exp,
                window_min: VOLUME_WINDOW_MIN,
                significance: sig,
                silent: 0,
                onset: (to - VOLUME_WINDOW_MIN) * MINUTE_MS,
            });
        }
        out
    }

    pub(super) fn miss_evidence(&self) -> f64 {
        let q = ((self.st.missed + 1.0) / (self.st.beats + 100.0))
            .max(self.cfg.min_heartbeat_miss_prob)
            .min(0.5);
        -q.ln()
    }

    /// Heartbeats missed by terminal `t` at `now`.
    pub(super) fn missed(&self, t: usize, now: i64) -> i64 {
        let term = &self.st.terms[t];
        let interval = self.hb_interval(t);
        let slack = (0.1 * interval).max(5000.0);
        let gap = (now - term.last_arrival) as f64;
        if gap > 24.0 * 3_600_000.0 {
            // Gone for a day: decommissioned, not an outage.
            return 0;
        }
        ((gap - slack) / interval).floor().max(0.0) as i64
    }

    /// Silence localisation: greedy cover of the late terminals by label groups.
    pub(super) fn silence(&mut self, now: i64) -> Vec<Anomaly> {
        let unit = self.miss_evidence();
        let mut late: Vec<(u32, f64)> = (0..self.st.terms.len())
            .filter_map(|t| {
                let m = self.missed(t, now);
                // Terminal count fits u32 (see State::hello).
                (m >= 1).then(|| (t as u32, unit * m.min(5) as f64))
            })
            .collect();
        let mut out = Vec::new();
        for _ in 0..32 {
            if late.is_empty() {
                break;
            }
            let mut acc: HashMap<u32, (u32, f64)> = HashMap::new();
            for &(t, e) in &late {
                for &g in &self.st.terms[t as usize].groups {
                    let a = acc.entry(g).or_default();
                    a.0 += 1;
                    a.1 += e;
                }
            }
            let mut best: Option<(f64, u32)> = None;
            for (&g, &(k, e)) in &acc {
                let grp = &self.st.groups[g as usize];
                let n = grp.members.len().max(k as usize) as f64;
                let k = f64::from(k);
                let fit = xlnx(k) + xlnx(n - k) - xlnx(n);
                let score = e + fit - (DIMSETS[grp.dimset].len() as f64 - 1.0);
                if best.is_none_or(|(s, bg)| score > s || (score == s && g < bg)) {
                    best = Some((score, g));
                }
            }
            let Some((score, g)) = best else { break };
            if score < self.cfg.silence_min_score {
                break;
            }
            let members = &self.st.groups[g as usize].members;
            let (inside, rest): (Vec<_>, Vec<_>) = late
                .iter()
                .partition(|(t, _)| members.binary_search(t).is_ok());
            let onset = inside
                .iter()
                .map(|&(t, _)| self.st.terms[t as usize].last_arrival)
                .min()
                .unwrap_or(now);
            out.push(Anomaly {
                family: Family::Silence,
                scope: self.st.group_scope(g as usize),
                members: members.clone(),
                attempts: 0,
                observed: inside.len() as f64,
                expected: 0.0,
                window_min: 0,
                significance: score / std::f64::consts::LN_10,
                silent: inside.len() as u32,
                onset,
            });
            late = rest;
        }
        out
    }

    /// Failure tests of family `fi`, and localisation of what they flag.
    pub(super) fn failures(&mut self, now: i64, fi: usize) -> Vec<Anomaly> {
        let now_min = now.div_euclid(MINUTE_MS);
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        self.dirty[fi].retain(|_, m| *m > now_min - 60);
        if self.dirty[fi].is_empty() {
            return Vec::new();
        }
        let mut flagged: Vec<(u32, f64, i64)> = Vec::new();
        for (&g, &last_fail) in &self.dirty[fi] {
            // Stale evidence (the last failure long ago) flags nothing: what is over is over.
            if now_min - last_fail > 10 {
                continue;
            }
            let gi = g as usize;
            let need = self.need(fi, &self.st.group_scope(gi), now);
            if self.contained(fi, &self.st.groups[gi].members) {
                continue;
            }
            let rate = self.st.rate(gi, fi, prior, prior_n);
            let mut best = (0.0, 0i64, 0u64);
            let sums = self.st.windows3(gi, now_min, WINDOWS_MIN);
            let sig: Vec<f64> = sums
                .iter()
                .map(|(att, fails)| surprise(fails[fi] as f64, *att as f64 * rate))
                .collect();
            for i in 0..WINDOWS_MIN.len() {
                // A long window counts only while its recent part is still unusual: the
                // failures of an outage that ended must not keep flagging.
                let recent = sig[i.saturating_sub(1)];
                if sig[i] > best.0 && recent >= self.cfg.stay_open_significance {
                    best = (sig[i], WINDOWS_MIN[i], sums[i].1[fi]);
                }
            }
            let grp = &self.st.groups[gi];
            if fi == AVAILABILITY && grp.dimset <= 1 && best.2 >= 2 {
                // A store's (or terminal's) own network samples are a second, independent
                // witness of its timeouts.
                let nq = self.nq_evidence(&grp.members, now);
                best.0 = fisher2(best.0, nq);
            }
            if best.0 >= need && best.2 >= 2 {
                flagged.push((g, best.0, best.1));
            } else if let Some(rs) = self.run_evidence(gi, fi) {
                flagged.push((g, rs, ACTIVE_WINDOW_MIN));
            }
        }
        for &(g, _, _) in &flagged {
            self.st.groups[g as usize].excluded_until[fi] = now_min + 60;
            self.st.fleet_exclusions[fi] = now_min + 60;
        }
        let unexplained: Vec<(u32, f64, i64)> = flagged
            .iter()
            .copied()
            .filter(|&(g, _, w)| !self.explained(now_min, fi, g as usize, w))
            .collect();
        if unexplained.is_empty() {
            self.tried[fi].clear();
            return Vec::new();
        }
        let fresh = unexplained
            .iter()
            .any(|&(g, s, _)| self.tried[fi].get(&g).is_none_or(|&old| s >= old + 2.0));
        if !fresh || now.saturating_sub(self.last_localize[fi]) < self.cfg.localize_every_ms {
            return Vec::new();
        }
        self.last_localize[fi] = now;
        self.tried[fi] = unexplained.iter().map(|&(g, s, _)| (g, s)).collect();
        let w = unexplained
            .iter()
            .fold((0.0, 15), |b, &(_, s, w)| if s > b.0 { (s, w) } else { b })
            .1;
        let mut out = self.localize(now_min, fi, w);
        if out.is_empty() {
            // The localiser found nothing significant: fall back to the most significant
            // flagged groups, narrowest first among equals.
            let mut cands = unexplained.clone();
            cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if let Some(&(g, _, w)) = cands.first() {
                let scope = self.narrowed(now_min, fi, w, self.st.group_scope(g as usize));
                if let Some(a) = self.measure(now_min, fi, scope, w) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Whether `scope` is one acquirer or QR channel inside one of its announced maintenance
    /// windows (with grace) at `now`.
    pub(super) fn announced(&self, scope: &[(LabelKey, u32)], now: i64) -> bool {
        let [(d, v)] = scope else { return false };
        self.windows.iter().any(|w| {
            let same = matches!(w.scope.as_slice(), [(wd, wv)]
                if wd == d && self.st.interner.lookup(*wd, wv) == Some(*v));
            same && now >= w.start_ms - self.cfg.maintenance_grace_ms
                && now <= w.end_ms + self.cfg.maintenance_grace_ms
        })
    }

    /// The significance an anomaly of family `fi` on `scope` must reach at `now`: an
    /// availability anomaly of an acquirer or channel inside its announced window is a
    /// hypothesis named in advance and needs only
    /// [`DetectorConfig::announced_significance`]; anything else [`Self::threshold`].
    ///
    /// [`DetectorConfig::announced_significance`]: super::DetectorConfig::announced_significance
    pub(super) fn need(&self, fi: usize, scope: &[(LabelKey, u32)], now: i64) -> f64 {
        if fi == AVAILABILITY && self.announced(scope, now) {
            self.cfg.announced_significance
        } else {
            self.threshold(scope)
        }
    }

    /// The significance a scope must reach: the base threshold plus the price of having
    /// looked at every scope of its shape (Bonferroni over the label values of its keys).
    pub(super) fn threshold(&self, scope: &[(LabelKey, u32)]) -> f64 {
        let price: f64 = scope
            .iter()
            .map(|&(d, _)| (self.st.interner.cardinality(d).max(1) as f64).log10())
            .sum();
        self.cfg.min_significance + price
    }

    /// The run test of group `g` (a terminal, or a store) in family `fi`: `-log10` of the
    /// chance that its last `k` payments all failed with codes of the family's plane (no
    /// approval in between) at its baseline rate `p`, i.e. `k log10(1/p)`, if that beats
    /// [`Self::run_threshold`]. Only families whose codes healthy terminals almost never answer
    /// (merchant config, terminal config, terminal fault) and runs of at least two count.
    pub(super) fn run_evidence(&self, g: usize, fi: usize) -> Option<f64> {
        let grp = &self.st.groups[g];
        // Terminal runs for every decisive family; store runs for merchant config only (a
        // branch's registration; a store's terminals do not break together otherwise).
        let eligible = match grp.dimset {
            0 => fi < AVAILABILITY,
            1 => fi == fam_index(Family::MerchantConfig),
            _ => false,
        };
        let k = grp.run[fi];
        if !eligible || k < 2 {
            return None;
        }
        // The null rate of the run's plane: every compatible family's baseline.
        let p: f64 = plane_of(Family::COUNTED[fi])
            .map(|f| {
                self.st
                    .rate(g, f, self.cfg.prior_rates[f], self.cfg.prior_attempts)
            })
            .sum::<f64>()
            .clamp(1e-12, 0.5);
        let sig = f64::from(k) * -p.log10();
        (sig >= self.run_threshold()).then_some(sig)
    }

    /// Significance a run must reach: a Bonferroni price over every chance a run had to start
    /// in a fleet-day (terminals x payments per terminal per day, at least 50) for at most
    /// [`DetectorConfig::run_false_per_day`] false incidents per fleet-day.
    ///
    /// [`DetectorConfig::run_false_per_day`]: super::DetectorConfig::run_false_per_day
    fn run_threshold(&self) -> f64 {
        let n = self.st.terms.len().max(1) as f64;
        // A count decayed with half-life H holds H / ln 2 worth of its rate.
        let half_life_days = self.cfg.baseline_half_life_ms as f64 / 86_400_000.0;
        let per_day =
            (self.st.fleet_attempts * std::f64::consts::LN_2 / half_life_days / n).max(50.0);
        (n * per_day / self.cfg.run_false_per_day.max(1e-9)).log10()
    }

    /// `-log10 p` of the degraded network samples of `members` (at most a store's worth are
    /// looked at) in the 15 minutes before `now`, against the fleet's share of degraded samples.
    pub(super) fn nq_evidence(&self, members: &[u32], now: i64) -> f64 {
        let q = self.st.nq_bad_share.max(self.cfg.min_nq_bad_share);
        let since = now - ACTIVE_WINDOW_MIN * MINUTE_MS;
        let (mut n, mut k) = (0u32, 0u32);
        for &t in members.iter().take(64) {
            for &(ts, bad) in &self.st.terms[t as usize].nq {
                if ts > since && ts <= now {
                    n += 1;
                    k += u32::from(bad);
                }
            }
        }
        surprise(f64::from(k), f64::from(n) * q)
    }
}

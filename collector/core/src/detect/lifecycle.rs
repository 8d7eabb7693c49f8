//! The incident lifecycle: an anomaly refreshes, widens, is absorbed by or opens an incident;
//! the incident is built (evidence, explanation, remediation), re-judged every tick on its own
//! scope and resolved once its signal is gone and recovery is likely.

use std::collections::{BTreeSet, HashMap};

use storepulse_shared::taxonomy;
use storepulse_shared::{LabelKey, Scheme};

use super::state::{WINDOWED, ix};
use super::stats::{surprise, xlnx};
use super::{
    ACTIVE_WINDOW_MIN, Anomaly, CodeCount, Detector, DeviceReading, Evidence, Example, Family,
    Incident, IncidentEvent, IncidentId, IncidentKind, MINUTE_MS, Open, VOLUME_WINDOW_MIN,
    plane_of, subset, text,
};

/// `log10` likelihood ratio a recovery must reach (100 : 1) before an incident's hold runs.
pub(super) const RECOVERY_LOG10: f64 = 2.0;

/// `log10` likelihood ratio of "the failure rate is still `open_rate`" against "it is back to
/// the baseline" for `obs` failures in `att` payments where the baseline expects `exp`
/// (binomial; negative favours recovery). One approval on a terminal that failed every
/// payment is strong evidence; a handful of payments at night on a 25 % defect is not.
pub(super) fn recovery_llr(obs: u64, att: u64, exp: f64, open_rate: f64) -> f64 {
    if att == 0 {
        return 0.0;
    }
    let n = att as f64;
    let k = (obs as f64).min(n);
    let r0 = (exp / n).clamp(1e-9, 0.5);
    let r1 = open_rate.max(2.0 * r0).min(0.95);
    k * (r1 / r0).log10() + (n - k) * ((1.0 - r1) / (1.0 - r0)).log10()
}

/// Whether a merchant-config code says the terminal's binding does not match its merchant
/// (WeChat Pay `APPID_MCHID_NOT_MATCH`, Alipay `ACQ.SECONDARY_MERCHANT_NOT_MATCH`: the
/// merchant exists, the terminal is set up with the wrong number) rather than that the
/// merchant's record is missing or invalid. On one terminal that is the terminal's own
/// configuration, even before a card payment shows a terminal-config code.
pub(super) fn binding_mismatch(code: &str) -> bool {
    code.ends_with("_NOT_MATCH")
}

impl Detector {
    pub(super) fn apply(
        &mut self,
        now: i64,
        mut a: Anomaly,
        seen_pending: &mut HashMap<Vec<(LabelKey, u32)>, i64>,
    ) {
        if a.family == Family::MerchantConfig && a.members.len() == 1 {
            // One terminal answering terminal-config codes too is misconfigured itself (its
            // QR payments report the wrong binding as a merchant mismatch).
            let t = a.members[0] as usize;
            let recent = &self.st.terms[t].recent;
            let mut mc = recent.iter().filter(|r| r.1 == Family::MerchantConfig);
            let binding_only = mc.clone().next().is_some() && mc.all(|r| binding_mismatch(&r.3));
            if recent.iter().any(|r| r.1 == Family::TerminalConfig) || binding_only {
                a.family = Family::TerminalConfig;
            } else if let Some(store) = self.store_wide(t) {
                // "Merchant does not exist" on one terminal while no sibling of its store
                // has been paid since: the store's registration (a branch without routing
                // information), not this terminal. If a sibling is being paid, the terminal
                // alone is bound wrong and stays a terminal-config incident.
                a.scope = self.st.group_scope(store);
                a.members = self.st.groups[store].members.clone();
            }
        }
        self.canonical(&mut a);
        if self.stale_after_resolve(now, &a) {
            return;
        }
        let kind = self.kind_of(&a, now);
        // Same scope: refresh.
        if let Some(o) = self
            .open
            .iter_mut()
            .find(|o| o.scope_ids == a.scope && o.family.compatible(a.family))
        {
            o.last_active = now;
            return;
        }
        // Explained by a wider open incident.
        if let Some(o) = self
            .open
            .iter_mut()
            .find(|o| o.family.compatible(a.family) && subset(&a.members, &o.members))
        {
            if o.family == a.family {
                o.last_active = now;
            }
            return;
        }
        // A pattern that fits no kind, inside any open incident, is evidence of that incident
        // (a firmware defect's platform-class codes on one acquirer).
        if kind == IncidentKind::Unknown && self.open.iter().any(|o| subset(&a.members, &o.members))
        {
            return;
        }
        // Widens narrower open incidents.
        if kind != IncidentKind::Unknown {
            let narrower: Vec<usize> = (0..self.open.len())
                .filter(|&i| {
                    let o = &self.open[i];
                    o.family.compatible(a.family) && subset(&o.members, &a.members)
                })
                .collect();
            if let Some((&keep, rest)) = narrower.split_first() {
                let keep_id = self.open[keep].inc.id;
                for &i in rest.iter().rev() {
                    let mut o = self.open.remove(i);
                    o.inc.resolved_ms = Some(now);
                    o.inc.updated_ms = now;
                    o.inc.merged_into = Some(keep_id);
                    self.events.push_back(IncidentEvent::Resolved(o.inc));
                }
                let inc = self.build(now, &a, kind, self.open[keep].inc.id);
                let o = &mut self.open[keep];
                let started = o.inc.started_ms.min(inc.started_ms);
                let opened = o.inc.opened_ms;
                o.inc = inc;
                o.inc.started_ms = started;
                o.inc.opened_ms = opened;
                o.family = a.family;
                o.scope_ids = a.scope.clone();
                o.members = a.members.clone();
                o.last_active = now;
                o.last_emit = now;
                o.open_rate = a.rate();
                self.events.push_back(IncidentEvent::Updated(o.inc.clone()));
                return;
            }
        }
        if kind == IncidentKind::Unknown {
            let need = self.threshold(&a.scope) + self.cfg.unknown_extra_significance;
            if a.significance < need {
                return;
            }
        }
        if a.family == Family::Silence {
            let first = self.pending.get(&a.scope).copied().unwrap_or(now);
            seen_pending.insert(a.scope.clone(), first);
            if first == now {
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let inc = self.build(now, &a, kind, id);
        let open_rate = a.rate();
        self.events.push_back(IncidentEvent::Opened(inc.clone()));
        self.open.push(Open {
            inc,
            family: a.family,
            scope_ids: a.scope,
            members: a.members,
            last_active: now,
            last_attempt: now,
            last_emit: now,
            last_refresh: now,
            open_rate,
        });
    }

    fn build(&self, now: i64, a: &Anomaly, kind: IncidentKind, id: IncidentId) -> Incident {
        let scope: Vec<(LabelKey, String)> = a
            .scope
            .iter()
            .filter(|(d, _)| *d != LabelKey::Link)
            .map(|&(d, v)| (d, self.st.interner.value(d, v).to_owned()))
            .collect();
        let since = now - a.window_min.max(ACTIVE_WINDOW_MIN) * MINUTE_MS;
        let mut affected: Vec<u32> = Vec::new();
        let mut codes: HashMap<(Scheme, String), u32> = HashMap::new();
        let mut examples: Vec<Example> = Vec::new();
        let (mut rtt, mut rtt_b, mut loss, mut loss_b, mut nq) =
            (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for &t in &a.members {
            let term = &self.st.terms[t as usize];
            if a.family == Family::Volume {
                affected.push(t);
                continue;
            }
            if a.family == Family::Silence {
                if self.missed(t as usize, now) >= 1 {
                    affected.push(t);
                }
                continue;
            }
            let mut hit = false;
            for (time, f, scheme, code) in &term.recent {
                if *f == a.family && *time >= since {
                    hit = true;
                    *codes.entry((*scheme, code.clone())).or_default() += 1;
                    if examples.len() < 3 {
                        examples.push(Example {
                            terminal: term.id.clone(),
                            time_ms: *time,
                            scheme: *scheme,
                            code: code.clone(),
                        });
                    }
                }
            }
            if hit {
                affected.push(t);
            }
            if let (Some(r), Some(rb), Some(l), Some(lb)) = (
                term.rtt_ms,
                term.rtt_base,
                term.loss_percent,
                term.loss_base,
            ) {
                rtt += r;
                rtt_b += rb;
                loss += l;
                loss_b += lb;
                nq += 1.0;
            }
        }
        let mut top: Vec<CodeCount> = codes
            .into_iter()
            .map(|((scheme, code), count)| {
                let info = taxonomy::lookup(scheme, &code);
                CodeCount {
                    class: taxonomy::classify(scheme, &code).class,
                    meaning_en: info.map(|i| i.meaning_en.clone()).unwrap_or_default(),
                    meaning_zh: info.map(|i| i.meaning_zh.clone()).unwrap_or_default(),
                    scheme,
                    code,
                    count,
                }
            })
            .collect();
        top.sort_by(|x, y| y.count.cmp(&x.count).then(x.code.cmp(&y.code)));
        top.truncate(5);
        let stores: BTreeSet<u32> = affected
            .iter()
            .map(|&t| self.st.terms[t as usize].labels[ix(LabelKey::StoreId)])
            .collect();
        let merchants: BTreeSet<u32> = affected
            .iter()
            .map(|&t| self.st.terms[t as usize].labels[ix(LabelKey::MerchantId)])
            .collect();
        let fi = Family::COUNTED.iter().position(|&f| f == a.family);
        let baseline_rate = fi.map_or(0.0, |fi| {
            if a.attempts > 0 {
                a.expected / a.attempts as f64
            } else {
                self.st
                    .fleet_rate(fi, self.cfg.prior_rates[fi], self.cfg.prior_attempts)
            }
        });
        let remediation = if a.family == Family::Volume {
            text::VOLUME_REMEDIATION
        } else {
            text::remediation(kind)
        };
        let mut inc = Incident {
            id,
            kind,
            scope,
            affected_terminals: affected.len() as u32,
            affected_stores: stores.len() as u32,
            affected_merchants: merchants.len() as u32,
            scope_terminals: a.members.len() as u32,
            evidence: Evidence {
                family: a.family,
                window_ms: a.window_min * MINUTE_MS,
                attempts: a.attempts,
                observed: a.observed,
                expected: a.expected,
                baseline_rate,
                significance: a.significance,
                silent_terminals: a.silent,
                top_codes: top,
                examples,
                rtt_ms: (nq > 0.0).then(|| (rtt / nq, rtt_b / nq)),
                loss_percent: (nq > 0.0).then(|| (loss / nq, loss_b / nq)),
                device: match a.members.as_slice() {
                    &[t] if a.family == Family::TerminalFault
                        && self.st.terms[t as usize].health.run > 0 =>
                    {
                        let h = &self.st.terms[t as usize].health;
                        Some(DeviceReading {
                            temperature_c: h.temp,
                            temperature_baseline_c: h.temp_base,
                            cpu_percent: h.cpu,
                            cpu_baseline_percent: h.cpu_base,
                        })
                    }
                    _ => None,
                },
            },
            started_ms: a.onset.min(now),
            opened_ms: now,
            updated_ms: now,
            resolved_ms: None,
            explanation_en: String::new(),
            explanation_zh: String::new(),
            remediation_en: remediation.iter().map(|r| r.0).collect(),
            remediation_zh: remediation.iter().map(|r| r.1).collect(),
            merged_into: None,
        };
        let (en, zh) = text::explain(&inc);
        inc.explanation_en = en;
        inc.explanation_zh = zh;
        inc
    }

    /// Re-judges every open incident on its own scope; resolves those whose signal is gone.
    pub(super) fn refresh(&mut self, now: i64) {
        let now_min = now.div_euclid(MINUTE_MS);
        let mut i = 0;
        while i < self.open.len() {
            let o = &self.open[i];
            let fam = o.family;
            let mut update: Option<Anomaly> = None;
            if fam == Family::Silence {
                let silent = o
                    .members
                    .iter()
                    .filter(|&&t| self.missed(t as usize, now) >= 1)
                    .count();
                if self.silence_holds(i, now) || self.still_failing(i, now) {
                    let o = &mut self.open[i];
                    o.last_active = now;
                    if silent as u32 != o.inc.evidence.silent_terminals
                        && now - o.last_emit >= MINUTE_MS
                    {
                        let mut a = self.anomaly_of(i);
                        a.silent = silent as u32;
                        a.observed = silent as f64;
                        update = Some(a);
                    }
                }
            } else if fam == Family::Volume {
                // Active while the scope's payments stay below half their usual volume.
                let to = now.div_euclid(MINUTE_MS) - 1;
                let g = o
                    .scope_ids
                    .first()
                    .map(|&(d, _)| self.st.terms[o.members[0] as usize].groups[ix(d)] as usize);
                let low = g.is_some_and(|g| {
                    let exp = self.st.groups[g]
                        .vol
                        .as_ref()
                        .and_then(|v| v.expected(to, VOLUME_WINDOW_MIN));
                    let (obs, _) = self.st.window(g, to, VOLUME_WINDOW_MIN);
                    exp.is_some_and(|e| (obs as f64) < 0.5 * e)
                });
                if low {
                    self.open[i].last_active = now;
                }
            } else if let Some(fi) = Family::COUNTED.iter().position(|&f| f == fam) {
                if now - o.last_refresh < 30_000 {
                    i += 1;
                    continue;
                }
                // Activity counts every family of the incident's plane: a misconfigured
                // terminal answers card payments with terminal-config codes and QR payments
                // with merchant-config codes.
                let plane: Vec<usize> = plane_of(fam).collect();
                let single = (o.scope_ids.len() == 1).then(|| {
                    let t0 = o.members[0] as usize;
                    self.st.terms[t0].groups[ix(o.scope_ids[0].0)] as usize
                });
                let (mut att, mut obs, mut exp) = (0u64, 0u64, 0.0);
                let (mut obs5, mut exp5) = (0u64, 0.0);
                let (mut att60, mut obs60) = (0u64, 0u64);
                let groups: Vec<usize> = match single {
                    Some(g) if self.st.groups[g].dimset < WINDOWED => vec![g],
                    _ => o
                        .members
                        .iter()
                        .map(|&t| self.st.terms[t as usize].groups[0] as usize)
                        .collect(),
                };
                // The minute of the scope's latest failure of the plane, then the payments
                // after it: the sequential evidence that it is over.
                let last_fail = self.last_failure_minute(&groups, &plane, now_min);
                let (mut att_after, mut exp_after) = (0u64, 0.0);
                for &g in &groups {
                    // An open incident must not become the new normal: its failures stay out
                    // of the baselines of its groups for as long as it is open (and an hour
                    // after), not only while the failure test keeps flagging it (a contained
                    // group is not re-flagged, so its exclusion used to lapse after an hour).
                    for &pf in &plane {
                        let until = &mut self.st.groups[g].excluded_until[pf];
                        *until = (*until).max(now_min + 60);
                    }
                    let [(a, f), (a60, f60), (a5, f5)] =
                        self.st.windows3(g, now_min, [ACTIVE_WINDOW_MIN, 60, 5]);
                    let after: u64 = self.st.groups[g]
                        .ring
                        .iter()
                        .filter(|b| b.minute > last_fail && b.minute <= now_min)
                        .map(|b| u64::from(b.attempts))
                        .sum();
                    att += a;
                    att60 += a60;
                    att_after += after;
                    for &pf in &plane {
                        obs += f[pf];
                        obs5 += f5[pf];
                        obs60 += f60[pf];
                        let (pr, pn) = (self.cfg.prior_rates[pf], self.cfg.prior_attempts);
                        let r = self.st.rate(g, pf, pr, pn);
                        exp += a as f64 * r;
                        exp5 += a5 as f64 * r;
                        exp_after += after as f64 * r;
                    }
                }
                let s = surprise(obs as f64, exp);
                let s5 = surprise(obs5 as f64, exp5);
                // Over, shown either way: the payments since the last failure, or the last
                // quarter hour as a whole, favour the baseline 100 : 1 over the rate it opened
                // with. (The last hour as a whole kept every incident open for an hour after
                // its fault ended: its failures were still in the window.)
                // A run of approvals is judged against the rate the scope failed at over the
                // last hour (at most 80 %), not the rate it opened with: that was measured at
                // the moment the test fired, so it overstates a partial fault, and a streak of
                // approvals in a 30 % fault is common.
                let r1 = if att60 > 0 {
                    o.open_rate.min(obs60 as f64 / att60 as f64)
                } else {
                    o.open_rate
                }
                .min(0.8);
                let recovered = recovery_llr(0, att_after, exp_after, r1) <= -RECOVERY_LOG10
                    || recovery_llr(obs, att, exp, o.open_rate) <= -RECOVERY_LOG10;
                // A terminal fault stays active while its device is still hot and busy.
                let hot = fam == Family::TerminalFault
                    && o.members.len() == 1
                    && self.device_hot(o.members[0] as usize, now);
                // A store's (or terminal's) network incident stays active while its own network
                // samples stay degraded: payments queued offline during a flapping link
                // arrive as backlog, so the live payments alone can look recovered.
                let net_bad = fam == Family::Availability
                    && matches!(
                        o.scope_ids.as_slice(),
                        [(LabelKey::StoreId | LabelKey::TerminalId, _)]
                    )
                    && self.nq_evidence(&o.members, now) >= self.cfg.stay_open_significance;
                let o = &mut self.open[i];
                if hot || net_bad {
                    o.last_active = now;
                }
                o.last_refresh = now;
                if att > 0 {
                    o.last_attempt = now;
                }
                if s5 >= self.cfg.stay_open_significance
                    || (s >= self.cfg.stay_open_significance && !recovered)
                {
                    o.last_active = now;
                    self.st.fleet_exclusions[fi] = now_min + 60;
                    if now - o.last_emit >= 5 * MINUTE_MS {
                        let mut a = self.anomaly_of(i);
                        a.attempts = att;
                        a.observed = obs as f64;
                        a.expected = exp;
                        a.window_min = ACTIVE_WINDOW_MIN;
                        a.significance = s;
                        update = Some(a);
                    }
                } else if hot || o.open_rate <= 0.0 {
                    // Hot: kept active above. Opened by device health alone (no failures):
                    // the device cooling down is the evidence that it is over.
                } else if att == 0 && now - o.last_attempt < self.cfg.quiet_resolve_ms {
                    // No payments, no evidence either way: keep it open.
                    o.last_active = o.last_active.max(now - self.cfg.resolve_hold_ms / 2);
                } else if att60 > 0 && !recovered {
                    // Too few payments in the last hour to tell the incident's rate from
                    // the baseline (a low-rate firmware defect at night): over is not shown.
                    o.last_active = o.last_active.max(now - self.cfg.resolve_hold_ms / 2);
                }
            }
            if let Some(a) = update {
                let o = &self.open[i];
                let mut inc = self.build(now, &a, o.inc.kind, o.inc.id);
                inc.started_ms = o.inc.started_ms;
                inc.opened_ms = o.inc.opened_ms;
                let o = &mut self.open[i];
                o.inc = inc;
                o.last_emit = now;
                self.events.push_back(IncidentEvent::Updated(o.inc.clone()));
            }
            let o = &self.open[i];
            if now - o.last_active >= self.cfg.resolve_hold_ms {
                let mut o = self.open.remove(i);
                if o.family != Family::Volume {
                    self.resolved.push((o.family, o.members.clone(), now));
                }
                o.inc.resolved_ms = Some(now);
                o.inc.updated_ms = now;
                self.events.push_back(IncidentEvent::Resolved(o.inc));
                continue;
            }
            i += 1;
        }
    }

    /// Whether open silence incident `i` is still the explanation the silence cover would
    /// give: its late terminals still score at least [`DetectorConfig::silence_min_score`]
    /// for its scope (the score that opened it), and, for a scope wider than a store, they do
    /// not all sit in one store (a store still dark after its region came back is that
    /// store's own incident, not the region's).
    ///
    /// [`DetectorConfig::silence_min_score`]: super::DetectorConfig::silence_min_score
    fn silence_holds(&self, i: usize, now: i64) -> bool {
        let o = &self.open[i];
        let unit = self.miss_evidence();
        let late: Vec<(u32, i64)> = o
            .members
            .iter()
            .map(|&t| (t, self.missed(t as usize, now)))
            .filter(|&(_, m)| m >= 1)
            .collect();
        let Some(&(t0, _)) = late.first() else {
            return false;
        };
        let store_of = |t: u32| self.st.terms[t as usize].labels[ix(LabelKey::StoreId)];
        let wider_than_store = !matches!(
            o.scope_ids.as_slice(),
            [(LabelKey::StoreId | LabelKey::TerminalId, _)]
        );
        let one_store = late.iter().all(|&(t, _)| store_of(t) == store_of(t0));
        if wider_than_store && one_store {
            let store = self.st.terms[t0 as usize].groups[ix(LabelKey::StoreId)] as usize;
            if self.st.groups[store].members.len() < o.members.len() {
                return false;
            }
        }
        let dims = o.scope_ids.len() as f64;
        let e: f64 = late.iter().map(|&(_, m)| unit * m.min(5) as f64).sum();
        let (n, k) = (o.members.len() as f64, late.len() as f64);
        let fit = xlnx(k) + xlnx(n - k) - xlnx(n);
        e + fit - (dims - 1.0) >= self.cfg.silence_min_score
    }

    /// Whether failure anomaly `a` lies inside an incident resolved in the last hour and none
    /// of its terminals failed (in the anomaly's plane) since: the windows still hold the old
    /// incident's failures, and reopening on them would split one fault into two incidents.
    fn stale_after_resolve(&mut self, now: i64, a: &Anomaly) -> bool {
        self.resolved.retain(|r| now - r.2 < 60 * MINUTE_MS);
        if !Family::COUNTED.contains(&a.family) {
            return false;
        }
        let Some(at) = self
            .resolved
            .iter()
            .filter(|r| r.0.compatible(a.family) && subset(&a.members, &r.1))
            .map(|r| r.2)
            .max()
        else {
            return false;
        };
        !a.members.iter().any(|&t| {
            self.st.terms[t as usize]
                .recent
                .iter()
                .any(|r| r.0 > at && r.1.compatible(a.family))
        })
    }

    /// The latest minute (up to `now_min`) in which any of `groups` failed in a family of
    /// `plane`, or an hour ago if none did: the payments after it are the sequential evidence
    /// that an incident is over.
    fn last_failure_minute(&self, groups: &[usize], plane: &[usize], now_min: i64) -> i64 {
        groups
            .iter()
            .filter_map(|&g| {
                self.st.groups[g]
                    .ring
                    .iter()
                    .rev()
                    .find(|b| b.minute <= now_min && plane.iter().any(|&pf| b.fails[pf] > 0))
                    .map(|b| b.minute)
            })
            .max()
            .unwrap_or(now_min - 60)
    }

    /// Whether the terminals of open silence incident `i`, back online, still fail their
    /// payments with availability codes (the last 5 minutes against their baselines reach
    /// [`DetectorConfig::stay_open_significance`]): the outage is not over for the merchants
    /// yet, and the same outage must not come back as a second incident.
    ///
    /// [`DetectorConfig::stay_open_significance`]: super::DetectorConfig::stay_open_significance
    fn still_failing(&self, i: usize, now: i64) -> bool {
        let o = &self.open[i];
        let now_min = now.div_euclid(MINUTE_MS);
        let fi = super::AVAILABILITY;
        let groups: Vec<usize> = match o.scope_ids.as_slice() {
            [(d, _)] if ix(*d) < WINDOWED => {
                vec![self.st.terms[o.members[0] as usize].groups[ix(*d)] as usize]
            }
            _ => o
                .members
                .iter()
                .map(|&t| self.st.terms[t as usize].groups[0] as usize)
                .collect(),
        };
        let (pr, pn) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let last_fail = self.last_failure_minute(&groups, &[fi], now_min);
        let (mut obs, mut exp) = (0u64, 0.0);
        let (mut att60, mut obs60, mut after, mut exp_after) = (0u64, 0u64, 0u64, 0.0);
        for g in groups {
            let r = self.st.rate(g, fi, pr, pn);
            let (a, f) = self.st.window(g, now_min, 5);
            obs += f[fi];
            exp += a as f64 * r;
            let (a60, f60) = self.st.window(g, now_min, 60);
            att60 += a60;
            obs60 += f60[fi];
            let n: u64 = self.st.groups[g]
                .ring
                .iter()
                .filter(|b| b.minute > last_fail && b.minute <= now_min)
                .map(|b| u64::from(b.attempts))
                .sum();
            after += n;
            exp_after += n as f64 * r;
        }
        // Approvals since the last failure can show it is over (the spooled failures of the
        // outage itself, delivered on reconnect, are not a continuing outage).
        let r1 = (obs60 as f64 / att60.max(1) as f64).min(0.8);
        let recovered = recovery_llr(0, after, exp_after, r1) <= -RECOVERY_LOG10;
        surprise(obs as f64, exp) >= self.cfg.stay_open_significance && !recovered
    }

    fn anomaly_of(&self, i: usize) -> Anomaly {
        let o = &self.open[i];
        let e = &o.inc.evidence;
        Anomaly {
            family: o.family,
            scope: o.scope_ids.clone(),
            members: o.members.clone(),
            attempts: e.attempts,
            observed: e.observed,
            expected: e.expected,
            window_min: e.window_ms / MINUTE_MS,
            significance: e.significance,
            silent: e.silent_terminals,
            onset: o.inc.started_ms,
        }
    }
}

//! Localisation: whether a flag is already explained by an open incident, exact counts over a
//! scope, the root-cause search over a ratio cube, narrowing and canonical scopes, and the
//! kind an anomaly is named.

use std::collections::BTreeSet;

use storepulse_shared::LabelKey;

use super::state::{DIMS, DIMSETS, ix};
use super::stats::surprise;
use super::{
    AVAILABILITY, Anomaly, Detector, Family, IncidentKind, MINUTE_MS, Open, fisher2, subset,
};
use crate::rca::{self, Cube, Direction, KpiKind, Params, RatioSample};

impl Detector {
    /// Whether every terminal of `members` lies in one open incident of a compatible family.
    pub(super) fn contained(&self, fi: usize, members: &[u32]) -> bool {
        let fam = Family::COUNTED[fi];
        self.open
            .iter()
            .any(|o| o.family.compatible(fam) && subset(members, &o.members))
    }

    /// Terminals covered by open incidents of a family compatible with `fi`.
    fn covered(&self, fi: usize) -> Vec<bool> {
        let fam = Family::COUNTED[fi];
        let mut out = vec![false; self.st.terms.len()];
        for o in self.open.iter().filter(|o| o.family.compatible(fam)) {
            for &t in &o.members {
                out[t as usize] = true;
            }
        }
        out
    }

    /// Whether flagged group `g` is explained by open incidents: contained in one, or no
    /// longer significant once the failures of the open incidents inside it are taken out.
    pub(super) fn explained(&self, now_min: i64, fi: usize, g: usize, w: i64) -> bool {
        let m = &self.st.groups[g].members;
        if self.contained(fi, m) {
            return true;
        }
        if Family::COUNTED[fi] == Family::MerchantConfig
            && DIMSETS[self.st.groups[g].dimset] == [LabelKey::MerchantId]
        {
            // Merchant-config incidents open on two or more of a merchant's stores (or
            // terminals) that together hold most of its terminals are one registration
            // problem: the merchant explains them more succinctly, so they are not an
            // explanation of it (it widens them into one).
            let fam = Family::COUNTED[fi];
            let inside: Vec<&Open> = self
                .open
                .iter()
                .filter(|o| o.family.compatible(fam) && subset(&o.members, m))
                .collect();
            let union: BTreeSet<u32> = inside
                .iter()
                .flat_map(|o| o.members.iter().copied())
                .collect();
            if inside.len() >= 2 && union.len() * 4 >= m.len() * 3 {
                return false;
            }
        }
        let covered = self.covered(fi);
        if !m.iter().any(|&t| covered[t as usize]) {
            return false;
        }
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let (mut att, fails) = self.st.window(g, now_min, w);
        let mut obs = fails[fi];
        for &t in m.iter().filter(|&&t| covered[t as usize]) {
            let tg = self.st.terms[t as usize].groups[0] as usize;
            let (a, f) = self.st.window(tg, now_min, w);
            att = att.saturating_sub(a);
            obs = obs.saturating_sub(f[fi]);
        }
        let rate = self.st.rate(g, fi, prior, prior_n);
        surprise(obs as f64, att as f64 * rate)
            < self.need(fi, &self.st.group_scope(g), now_min * MINUTE_MS)
    }

    /// Exact counts of family `fi` over the terminals of `scope` in the last `w` minutes.
    pub(super) fn measure(
        &self,
        now_min: i64,
        fi: usize,
        scope: Vec<(LabelKey, u32)>,
        w: i64,
    ) -> Option<Anomaly> {
        let members = self.st.members_of(&scope);
        if members.is_empty() {
            return None;
        }
        // Terminals already explained by an open incident are not evidence of a new one.
        let mut covered = self.covered(fi);
        // A scope that contains an open compatible incident may widen it: judge it whole.
        let fam = Family::COUNTED[fi];
        if self.open.iter().any(|o| {
            o.family.compatible(fam)
                && o.members.len() < members.len()
                && subset(&o.members, &members)
        }) {
            covered.iter_mut().for_each(|c| *c = false);
        }
        let (prior, prior_n) = (self.cfg.prior_rates[fi], self.cfg.prior_attempts);
        let (mut att, mut obs, mut exp) = (0u64, 0u64, 0.0);
        let mut onset = i64::MAX;
        for &t in members.iter().filter(|&&t| !covered[t as usize]) {
            let g = self.st.terms[t as usize].groups[0] as usize;
            let (a, f) = self.st.window(g, now_min, w);
            att += a;
            obs += f[fi];
            exp += a as f64 * self.st.rate(g, fi, prior, prior_n);
            if f[fi] > 0 {
                let fam = Family::COUNTED[fi];
                if let Some(first) = self.st.terms[t as usize]
                    .recent
                    .iter()
                    .filter(|r| r.1 == fam)
                    .map(|r| r.0)
                    .min()
                {
                    onset = onset.min(first);
                }
            }
        }
        let mut s = surprise(obs as f64, exp);
        let single = (scope.len() == 1).then(|| scope[0].0);
        if fi == AVAILABILITY
            && matches!(single, Some(LabelKey::TerminalId | LabelKey::StoreId))
            && obs >= 2
        {
            s = fisher2(
                s,
                self.nq_evidence(&members, now_min * MINUTE_MS + MINUTE_MS - 1),
            );
        }
        let mut pass = s >= self.need(fi, &scope, now_min * MINUTE_MS) && obs >= 2;
        let group = match single {
            Some(LabelKey::TerminalId | LabelKey::StoreId) => {
                let d = scope[0].0;
                Some(self.st.terms[members[0] as usize].groups[ix(d)] as usize)
            }
            _ => None,
        };
        if !pass && let Some(rs) = group.and_then(|g| self.run_evidence(g, fi)) {
            s = s.max(rs);
            pass = true;
        }
        pass.then(|| Anomaly {
            family: Family::COUNTED[fi],
            scope,
            members,
            attempts: att,
            observed: obs as f64,
            expected: exp,
            window_min: w,
            significance: s,
            silent: 0,
            onset: if onset == i64::MAX {
                now_min * MINUTE_MS
            } else {
                onset
            },
        })
    }

    /// Root-cause localisation of family `fi` over the last `w` minutes with [`rca`].
    pub(super) fn localize(&self, now_min: i64, fi: usize, w: i64) -> Vec<Anomaly> {
        let names: Vec<&str> = DIMS.iter().map(|d| d.as_str()).collect();
        let mut cube = Cube::new(&names, KpiKind::Ratio);
        let prior = self.cfg.prior_rates[fi];
        let mut ids = vec![0u32; names.len()];
        let covered = self.covered(fi);
        for (ti, term) in self.st.terms.iter().enumerate() {
            if covered[ti] {
                continue;
            }
            let g = term.groups[0] as usize;
            let (att, fails) = self.st.window(g, now_min, w);
            if att == 0 {
                continue;
            }
            let grp = &self.st.groups[g];
            for (i, d) in DIMS.into_iter().enumerate() {
                let v = self.st.interner.value(d, term.labels[i]);
                match cube.intern(i, v) {
                    Ok(id) => ids[i] = id,
                    Err(_) => return Vec::new(),
                }
            }
            let sample = RatioSample {
                num_real: fails[fi] as f64,
                num_predict: grp.base_fails[fi] + prior * 50.0,
                den_real: att as f64,
                den_predict: grp.base_fam_attempts[fi] + 50.0,
            };
            if cube.push_ratio(&ids, sample).is_err() {
                return Vec::new();
            }
        }
        let params = Params {
            max_attributes: 3,
            max_causes: 6,
            min_score: 0.0,
            min_relative_change: 0.5,
            direction: Direction::Increase,
            ..Params::default()
        };
        let Ok(causes) = rca::localize(&cube, &params) else {
            return Vec::new();
        };
        let mut out: Vec<Anomaly> = Vec::new();
        for c in causes {
            let mut scope: Vec<(LabelKey, u32)> = Vec::new();
            for (k, v) in c.labels(&cube) {
                let Some(d) = LabelKey::parse(k) else {
                    continue;
                };
                let Some(id) = self.st.interner.lookup(d, v) else {
                    continue;
                };
                scope.push((d, id));
            }
            // The detector's own key order (see `DIMS`), not `LabelKey`'s.
            scope.sort_by_key(|&(d, v)| (ix(d), v));
            for scope in self.split(now_min, fi, w, scope) {
                if let Some(a) = self.measure(now_min, fi, scope, w)
                    && !out.iter().any(|o| subset(&a.members, &o.members))
                {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Occam's razor for a cause the localiser returned: when every terminal failing in it
    /// (not already explained) lies in one narrower group the family can name — one merchant
    /// for merchant config, one terminal for terminal config or fault — that group is the
    /// scope. A fleet whose terminals share one QR channel must not get a channel-wide
    /// incident for one merchant's registration.
    pub(super) fn narrowed(
        &self,
        now_min: i64,
        fi: usize,
        w: i64,
        scope: Vec<(LabelKey, u32)>,
    ) -> Vec<(LabelKey, u32)> {
        let dim = match Family::COUNTED[fi] {
            Family::MerchantConfig => LabelKey::MerchantId,
            Family::TerminalConfig | Family::TerminalFault => LabelKey::TerminalId,
            _ => return scope,
        };
        let members = self.st.members_of(&scope);
        let covered = self.covered(fi);
        let mut common: Option<u32> = None;
        for &t in members.iter().filter(|&&t| !covered[t as usize]) {
            let term = &self.st.terms[t as usize];
            let (_, f) = self.st.window(term.groups[0] as usize, now_min, w);
            if f[fi] == 0 {
                continue;
            }
            let g = term.groups[ix(dim)];
            match common {
                None => common = Some(g),
                Some(c) if c == g => {}
                Some(_) => return scope,
            }
        }
        match common {
            Some(g) if self.st.groups[g as usize].members.len() < members.len() => {
                self.st.group_scope(g as usize)
            }
            _ => scope,
        }
    }

    /// A cause of a family that only ever names narrow scopes, split into them: merchant
    /// config names merchants (a registration is per merchant), terminal config terminals, and
    /// terminal faults terminals unless the cause is a firmware (or model) cohort. Several
    /// merchants misconfigured at once share an acquirer or a QR channel; that label is what
    /// they have in common, not what is wrong. Every failing group (not already explained) is
    /// its own scope; a cause with one failing group is narrowed to it ([`Self::narrowed`]).
    fn split(
        &self,
        now_min: i64,
        fi: usize,
        w: i64,
        scope: Vec<(LabelKey, u32)>,
    ) -> Vec<Vec<(LabelKey, u32)>> {
        let dim = match Family::COUNTED[fi] {
            Family::MerchantConfig => LabelKey::MerchantId,
            Family::TerminalConfig => LabelKey::TerminalId,
            Family::TerminalFault
                if !scope
                    .iter()
                    .any(|&(d, _)| matches!(d, LabelKey::Firmware | LabelKey::Model)) =>
            {
                LabelKey::TerminalId
            }
            _ => return vec![scope],
        };
        if scope.iter().all(|&(d, _)| {
            matches!(
                d,
                LabelKey::TerminalId | LabelKey::StoreId | LabelKey::MerchantId
            )
        }) {
            return vec![self.narrowed(now_min, fi, w, scope)];
        }
        let members = self.st.members_of(&scope);
        let covered = self.covered(fi);
        let mut groups: BTreeSet<u32> = BTreeSet::new();
        for &t in members.iter().filter(|&&t| !covered[t as usize]) {
            let term = &self.st.terms[t as usize];
            let (_, f) = self.st.window(term.groups[0] as usize, now_min, w);
            if f[fi] > 0 {
                groups.insert(term.groups[ix(dim)]);
            }
        }
        if groups.len() <= 1 {
            return vec![self.narrowed(now_min, fi, w, scope)];
        }
        groups
            .into_iter()
            .map(|g| self.st.group_scope(g as usize))
            .collect()
    }

    /// The store group of terminal `t` if the store has other terminals and none of them has
    /// been paid since the terminal's merchant-config failures began.
    pub(super) fn store_wide(&self, t: usize) -> Option<usize> {
        let store = self.st.terms[t].groups[ix(LabelKey::StoreId)] as usize;
        let members = &self.st.groups[store].members;
        if members.len() < 2 || members.len() > 64 {
            return None;
        }
        // Since the first merchant-config failure of the terminal's current run.
        let since = self.st.terms[t]
            .recent
            .iter()
            .filter(|r| r.1 == Family::MerchantConfig && r.0 > self.st.terms[t].last_approval)
            .map(|r| r.0)
            .min()?;
        let sibling_paid = members
            .iter()
            .any(|&s| s as usize != t && self.st.terms[s as usize].last_approval >= since);
        (!sibling_paid).then_some(store)
    }

    /// The canonical scope of a terminal set: among equivalent terminal / store / merchant
    /// scopes, the one the family points at.
    pub(super) fn canonical(&self, a: &mut Anomaly) {
        let Some(&t0) = a.members.first() else { return };
        let labels = self.st.terms[t0 as usize].labels;
        let order: &[LabelKey] = match a.family {
            Family::TerminalConfig | Family::TerminalFault => &[
                LabelKey::TerminalId,
                LabelKey::StoreId,
                LabelKey::MerchantId,
            ],
            Family::MerchantConfig => &[
                LabelKey::MerchantId,
                LabelKey::StoreId,
                LabelKey::TerminalId,
            ],
            _ => &[
                LabelKey::StoreId,
                LabelKey::TerminalId,
                LabelKey::MerchantId,
            ],
        };
        for &d in order {
            let g = self.st.terms[t0 as usize].groups[ix(d)] as usize;
            if self.st.groups[g].members == a.members {
                a.scope = vec![(d, labels[ix(d)])];
                return;
            }
        }
    }

    /// The kind of an anomaly: the scope's keys, the family and the signal name it; anything
    /// else is `Unknown`.
    ///
    /// | scope keys | family / signal | kind |
    /// |---|---|---|
    /// | terminal_id | silence, terminal-fault codes | `TerminalFault` |
    /// | terminal_id | terminal-config or merchant-config codes | `TerminalConfig` |
    /// | store_id | silence | `StoreOffline` |
    /// | store_id | availability codes | `StoreNetwork` |
    /// | merchant_id or store_id | merchant-config codes | `MerchantConfig` |
    /// | firmware (+ model) | terminal-fault codes | `FirmwareRegression` |
    /// | carrier (+ region/city) | silence or availability | `CarrierOutage` |
    /// | region or city | silence or availability | `RegionalOutage` |
    /// | acquirer or qr_channel | availability | `AcquirerOutage` (`AcquirerMaintenance` in an announced window) |
    /// | qr_channel | settlement codes | `QrNotificationDelay` |
    pub(super) fn kind_of(&self, a: &Anomaly, now: i64) -> IncidentKind {
        use LabelKey::*;
        let keys: BTreeSet<LabelKey> = a.scope.iter().map(|s| s.0).collect();
        let only = |ks: &[LabelKey]| keys.len() == ks.len() && ks.iter().all(|k| keys.contains(k));
        let within = |ks: &[LabelKey]| keys.iter().all(|k| ks.contains(k));
        let carrierish = keys.contains(&Carrier) && within(&[Carrier, Region, City, Link]);
        let regional = only(&[Region]) || only(&[City]);
        let channel = only(&[Acquirer]) || only(&[QrChannel]);
        match a.family {
            Family::Silence if only(&[TerminalId]) => IncidentKind::TerminalFault,
            Family::Silence if only(&[StoreId]) => IncidentKind::StoreOffline,
            Family::Silence | Family::Availability if carrierish => IncidentKind::CarrierOutage,
            Family::Silence | Family::Availability if regional => IncidentKind::RegionalOutage,
            Family::Availability if only(&[StoreId]) => IncidentKind::StoreNetwork,
            Family::Availability if channel => {
                if self.announced(&a.scope, now) {
                    IncidentKind::AcquirerMaintenance
                } else {
                    IncidentKind::AcquirerOutage
                }
            }
            Family::MerchantConfig if only(&[MerchantId]) || only(&[StoreId]) => {
                IncidentKind::MerchantConfig
            }
            Family::MerchantConfig | Family::TerminalConfig if only(&[TerminalId]) => {
                IncidentKind::TerminalConfig
            }
            Family::TerminalFault if only(&[TerminalId]) => IncidentKind::TerminalFault,
            Family::TerminalFault if keys.contains(&Firmware) && within(&[Firmware, Model]) => {
                IncidentKind::FirmwareRegression
            }
            Family::Settlement if only(&[QrChannel]) => IncidentKind::QrNotificationDelay,
            _ => IncidentKind::Unknown,
        }
    }
}

//! Bookkeeping under detection: interned labels, terminals, label groups with per-minute
//! windows of attempts and failures, and the baselines those windows roll into.

use std::collections::{HashMap, VecDeque};

use storepulse_shared::{Identity, LabelKey, TerminalId};

/// The label keys detection groups terminals by, in the detector's own index order: it fixes
/// tie-breaks (the localiser's attribute order, scope sorting), so changing it changes results.
/// `link` is internal: it lets a carrier outage be localised to the carrier's cellular
/// terminals, and is dropped from reported scopes. `app_version` is not a detection dimension.
pub(crate) const DIMS: [LabelKey; NDIM] = [
    LabelKey::TerminalId,
    LabelKey::StoreId,
    LabelKey::MerchantId,
    LabelKey::City,
    LabelKey::Region,
    LabelKey::Acquirer,
    LabelKey::QrChannel,
    LabelKey::Carrier,
    LabelKey::Model,
    LabelKey::Firmware,
    LabelKey::Link,
];

/// Index of `key` in [`DIMS`]; `app_version`, which is not a dimension, maps past the end
/// (lookups with it find nothing).
pub(crate) const fn ix(key: LabelKey) -> usize {
    match key {
        LabelKey::TerminalId => 0,
        LabelKey::StoreId => 1,
        LabelKey::MerchantId => 2,
        LabelKey::City => 3,
        LabelKey::Region => 4,
        LabelKey::Acquirer => 5,
        LabelKey::QrChannel => 6,
        LabelKey::Carrier => 7,
        LabelKey::Model => 8,
        LabelKey::Firmware => 9,
        LabelKey::Link => 10,
        LabelKey::AppVersion => NDIM,
    }
}

/// Number of dimensions.
pub(crate) const NDIM: usize = 11;

/// Failure families: the taxonomy classes that can raise an incident, grouped by what they
/// point at. Cardholder and fraud-risk declines are never a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Merchant-configuration codes (invalid merchant, no routing).
    MerchantConfig,
    /// Terminal-configuration codes (not registered, wrong binding).
    TerminalConfig,
    /// Terminal-fault codes (malformed message, MAC/signature).
    TerminalFault,
    /// Availability: network timeouts, platform and issuer failures.
    Availability,
    /// Settlement: no final state, notice missing.
    Settlement,
    /// Not a payment signal: terminals stopped reporting.
    Silence,
    /// Not a failure signal: payments stopped (far below the usual volume at this hour)
    /// while the terminals still report.
    Volume,
}

/// Families counted in windows (all but `Silence`).
pub(crate) const NFAM: usize = 5;

/// Minutes a window ring holds.
pub(crate) const RING: usize = 64;

/// Counts of one minute.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bucket {
    pub(crate) minute: i64,
    pub(crate) attempts: u32,
    pub(crate) fails: [u32; NFAM],
}

/// Groupings ("dimsets") a terminal belongs to. The first ten are single labels and carry
/// windows; the rest are carrier refinements used by silence localisation.
pub(crate) const DIMSETS: &[&[LabelKey]] = &[
    &[LabelKey::TerminalId],
    &[LabelKey::StoreId],
    &[LabelKey::MerchantId],
    &[LabelKey::City],
    &[LabelKey::Region],
    &[LabelKey::Acquirer],
    &[LabelKey::QrChannel],
    &[LabelKey::Carrier],
    &[LabelKey::Model],
    &[LabelKey::Firmware],
    &[LabelKey::Carrier, LabelKey::Region],
    &[LabelKey::Carrier, LabelKey::City],
    &[LabelKey::Carrier, LabelKey::Link],
    &[LabelKey::Carrier, LabelKey::Region, LabelKey::Link],
    &[LabelKey::Carrier, LabelKey::City, LabelKey::Link],
];

/// Dimsets with windows.
pub(crate) const WINDOWED: usize = 10;

/// A label group: terminals sharing the values of one dimset.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) dimset: usize,
    pub(crate) values: [u32; 3],
    /// Terminal indexes, ascending.
    pub(crate) members: Vec<u32>,
    /// Per-minute counts (windowed dimsets only): the minutes with attempts, oldest first,
    /// all within [`RING`] minutes of the newest. Sparse because most groups are small: a
    /// terminal or a one-terminal store pays a few hundred times a day, so most of its minutes
    /// are empty, and a dense ring cost 2 KiB per group whatever the traffic.
    pub(crate) ring: VecDeque<Bucket>,
    /// Decayed history: attempts, and per family the attempts its rate counts (minutes
    /// excluded for a family leave out their attempts with their failures, so the learned rate
    /// does not drift down while the group is anomalous) and its failures.
    pub(crate) base_attempts: f64,
    pub(crate) base_fam_attempts: [f64; NFAM],
    pub(crate) base_fails: [f64; NFAM],
    pub(crate) base_minute: i64,
    /// Until when (minute) a family's failures are excluded from the baseline: the group was
    /// anomalous, and an anomaly must not become the new normal.
    pub(crate) excluded_until: [i64; NFAM],
    /// Per family: alertable failures of the family's plane since the group's last approval
    /// (kept for terminal and store groups).
    pub(crate) run: [u32; NFAM],
    /// Payment volume by hour of day (windowed groups above the terminal).
    pub(crate) vol: Option<Box<Volume>>,
}

/// Days an hour of the day must have been learned before the volume test judges it.
pub(crate) const VOLUME_MIN_DAYS: u16 = 3;

/// A group's payment volume by hour of day (UTC hours; a fleet's daily cycle is the same in
/// any zone), learned across days.
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    /// Attempts usually seen in each hour of the day (moving average over days).
    pub(crate) per_hour: [f32; 24],
    /// Complete hours learned per hour of the day.
    pub(crate) days: [u16; 24],
    /// The hour being counted (minutes since the epoch / 60), and whether the group joined
    /// in the middle of it (a partial hour teaches nothing).
    pub(crate) hour: i64,
    pub(crate) partial: bool,
    pub(crate) acc: u32,
}

impl Volume {
    fn new() -> Self {
        Self {
            per_hour: [0.0; 24],
            days: [0; 24],
            hour: i64::MIN,
            partial: true,
            acc: 0,
        }
    }

    /// Counts an attempt observed at `minute`; hours that ended meanwhile are learned (those
    /// without attempts as zeros).
    fn add(&mut self, minute: i64) {
        let h = minute.div_euclid(60);
        if self.hour == i64::MIN {
            self.hour = h;
        }
        if h < self.hour {
            return;
        }
        if h > self.hour {
            let mut done = self.hour;
            let mut count = self.acc;
            // Only the last day of ended hours can matter.
            if h - done > 24 {
                done = h - 25;
                count = 0;
                self.partial = false;
            }
            while done < h {
                if !self.partial {
                    let slot = done.rem_euclid(24) as usize;
                    let c = count as f32;
                    self.per_hour[slot] = if self.days[slot] == 0 {
                        c
                    } else {
                        0.7 * self.per_hour[slot] + 0.3 * c
                    };
                    self.days[slot] = self.days[slot].saturating_add(1);
                }
                self.partial = false;
                count = 0;
                done += 1;
            }
            self.hour = h;
            self.acc = 0;
        }
        self.acc += 1;
    }

    /// Attempts usually seen in the minutes `(to - w, to]`, if every hour they touch has been
    /// learned on at least [`VOLUME_MIN_DAYS`] days (one or two days' shape is the calendar's
    /// as much as the group's: a holiday's evening taught as the usual one made a normal
    /// evening look like payments stopping, in a dozen groups at once).
    pub(crate) fn expected(&self, to: i64, w: i64) -> Option<f64> {
        let mut e = 0.0;
        for m in (to - w + 1)..=to {
            let slot = m.div_euclid(60).rem_euclid(24) as usize;
            if self.days[slot] < VOLUME_MIN_DAYS {
                return None;
            }
            e += f64::from(self.per_hour[slot]) / 60.0;
        }
        Some(e)
    }
}

/// One terminal.
#[derive(Debug)]
pub(crate) struct Term {
    pub(crate) id: TerminalId,
    pub(crate) labels: [u32; NDIM],
    pub(crate) groups: Vec<u32>,
    /// Last arrival of a live record or hello.
    pub(crate) last_arrival: i64,
    pub(crate) last_hb_obs: Option<i64>,
    pub(crate) hb_interval_ms: f64,
    pub(crate) gaps_seen: u32,
    /// A gap well below the learned interval, waiting for a second one to agree.
    pub(crate) short_gap: Option<f64>,
    pub(crate) rtt_ms: Option<f32>,
    pub(crate) loss_percent: Option<f32>,
    pub(crate) rtt_base: Option<f32>,
    pub(crate) loss_base: Option<f32>,
    /// Recent alertable failures: (time, family, scheme, code).
    pub(crate) recent: Vec<(i64, Family, storepulse_shared::Scheme, String)>,
    /// Observation time of the terminal's last approved payment.
    pub(crate) last_approval: i64,
    /// Recent live network samples: (observation time, degraded against the terminal's own
    /// baseline), oldest first, at most [`NQ_KEEP`].
    pub(crate) nq: std::collections::VecDeque<(i64, bool)>,
    /// Device health from live heartbeats: the terminal's own CPU and temperature baselines
    /// (moving averages that distressed beats barely move), healthy beats seen, the latest
    /// reading, and the current run of distressed beats (length, first and last observation
    /// time).
    pub(crate) health: Health,
}

/// A terminal's device-health bookkeeping (see [`Term::health`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Health {
    pub(crate) cpu_base: f32,
    pub(crate) temp_base: f32,
    pub(crate) healthy_seen: u32,
    pub(crate) cpu: f32,
    pub(crate) temp: f32,
    pub(crate) run: u32,
    pub(crate) since: i64,
    pub(crate) last: i64,
}

/// Network samples kept per terminal.
pub(crate) const NQ_KEEP: usize = 32;

/// Interned label values per dimension.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    pub(crate) values: Vec<Vec<String>>,
    pub(crate) ids: Vec<HashMap<String, u32>>,
}

/// Everything detection remembers about the fleet.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) interner: Interner,
    pub(crate) terms: Vec<Term>,
    pub(crate) by_id: HashMap<TerminalId, u32>,
    pub(crate) groups: Vec<Group>,
    pub(crate) group_ids: HashMap<(usize, [u32; 3]), u32>,
    /// Fleet-wide decayed history.
    pub(crate) fleet_attempts: f64,
    /// Per family, the fleet attempts its rate counts (excluded minutes left out).
    pub(crate) fleet_fam_attempts: [f64; NFAM],
    pub(crate) fleet_fails: [f64; NFAM],
    pub(crate) fleet_minute: i64,
    /// Heartbeat bookkeeping: expected beats and missed beats seen (for the miss probability).
    pub(crate) beats: f64,
    pub(crate) missed: f64,
    /// Until when (minute) a family's failures stay out of the fleet history.
    pub(crate) fleet_exclusions: [i64; NFAM],
    /// Share of live network samples that are degraded, fleet-wide (moving average).
    pub(crate) nq_bad_share: f64,
    /// Share of live heartbeats that are distressed, fleet-wide (moving average).
    pub(crate) hot_share: f64,
    /// Terminals whose last live heartbeat was distressed.
    pub(crate) hot: std::collections::BTreeSet<u32>,
    pub(crate) half_life_min: f64,
}

impl Family {
    /// The family's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::MerchantConfig => "merchant_config",
            Family::TerminalConfig => "terminal_config",
            Family::TerminalFault => "terminal_fault",
            Family::Availability => "availability",
            Family::Settlement => "settlement",
            Family::Silence => "silence",
            Family::Volume => "volume",
        }
    }

    pub(crate) const COUNTED: [Family; NFAM] = [
        Family::MerchantConfig,
        Family::TerminalConfig,
        Family::TerminalFault,
        Family::Availability,
        Family::Settlement,
    ];

    /// Whether two families describe the same plane, so a narrow anomaly of one may be
    /// explained by an incident of the other (a store's timeouts inside an acquirer outage).
    pub(crate) fn compatible(self, other: Family) -> bool {
        use Family::*;
        let plane = |f: Family| match f {
            Silence | Availability => 0,
            MerchantConfig | TerminalConfig => 1,
            TerminalFault => 2,
            Settlement => 3,
            Volume => 4,
        };
        plane(self) == plane(other)
    }
}

impl Interner {
    pub(crate) fn intern(&mut self, dim: LabelKey, v: &str) -> u32 {
        if self.values.is_empty() {
            self.values = vec![Vec::new(); NDIM];
            self.ids = vec![HashMap::new(); NDIM];
        }
        let d = ix(dim);
        if let Some(&id) = self.ids[d].get(v) {
            return id;
        }
        // Label cardinalities are far below 2^32 (ids are bounded by the fleet size).
        let id = self.values[d].len() as u32;
        self.values[d].push(v.to_owned());
        self.ids[d].insert(v.to_owned(), id);
        id
    }

    pub(crate) fn lookup(&self, dim: LabelKey, v: &str) -> Option<u32> {
        self.ids.get(ix(dim))?.get(v).copied()
    }

    /// Distinct values seen of a dimension.
    pub(crate) fn cardinality(&self, dim: LabelKey) -> usize {
        self.values.get(ix(dim)).map_or(0, Vec::len)
    }

    pub(crate) fn value(&self, dim: LabelKey, id: u32) -> &str {
        self.values
            .get(ix(dim))
            .and_then(|v| v.get(id as usize))
            .map_or("", String::as_str)
    }
}

impl Bucket {
    fn at(minute: i64) -> Self {
        Bucket {
            minute,
            ..Bucket::default()
        }
    }
}

impl State {
    pub(crate) fn new(half_life_ms: i64) -> Self {
        Self {
            interner: Interner::default(),
            terms: Vec::new(),
            by_id: HashMap::new(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            fleet_attempts: 0.0,
            fleet_fam_attempts: [0.0; NFAM],
            fleet_fails: [0.0; NFAM],
            fleet_minute: 0,
            beats: 0.0,
            missed: 0.0,
            fleet_exclusions: [i64::MIN; NFAM],
            nq_bad_share: 0.02,
            hot_share: 0.001,
            hot: std::collections::BTreeSet::new(),
            half_life_min: (half_life_ms as f64 / 60_000.0).max(1.0),
        }
    }

    fn labels_of(&mut self, id: &Identity) -> [u32; NDIM] {
        let mut out = [0; NDIM];
        for (i, d) in DIMS.into_iter().enumerate() {
            out[i] = self.interner.intern(d, id.label(d));
        }
        out
    }

    fn group_for(&mut self, dimset: usize, labels: &[u32; NDIM]) -> u32 {
        let mut values = [u32::MAX; 3];
        for (i, d) in DIMSETS[dimset].iter().enumerate() {
            values[i] = labels[ix(*d)];
        }
        if let Some(&g) = self.group_ids.get(&(dimset, values)) {
            return g;
        }
        // Group count is bounded by terminals x dimsets.
        let g = self.groups.len() as u32;
        self.groups.push(Group {
            dimset,
            values,
            members: Vec::new(),
            ring: VecDeque::new(),
            base_attempts: 0.0,
            base_fam_attempts: [0.0; NFAM],
            base_fails: [0.0; NFAM],
            base_minute: 0,
            excluded_until: [i64::MIN; NFAM],
            run: [0; NFAM],
            vol: (dimset > 0 && dimset < WINDOWED).then(|| Box::new(Volume::new())),
        });
        self.group_ids.insert((dimset, values), g);
        g
    }

    /// Registers a terminal or updates its labels (a firmware upgrade moves it between
    /// groups). Returns its index.
    pub(crate) fn hello(&mut self, now: i64, id: &Identity) -> u32 {
        let labels = self.labels_of(id);
        let ti = match self.by_id.get(&id.terminal_id) {
            Some(&ti) => ti,
            None => {
                // Terminal count is bounded far below 2^32.
                let ti = self.terms.len() as u32;
                self.terms.push(Term {
                    id: id.terminal_id.clone(),
                    labels: [u32::MAX; NDIM],
                    groups: Vec::new(),
                    last_arrival: now,
                    last_hb_obs: None,
                    hb_interval_ms: 0.0,
                    gaps_seen: 0,
                    short_gap: None,
                    rtt_ms: None,
                    loss_percent: None,
                    rtt_base: None,
                    loss_base: None,
                    recent: Vec::new(),
                    last_approval: i64::MIN,
                    nq: std::collections::VecDeque::new(),
                    health: Health::default(),
                });
                self.by_id.insert(id.terminal_id.clone(), ti);
                ti
            }
        };
        let t = ti as usize;
        self.terms[t].last_arrival = self.terms[t].last_arrival.max(now);
        if self.terms[t].labels != labels {
            let old = std::mem::take(&mut self.terms[t].groups);
            for g in old {
                let m = &mut self.groups[g as usize].members;
                if let Ok(p) = m.binary_search(&ti) {
                    m.remove(p);
                }
            }
            let mut groups = Vec::with_capacity(DIMSETS.len());
            for ds in 0..DIMSETS.len() {
                let g = self.group_for(ds, &labels);
                let m = &mut self.groups[g as usize].members;
                if let Err(p) = m.binary_search(&ti) {
                    m.insert(p, ti);
                }
                groups.push(g);
            }
            self.terms[t].labels = labels;
            self.terms[t].groups = groups;
        }
        ti
    }

    fn decay(&self, from_min: i64, to_min: i64) -> f64 {
        if to_min <= from_min {
            return 1.0;
        }
        0.5f64.powf((to_min - from_min) as f64 / self.half_life_min)
    }

    /// Counts one payment attempt of terminal `ti` observed at `minute`.
    pub(crate) fn count(&mut self, ti: u32, minute: i64, fam: Option<Family>) {
        let fi = fam.and_then(|f| Family::COUNTED.iter().position(|&c| c == f));
        for k in 0..WINDOWED {
            let g = self.terms[ti as usize].groups[k] as usize;
            let ring = &mut self.groups[g].ring;
            let newest = ring.back().map_or(i64::MIN, |b| b.minute);
            if minute <= newest.saturating_sub(RING as i64) {
                // Older than the ring holds.
                continue;
            }
            // Records arrive nearly in order: the minute is the last one or close to it.
            let at = ring.iter().rposition(|b| b.minute <= minute);
            let i = match at {
                Some(i) if ring[i].minute == minute => i,
                _ => {
                    let i = at.map_or(0, |i| i + 1);
                    ring.insert(i, Bucket::at(minute));
                    i
                }
            };
            let b = &mut ring[i];
            b.attempts += 1;
            if let Some(fi) = fi {
                b.fails[fi] += 1;
            }
            // Minutes that fell out of the ring roll into the baseline.
            let cut = newest.max(minute).saturating_sub(RING as i64);
            while let Some(&b) = self.groups[g].ring.front()
                && b.minute <= cut
            {
                self.groups[g].ring.pop_front();
                self.retire(g, b);
            }
            if let Some(v) = self.groups[g].vol.as_mut() {
                v.add(minute);
            }
        }
        // Fleet history counts every attempt once, as it arrives.
        let d = self.decay(self.fleet_minute, minute);
        if minute > self.fleet_minute {
            self.fleet_attempts *= d;
            for f in &mut self.fleet_fails {
                *f *= d;
            }
            for a in &mut self.fleet_fam_attempts {
                *a *= d;
            }
            self.fleet_minute = minute;
        }
        self.fleet_attempts += 1.0;
        for f in 0..NFAM {
            if !self.fleet_excluded(f, minute) {
                self.fleet_fam_attempts[f] += 1.0;
                if fi == Some(f) {
                    self.fleet_fails[f] += 1.0;
                }
            }
        }
    }

    /// Whether fleet history should skip this family now: some group is anomalous in it.
    fn fleet_excluded(&self, fi: usize, minute: i64) -> bool {
        self.fleet_exclusions.get(fi).is_some_and(|&u| minute <= u)
    }

    /// Rolls a bucket that leaves the ring into its group's baseline.
    fn retire(&mut self, g: usize, b: Bucket) {
        if b.attempts == 0 {
            return;
        }
        let d = self.decay(self.groups[g].base_minute, b.minute);
        let grp = &mut self.groups[g];
        if b.minute > grp.base_minute {
            grp.base_attempts *= d;
            for f in &mut grp.base_fails {
                *f *= d;
            }
            for a in &mut grp.base_fam_attempts {
                *a *= d;
            }
            grp.base_minute = b.minute;
        }
        grp.base_attempts += f64::from(b.attempts);
        for fi in 0..NFAM {
            if b.minute > grp.excluded_until[fi] {
                grp.base_fam_attempts[fi] += f64::from(b.attempts);
                grp.base_fails[fi] += f64::from(b.fails[fi]);
            }
        }
    }

    /// Sums of group `g` over the minutes `(now_min - w, now_min]`: (attempts, failures).
    pub(crate) fn window(&self, g: usize, now_min: i64, w: i64) -> (u64, [u64; NFAM]) {
        let mut att = 0u64;
        let mut fails = [0u64; NFAM];
        for b in &self.groups[g].ring {
            if b.minute > now_min - w && b.minute <= now_min {
                att += u64::from(b.attempts);
                for (f, x) in fails.iter_mut().zip(b.fails) {
                    *f += u64::from(x);
                }
            }
        }
        (att, fails)
    }

    /// Sums of group `g` over each of the windows `ws` (minutes) ending at `now_min`, in one
    /// pass over the ring.
    pub(crate) fn windows3(&self, g: usize, now_min: i64, ws: [i64; 3]) -> [(u64, [u64; NFAM]); 3] {
        let mut out = [(0u64, [0u64; NFAM]); 3];
        for b in &self.groups[g].ring {
            if b.minute > now_min {
                continue;
            }
            for (i, &w) in ws.iter().enumerate() {
                if b.minute > now_min - w {
                    out[i].0 += u64::from(b.attempts);
                    for (f, x) in out[i].1.iter_mut().zip(b.fails) {
                        *f += u64::from(x);
                    }
                }
            }
        }
        out
    }

    /// Baseline failure rate of family `fi` in group `g`: its own history shrunk towards the
    /// fleet's, which is shrunk towards the prior.
    pub(crate) fn rate(&self, g: usize, fi: usize, prior_rate: f64, prior_attempts: f64) -> f64 {
        let fleet = self.fleet_rate(fi, prior_rate, prior_attempts);
        let grp = &self.groups[g];
        // A group's own history counts fully once it has seen a few hundred attempts.
        let k = 200.0;
        (grp.base_fails[fi] + k * fleet) / (grp.base_fam_attempts[fi] + k)
    }

    /// Fleet baseline rate of a family.
    pub(crate) fn fleet_rate(&self, fi: usize, prior_rate: f64, prior_attempts: f64) -> f64 {
        (self.fleet_fails[fi] + prior_rate * prior_attempts)
            / (self.fleet_fam_attempts[fi] + prior_attempts)
    }

    /// Scope label of a group: `(dim, value)` pairs.
    pub(crate) fn group_scope(&self, g: usize) -> Vec<(LabelKey, u32)> {
        let grp = &self.groups[g];
        DIMSETS[grp.dimset]
            .iter()
            .enumerate()
            .map(|(i, &d)| (d, grp.values[i]))
            .collect()
    }

    /// Terminals matching every `(dim, value)` pair, ascending.
    pub(crate) fn members_of(&self, scope: &[(LabelKey, u32)]) -> Vec<u32> {
        // Start from the smallest single-label group, then filter.
        let mut best: Option<&Vec<u32>> = None;
        for &(d, v) in scope {
            if let Some(ds) = DIMSETS.iter().position(|s| s.len() == 1 && s[0] == d) {
                let mut values = [u32::MAX; 3];
                values[0] = v;
                if let Some(&g) = self.group_ids.get(&(ds, values)) {
                    let m = &self.groups[g as usize].members;
                    if best.is_none_or(|b| m.len() < b.len()) {
                        best = Some(m);
                    }
                } else {
                    return Vec::new();
                }
            }
        }
        let Some(base) = best else {
            return Vec::new();
        };
        base.iter()
            .copied()
            .filter(|&t| {
                scope
                    .iter()
                    .all(|&(d, v)| self.terms[t as usize].labels[ix(d)] == v)
            })
            .collect()
    }
}

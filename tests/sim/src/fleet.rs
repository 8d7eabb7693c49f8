//! The seeded fleet model: regions, cities, merchants (chains first, then single shops), stores
//! and terminals, each terminal with an acquirer, a QR channel, a carrier or wired link, a model
//! and a firmware version.
//!
//! Identifiers are predictable so scenario files can name them (see the crate docs for the
//! scheme); everything else is drawn from a [`SmallRng`] seeded with the scenario seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use storepulse_shared::{Identity, Label, LabelKey, LinkType, Scheme, TerminalId};

/// Carriers (mobile network operators, also the ISPs of wired stores), with their share when a
/// fleet has the default three.
pub const CARRIERS: [(&str, f64); 3] = [("CMCC", 0.55), ("CUCC", 0.25), ("CTCC", 0.20)];
/// Every carrier a fleet may have (`fleet.carriers` takes the first n), with relative weights.
pub const ALL_CARRIERS: [(&str, f64); 4] = [
    ("CMCC", 0.55),
    ("CUCC", 0.25),
    ("CTCC", 0.20),
    ("CBN", 0.10),
];
/// Firmware versions with their share of the fleet.
pub const FIRMWARE: [(&str, f64); 3] = [("2.3.0", 0.20), ("2.3.1", 0.50), ("2.4.0", 0.30)];
/// POS app versions with their share.
pub const APP_VERSIONS: [(&str, f64); 2] = [("5.1.2", 0.6), ("5.2.0", 0.4)];
/// Handheld models (cellular or Wi-Fi, battery).
pub const HANDHELD_MODELS: [&str; 2] = ["A920", "N910"];
/// Countertop models (wired or Wi-Fi, no battery).
pub const COUNTER_MODELS: [&str; 2] = ["P2", "V2-Pro"];

/// The fleet section of a scenario, typed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    /// Exact number of terminals generated.
    pub terminals: u32,
    /// Number of regions `R01..`.
    pub regions: u32,
    /// Cities per region `Rnn-C01..`.
    pub cities_per_region: u32,
    /// Chain merchants (`M0001..`), generated before single shops.
    pub chains: u32,
    /// Stores per chain, inclusive range.
    pub chain_stores: (u32, u32),
    /// Terminals per chain store, inclusive range.
    pub chain_store_terminals: (u32, u32),
    /// Terminals per single shop, inclusive range.
    pub shop_terminals: (u32, u32),
    /// Share (0-1) of single shops that are low-volume (a handful of payments a day).
    pub low_volume_share: f64,
    /// Number of acquirers `ACQ-A..`.
    pub acquirers: u32,
    /// Number of QR channels `QR-A..`.
    pub qr_channels: u32,
    /// Share (0-1) of payments made by QR code (the rest by card), fleet average.
    pub qr_share: f64,
    /// Multiplies every terminal's daily payment volume.
    pub volume_scale: f64,
    /// Carriers `CMCC`, `CUCC`, `CTCC`, `CBN`: the first this many (1-4).
    pub carriers: u32,
    /// Regions a chain has stores in: 1, 2 (a home region with 70 % of its stores and a second
    /// one drawn at random, which may be the same) or more (spread evenly).
    pub chain_regions: u32,
    /// Heartbeat intervals, seconds, with the share of terminals beating at each (shares sum
    /// to 1). One entry: the whole fleet beats at that interval.
    pub heartbeat_mix: Vec<(u32, f64)>,
}

/// Merchant traffic profile: when in the day customers pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Shops and supermarkets: busy from morning to evening, peak after work.
    Retail,
    /// Restaurants: lunch and dinner peaks.
    Restaurant,
}

/// One merchant.
#[derive(Debug, Clone)]
pub struct Merchant {
    /// `M0001`...
    pub id: Label,
    /// Chain (several stores) or single shop.
    pub chain: bool,
    /// A low-volume single shop.
    pub low_volume: bool,
    /// Traffic profile.
    pub profile: Profile,
    /// Index of the merchant's acquirer in [`Fleet::acquirers`].
    pub acquirer: usize,
    /// Index of the merchant's QR channel in [`Fleet::qr_channels`].
    pub qr_channel: usize,
    /// Indexes of its stores in [`Fleet::stores`].
    pub stores: Vec<usize>,
}

/// One store.
#[derive(Debug, Clone)]
pub struct Store {
    /// `M0001-S001`...
    pub id: Label,
    /// Index in [`Fleet::merchants`].
    pub merchant: usize,
    /// Index in [`Fleet::regions`].
    pub region: usize,
    /// Index in [`Fleet::cities`].
    pub city: usize,
    /// Indexes of its terminals in [`Fleet::terminals`].
    pub terminals: Vec<usize>,
}

/// One terminal: its identity (as sent in `Hello`) and its traffic parameters.
#[derive(Debug, Clone)]
pub struct Terminal {
    /// Identity and labels.
    pub identity: Identity,
    /// Index in [`Fleet::stores`].
    pub store: usize,
    /// Index in [`Fleet::merchants`].
    pub merchant: usize,
    /// Card scheme of its acquirer.
    pub card_scheme: Scheme,
    /// Mean payments per day.
    pub daily_txns: f64,
    /// Share of its payments made by QR.
    pub qr_share: f64,
    /// Baseline round-trip time, milliseconds.
    pub base_rtt_ms: f32,
    /// Has a battery (handheld).
    pub battery: bool,
    /// Installed memory, bytes.
    pub mem_total_bytes: u64,
    /// Its heartbeat interval, seconds (from [`FleetSpec::heartbeat_mix`]).
    pub heartbeat_interval_secs: u32,
}

/// The generated fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Region names `R01..`.
    pub regions: Vec<Label>,
    /// City names `R01-C01..`, with their region index.
    pub cities: Vec<(Label, usize)>,
    /// Acquirers `ACQ-A..` with their card scheme.
    pub acquirers: Vec<(Label, Scheme)>,
    /// QR channels `QR-A..`.
    pub qr_channels: Vec<Label>,
    /// Merchants, chains first.
    pub merchants: Vec<Merchant>,
    /// Stores, grouped by merchant.
    pub stores: Vec<Store>,
    /// Terminals, grouped by store.
    pub terminals: Vec<Terminal>,
}

impl FleetSpec {
    /// A fleet of `terminals` terminals with the documented defaults.
    pub fn with_terminals(terminals: u32) -> Self {
        Self {
            terminals,
            regions: 4,
            cities_per_region: 3,
            chains: 10,
            chain_stores: (5, 30),
            chain_store_terminals: (1, 4),
            shop_terminals: (1, 2),
            low_volume_share: 0.2,
            acquirers: 3,
            qr_channels: 2,
            qr_share: 0.65,
            volume_scale: 1.0,
            carriers: 3,
            chain_regions: 2,
            heartbeat_mix: vec![(60, 1.0)],
        }
    }
}

impl Fleet {
    /// Generates the fleet for `spec` from `seed`. Deterministic.
    pub fn generate(spec: &FleetSpec, seed: u64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EED_F1EE_7000_0001);
        let regions: Vec<Label> = (1..=spec.regions)
            .map(|r| label(format!("R{r:02}")))
            .collect();
        let cities: Vec<(Label, usize)> = (0..regions.len())
            .flat_map(|r| {
                (1..=spec.cities_per_region)
                    .map(move |c| (label(format!("R{:02}-C{c:02}", r + 1)), r))
            })
            .collect();
        let acquirers: Vec<(Label, Scheme)> = (0..spec.acquirers)
            .map(|i| {
                let scheme = if i % 2 == 0 {
                    Scheme::Cup
                } else {
                    Scheme::Iso8583
                };
                (label(format!("ACQ-{}", letter(i))), scheme)
            })
            .collect();
        let qr_channels: Vec<Label> = (0..spec.qr_channels)
            .map(|i| label(format!("QR-{}", letter(i))))
            .collect();
        let carriers = carrier_table(spec.carriers);
        let mut fleet = Fleet {
            regions,
            cities,
            acquirers,
            qr_channels,
            merchants: Vec::new(),
            stores: Vec::new(),
            terminals: Vec::new(),
        };
        let target = spec.terminals as usize;
        let mut m = 0u32;
        while fleet.terminals.len() < target {
            m += 1;
            let chain = m <= spec.chains;
            let low_volume = !chain && rng.random::<f64>() < spec.low_volume_share;
            let n_stores = if chain {
                rng.random_range(spec.chain_stores.0..=spec.chain_stores.1)
            } else {
                1
            };
            let merchant = Merchant {
                id: label(format!("M{m:04}")),
                chain,
                low_volume,
                profile: if rng.random::<f64>() < 0.35 {
                    Profile::Restaurant
                } else {
                    Profile::Retail
                },
                acquirer: weighted_index(&mut rng, fleet.acquirers.len()),
                qr_channel: weighted_index(&mut rng, fleet.qr_channels.len()),
                stores: Vec::new(),
            };
            let m_idx = fleet.merchants.len();
            fleet.merchants.push(merchant);
            // A chain lives mostly in one home region, with some stores in a second one.
            let home = rng.random_range(0..fleet.regions.len());
            let second = rng.random_range(0..fleet.regions.len());
            // More than two regions: the chain's regions, home first (draws only then, so the
            // default keeps the sequence of draws older scenario files were written against).
            let spread: Vec<usize> = if chain && spec.chain_regions > 2 {
                let n = (spec.chain_regions as usize).min(fleet.regions.len());
                let mut rs = vec![home];
                while rs.len() < n {
                    let r = rng.random_range(0..fleet.regions.len());
                    if !rs.contains(&r) {
                        rs.push(r);
                    }
                }
                rs
            } else {
                Vec::new()
            };
            let merchant_qr = (spec.qr_share + rng.random_range(-0.15..0.15)).clamp(0.0, 1.0);
            for s in 1..=n_stores {
                if fleet.terminals.len() >= target {
                    break;
                }
                let region = if !spread.is_empty() {
                    spread[rng.random_range(0..spread.len())]
                } else if !chain || spec.chain_regions == 1 || rng.random::<f64>() < 0.7 {
                    home
                } else {
                    second
                };
                let city = region * spec.cities_per_region as usize
                    + rng.random_range(0..spec.cities_per_region as usize);
                let store_id = label(format!("M{m:04}-S{s:03}"));
                let s_idx = fleet.stores.len();
                let isp = pick(&mut rng, &carriers);
                let (lo, hi) = if chain {
                    spec.chain_store_terminals
                } else {
                    spec.shop_terminals
                };
                let n_terms = rng.random_range(lo..=hi) as usize;
                let n_terms = n_terms.min(target - fleet.terminals.len());
                let mut store = Store {
                    id: store_id.clone(),
                    merchant: m_idx,
                    region,
                    city,
                    terminals: Vec::new(),
                };
                for t in 1..=n_terms {
                    let link = match rng.random::<f64>() {
                        x if x < 0.40 => LinkType::Wired,
                        x if x < 0.72 => LinkType::Wifi,
                        _ => LinkType::Cellular,
                    };
                    let handheld = link == LinkType::Cellular
                        || (link == LinkType::Wifi && rng.random::<f64>() < 0.5);
                    let model = if handheld {
                        HANDHELD_MODELS[rng.random_range(0..HANDHELD_MODELS.len())]
                    } else {
                        COUNTER_MODELS[rng.random_range(0..COUNTER_MODELS.len())]
                    };
                    let carrier = if link == LinkType::Cellular {
                        pick(&mut rng, &carriers)
                    } else {
                        isp
                    };
                    let merchant = &fleet.merchants[m_idx];
                    let (acq, scheme) = fleet.acquirers[merchant.acquirer].clone();
                    let base_daily = if chain {
                        140.0
                    } else if low_volume {
                        6.0
                    } else {
                        55.0
                    };
                    // Log-normal spread around the base (median base, sigma 0.5).
                    let daily = base_daily * (0.5 * normal(&mut rng)).exp() * spec.volume_scale;
                    let base_rtt = match link {
                        LinkType::Wired => 18.0,
                        LinkType::Wifi => 32.0,
                        LinkType::Cellular | LinkType::Unknown => 65.0,
                    } * rng.random_range(0.7f32..1.5);
                    let identity = Identity {
                        terminal_id: terminal_id(format!("M{m:04}-S{s:03}-T{t}")),
                        merchant_id: merchant.id.clone(),
                        store_id: store_id.clone(),
                        region: fleet.regions[region].clone(),
                        city: fleet.cities[city].0.clone(),
                        acquirer: acq,
                        qr_channel: fleet.qr_channels[merchant.qr_channel].clone(),
                        carrier: label(carrier.to_string()),
                        link,
                        model: label(model.to_string()),
                        firmware: label(pick(&mut rng, &FIRMWARE).to_string()),
                        app_version: label(pick(&mut rng, &APP_VERSIONS).to_string()),
                    };
                    let ti = fleet.terminals.len();
                    // From a hash, not the generator's draws: a mix leaves every other draw
                    // of the fleet as it was.
                    let hb = heartbeat_of(&spec.heartbeat_mix, unit_hash(seed, HB_SALT, ti as u64));
                    store.terminals.push(ti);
                    fleet.terminals.push(Terminal {
                        identity,
                        store: s_idx,
                        merchant: m_idx,
                        card_scheme: scheme,
                        daily_txns: daily,
                        qr_share: merchant_qr,
                        base_rtt_ms: base_rtt,
                        battery: handheld,
                        mem_total_bytes: if handheld { 2 << 30 } else { 1 << 30 },
                        heartbeat_interval_secs: hb,
                    });
                }
                fleet.merchants[m_idx].stores.push(s_idx);
                fleet.stores.push(store);
            }
        }
        fleet
    }

    /// Whether some terminal carries `value` under `key`.
    pub fn has_value(&self, key: LabelKey, value: &str) -> bool {
        match key {
            LabelKey::Region => self.regions.iter().any(|r| r.as_str() == value),
            LabelKey::City => self.cities.iter().any(|(c, _)| c.as_str() == value),
            LabelKey::MerchantId => self.merchants.iter().any(|m| m.id.as_str() == value),
            LabelKey::StoreId => self.stores.iter().any(|s| s.id.as_str() == value),
            _ => self
                .terminals
                .iter()
                .any(|t| t.identity.label(key) == value),
        }
    }

    /// A few of the values that exist for `key`, for error messages.
    pub fn value_hint(&self, key: LabelKey) -> String {
        let mut vals: Vec<&str> = Vec::new();
        for t in &self.terminals {
            let v = t.identity.label(key);
            if !vals.contains(&v) {
                vals.push(v);
            }
            if vals.len() > 200 {
                break;
            }
        }
        vals.sort_unstable();
        match vals.len() {
            0 => "none".into(),
            n if n <= 6 => vals.join(", "),
            n => format!(
                "{} .. {} ({n}{} values)",
                vals[0],
                vals[n - 1],
                if n > 200 { "+" } else { "" }
            ),
        }
    }

    /// Indexes of the terminals matching every `(key, value)` pair.
    pub fn select<'a>(
        &self,
        scope: impl IntoIterator<Item = (LabelKey, &'a str)> + Clone,
    ) -> Vec<usize> {
        (0..self.terminals.len())
            .filter(|&i| {
                scope
                    .clone()
                    .into_iter()
                    .all(|(k, v)| self.terminals[i].identity.label(k) == v)
            })
            .collect()
    }
}

/// Salt of the heartbeat-interval hash.
const HB_SALT: u64 = 0x4842_4D49_5800_0001;

/// The carriers of a fleet with `n` of them, weights normalised (the default three keep the
/// exact [`CARRIERS`] table).
fn carrier_table(n: u32) -> Vec<(&'static str, f64)> {
    let n = (n as usize).clamp(1, ALL_CARRIERS.len());
    if n == CARRIERS.len() {
        return CARRIERS.to_vec();
    }
    let total: f64 = ALL_CARRIERS[..n].iter().map(|(_, w)| w).sum();
    ALL_CARRIERS[..n]
        .iter()
        .map(|&(c, w)| (c, w / total))
        .collect()
}

/// The interval of the mix bucket `u` (uniform in `[0, 1)`) falls in.
fn heartbeat_of(mix: &[(u32, f64)], u: f64) -> u32 {
    let mut x = u;
    for &(secs, share) in mix {
        if x < share {
            return secs;
        }
        x -= share;
    }
    mix.last().map_or(60, |&(secs, _)| secs)
}

/// A uniform draw in `[0, 1)` from a hash of its inputs: stable per seed and key, and
/// independent of any generator's sequence of draws.
pub(crate) fn unit_hash(seed: u64, a: u64, b: u64) -> f64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits as a fraction: exact in f64.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn letter(i: u32) -> char {
    // i < 26 is enforced when the scenario is parsed; past that the letters wrap.
    char::from(b'A' + (i % 26) as u8)
}

/// Builds a label from generated text. Generated text is ASCII without control characters, so
/// validation cannot fail; the fallback keeps the function total.
fn label(s: String) -> Label {
    Label::new(s).unwrap_or_else(|_| Label::new("invalid").expect("static label is valid"))
}

fn terminal_id(s: String) -> TerminalId {
    TerminalId::new(s).unwrap_or_else(|_| TerminalId::new("invalid").expect("static id is valid"))
}

/// Index in `0..n` with decreasing weights (the first acquirer is the biggest).
fn weighted_index(rng: &mut SmallRng, n: usize) -> usize {
    let total: usize = (1..=n).sum();
    let mut x = rng.random_range(0..total.max(1));
    for i in 0..n {
        let w = n - i;
        if x < w {
            return i;
        }
        x -= w;
    }
    0
}

fn pick<'a>(rng: &mut SmallRng, table: &[(&'a str, f64)]) -> &'a str {
    let mut x = rng.random::<f64>();
    for (v, w) in table {
        if x < *w {
            return v;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// A standard normal sample (Box-Muller).
pub(crate) fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>();
    let u2: f64 = rng.random();
    normal_from(u1, u2)
}

/// A standard normal sample from two uniforms in `[0, 1)` (Box-Muller).
pub(crate) fn normal_from(u1: f64, u2: f64) -> f64 {
    let u1 = u1.max(1e-12);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_predictable_and_count_is_exact() {
        let spec = FleetSpec {
            chains: 3,
            ..FleetSpec::with_terminals(500)
        };
        let f = Fleet::generate(&spec, 7);
        assert_eq!(f.terminals.len(), 500);
        assert_eq!(f.regions[0].as_str(), "R01");
        assert_eq!(f.cities[0].0.as_str(), "R01-C01");
        assert_eq!(f.merchants[0].id.as_str(), "M0001");
        assert!(f.merchants[0].chain && f.merchants[0].stores.len() >= 5);
        assert_eq!(f.stores[0].id.as_str(), "M0001-S001");
        assert_eq!(
            f.terminals[0].identity.terminal_id.as_str(),
            "M0001-S001-T1"
        );
        assert_eq!(f.acquirers[1].0.as_str(), "ACQ-B");
        assert!(f.merchants[2].chain && !f.merchants[3].chain);
        assert_eq!(f.merchants[3].stores.len(), 1);
        for t in &f.terminals {
            let s = &f.stores[t.store];
            assert_eq!(t.identity.store_id, s.id);
            assert_eq!(t.identity.merchant_id, f.merchants[s.merchant].id);
        }
    }

    #[test]
    fn generation_is_deterministic() {
        let a = Fleet::generate(&FleetSpec::with_terminals(300), 1);
        let b = Fleet::generate(&FleetSpec::with_terminals(300), 1);
        let c = Fleet::generate(&FleetSpec::with_terminals(300), 2);
        let ids = |f: &Fleet| {
            f.terminals
                .iter()
                .map(|t| t.identity.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
    }

    #[test]
    fn select_intersects_labels() {
        let f = Fleet::generate(&FleetSpec::with_terminals(400), 3);
        let sel = f.select([(LabelKey::MerchantId, "M0002")]);
        assert!(!sel.is_empty());
        assert!(
            sel.iter()
                .all(|&i| f.terminals[i].identity.merchant_id.as_str() == "M0002")
        );
        assert!(f.has_value(LabelKey::Carrier, "CMCC"));
        assert!(!f.has_value(LabelKey::MerchantId, "M9999"));
    }
}

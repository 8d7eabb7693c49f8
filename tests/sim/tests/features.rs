//! What the generator needs from the simulator: terminals that beat at their own interval,
//! weekday/weekend/holiday days, merchants of different patience, the number of carriers and
//! how far a chain spreads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use storepulse_shared::{RecordBody, TerminalId};
use storepulse_sim::{MerchantCall, Scenario, Sink, run};

fn scenario(body: &str) -> Scenario {
    let text = format!("[scenario]\nname = \"features\"\nseed = 11\n{body}");
    Scenario::parse("features.toml", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// Observed heartbeats per terminal, payments per local day, calls.
#[derive(Default)]
struct Tally {
    offset_ms: i64,
    heartbeats: HashMap<TerminalId, Vec<i64>>,
    txns_per_day: BTreeMap<i64, u64>,
    calls: Vec<MerchantCall>,
}

impl Sink for Tally {
    fn record(&mut self, _: i64, _: &TerminalId, _: u64, _: &storepulse_shared::Record) {}

    fn observed(&mut self, now_ms: i64, terminal: &TerminalId, body: &RecordBody) {
        match body {
            RecordBody::Heartbeat(_) => self
                .heartbeats
                .entry(terminal.clone())
                .or_default()
                .push(now_ms),
            RecordBody::TxnOutcome(_) => {
                *self
                    .txns_per_day
                    .entry((now_ms + self.offset_ms).div_euclid(86_400_000))
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    fn merchant_call(&mut self, _: i64, call: &MerchantCall) {
        self.calls.push(call.clone());
    }
}

fn tally(sc: &Scenario) -> Tally {
    let mut t = Tally {
        offset_ms: i64::from(sc.utc_offset_secs) * 1000,
        ..Tally::default()
    };
    run(sc, &mut t);
    t
}

#[test]
fn terminals_beat_at_their_own_interval() {
    let sc = scenario(
        "start = \"2026-03-02T09:00:00+08:00\"\nduration = \"2h\"\n[fleet]\nterminals = 300\n\
         heartbeat_mix = [{ secs = 10, share = 0.3 }, { secs = 60, share = 0.4 }, { secs = 300, share = 0.3 }]\n",
    );
    assert_eq!(
        sc.heartbeat_interval_secs, 60,
        "the largest share is what the fleet is told"
    );
    let t = tally(&sc);
    let mut per_interval: BTreeMap<u32, usize> = BTreeMap::new();
    for term in &sc.fleet.terminals {
        let secs = term.heartbeat_interval_secs;
        *per_interval.entry(secs).or_default() += 1;
        let beats = &t.heartbeats[&term.identity.terminal_id];
        let want = 7200 / secs as usize;
        assert!(
            beats.len() == want || beats.len() + 1 == want,
            "{}: {} beats at {secs} s",
            term.identity.terminal_id,
            beats.len()
        );
        for w in beats.windows(2) {
            assert_eq!(w[1] - w[0], i64::from(secs) * 1000);
        }
    }
    for (secs, share) in [(10, 0.3), (60, 0.4), (300, 0.3)] {
        let got = per_interval[&secs] as f64 / 300.0;
        assert!((got - share).abs() < 0.1, "{secs} s: {got} of the fleet");
    }
}

#[test]
fn weekends_and_holidays_shape_the_day() {
    // Friday 6 March 2026, then a Saturday and a Sunday that is also a holiday.
    let base =
        "start = \"2026-03-06T00:00:00+08:00\"\nduration = \"72h\"\n[fleet]\nterminals = 400\n";
    let flat = tally(&scenario(base));
    let day = |t: &Tally, i: usize| *t.txns_per_day.values().nth(i).expect("day") as f64;
    assert!(
        (day(&flat, 1) / day(&flat, 0) - 1.0).abs() < 0.06,
        "{:?}",
        flat.txns_per_day
    );
    let shaped = tally(&scenario(&format!(
        "{base}[traffic]\nweekend = true\nweekend_volume = 1.5\nholidays = [\"2026-03-08\"]\nholiday_volume = 0.5\n"
    )));
    let sat = day(&shaped, 1) / day(&shaped, 0);
    let sun = day(&shaped, 2) / day(&shaped, 0);
    assert!((sat - 1.5).abs() < 0.1, "Saturday / Friday {sat}");
    assert!((sun - 0.5).abs() < 0.05, "holiday Sunday / Friday {sun}");
}

#[test]
fn impatient_merchants_call_first() {
    // Every card payment fails for two hours; only the impatient half calls within them.
    let sc = scenario(
        "start = \"2026-03-02T00:00:00+08:00\"\nduration = \"14h\"\n[fleet]\nterminals = 400\n\
         acquirers = 1\nchains = 0\nqr_share = 0.3\n[calls]\nk = 50\nt_minutes = 600\n\
         [[calls.profile]]\nshare = 0.5\nk = 1\n\
         [[fault]]\nkind = \"acquirer_outage\"\nstart = \"+11h\"\nend = \"+13h\"\nscope = { acquirer = \"ACQ-A\" }\n",
    );
    let t = tally(&sc);
    let merchant_index: HashMap<&str, usize> = sc
        .fleet
        .merchants
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    let callers: BTreeSet<usize> = t
        .calls
        .iter()
        .map(|c| merchant_index[c.merchant.as_str()])
        .collect();
    let impatient = (0..sc.fleet.merchants.len())
        .filter(|&m| sc.call_rules_of(m).k == 1)
        .count();
    assert!(
        (0.35..0.65).contains(&(impatient as f64 / sc.fleet.merchants.len() as f64)),
        "{impatient} impatient of {}",
        sc.fleet.merchants.len()
    );
    assert!(callers.len() > impatient / 2, "{} callers", callers.len());
    for m in callers {
        assert_eq!(
            sc.call_rules_of(m).k,
            1,
            "{} called",
            sc.fleet.merchants[m].id
        );
    }
}

#[test]
fn carriers_and_chain_regions() {
    let carriers = |n: u32| -> BTreeSet<String> {
        let sc = scenario(&format!(
            "start = \"2026-03-02T00:00:00+08:00\"\nduration = \"1h\"\n[fleet]\nterminals = 500\ncarriers = {n}\n"
        ));
        sc.fleet
            .terminals
            .iter()
            .map(|t| t.identity.carrier.as_str().to_owned())
            .collect()
    };
    assert_eq!(carriers(1).into_iter().collect::<Vec<_>>(), ["CMCC"]);
    assert_eq!(carriers(4).len(), 4);
    assert!(carriers(4).contains("CBN"));
    let regions = |n: u32| -> usize {
        let sc = scenario(&format!(
            "start = \"2026-03-02T00:00:00+08:00\"\nduration = \"1h\"\n[fleet]\nterminals = 600\n\
             regions = 8\nchains = 1\nchain_stores = [300, 300]\nchain_store_terminals = [1, 1]\nchain_regions = {n}\n"
        ));
        sc.fleet.merchants[0]
            .stores
            .iter()
            .map(|&s| sc.fleet.stores[s].region)
            .collect::<BTreeSet<_>>()
            .len()
    };
    assert_eq!(regions(1), 1);
    assert_eq!(regions(5), 5);
    assert_eq!(regions(8), 8);
}

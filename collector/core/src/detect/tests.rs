//! Unit tests of the detection core on small hand-built fleets in virtual time.

use storepulse_shared::{
    Heartbeat, Identity, Label, LinkType, PayMethod, Record, RecordBody, Scheme, Seq, TerminalId,
    TxnOutcome,
};

use super::lifecycle::{RECOVERY_LOG10, recovery_llr};
use super::*;

const MIN: i64 = 60_000;
const T0: i64 = 1_772_380_800_000;

/// SplitMix64, so the tests need no RNG crate.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

/// A card payment answered with ISO 8583 `code`.
fn card(code: &str) -> RecordBody {
    RecordBody::TxnOutcome(TxnOutcome {
        scheme: Scheme::Iso8583,
        code: code.to_owned(),
        latency_ms: 800,
        method: PayMethod::Card,
        route: None,
    })
}

/// Merchants `M{m}` with two stores of two terminals each; merchants alternate regions.
fn fleet(merchants: usize) -> Vec<Identity> {
    let mut out = Vec::new();
    for m in 0..merchants {
        for s in 0..2 {
            for t in 0..2 {
                let region = format!("R{}", m % 2);
                out.push(Identity {
                    terminal_id: TerminalId::new(format!("M{m}-S{s}-T{t}")).expect("id"),
                    merchant_id: label(&format!("M{m}")),
                    store_id: label(&format!("M{m}-S{s}")),
                    region: label(&region),
                    city: label(&format!("{region}-C{}", s)),
                    acquirer: label(if m % 3 == 0 { "ACQ-A" } else { "ACQ-B" }),
                    qr_channel: label("QR-A"),
                    carrier: label(["CMCC", "CUCC", "CTCC"][(m + s + t) % 3]),
                    link: LinkType::Wired,
                    model: label("P2"),
                    firmware: label("2.3.1"),
                    app_version: label("1.0"),
                })
            }
        }
    }
    out
}

/// What a terminal does in one minute.
struct Driver {
    det: Detector,
    fleet: Vec<Identity>,
    seq: u64,
    rng: Rng,
    events: Vec<IncidentEvent>,
    /// CPU percent and temperature of terminal `ti`'s heartbeat in minute `m`.
    device: fn(usize, i64) -> (f32, Option<f32>),
}

impl Driver {
    fn new(merchants: usize) -> Self {
        let mut det = Detector::new(DetectorConfig::default());
        let fleet = fleet(merchants);
        for id in &fleet {
            det.handle_hello(T0, id);
        }
        Self {
            det,
            fleet,
            seq: 0,
            rng: Rng(7),
            events: Vec::new(),
            device: |_, _| (10.0, None),
        }
    }

    fn send(&mut self, now: i64, ti: usize, body: RecordBody) {
        self.seq += 1;
        let r = Record {
            seq: Seq(self.seq),
            time_unix_ms: now,
            body,
        };
        let id = self.fleet[ti].terminal_id.clone();
        self.det.handle_record(now, &id, &r);
    }

    /// Runs minutes `from..to`: every terminal not in `silent` heartbeats; each pays with
    /// probability `pay(ti)` per minute and `code(ti, rng)` picks the response.
    fn run(
        &mut self,
        from: i64,
        to: i64,
        silent: &dyn Fn(usize) -> bool,
        pay: &dyn Fn(usize) -> f64,
        code: &dyn Fn(usize, f64) -> &'static str,
    ) {
        for m in from..to {
            let now = T0 + m * MIN;
            for ti in 0..self.fleet.len() {
                if silent(ti) {
                    continue;
                }
                let (cpu_percent, temperature_c) = (self.device)(ti, m);
                let hb = Heartbeat {
                    cpu_percent,
                    mem_used_bytes: 1,
                    mem_total_bytes: 2,
                    disk_free_bytes: 3,
                    uptime_secs: 4,
                    temperature_c,
                    battery_percent: None,
                    spool_records: 0,
                };
                self.send(
                    now + (ti as i64 * 97) % 50_000,
                    ti,
                    RecordBody::Heartbeat(hb),
                );
                if self.rng.unit() < pay(ti) {
                    let u = self.rng.unit();
                    self.send(now + 20_000, ti, card(code(ti, u)));
                }
            }
            for k in 0..6 {
                self.det.tick(now + k * 10_000);
                while let Some(e) = self.det.poll_event() {
                    self.events.push(e);
                }
            }
        }
    }

    fn opened(&self) -> Vec<(IncidentKind, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                IncidentEvent::Opened(i) => Some((i.kind, i.scope_text())),
                _ => None,
            })
            .collect()
    }
}

/// Normal traffic: approvals with 3 % cardholder declines and 0.2 % timeouts.
fn normal(_: usize, u: f64) -> &'static str {
    if u < 0.03 {
        "51"
    } else if u < 0.032 {
        "68"
    } else {
        "00"
    }
}

#[test]
fn low_volume_shop_does_not_flap() {
    // Three payments an hour per terminal, a day long, with base declines and timeouts.
    let mut d = Driver::new(12);
    d.run(0, 24 * 60, &|_| false, &|_| 0.05, &normal);
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

#[test]
fn cardholder_surge_opens_nothing() {
    let mut d = Driver::new(12);
    d.run(0, 120, &|_| false, &|_| 0.3, &normal);
    // Half of all payments declined for insufficient funds, everywhere.
    d.run(120, 240, &|_| false, &|_| 0.6, &|_, u| {
        if u < 0.5 { "51" } else { "00" }
    });
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

#[test]
fn merchant_fault_opens_one_merchant_config_incident() {
    let mut d = Driver::new(12);
    d.run(0, 120, &|_| false, &|_| 0.2, &normal);
    // Every terminal of M5 (indexes 20..24) answers "invalid merchant".
    let bad = |ti: usize| (20..24).contains(&ti);
    d.run(120, 160, &|_| false, &|_| 0.2, &|ti, u| {
        if bad(ti) { "03" } else { normal(ti, u) }
    });
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::MerchantConfig, "merchant_id=M5".to_owned())]
    );
    let inc = d.det.incidents().next().expect("open");
    assert_eq!(inc.affected_merchants, 1);
    assert!(inc.evidence.top_codes.iter().any(|c| c.code == "03"));
    assert!(!inc.explanation_zh.is_empty() && !inc.remediation_en.is_empty());
}

#[test]
fn regional_silence_opens_one_regional_outage() {
    let mut d = Driver::new(12);
    d.run(0, 60, &|_| false, &|_| 0.1, &normal);
    // Region R0 (even merchants) goes quiet.
    let in_r0 = |ti: usize| (ti / 4).is_multiple_of(2);
    d.run(60, 75, &in_r0, &|_| 0.1, &normal);
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::RegionalOutage, "region=R0".to_owned())]
    );
}

#[test]
fn resolves_after_hold_time() {
    let mut d = Driver::new(12);
    d.run(0, 60, &|_| false, &|_| 0.1, &normal);
    // One store goes offline for 20 minutes, then comes back.
    let store = |ti: usize| ti == 8 || ti == 9;
    d.run(60, 80, &store, &|_| 0.1, &normal);
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::StoreOffline, "store_id=M2-S0".to_owned())]
    );
    // The hold is 5 minutes: still open 3 minutes after the store came back.
    d.run(80, 83, &|_| false, &|_| 0.1, &normal);
    assert!(
        d.det.incidents().next().is_some(),
        "resolved before the hold time"
    );
    d.run(83, 100, &|_| false, &|_| 0.1, &normal);
    assert!(
        d.det.incidents().next().is_none(),
        "still open after the hold time"
    );
    assert!(matches!(d.events.last(), Some(IncidentEvent::Resolved(_))));
}

impl Driver {
    /// One payment of terminal `ti` at `now` answered with ISO 8583 `code`, then ticks.
    fn pay(&mut self, now: i64, ti: usize, code: &str) {
        self.send(now, ti, card(code));
        self.tick_to(now + 10_000);
    }

    fn tick_to(&mut self, now: i64) {
        self.det.tick(now);
        while let Some(e) = self.det.poll_event() {
            self.events.push(e);
        }
    }

    /// A network sample of terminal `ti` at `now`.
    fn probe(&mut self, now: i64, ti: usize, rtt_ms: f32, loss_percent: f32) {
        let nq = storepulse_shared::NetQuality {
            rtt_ms: Some(rtt_ms),
            jitter_ms: Some(rtt_ms / 10.0),
            loss_percent: Some(loss_percent),
            endpoints: Vec::new(),
        };
        self.send(now, ti, RecordBody::NetQuality(nq));
    }
}

/// A quiet fleet: a day of three payments an hour per terminal. Returns the driver and the
/// first minute after the day.
fn quiet_day() -> (Driver, i64) {
    let mut d = Driver::new(12);
    d.run(0, 24 * 60, &|_| false, &|_| 0.05, &normal);
    assert!(d.events.is_empty(), "{:?}", d.opened());
    (d, 24 * 60)
}

impl Driver {
    /// Minutes `from..to` of heartbeats only (the fleet stays visibly alive).
    fn idle(&mut self, from: i64, to: i64) {
        self.run(from, to, &|_| false, &|_| 0.0, &normal);
    }

    /// Heartbeats for minute `m`, and payments answered with `codes` (terminal, code) in it.
    fn minute(&mut self, m: i64, codes: &[(usize, &str)]) {
        for (k, &(ti, code)) in codes.iter().enumerate() {
            self.pay(T0 + m * MIN + 30_000 + k as i64 * 1000, ti, code);
        }
        self.idle(m, m + 1);
    }
}

#[test]
fn two_terminal_config_codes_in_a_row_open_a_terminal_config_incident() {
    let (mut d, m) = quiet_day();
    // Terminal 5 (M1-S0-T1) was re-provisioned wrong: "transaction not permitted to terminal".
    d.minute(m, &[(5, "58")]);
    d.idle(m + 1, m + 20);
    assert!(
        d.events.is_empty(),
        "one code is not evidence: {:?}",
        d.opened()
    );
    d.minute(m + 20, &[(5, "58")]);
    d.idle(m + 21, m + 22);
    assert_eq!(
        d.opened(),
        vec![(
            IncidentKind::TerminalConfig,
            "terminal_id=M1-S0-T1".to_owned()
        )]
    );
}

#[test]
fn an_approval_between_two_config_codes_breaks_the_run() {
    let (mut d, m) = quiet_day();
    d.minute(m, &[(5, "58")]);
    d.minute(m + 5, &[(5, "00")]);
    d.minute(m + 20, &[(5, "58")]);
    d.idle(m + 21, m + 25);
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

#[test]
fn merchant_codes_on_one_terminal_of_an_unpaid_store_point_at_the_store() {
    let (mut d, m) = quiet_day();
    // M2-S0 (terminals 8 and 9): a branch whose registration lacks routing information.
    d.minute(m, &[(8, "03")]);
    d.minute(m + 3, &[(8, "03")]);
    d.idle(m + 4, m + 6);
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::MerchantConfig, "store_id=M2-S0".to_owned())]
    );
}

#[test]
fn merchant_codes_on_one_terminal_while_its_sibling_is_paid_point_at_the_terminal() {
    let (mut d, m) = quiet_day();
    d.minute(m, &[(8, "03")]);
    d.minute(m + 1, &[(9, "00")]);
    d.minute(m + 3, &[(8, "03")]);
    d.idle(m + 4, m + 6);
    assert_eq!(
        d.opened(),
        vec![(
            IncidentKind::TerminalConfig,
            "terminal_id=M2-S0-T0".to_owned()
        )]
    );
}

/// Two timeouts at store M3-S1 (terminals 14 and 15), with or without its own network samples
/// degraded in the minutes before.
fn two_timeouts(degraded: bool) -> Driver {
    let (mut d, m) = quiet_day();
    // Twenty minutes of samples: the first ten learn the terminals' own baseline.
    for k in 0..20 {
        for ti in [14, 15] {
            let (rtt, loss) = if degraded && k >= 10 {
                (900.0, 30.0)
            } else {
                (40.0, 0.2)
            };
            d.probe(T0 + (m + k) * MIN + 5_000, ti, rtt, loss);
        }
        d.idle(m + k, m + k + 1);
    }
    d.minute(m + 20, &[(14, "68")]);
    d.minute(m + 21, &[(15, "68")]);
    d.idle(m + 22, m + 24);
    d
}

#[test]
fn degraded_network_samples_make_two_timeouts_a_store_network_incident() {
    let d = two_timeouts(true);
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::StoreNetwork, "store_id=M3-S1".to_owned())]
    );
    let inc = d.det.incidents().next().expect("open");
    let (rtt, base) = inc.evidence.rtt_ms.expect("network evidence");
    assert!(rtt > 2.0 * base, "rtt {rtt} vs baseline {base}");
}

#[test]
fn two_timeouts_with_a_healthy_network_are_noise() {
    let d = two_timeouts(false);
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

#[test]
fn fisher_combination_is_a_p_value() {
    // Two tests at p = 0.01 each: p1 p2 (1 - ln(p1 p2)) = 1e-4 * (1 + 9.21) = 1.02e-3.
    let s = fisher2(2.0, 2.0);
    assert!((s - 2.991).abs() < 0.01, "{s}");
    assert_eq!(fisher2(7.0, 0.0), 7.0);
}

#[test]
fn recovery_needs_evidence_not_just_quiet() {
    // A 25 % defect: four payments, none failed, is not yet proof it is over ...
    assert!(recovery_llr(0, 4, 0.0001, 0.25) > -RECOVERY_LOG10);
    // ... forty are.
    assert!(recovery_llr(0, 40, 0.001, 0.25) < -RECOVERY_LOG10);
    // A terminal that failed everything: two approvals settle it.
    assert!(recovery_llr(0, 2, 0.00001, 1.0) < -RECOVERY_LOG10);
    // Still failing at the open rate: evidence for the incident.
    assert!(recovery_llr(10, 40, 0.001, 0.25) > 0.0);
}

#[test]
fn a_long_partial_outage_stays_one_incident() {
    // A quarter of ACQ-A's payments fail with "system malfunction" for six hours: one incident,
    // not one per baseline catch-up (an open incident must not become the new normal).
    let mut d = Driver::new(12);
    d.run(0, 120, &|_| false, &|_| 0.3, &normal);
    let acq_a = |ti: usize| (ti / 4).is_multiple_of(3);
    d.run(120, 480, &|_| false, &|_| 0.3, &|ti, u| {
        if acq_a(ti) && u > 0.75 {
            "96"
        } else {
            normal(ti, u)
        }
    });
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::AcquirerOutage, "acquirer=ACQ-A".to_owned())]
    );
    assert!(
        d.det.incidents().next().is_some(),
        "resolved while still failing"
    );
}

/// Two timeouts a minute apart on two ACQ-A terminals of different merchants (terminals 0 and
/// 12), with ACQ-A's maintenance announced for the hour around them or not.
fn two_acquirer_timeouts(announced: bool) -> Driver {
    let (mut d, m) = quiet_day();
    if announced {
        d.det.handle_announcement(
            T0 + m * MIN,
            MaintenanceWindow {
                scope: vec![(LabelKey::Acquirer, "ACQ-A".to_owned())],
                start_ms: T0 + m * MIN,
                end_ms: T0 + (m + 60) * MIN,
            },
        );
    }
    d.idle(m, m + 10);
    d.minute(m + 10, &[(0, "68")]);
    d.minute(m + 11, &[(12, "68")]);
    d.idle(m + 12, m + 14);
    d
}

#[test]
fn two_failures_inside_an_announced_window_are_the_maintenance() {
    let d = two_acquirer_timeouts(true);
    assert_eq!(
        d.opened(),
        vec![(
            IncidentKind::AcquirerMaintenance,
            "acquirer=ACQ-A".to_owned()
        )]
    );
}

#[test]
fn the_same_two_failures_without_a_window_are_noise() {
    let d = two_acquirer_timeouts(false);
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

/// The first minute terminal 5 (M1-S0-T1) runs hot in the device tests: a quiet day, then 15
/// minutes of healthy readings to learn every terminal's own baseline.
const HOT_FROM: i64 = 24 * 60 + 15;

/// A quiet day with temperatures, then terminal 5 runs as `hot` says from [`HOT_FROM`] for 10
/// minutes (no payments anywhere after the day), then cools down for 30.
fn device_trouble(hot: fn(usize, i64) -> (f32, Option<f32>)) -> Driver {
    let mut d = Driver::new(12);
    d.device = |_, _| (12.0, Some(40.0));
    d.run(0, 24 * 60, &|_| false, &|_| 0.05, &normal);
    d.idle(24 * 60, HOT_FROM);
    assert!(d.events.is_empty(), "{:?}", d.opened());
    d.device = hot;
    d.idle(HOT_FROM, HOT_FROM + 10);
    d.device = |_, _| (12.0, Some(40.0));
    d.idle(HOT_FROM + 10, HOT_FROM + 40);
    d
}

#[test]
fn a_hot_busy_device_is_a_terminal_fault_before_any_payment_fails() {
    let d = device_trouble(|ti, m| {
        if ti == 5 && m >= HOT_FROM {
            (75.0, Some(62.0))
        } else {
            (12.0, Some(40.0))
        }
    });
    assert_eq!(
        d.opened(),
        vec![(
            IncidentKind::TerminalFault,
            "terminal_id=M1-S0-T1".to_owned()
        )]
    );
    let (inc, resolved) = d.events.iter().fold((None, None), |(o, r), e| match e {
        IncidentEvent::Opened(i) => (Some(i.clone()), r),
        IncidentEvent::Resolved(i) => (o, i.resolved_ms),
        _ => (o, r),
    });
    let inc = inc.expect("opened");
    // The third hot beat is decisive at this fleet's size (48 terminals).
    assert!(
        inc.opened_ms <= T0 + (HOT_FROM + 4) * MIN,
        "opened {} min after the first hot beat",
        (inc.opened_ms - T0) / MIN - HOT_FROM
    );
    let dev = inc.evidence.device.expect("device reading");
    assert!(
        dev.temperature_c > dev.temperature_baseline_c + 15.0,
        "{dev:?}"
    );
    assert!(inc.explanation_en.contains("hot"), "{}", inc.explanation_en);
    assert!(
        inc.explanation_zh.contains("温度"),
        "{}",
        inc.explanation_zh
    );
    // Cooled down at HOT_FROM + 10: resolved after the hold time, not before.
    let resolved = resolved.expect("resolved after cooling down");
    assert!(resolved >= T0 + (HOT_FROM + 10) * MIN, "{resolved}");
}

#[test]
fn a_hot_device_that_is_not_busy_is_not_a_fault() {
    let d = device_trouble(|ti, m| {
        if ti == 5 && m >= HOT_FROM {
            (14.0, Some(62.0))
        } else {
            (12.0, Some(40.0))
        }
    });
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

#[test]
fn many_devices_hot_at_once_are_not_one_fault_each() {
    // A heat wave (or a firmware cohort) is not 12 hardware faults.
    let d = device_trouble(|ti, m| {
        if ti < 12 && m >= HOT_FROM {
            (75.0, Some(62.0))
        } else {
            (12.0, Some(40.0))
        }
    });
    assert!(d.events.is_empty(), "{:?}", d.opened());
}

#[test]
fn an_intermittent_merchant_fault_is_not_a_terminal_config() {
    // Merchant M2's registration fails 40 % of its payments on all four of its terminals
    // (8..12): merchant-wide, even though one terminal may fail twice in a row first.
    for seed in 1..=8u64 {
        let (mut d, m) = quiet_day();
        d.rng = Rng(seed);
        d.run(
            m,
            m + 90,
            &|_| false,
            &|ti| if (8..12).contains(&ti) { 0.3 } else { 0.05 },
            &|ti, u| {
                if (8..12).contains(&ti) && u < 0.4 {
                    "03"
                } else {
                    normal(ti, u)
                }
            },
        );
        let opened = d.opened();
        assert!(
            opened
                .iter()
                .all(|(k, _)| *k != IncidentKind::TerminalConfig),
            "seed {seed}: {opened:?}"
        );
        // One incident, at the merchant (narrower ones opened first are widened into it).
        let open: Vec<(IncidentKind, String)> = d
            .det
            .incidents()
            .map(|i| (i.kind, i.scope_text()))
            .collect();
        assert_eq!(
            open,
            vec![(IncidentKind::MerchantConfig, "merchant_id=M2".to_owned())],
            "seed {seed}: opened {opened:?}"
        );
    }
}

/// Days of a daily cycle (half a payment a minute per terminal 08:00-22:00, almost none at
/// night) over minutes `from..to`; terminals in `stopped` take no payment from `stop_at` on,
/// and those in `dead` also stop reporting from then.
fn cycle(d: &mut Driver, from: i64, to: i64, stop_at: i64, stopped: fn(usize) -> bool, dead: bool) {
    let mut m = from;
    while m < to {
        let hour = (m / 60) % 24;
        let busy = (8..22).contains(&hour);
        let end = ((m / 60 + 1) * 60).min(to);
        // Split the hour at the stop.
        let end = if m < stop_at && stop_at < end {
            stop_at
        } else {
            end
        };
        let after = m >= stop_at;
        let rate = if busy { 0.5 } else { 0.01 };
        d.run(
            m,
            end,
            &|ti| after && dead && stopped(ti),
            &|ti| if after && stopped(ti) { 0.0 } else { rate },
            &normal,
        );
        m = end;
    }
}

fn merchant_m4(ti: usize) -> bool {
    (16..20).contains(&ti)
}

#[test]
fn payments_that_stop_while_terminals_report_are_an_incident() {
    let mut d = Driver::new(12);
    let day = 24 * 60;
    // Three normal days teach the hour-of-day volume (one or two days are the calendar's
    // shape as much as the group's); the fourth is tested.
    cycle(&mut d, 0, 3 * day, i64::MAX, merchant_m4, false);
    assert!(d.events.is_empty(), "normal days: {:?}", d.opened());
    // Day four, 11:00: merchant M4's four terminals take no more payments, still online.
    let stop = 3 * day + 11 * 60;
    cycle(&mut d, 3 * day, stop + 60, stop, merchant_m4, false);
    assert_eq!(
        d.opened(),
        vec![(IncidentKind::Unknown, "merchant_id=M4".to_owned())]
    );
    let inc = d.det.incidents().next().expect("open").clone();
    assert_eq!(inc.evidence.family, Family::Volume);
    assert!(
        inc.opened_ms <= T0 + (stop + 30) * MIN,
        "late: {}",
        inc.opened_ms
    );
    let e = &inc.evidence;
    assert!(
        e.expected >= 20.0 && e.observed <= 0.25 * e.expected,
        "{e:?}"
    );
    assert!(
        inc.explanation_en.contains("stopped"),
        "{}",
        inc.explanation_en
    );
    assert!(
        inc.explanation_zh.contains("交易量"),
        "{}",
        inc.explanation_zh
    );
    assert!(
        inc.remediation_en[0].contains("POS app"),
        "{:?}",
        inc.remediation_en
    );
    // They take payments again: resolved.
    cycle(&mut d, stop + 60, stop + 120, i64::MAX, merchant_m4, false);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, IncidentEvent::Resolved(i) if i.id == inc.id)),
        "not resolved"
    );
}

#[test]
fn payments_that_stop_because_terminals_went_dark_are_silence_not_volume() {
    let mut d = Driver::new(12);
    let day = 24 * 60;
    cycle(&mut d, 0, 2 * day, i64::MAX, merchant_m4, false);
    let stop = 2 * day + 11 * 60;
    cycle(&mut d, 2 * day, stop + 45, stop, merchant_m4, true);
    let volume: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            IncidentEvent::Opened(i) if i.evidence.family == Family::Volume => Some(i.scope_text()),
            _ => None,
        })
        .collect();
    assert!(volume.is_empty(), "{volume:?}");
    assert!(!d.opened().is_empty(), "the silence is still an incident");
}

#[test]
fn a_decisive_run_asks_for_a_tick_at_once() {
    let (mut d, m) = quiet_day();
    let t0 = T0 + m * MIN + 30_000;
    d.send(t0, 5, card("58"));
    assert!(!d.det.wants_tick(), "one code is not a run");
    d.send(t0 + 60_000, 5, card("58"));
    assert!(d.det.wants_tick(), "the second code in a row is decisive");
    d.det.tick(t0 + 60_000);
    assert!(!d.det.wants_tick());
    let mut opened = Vec::new();
    while let Some(e) = d.det.poll_event() {
        if let IncidentEvent::Opened(i) = e {
            opened.push((i.kind, i.scope_text()));
        }
    }
    assert_eq!(
        opened,
        vec![(
            IncidentKind::TerminalConfig,
            "terminal_id=M1-S0-T1".to_owned()
        )]
    );
}

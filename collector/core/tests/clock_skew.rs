//! Agent clocks skewed by an hour (issue 7, faults): detection must be unharmed once the
//! collector corrects record times with the offset it measured at each `Hello`.
//!
//! A small fleet in virtual time where every even merchant's terminals run an hour ahead and
//! every odd merchant's an hour behind (their records are stamped with that clock). One
//! merchant's terminals start answering "invalid merchant" (03) at minute 120. Through
//! [`ClockPolicy::correct`] the detector must open exactly one `merchant_config` incident for
//! that merchant, within minutes of the fault. The control run feeds the skewed times as they
//! are and must come out different, so the test shows the correction is what matters.

use storepulse_collector_core::detect::{Detector, DetectorConfig, IncidentEvent, IncidentKind};
use storepulse_collector_core::{ClockPolicy, TerminalEntry, TimeFix};
use storepulse_shared::{
    Heartbeat, Identity, Label, LinkType, PayMethod, Record, RecordBody, Scheme, Seq, TerminalId,
    TxnOutcome,
};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const T0: i64 = 1_772_380_800_000;
const FAULT_MIN: i64 = 120;

fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

/// SplitMix64, so the test needs no RNG crate.
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

struct Terminal {
    identity: Identity,
    merchant: usize,
    /// Agent clock minus true time.
    skew_ms: i64,
    /// What the collector knows (clock offset measured at the Hello).
    entry: TerminalEntry,
}

fn fleet(merchants: usize, policy: &ClockPolicy) -> Vec<Terminal> {
    let mut out = Vec::new();
    for m in 0..merchants {
        for s in 0..2 {
            for t in 0..2 {
                let region = format!("R{}", m % 2);
                let identity = Identity {
                    terminal_id: TerminalId::new(format!("M{m}-S{s}-T{t}")).expect("id"),
                    merchant_id: label(&format!("M{m}")),
                    store_id: label(&format!("M{m}-S{s}")),
                    region: label(&region),
                    city: label(&format!("{region}-C{s}")),
                    acquirer: label(if m % 3 == 0 { "ACQ-A" } else { "ACQ-B" }),
                    qr_channel: label("QR-A"),
                    carrier: label(["CMCC", "CUCC", "CTCC"][(m + s + t) % 3]),
                    link: LinkType::Wired,
                    model: label("P2"),
                    firmware: label("2.3.1"),
                    app_version: label("1.0"),
                };
                let skew_ms = if m % 2 == 0 { HOUR } else { -HOUR };
                let mut entry = TerminalEntry::new(T0);
                // The Hello left the agent 40 ms before the collector read it.
                entry.observe_clock(T0 + 40, T0 + skew_ms, policy);
                out.push(Terminal {
                    identity,
                    merchant: m,
                    skew_ms,
                    entry,
                });
            }
        }
    }
    out
}

/// Runs three hours with a fault on `bad_merchant` from minute 120; returns every incident
/// opened as (kind, scope, opened at).
fn run(bad_merchant: usize, correct: bool) -> Vec<(IncidentKind, String, i64)> {
    let policy = ClockPolicy::default();
    let terminals = fleet(12, &policy);
    let mut det = Detector::new(DetectorConfig::default());
    for t in &terminals {
        det.handle_hello(T0, &t.identity);
    }
    let mut rng = Rng(7);
    let mut seq = 0u64;
    let mut events = Vec::new();
    for minute in 0..180 {
        let now = T0 + minute * MIN;
        for (ti, t) in terminals.iter().enumerate() {
            let mut send = |observed: i64, body: RecordBody| {
                seq += 1;
                // Stamped with the agent's clock, received 50 ms later.
                let stamped = observed + t.skew_ms;
                let received = observed + 50;
                let time = if correct {
                    let (fixed, how) =
                        policy.correct(stamped, received, t.entry.clock_correction_ms());
                    assert_eq!(how, TimeFix::Corrected);
                    fixed
                } else {
                    stamped
                };
                let r = Record {
                    seq: Seq(seq),
                    time_unix_ms: time,
                    body,
                };
                det.handle_record(received, &t.identity.terminal_id, &r);
            };
            let hb = Heartbeat {
                cpu_percent: 10.0,
                mem_used_bytes: 1,
                mem_total_bytes: 2,
                disk_free_bytes: 3,
                uptime_secs: 4,
                temperature_c: None,
                battery_percent: None,
                spool_records: 0,
            };
            send(now + (ti as i64 * 97) % 50_000, RecordBody::Heartbeat(hb));
            if rng.unit() < 0.2 {
                let u = rng.unit();
                let code = if t.merchant == bad_merchant && minute >= FAULT_MIN {
                    "03"
                } else if u < 0.03 {
                    "51"
                } else {
                    "00"
                };
                let tx = TxnOutcome {
                    scheme: Scheme::Iso8583,
                    code: code.to_owned(),
                    latency_ms: 800,
                    method: PayMethod::Card,
                    route: None,
                };
                send(now + 20_000, RecordBody::TxnOutcome(tx));
            }
        }
        for k in 0..6 {
            det.tick(now + k * 10_000);
            while let Some(e) = det.poll_event() {
                if let IncidentEvent::Opened(i) = e {
                    events.push((i.kind, i.scope_text(), i.opened_ms));
                }
            }
        }
    }
    events
}

fn check_detected(bad_merchant: usize) {
    let opened = run(bad_merchant, true);
    let scope = format!("merchant_id=M{bad_merchant}");
    assert_eq!(
        opened
            .iter()
            .map(|(k, s, _)| (*k, s.clone()))
            .collect::<Vec<_>>(),
        vec![(IncidentKind::MerchantConfig, scope)],
        "with corrected times"
    );
    let at = opened[0].2;
    let fault = T0 + FAULT_MIN * MIN;
    assert!(
        at >= fault && at <= fault + 20 * MIN,
        "opened {} min after the fault",
        (at - fault) / MIN
    );
    let control = run(bad_merchant, false);
    assert_ne!(
        control, opened,
        "feeding the skewed times as they are must make a difference"
    );
}

#[test]
fn fault_behind_a_clock_one_hour_slow_is_detected_on_time() {
    check_detected(5);
}

#[test]
fn fault_behind_a_clock_one_hour_fast_is_detected_on_time() {
    check_detected(4);
}

//! The scenario library under `tests/scenarios/`: every file loads and runs cleanly, its ground
//! truth matches its faults, and each fault does what the domain says it does.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use storepulse_shared::taxonomy::{ErrorClass, classify};
use storepulse_shared::{Identity, PayMethod, Record, RecordBody, TerminalId};
use storepulse_sim::{
    Announcement, EventLog, FaultKind, Fnv64, IncidentKind, MerchantCall, Scenario, Sink, run,
};

fn library() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scenarios exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"));
    Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// One delivered payment outcome.
#[derive(Debug, Clone)]
struct Txn {
    arrival_ms: i64,
    time_ms: i64,
    terminal: TerminalId,
    class: ErrorClass,
    approved: bool,
    code: String,
    method: PayMethod,
    route: String,
}

/// Collects what a collector would see and checks the stream's invariants as it goes: time
/// never goes backwards, records come only on a connection opened by `hello`, live records
/// arrive in sequence order, and no record arrives twice. Detail (arrivals, payments) is kept
/// only for the terminals in `watch` (empty: payments of every terminal, no arrivals).
#[derive(Default)]
struct Checker {
    index: HashMap<TerminalId, usize>,
    watch: Vec<bool>,
    last_ms: i64,
    epoch: Vec<Option<u64>>,
    last_live_seq: Vec<Option<u64>>,
    delivered: Vec<u64>,
    max_seq: Vec<u64>,
    hellos: HashMap<TerminalId, Vec<i64>>,
    arrivals: HashMap<TerminalId, Vec<(i64, i64)>>,
    txns: Vec<Txn>,
    calls: Vec<MerchantCall>,
    announcements: Vec<(i64, Announcement)>,
    records: u64,
    spool_drops: u64,
}

impl Checker {
    fn new(s: &Scenario, watch: &[&str]) -> Self {
        let n = s.fleet.terminals.len();
        let index: HashMap<TerminalId, usize> = s
            .fleet
            .terminals
            .iter()
            .enumerate()
            .map(|(i, t)| (t.identity.terminal_id.clone(), i))
            .collect();
        let mut w = vec![false; n];
        for id in watch {
            w[index[&TerminalId::new(*id).expect("id")]] = true;
        }
        Self {
            index,
            watch: w,
            epoch: vec![None; n],
            last_live_seq: vec![None; n],
            delivered: vec![0; n],
            max_seq: vec![0; n],
            ..Self::default()
        }
    }

    fn tick(&mut self, now: i64) {
        assert!(
            now >= self.last_ms,
            "time went back from {} to {now}",
            self.last_ms
        );
        self.last_ms = now;
    }
}

impl Sink for Checker {
    fn hello(&mut self, now_ms: i64, identity: &Identity, spool_epoch: u64) {
        self.tick(now_ms);
        let i = self.index[&identity.terminal_id];
        self.epoch[i] = Some(spool_epoch);
        self.hellos
            .entry(identity.terminal_id.clone())
            .or_default()
            .push(now_ms);
    }

    fn record(
        &mut self,
        arrival_ms: i64,
        terminal: &TerminalId,
        spool_epoch: u64,
        record: &Record,
    ) {
        self.tick(arrival_ms);
        self.records += 1;
        let i = self.index[terminal];
        assert_eq!(self.epoch[i], Some(spool_epoch), "record before hello");
        assert!(record.time_unix_ms <= arrival_ms, "record from the future");
        self.delivered[i] += 1;
        self.max_seq[i] = self.max_seq[i].max(record.seq.0);
        // Backlog arrives behind newer live records (live first); live ones are in order.
        if record.time_unix_ms == arrival_ms {
            if let Some(prev) = self.last_live_seq[i] {
                assert!(
                    record.seq.0 > prev,
                    "seq {} after {prev} on {terminal}",
                    record.seq.0
                );
            }
            self.last_live_seq[i] = Some(record.seq.0);
        }
        let watched = self.watch[i];
        if watched {
            self.arrivals
                .entry(terminal.clone())
                .or_default()
                .push((arrival_ms, record.time_unix_ms));
        }
        if let RecordBody::SpoolDrops(d) = &record.body {
            assert!(
                d.heartbeats + d.net_quality > 0 && d.txn_outcomes == 0,
                "{d:?}"
            );
            self.spool_drops += 1;
        }
        if let RecordBody::TxnOutcome(t) = &record.body {
            let c = classify(t.scheme, &t.code);
            assert!(c.known, "unknown code {:?} {}", t.scheme, t.code);
            self.txns.push(Txn {
                arrival_ms,
                time_ms: record.time_unix_ms,
                terminal: terminal.clone(),
                class: c.class,
                approved: c.approved,
                code: t.code.clone(),
                method: t.method,
                route: t
                    .route
                    .as_ref()
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
            });
        }
    }

    fn merchant_call(&mut self, now_ms: i64, call: &MerchantCall) {
        self.tick(now_ms);
        self.calls.push(call.clone());
    }

    fn announcement(&mut self, now_ms: i64, a: &Announcement) {
        self.tick(now_ms);
        self.announcements.push((now_ms, a.clone()));
    }
}

fn check_watching(s: &Scenario, watch: &[&str]) -> Checker {
    let mut c = Checker::new(s, watch);
    let stats = run(s, &mut c);
    assert_eq!(stats.records, c.records);
    assert_eq!(stats.calls, c.calls);
    // Conservation: seqs start at 0 and never skip, so when nothing is left in a spool every
    // terminal delivered seq 0..=max exactly once.
    if stats.undelivered == 0 {
        let expected: u64 = c.max_seq.iter().map(|m| m + 1).sum();
        assert_eq!(
            stats.records, expected,
            "a record was lost or delivered twice"
        );
    }
    assert_eq!(
        stats.shed > 0,
        c.spool_drops > 0,
        "shedding must be reported"
    );
    for (n, m) in c.delivered.iter().zip(&c.max_seq) {
        assert!(*n <= m + 1, "duplicate delivery");
    }
    c
}

fn check(s: &Scenario) -> Checker {
    check_watching(s, &[])
}

fn log_digest(s: &Scenario) -> (u64, u64) {
    let mut log = EventLog::new(Fnv64::default());
    run(s, &mut log);
    let h = log.finish().expect("hashing cannot fail");
    (h.hash, h.bytes)
}

#[test]
fn library_has_every_fault_kind_and_enough_files() {
    let files = library();
    assert!(files.len() >= 15, "only {} scenario files", files.len());
    let mut kinds = Vec::new();
    let mut sizes = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        assert!(
            text.starts_with("# "),
            "{} must open with a header comment",
            f.display()
        );
        let s = Scenario::parse(&f.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
        kinds.extend(s.faults.iter().map(|f| f.kind));
        sizes.push(s.fleet.terminals.len());
        // The ground truth names one incident per fault, with the fault's kind, scope and window.
        for fault in &s.faults {
            let Some(kind) = fault.kind.incident_kind() else {
                continue;
            };
            assert!(
                s.incidents.iter().any(|i| i.kind == kind
                    && i.scope == fault.scope
                    && i.start_ms == fault.start_ms
                    && i.end_ms == fault.end_ms),
                "{}: no incident for the {} fault on {}",
                f.display(),
                fault.kind,
                fault.scope
            );
        }
        assert!(
            s.incidents.len() <= s.faults.len(),
            "{}: incident without fault",
            f.display()
        );
    }
    for k in FaultKind::ALL {
        assert!(kinds.contains(&k), "no scenario injects {k}");
    }
    assert!(sizes.iter().any(|&n| n <= 200) && sizes.iter().any(|&n| n >= 10_000));
    let _ = IncidentKind::ALL;
}

/// Runs every file, the 10,000-terminal day included (the dev profile optimises this crate).
#[test]
fn every_scenario_runs_with_a_sound_stream_first_half() {
    run_library(0);
}

#[test]
fn every_scenario_runs_with_a_sound_stream_second_half() {
    run_library(1);
}

fn run_library(half: usize) {
    for f in library().into_iter().skip(half).step_by(2) {
        let s = Scenario::from_file(&f).unwrap_or_else(|e| panic!("{e}"));
        let c = check(&s);
        assert!(
            c.txns.len() > s.fleet.terminals.len(),
            "{}: too few payments",
            s.name
        );
        // Every terminal connected at least once.
        assert_eq!(c.hellos.len(), s.fleet.terminals.len(), "{}", s.name);
        if s.name == "regional_outage" {
            assert!(
                c.spool_drops > 100,
                "small spools must shed: {}",
                c.spool_drops
            );
        }
        let first = s.first_calls(&c.calls);
        for (i, inc) in s.incidents.iter().enumerate() {
            if let Some(t) = first[i] {
                assert!(t >= inc.start_ms, "{}: call before the incident", s.name);
            }
        }
        // Calls nobody can explain are rare (merchants call about base-rate noise rarely).
        let stray = c
            .calls
            .iter()
            .filter(|c| s.incidents_of_call(c).is_empty())
            .count();
        assert!(stray <= 3, "{}: {stray} calls outside incidents", s.name);
    }
}

#[test]
fn same_seed_same_log_other_seed_other_log() {
    let s = load("small_fleet_noisy_shops");
    let a = log_digest(&s);
    let b = log_digest(&s);
    assert_eq!(a, b, "two runs of one seed differ");
    assert!(a.1 > 1_000_000, "log suspiciously short: {} bytes", a.1);
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/small_fleet_noisy_shops.toml"),
    )
    .expect("readable")
    .replace("seed = 1016", "seed = 1017");
    let other = Scenario::parse("reseeded", &text).expect("parses");
    assert_ne!(
        log_digest(&other).0,
        a.0,
        "a different seed gave the same log"
    );
}

#[test]
fn event_log_is_one_line_per_event() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/terminal_fault.toml"),
    )
    .expect("readable")
    .replace("terminals = 1500", "terminals = 60")
    .replace("chains = 8", "chains = 3")
    .replace("duration = \"24h\"", "duration = \"2h\"");
    let text = text.split("[[fault]]").next().expect("head").to_string();
    let s = Scenario::parse("tiny", &text).expect("parses");
    let mut log = EventLog::new(Vec::new());
    let stats = run(&s, &mut log);
    let bytes = log.finish().expect("vec writes");
    let out = String::from_utf8(bytes).expect("utf-8");
    assert_eq!(out.lines().count() as u64, stats.events);
    let first = out.lines().next().expect("a line");
    assert!(
        first.contains(" hello ") || first.contains(" rec "),
        "{first}"
    );
    assert!(out.lines().any(|l| l.contains(" txn ")));
    assert!(out.lines().any(|l| l.contains(" hb cpu=")));
    assert!(out.lines().any(|l| l.contains(" net rtt=")));
    let _ = std::io::sink().write_all(first.as_bytes());
}

#[test]
fn merchant_config_hits_only_that_merchant_and_merchants_call_after_onset() {
    let s = load("merchant_config");
    let c = check(&s);
    let f = &s.faults[0];
    let mut hits: BTreeMap<bool, usize> = BTreeMap::new();
    for t in c
        .txns
        .iter()
        .filter(|t| t.class == ErrorClass::MerchantConfig)
    {
        let ours = t.terminal.as_str().starts_with("M0003-");
        assert!(ours, "merchant_config code {} on {}", t.code, t.terminal);
        assert!(
            t.time_ms >= f.start_ms && t.time_ms < f.end_ms,
            "outside the window"
        );
        *hits.entry(ours).or_default() += 1;
    }
    assert!(hits.get(&true).copied().unwrap_or(0) > 100, "{hits:?}");
    // Most of the merchant's payments in the window failed.
    let ours_in_window: Vec<&Txn> = c
        .txns
        .iter()
        .filter(|t| {
            t.terminal.as_str().starts_with("M0003-")
                && t.time_ms >= f.start_ms
                && t.time_ms < f.end_ms
        })
        .collect();
    let failed = ours_in_window
        .iter()
        .filter(|t| t.class == ErrorClass::MerchantConfig)
        .count();
    assert!(
        failed * 10 > ours_in_window.len() * 8,
        "{failed}/{}",
        ours_in_window.len()
    );
    // The merchant calls, and only after the fault began.
    let ours: Vec<&MerchantCall> = c
        .calls
        .iter()
        .filter(|c| c.merchant.as_str() == "M0003")
        .collect();
    assert!(!ours.is_empty(), "merchant never called");
    assert!(ours.iter().all(|c| c.time_ms >= f.start_ms));
    let deadline = s.first_calls(&c.calls)[0].expect("a first call");
    assert!(
        deadline - f.start_ms < 30 * 60_000,
        "first call after {} min",
        (deadline - f.start_ms) / 60_000
    );
}

#[test]
fn control_day_is_quiet() {
    let s = load("control_day");
    assert!(s.faults.is_empty() && s.incidents.is_empty());
    let c = check(&s);
    assert!(
        c.calls.len() <= 2,
        "{} calls on a control day",
        c.calls.len()
    );
    let n = c.txns.len() as f64;
    let declines = c
        .txns
        .iter()
        .filter(|t| t.class == ErrorClass::Cardholder)
        .count() as f64;
    assert!(
        (0.01..0.06).contains(&(declines / n)),
        "cardholder decline rate {}",
        declines / n
    );
    let alertable = c
        .txns
        .iter()
        .filter(|t| {
            !t.approved && !matches!(t.class, ErrorClass::Cardholder | ErrorClass::FraudRisk)
        })
        .count() as f64;
    assert!(
        alertable / n < 0.005,
        "alertable failure rate {}",
        alertable / n
    );
    // Traffic follows the day: far more payments at noon than at 4 am.
    let hour = |h: i64| {
        c.txns
            .iter()
            .filter(|t| (t.time_ms - s.start_ms) / 3_600_000 == h)
            .count()
    };
    assert!(
        hour(12) > 10 * hour(4),
        "noon {} vs 4am {}",
        hour(12),
        hour(4)
    );
    let qr = c.txns.iter().filter(|t| t.method == PayMethod::Qr).count() as f64;
    assert!((0.5..0.8).contains(&(qr / n)), "qr share {}", qr / n);
}

#[test]
fn decline_surge_is_many_51s_and_no_calls() {
    let s = load("decline_surge");
    assert!(s.incidents.is_empty());
    let c = check(&s);
    let f = &s.faults[0];
    let in_window = |t: &&Txn| t.time_ms >= f.start_ms && t.time_ms < f.end_ms;
    let nsf = |t: &&Txn| {
        matches!(
            t.code.as_str(),
            "51" | "NOTENOUGH"
                | "ACQ.BUYER_BALANCE_NOT_ENOUGH"
                | "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH"
        )
    };
    let w: Vec<&Txn> = c.txns.iter().filter(in_window).collect();
    let share = w.iter().filter(|t| nsf(t)).count() as f64 / w.len() as f64;
    assert!(share > 0.2, "insufficient-funds share {share}");
    assert!(
        c.calls.is_empty(),
        "{} calls about customers' declines",
        c.calls.len()
    );
}

#[test]
fn store_offline_is_silence_then_backlog() {
    let s = load("store_offline");
    let watch: Vec<&str> = s
        .fleet
        .stores
        .iter()
        .find(|st| st.id.as_str() == "M0040-S001")
        .expect("store")
        .terminals
        .iter()
        .map(|&i| s.fleet.terminals[i].identity.terminal_id.as_str())
        .collect();
    let c = check_watching(&s, &watch);
    let f = &s.faults[0];
    let store_terms: Vec<&TerminalId> = s
        .fleet
        .stores
        .iter()
        .find(|st| st.id.as_str() == "M0040-S001")
        .expect("store")
        .terminals
        .iter()
        .map(|&i| &s.fleet.terminals[i].identity.terminal_id)
        .collect();
    for t in &store_terms {
        let arr = &c.arrivals[*t];
        assert!(
            arr.iter().all(|(a, _)| *a < f.start_ms || *a >= f.end_ms),
            "{t} delivered during the outage"
        );
        let late = arr
            .iter()
            .filter(|(a, obs)| *a >= f.end_ms && *obs >= f.start_ms && *obs < f.end_ms)
            .count();
        assert!(late >= 100, "{t}: only {late} backlog records");
        assert!(
            c.hellos[*t]
                .iter()
                .any(|&h| h >= f.end_ms && h <= f.end_ms + 61_000),
            "{t}: no reconnect"
        );
    }
    // Payments attempted during the outage arrive late, as network timeouts.
    let late_txns: Vec<&Txn> = c
        .txns
        .iter()
        .filter(|t| {
            store_terms.contains(&&t.terminal) && t.time_ms >= f.start_ms && t.time_ms < f.end_ms
        })
        .collect();
    assert!(!late_txns.is_empty());
    // (WeChat Pay and Alipay report a timeout as SYSTEMERROR / 20000, platform class.)
    assert!(late_txns.iter().all(|t| t.arrival_ms >= f.end_ms
        && matches!(t.class, ErrorClass::Network | ErrorClass::Platform)));
}

#[test]
fn terminal_faults_stay_on_their_terminal() {
    let s = load("terminal_fault");
    let c = check_watching(&s, &["M0003-S001-T2", "M0003-S001-T1"]);
    let (loud, dead) = (&s.faults[0], &s.faults[1]);
    for t in c
        .txns
        .iter()
        .filter(|t| t.class == ErrorClass::TerminalFault)
    {
        assert_eq!(t.terminal.as_str(), "M0001-S002-T1");
        assert!(t.time_ms >= loud.start_ms && t.time_ms < loud.end_ms);
    }
    let dead_id = TerminalId::new("M0003-S001-T2").expect("id");
    assert!(
        c.arrivals[&dead_id]
            .iter()
            .all(|(a, _)| *a < dead.start_ms || *a >= dead.end_ms)
    );
    assert!(
        c.hellos[&dead_id].iter().any(|&h| h >= dead.end_ms),
        "dead terminal never came back"
    );
    // Its neighbour keeps working.
    let neighbour = TerminalId::new("M0003-S001-T1").expect("id");
    assert!(
        c.arrivals[&neighbour]
            .iter()
            .any(|(a, _)| *a >= dead.start_ms && *a < dead.end_ms)
    );
}

#[test]
fn acquirer_outage_fails_only_its_card_payments() {
    let s = load("acquirer_outage");
    let c = check(&s);
    let f = &s.faults[0];
    let mut ours = 0;
    // Card payments: platform and issuer codes only on ACQ-B in the window. (QR payments see
    // the base rate of SYSTEMERROR / 20000 timeouts everywhere.)
    let card = |t: &&Txn| t.method == PayMethod::Card;
    for t in c
        .txns
        .iter()
        .filter(card)
        .filter(|t| matches!(t.class, ErrorClass::Platform | ErrorClass::Issuer))
    {
        assert_eq!(t.route, "ACQ-B");
        assert!(t.time_ms >= f.start_ms && t.time_ms < f.end_ms);
        ours += 1;
    }
    assert!(ours > 200, "only {ours} platform/issuer failures");
    let merchants: std::collections::BTreeSet<&str> =
        c.calls.iter().map(|c| c.merchant.as_str()).collect();
    assert!(
        merchants.len() > 5,
        "only {} merchants called",
        merchants.len()
    );
}

#[test]
fn firmware_regression_follows_the_version() {
    let s = load("firmware_regression");
    let c = check(&s);
    let fw: HashMap<&str, &str> = s
        .fleet
        .terminals
        .iter()
        .map(|t| {
            (
                t.identity.terminal_id.as_str(),
                t.identity.firmware.as_str(),
            )
        })
        .collect();
    let bad: Vec<&Txn> = c
        .txns
        .iter()
        .filter(|t| t.class == ErrorClass::TerminalFault)
        .collect();
    assert!(bad.len() > 1000);
    assert!(bad.iter().all(|t| fw[t.terminal.as_str()] == "2.4.0"));
    let merchants: std::collections::BTreeSet<&str> =
        bad.iter().map(|t| &t.terminal.as_str()[..5]).collect();
    assert!(
        merchants.len() > 50,
        "regression on {} merchants only",
        merchants.len()
    );
}

#[test]
fn maintenance_is_announced_before_it_starts() {
    let s = load("acquirer_maintenance");
    let c = check(&s);
    let f = &s.faults[0];
    assert_eq!(c.announcements.len(), 1);
    let (at, a) = &c.announcements[0];
    assert!(*at < f.start_ms);
    assert_eq!((a.start_ms, a.end_ms), (f.start_ms, f.end_ms));
    assert_eq!(a.scope.to_string(), "acquirer=ACQ-A");
    assert!(c.txns.iter().any(|t| t.code == "90" && t.route == "ACQ-A"));
}

#[test]
fn qr_notification_delay_leaves_qr_payments_open() {
    let s = load("qr_notification_delay");
    let c = check(&s);
    let open: Vec<&Txn> = c
        .txns
        .iter()
        .filter(|t| t.class == ErrorClass::Settlement)
        .collect();
    assert!(open.len() > 500);
    assert!(
        open.iter()
            .all(|t| t.method == PayMethod::Qr && t.route == "QR-B")
    );
}

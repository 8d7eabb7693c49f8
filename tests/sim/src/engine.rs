//! The virtual-time engine: steps every terminal of a [`Scenario`] through the day and hands a
//! time-ordered stream of events to a [`Sink`].
//!
//! One binary heap holds, per terminal, the next instant of each of its streams (link change,
//! reconnect, backlog flush, heartbeat, network sample, payment). Keys are packed into a `u64`
//! (time, stream, terminal) so ties break the same way on every run; all randomness comes from
//! one [`SmallRng`] seeded by the scenario, drawn in event order. Same seed, same stream.
//!
//! Delivery is modelled directly (not through agent-core's `Uplink`/`MemSpool`, which encode
//! every record to size it: too slow for 18 M records): while a terminal's link is down its
//! records queue in a bounded spool (telemetry past the bound is shed and reported in a
//! `SpoolDrops` record); when the link returns the agent reconnects after a random delay,
//! sends `Hello`, sends new records live and replays the backlog at `backlog_records_per_sec`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use storepulse_agent_core::{DropCounts, RecordKind};
use storepulse_shared::{
    EndpointProbe, Heartbeat, Identity, Label, LabelKey, NetQuality, PayMethod, ProbeError, Record,
    RecordBody, Scheme, Seq, TerminalId, TxnOutcome,
};

use crate::calls::{self, CallReason, MerchantCall, StoreCalls, TermCalls};
use crate::codes::{Effect, pick, scheme_index};
use crate::fleet::unit_hash;
use crate::scenario::{Fault, FaultKind, Scenario, Scope};
use crate::time::{HOUR_MS, next_hour_boundary};
use crate::traffic::Traffic;

/// Consumer of the simulated event stream.
///
/// Calls arrive in non-decreasing time order (the first argument). Within one millisecond the
/// order is fixed: link changes, reconnects (`hello`, then the first backlog batch), backlog
/// batches, heartbeats, network samples, payments (`observed`, then `record`, then any
/// `merchant_call`). A terminal's `hello` always precedes the records delivered on that
/// connection. Only [`Sink::record`] is required; the others default to doing nothing.
pub trait Sink {
    /// A terminal's agent connected (first connect, and every reconnect after an outage).
    fn hello(&mut self, now_ms: i64, identity: &Identity, spool_epoch: u64) {
        let _ = (now_ms, identity, spool_epoch);
    }

    /// A record reached the collector at `arrival_ms`. `record.time_unix_ms` is when the agent
    /// observed it: equal to `arrival_ms` for live records, earlier for backlog.
    fn record(&mut self, arrival_ms: i64, terminal: &TerminalId, spool_epoch: u64, record: &Record);

    /// A merchant called support.
    fn merchant_call(&mut self, now_ms: i64, call: &MerchantCall) {
        let _ = (now_ms, call);
    }

    /// An announcement was published (planned maintenance).
    fn announcement(&mut self, now_ms: i64, announcement: &Announcement) {
        let _ = (now_ms, announcement);
    }

    /// For live replay: a terminal observed something (payment outcome, heartbeat, network
    /// sample), whether or not its link is up. This is the per-terminal schedule a wall-clock
    /// engine feeds to real agents.
    fn observed(&mut self, now_ms: i64, terminal: &TerminalId, body: &RecordBody) {
        let _ = (now_ms, terminal, body);
    }

    /// For live replay: a terminal's network link went down (`up == false`) or came back.
    fn link_changed(&mut self, now_ms: i64, terminal: &TerminalId, up: bool) {
        let _ = (now_ms, terminal, up);
    }
}

/// A published notice of planned maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// When it was announced, Unix ms (may be before the scenario start; then it is delivered
    /// at the start).
    pub announced_at_ms: i64,
    /// What is announced (always `acquirer_maintenance` today).
    pub kind: FaultKind,
    /// Which acquirer / channel.
    pub scope: Scope,
    /// Window start, Unix ms.
    pub start_ms: i64,
    /// Window end, Unix ms.
    pub end_ms: i64,
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Every sink call except `observed` and `link_changed`.
    pub events: u64,
    /// `hello` calls.
    pub hellos: u64,
    /// Records delivered.
    pub records: u64,
    /// Of which heartbeats.
    pub heartbeats: u64,
    /// Of which network samples.
    pub net_quality: u64,
    /// Of which payment outcomes.
    pub txns: u64,
    /// Of which `SpoolDrops`.
    pub spool_drops: u64,
    /// Records delivered late (backlog).
    pub backlog_records: u64,
    /// Telemetry records shed because a spool was full.
    pub shed: u64,
    /// Records still in spools when the scenario ended.
    pub undelivered: u64,
    /// Payment attempts merchants saw fail (including ones no record reports).
    pub merchant_failures: u64,
    /// Every merchant call, in time order.
    pub calls: Vec<MerchantCall>,
}

/// Streams of a terminal, in tie-break order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum Stream {
    Link = 0,
    Reconnect = 1,
    Flush = 2,
    Heartbeat = 3,
    NetQuality = 4,
    Txn = 5,
}

/// How a fault touches one terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The terminal loses its link or dies for the fault's window.
    Down,
    /// The terminal is affected in place (codes, latency, loss).
    InPlace,
}

#[derive(Debug)]
struct Term {
    epoch: u64,
    next_seq: u64,
    connected: bool,
    phys_down: bool,
    down: Vec<(i64, i64)>,
    link_idx: usize,
    backlog: VecDeque<Record>,
    drops: DropCounts,
    faults: Vec<(u16, Role)>,
    boot_ms: i64,
    txn_real: bool,
    calls: TermCalls,
}

struct Engine<'a, S: Sink> {
    sc: &'a Scenario,
    sink: &'a mut S,
    rng: SmallRng,
    heap: BinaryHeap<Reverse<u64>>,
    terms: Vec<Term>,
    stores: Vec<StoreCalls>,
    traffic: Traffic,
    stats: RunStats,
    end_ms: i64,
}

/// A payment's fate: the effect, whether the merchant blames it on the fleet (rather than
/// the customer), and the fault's own code list (empty: the effect's built-in codes).
type Outcome<'a> = (Effect, bool, &'a [(Scheme, String)]);

/// Relative-time bits in a heap key (covers 2^35 ms, about a year).
const TIME_SHIFT: u32 = 28;
const STREAM_SHIFT: u32 = 24;
const TERM_MASK: u64 = (1 << STREAM_SHIFT) - 1;

/// Base rates per payment attempt.
const BASE_NETWORK_ERROR: f64 = 0.002;
const BASE_DECLINE_CARD: f64 = 0.035;
const BASE_DECLINE_QR: f64 = 0.02;
const BASE_FRAUD: f64 = 0.002;

/// Runs `scenario` to its end, feeding `sink`. Deterministic for the scenario's seed.
pub fn run<S: Sink>(scenario: &Scenario, sink: &mut S) -> RunStats {
    let mut e = Engine::new(scenario, sink);
    e.run();
    e.stats
}

impl<'a, S: Sink> Engine<'a, S> {
    fn new(sc: &'a Scenario, sink: &'a mut S) -> Self {
        let fleet = &sc.fleet;
        let mut rng = SmallRng::seed_from_u64(sc.seed ^ 0x51_4D_E0_00);
        let end_ms = sc.end_ms();
        let mut terms: Vec<Term> = fleet
            .terminals
            .iter()
            .map(|_| Term {
                epoch: rng.random(),
                next_seq: 0,
                connected: false,
                phys_down: false,
                down: Vec::new(),
                link_idx: 0,
                backlog: VecDeque::new(),
                drops: DropCounts::default(),
                faults: Vec::new(),
                boot_ms: sc.start_ms - rng.random_range(HOUR_MS..30 * 24 * HOUR_MS),
                txn_real: true,
                calls: TermCalls::default(),
            })
            .collect();
        for (fi, f) in sc.faults.iter().enumerate() {
            // Fault count is bounded by the file; u16 holds any realistic scenario.
            let fi16 = u16::try_from(fi).unwrap_or(u16::MAX);
            for &ti in &f.terminals {
                let store = fleet.terminals[ti].store as u64;
                let role = match f.kind {
                    FaultKind::StoreOffline => Some(Role::Down),
                    FaultKind::RegionalOutage => {
                        (unit_hash(sc.seed, fi as u64, store) < f.intensity).then_some(Role::Down)
                    }
                    FaultKind::CarrierOutage => {
                        Some(if unit_hash(sc.seed, fi as u64, ti as u64) < f.intensity {
                            Role::Down
                        } else {
                            Role::InPlace
                        })
                    }
                    FaultKind::TerminalFault if f.silent => Some(Role::Down),
                    _ => Some(Role::InPlace),
                };
                let Some(role) = role else { continue };
                terms[ti].faults.push((fi16, role));
                if role == Role::Down {
                    terms[ti]
                        .down
                        .push((f.start_ms.max(sc.start_ms), f.end_ms.min(end_ms)));
                }
            }
        }
        let mut e = Engine {
            sc,
            sink,
            rng,
            heap: BinaryHeap::with_capacity(fleet.terminals.len() * 6),
            terms,
            stores: vec![StoreCalls::default(); fleet.stores.len()],
            traffic: Traffic::new(
                &sc.traffic,
                sc.seed,
                sc.start_ms,
                end_ms,
                sc.utc_offset_secs,
            ),
            stats: RunStats::default(),
            end_ms,
        };
        let nq_ms = i64::from(sc.net_quality_interval_secs) * 1000;
        for ti in 0..e.terms.len() {
            let hb_ms = i64::from(fleet.terminals[ti].heartbeat_interval_secs) * 1000;
            let t = &mut e.terms[ti];
            t.down.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::with_capacity(t.down.len());
            for &(a, b) in &t.down {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            t.down = merged;
            if let Some(&(a, _)) = t.down.first() {
                e.push(a, Stream::Link, ti);
            }
            // The agent starts up somewhere in the first minute; its streams have random phases.
            let connect = sc.start_ms + e.rng.random_range(0..hb_ms.min(60_000));
            e.push(connect, Stream::Reconnect, ti);
            let hb = sc.start_ms + e.rng.random_range(0..hb_ms);
            e.push(hb, Stream::Heartbeat, ti);
            let nq = sc.start_ms + e.rng.random_range(0..nq_ms);
            e.push(nq, Stream::NetQuality, ti);
            e.schedule_txn(ti, sc.start_ms);
        }
        e
    }

    fn push(&mut self, at_ms: i64, stream: Stream, term: usize) {
        if at_ms >= self.end_ms {
            return;
        }
        // at_ms >= start_ms for every push, so the difference is non-negative.
        let rel = (at_ms - self.sc.start_ms) as u64;
        self.heap.push(Reverse(
            rel << TIME_SHIFT | (stream as u64) << STREAM_SHIFT | term as u64,
        ));
    }

    fn run(&mut self) {
        let mut announcements: Vec<Announcement> = self
            .sc
            .faults
            .iter()
            .filter_map(|f| {
                f.announced_at_ms.map(|a| Announcement {
                    announced_at_ms: a,
                    kind: f.kind,
                    scope: f.scope.clone(),
                    start_ms: f.start_ms,
                    end_ms: f.end_ms,
                })
            })
            .collect();
        announcements.sort_by_key(|a| a.announced_at_ms);
        let mut next_ann = 0;
        while let Some(Reverse(key)) = self.heap.pop() {
            let t = self.sc.start_ms + (key >> TIME_SHIFT) as i64;
            while next_ann < announcements.len()
                && announcements[next_ann]
                    .announced_at_ms
                    .max(self.sc.start_ms)
                    <= t
            {
                let a = &announcements[next_ann];
                self.sink
                    .announcement(a.announced_at_ms.max(self.sc.start_ms), a);
                self.stats.events += 1;
                next_ann += 1;
            }
            let ti = (key & TERM_MASK) as usize;
            match (key >> STREAM_SHIFT) & 0xF {
                0 => self.on_link(t, ti),
                1 => self.on_reconnect(t, ti),
                2 => self.on_flush(t, ti),
                3 => self.on_heartbeat(t, ti),
                4 => self.on_net_quality(t, ti),
                _ => self.on_txn(t, ti),
            }
        }
        self.stats.undelivered = self.terms.iter().map(|t| t.backlog.len() as u64).sum();
    }

    /// Appends a record to the terminal's spool and delivers it at once if connected.
    fn emit(&mut self, t: i64, ti: usize, body: RecordBody) {
        let term = &mut self.terms[ti];
        let id = &self.sc.fleet.terminals[ti].identity.terminal_id;
        self.sink.observed(t, id, &body);
        let kind = RecordKind::of(&body);
        if !term.connected
            && kind.is_telemetry()
            && term.backlog.len() >= self.sc.delivery.spool_max_records as usize
        {
            term.drops.count(kind);
            self.stats.shed += 1;
            return;
        }
        let record = Record {
            seq: Seq(term.next_seq),
            time_unix_ms: t,
            body,
        };
        term.next_seq += 1;
        if term.connected {
            let epoch = term.epoch;
            self.deliver(t, ti, epoch, &record);
        } else {
            term.backlog.push_back(record);
        }
    }

    fn deliver(&mut self, t: i64, ti: usize, epoch: u64, record: &Record) {
        let id = &self.sc.fleet.terminals[ti].identity.terminal_id;
        self.sink.record(t, id, epoch, record);
        let s = &mut self.stats;
        s.events += 1;
        s.records += 1;
        if record.time_unix_ms < t {
            s.backlog_records += 1;
        }
        match record.body {
            RecordBody::Heartbeat(_) => s.heartbeats += 1,
            RecordBody::NetQuality(_) => s.net_quality += 1,
            RecordBody::TxnOutcome(_) => s.txns += 1,
            RecordBody::SpoolDrops(_) => s.spool_drops += 1,
        }
    }

    fn on_link(&mut self, t: i64, ti: usize) {
        let id = &self.sc.fleet.terminals[ti].identity.terminal_id;
        let term = &mut self.terms[ti];
        let Some(&(a, b)) = term.down.get(term.link_idx) else {
            return;
        };
        if !term.phys_down {
            term.phys_down = true;
            term.connected = false;
            self.sink.link_changed(t, id, false);
            self.push(b, Stream::Link, ti);
        } else {
            term.phys_down = false;
            term.link_idx += 1;
            // A silent terminal fault is a dead device: it reboots when it comes back.
            let rebooted = self.dead(ti, a);
            let term = &mut self.terms[ti];
            if rebooted {
                term.boot_ms = t;
            }
            let next = term.down.get(term.link_idx).map(|d| d.0);
            self.sink.link_changed(t, id, true);
            let max = i64::from(self.sc.delivery.reconnect_max_secs) * 1000;
            let delay = self.rng.random_range(0..=max);
            self.push(t + delay, Stream::Reconnect, ti);
            if let Some(n) = next {
                self.push(n, Stream::Link, ti);
            }
        }
    }

    fn on_reconnect(&mut self, t: i64, ti: usize) {
        let term = &mut self.terms[ti];
        if term.phys_down || term.connected {
            return;
        }
        term.connected = true;
        let epoch = term.epoch;
        self.sink
            .hello(t, &self.sc.fleet.terminals[ti].identity, epoch);
        self.stats.hellos += 1;
        self.stats.events += 1;
        let drops = std::mem::take(&mut self.terms[ti].drops);
        if !drops.is_zero() {
            self.emit(t, ti, drops.to_body());
        }
        self.on_flush(t, ti);
    }

    fn on_flush(&mut self, t: i64, ti: usize) {
        if !self.terms[ti].connected {
            return;
        }
        let epoch = self.terms[ti].epoch;
        for _ in 0..self.sc.delivery.backlog_records_per_sec {
            let Some(r) = self.terms[ti].backlog.pop_front() else {
                break;
            };
            self.deliver(t, ti, epoch, &r);
        }
        if !self.terms[ti].backlog.is_empty() {
            self.push(t + 1000, Stream::Flush, ti);
        }
    }

    /// Whether a silent terminal fault has the terminal dead at `t`.
    fn dead(&self, ti: usize, t: i64) -> bool {
        self.terms[ti].faults.iter().any(|&(fi, role)| {
            let f = &self.sc.faults[fi as usize];
            role == Role::Down
                && f.kind == FaultKind::TerminalFault
                && f.start_ms <= t
                && t < f.end_ms
        })
    }

    fn active(&self, ti: usize, t: i64) -> impl Iterator<Item = (&'a Fault, Role)> + '_ {
        let faults = &self.sc.faults;
        self.terms[ti].faults.iter().filter_map(move |&(fi, role)| {
            let f = &faults[fi as usize];
            (f.start_ms <= t && t < f.end_ms).then_some((f, role))
        })
    }

    /// Network degradation 0-1 at `t` (store network, carrier trouble).
    fn degradation(&self, ti: usize, t: i64) -> f64 {
        self.active(ti, t)
            .map(|(f, role)| match (f.kind, role) {
                (FaultKind::StoreNetwork, _) => f.intensity,
                (FaultKind::CarrierOutage, Role::InPlace) => 0.6 * f.intensity,
                _ => 0.0,
            })
            .fold(0.0, f64::max)
    }

    fn on_heartbeat(&mut self, t: i64, ti: usize) {
        self.push(
            t + i64::from(self.sc.fleet.terminals[ti].heartbeat_interval_secs) * 1000,
            Stream::Heartbeat,
            ti,
        );
        if self.dead(ti, t) {
            return;
        }
        let hw_fault = self
            .active(ti, t)
            .any(|(f, _)| f.kind == FaultKind::TerminalFault);
        let term_info = &self.sc.fleet.terminals[ti];
        let term = &self.terms[ti];
        let uptime_secs = ((t - term.boot_ms) / 1000).max(0) as u64;
        let spool_records = term.backlog.len() as u64;
        let r = &mut self.rng;
        let (u1, u2, u3): (f32, f32, f32) = (r.random(), r.random(), r.random());
        let hb = Heartbeat {
            cpu_percent: 6.0 + 14.0 * u1 + if hw_fault { 55.0 } else { 0.0 },
            mem_used_bytes: (term_info.mem_total_bytes as f64 * (0.45 + 0.1 * f64::from(u2)))
                as u64,
            mem_total_bytes: term_info.mem_total_bytes,
            disk_free_bytes: 3_000_000_000 - (spool_records * 300).min(1_000_000_000),
            uptime_secs,
            temperature_c: Some(37.0 + 4.0 * u3 + if hw_fault { 22.0 } else { 0.0 }),
            battery_percent: term_info
                .battery
                .then(|| 100.0 - ((uptime_secs / 60) % 600) as f32 / 7.5),
            spool_records,
        };
        self.emit(t, ti, RecordBody::Heartbeat(hb));
    }

    fn on_net_quality(&mut self, t: i64, ti: usize) {
        self.push(
            t + i64::from(self.sc.net_quality_interval_secs) * 1000,
            Stream::NetQuality,
            ti,
        );
        if self.dead(ti, t) {
            return;
        }
        let id = &self.sc.fleet.terminals[ti].identity;
        let body = if self.terms[ti].phys_down {
            let probe = |name: &Label| EndpointProbe {
                name: name.as_str().to_string(),
                dns_ms: None,
                tcp_connect_ms: None,
                error: Some(ProbeError::Timeout),
            };
            NetQuality {
                rtt_ms: None,
                jitter_ms: None,
                loss_percent: Some(100.0),
                endpoints: vec![probe(&id.acquirer), probe(&id.qr_channel)],
            }
        } else {
            let degr = self.degradation(ti, t) as f32;
            let (mut card_down, mut qr_down) = (false, false);
            for (f, _) in self.active(ti, t) {
                if matches!(
                    f.kind,
                    FaultKind::AcquirerOutage | FaultKind::AcquirerMaintenance
                ) {
                    card_down |= f.scope.value(LabelKey::Acquirer).is_some();
                    qr_down |= f.scope.value(LabelKey::QrChannel).is_some();
                }
            }
            let base = self.sc.fleet.terminals[ti].base_rtt_ms;
            let r = &mut self.rng;
            let rtt = base * (1.0 + 9.0 * degr) * (0.8 + 0.4 * r.random::<f32>());
            let jitter = rtt * (0.05 + 0.2 * r.random::<f32>()) * (1.0 + 3.0 * degr);
            let loss = 0.3 * r.random::<f32>() + 25.0 * degr * (0.7 + 0.6 * r.random::<f32>());
            let mut probe = |name: &Label, down: bool| EndpointProbe {
                name: name.as_str().to_string(),
                dns_ms: Some(3.0 + 15.0 * r.random::<f32>()),
                tcp_connect_ms: (!down).then(|| rtt * (1.0 + 0.4 * r.random::<f32>()) + 5.0),
                error: down.then_some(ProbeError::Timeout),
            };
            let endpoints = vec![
                probe(&id.acquirer, card_down),
                probe(&id.qr_channel, qr_down),
            ];
            NetQuality {
                rtt_ms: Some(rtt),
                jitter_ms: Some(jitter),
                loss_percent: Some(loss.min(100.0)),
                endpoints,
            }
        };
        self.emit(t, ti, RecordBody::NetQuality(body));
    }

    /// Payments per millisecond at `t`, before fault multipliers.
    fn base_rate(&self, ti: usize, t: i64) -> f64 {
        let info = &self.sc.fleet.terminals[ti];
        let profile = self.sc.fleet.merchants[info.merchant].profile;
        info.daily_txns * self.traffic.weight(profile, t) / HOUR_MS as f64
    }

    /// How faults change the number of payment attempts.
    fn volume_multiplier(&self, ti: usize, t: i64) -> f64 {
        self.active(ti, t).fold(1.0, |m, (f, role)| {
            m * match (f.kind, role) {
                // Customers still try, then many pay another way.
                (_, Role::Down) => 0.5,
                (FaultKind::StoreNetwork, _) => 1.0 - 0.4 * f.intensity,
                (FaultKind::CarrierOutage, _) => 1.0 - 0.2 * f.intensity,
                (FaultKind::DeclineSurge, _) => 1.0 + f.intensity,
                _ => 1.0,
            }
        })
    }

    fn schedule_txn(&mut self, ti: usize, t: i64) {
        let rate = self.base_rate(ti, t) * self.volume_multiplier(ti, t);
        let boundary = next_hour_boundary(t, self.sc.utc_offset_secs);
        let u: f64 = self.rng.random();
        let next = if rate > 0.0 {
            t + 1 + (-(1.0 - u).ln() / rate) as i64
        } else {
            i64::MAX
        };
        // The rate is constant within an hour; past the boundary, draw again (memoryless).
        let (at, real) = if next >= boundary {
            (boundary, false)
        } else {
            (next, true)
        };
        self.terms[ti].txn_real = real;
        self.push(at, Stream::Txn, ti);
    }

    fn on_txn(&mut self, t: i64, ti: usize) {
        let real = self.terms[ti].txn_real;
        self.schedule_txn(ti, t);
        if !real {
            return;
        }
        let sc = self.sc;
        let info = &sc.fleet.terminals[ti];
        let r = &mut self.rng;
        let method = if r.random::<f64>() < info.qr_share {
            PayMethod::Qr
        } else {
            PayMethod::Card
        };
        let scheme = match method {
            PayMethod::Card => info.card_scheme,
            PayMethod::Qr => match r.random::<f64>() {
                x if x < 0.55 => Scheme::Wechatpay,
                x if x < 0.95 => Scheme::Alipay,
                _ => Scheme::Cup,
            },
        };
        let dead = self.dead(ti, t);
        let down = self.terms[ti].phys_down;
        let mut outcome: Option<Outcome<'a>> = None;
        let mut extra_latency = 0.0;
        if down {
            outcome = Some((Effect::NetworkTimeout, true, &[]));
        } else if !dead {
            let degr = self.degradation(ti, t);
            extra_latency = degr * 3000.0;
            for &(fi, role) in &self.terms[ti].faults {
                let f = &sc.faults[fi as usize];
                if !(f.start_ms <= t && t < f.end_ms) {
                    continue;
                }
                let (effect, p) = match f.kind {
                    FaultKind::TerminalFault => (Effect::TerminalFault, f.intensity),
                    FaultKind::TerminalConfig => (Effect::TerminalConfig, f.intensity),
                    FaultKind::StoreNetwork => (Effect::NetworkTimeout, 0.5 * f.intensity),
                    FaultKind::CarrierOutage if role == Role::InPlace => {
                        (Effect::NetworkTimeout, 0.3 * f.intensity)
                    }
                    FaultKind::MerchantConfig => (Effect::MerchantConfig, f.intensity),
                    FaultKind::RoutingMissing => (Effect::RoutingMissing, f.intensity),
                    FaultKind::FirmwareRegression => (Effect::FirmwareDefect, f.intensity),
                    FaultKind::AcquirerOutage | FaultKind::AcquirerMaintenance => {
                        let applies = match method {
                            PayMethod::Card => f.scope.value(LabelKey::Acquirer).is_some(),
                            PayMethod::Qr => f.scope.value(LabelKey::QrChannel).is_some(),
                        };
                        if !applies {
                            continue;
                        }
                        let e = if f.kind == FaultKind::AcquirerOutage {
                            Effect::PlatformOutage
                        } else {
                            Effect::Maintenance
                        };
                        (e, f.intensity)
                    }
                    FaultKind::QrNotificationDelay if method == PayMethod::Qr => {
                        (Effect::NoFinalState, f.intensity)
                    }
                    FaultKind::DeclineSurge => (Effect::InsufficientFunds, f.intensity),
                    _ => continue,
                };
                if self.rng.random::<f64>() < p {
                    let counts = f.kind != FaultKind::DeclineSurge;
                    let codes: &[(Scheme, String)] = &f.codes;
                    outcome = Some((effect, counts, codes));
                    break;
                }
            }
        }
        let r = &mut self.rng;
        let (effect, fault_counts, codes) = outcome.unwrap_or_else(|| {
            let decline = if method == PayMethod::Card {
                BASE_DECLINE_CARD
            } else {
                BASE_DECLINE_QR
            };
            let x: f64 = r.random();
            let e = if x < BASE_NETWORK_ERROR {
                Effect::NetworkTimeout
            } else if x < BASE_NETWORK_ERROR + BASE_FRAUD {
                Effect::Fraud
            } else if x < BASE_NETWORK_ERROR + BASE_FRAUD + decline {
                Effect::CardholderDecline
            } else {
                Effect::Approve
            };
            (e, false, &[])
        });
        let failed_for_merchant = dead
            || match effect {
                Effect::Approve => false,
                Effect::CardholderDecline | Effect::InsufficientFunds | Effect::Fraud => {
                    fault_counts
                }
                _ => true,
            };
        if !dead {
            let u: f64 = r.random();
            let own = codes.iter().filter(|(s, _)| *s == scheme).count();
            let code = if own == 0 {
                pick(effect.table()[scheme_index(scheme)], u).to_string()
            } else {
                // Truncation picks an index in 0..own.
                let n = ((u * own as f64) as usize).min(own - 1);
                codes
                    .iter()
                    .filter(|(s, _)| *s == scheme)
                    .nth(n)
                    .map_or_else(String::new, |(_, c)| c.clone())
            };
            let base_latency = match method {
                PayMethod::Card => 600.0 + 900.0 * r.random::<f64>(),
                PayMethod::Qr => 900.0 + 1500.0 * r.random::<f64>(),
            };
            let latency = match effect {
                Effect::NetworkTimeout | Effect::PlatformOutage if r.random::<f64>() < 0.6 => {
                    30_000.0 + 30_000.0 * r.random::<f64>()
                }
                Effect::NoFinalState => 0.0,
                _ => base_latency + extra_latency,
            };
            let route = Some(match method {
                PayMethod::Card => info.identity.acquirer.clone(),
                PayMethod::Qr => info.identity.qr_channel.clone(),
            });
            let body = RecordBody::TxnOutcome(TxnOutcome {
                scheme,
                code,
                latency_ms: latency as u32,
                method,
                route,
            });
            self.emit(t, ti, body);
        }
        if failed_for_merchant {
            self.stats.merchant_failures += 1;
        }
        let store = info.store;
        let reason: Option<CallReason> = calls::observe(
            sc.call_rules_of(info.merchant),
            sc.utc_offset_secs,
            &mut self.stores[store],
            &mut self.terms[ti].calls,
            t,
            failed_for_merchant,
        );
        if let Some(reason) = reason {
            let call = MerchantCall {
                time_ms: t,
                merchant: info.identity.merchant_id.clone(),
                store: info.identity.store_id.clone(),
                terminal: info.identity.terminal_id.clone(),
                reason,
            };
            self.sink.merchant_call(t, &call);
            self.stats.events += 1;
            self.stats.calls.push(call);
        }
    }
}

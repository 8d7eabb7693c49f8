//! Hostile networks in user space: a seeded UDP impairment proxy between agents and the
//! collector, and a ledger that checks what the collector stored against what agents generated.
//!
//! Why user space: the kernel of the machines this runs on has no `sch_netem` (`tc qdisc add
//! ... netem` fails with "Specified qdisc kind is unknown", on loopback and on a veth pair in a
//! network namespace alike, and there is no module to load). [`ImpairProxy`] plays netem's part
//! on loopback instead:
//!
//! - per direction (agent → collector is [`Direction::Up`], collector → agent is
//!   [`Direction::Down`]) an independent loss probability and a delay with uniform or normal
//!   jitter; each packet draws its own delay, so packets reorder as they do under netem;
//! - a partition that drops everything both ways (also what is still queued);
//! - an address change: [`ImpairProxy::rebind`] moves every flow's upstream socket to a new local
//!   port mid-connection, so the collector sees the agent's address change as it would behind
//!   a NAT that rebinds (QUIC connection migration).
//!
//! Each agent UDP socket that talks to the proxy is one flow with its own upstream socket. The
//! fate of each packet (lost, or delayed by how much) comes from a per-direction RNG seeded
//! from the proxy's seed: the same sequence of packets meets the same fate.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storepulse_agent_core::{NewRecord, Spool as _};
use storepulse_collector::store::Store;
use storepulse_shared::{Heartbeat, Identity, Label, LinkType, RecordBody, TerminalId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::live::{LiveFleet, LiveUplink};

/// How a packet's extra delay varies around the mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterDist {
    /// Uniform in `[delay - jitter, delay + jitter]` (netem's default).
    Uniform,
    /// Normal with mean `delay` and standard deviation `jitter`, cut at zero (netem's
    /// `distribution normal`).
    Normal,
}

/// What happens to packets in one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Probability that a packet is lost, 0 to 1.
    pub loss: f64,
    /// Mean extra delay.
    pub delay: Duration,
    /// Spread of the delay.
    pub jitter: Duration,
    /// Shape of the spread.
    pub dist: JitterDist,
}

impl Impairment {
    /// A clean link: nothing lost, nothing delayed.
    pub const NONE: Self = Self {
        loss: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        dist: JitterDist::Uniform,
    };

    /// Loses each packet with probability `p`.
    pub fn loss(p: f64) -> Self {
        Self {
            loss: p,
            ..Self::NONE
        }
    }

    /// Delays each packet by `delay` ± `jitter` (uniform).
    pub fn delay(delay: Duration, jitter: Duration) -> Self {
        Self {
            delay,
            jitter,
            ..Self::NONE
        }
    }

    /// The same, also losing each packet with probability `p`.
    pub fn with_loss(self, p: f64) -> Self {
        Self { loss: p, ..self }
    }

    /// The same, with this jitter shape.
    pub fn with_dist(self, dist: JitterDist) -> Self {
        Self { dist, ..self }
    }

    /// One packet's fate: `None` if it is lost, else how long it is held back.
    pub fn decide(&self, rng: &mut impl Rng) -> Option<Duration> {
        if self.loss > 0.0 && rng.random::<f64>() < self.loss {
            return None;
        }
        let mean = self.delay.as_secs_f64();
        let spread = self.jitter.as_secs_f64();
        if spread == 0.0 {
            return Some(self.delay);
        }
        let offset = match self.dist {
            JitterDist::Uniform => rng.random_range(-spread..=spread),
            JitterDist::Normal => {
                // Box-Muller; u1 in (0, 1] keeps the logarithm finite.
                let u1 = 1.0 - rng.random::<f64>();
                let u2 = rng.random::<f64>();
                spread * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
            }
        };
        Some(Duration::from_secs_f64((mean + offset).max(0.0)))
    }
}

/// A direction through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Agent → collector.
    Up,
    /// Collector → agent.
    Down,
}

/// Packet counts of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Packets that reached the proxy.
    pub received: u64,
    /// Packets lost to the loss probability.
    pub lost: u64,
    /// Packets dropped by a partition.
    pub cut: u64,
    /// Packets passed on.
    pub delivered: u64,
}

/// What the proxy did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Agent → collector.
    pub up: DirStats,
    /// Collector → agent.
    pub down: DirStats,
    /// Flows (agent sockets) seen.
    pub flows_opened: u64,
    /// Upstream sockets replaced by [`ImpairProxy::rebind`].
    pub rebinds: u64,
}

/// One agent socket's path through the proxy.
#[derive(Debug)]
struct Flow {
    /// The proxy's socket towards the collector for this agent socket.
    socket: Arc<UdpSocket>,
    /// The task reading the collector's answers from `socket`.
    reader: JoinHandle<()>,
    /// Last packet from the agent.
    last_seen: Instant,
}

#[derive(Debug)]
struct State {
    up: Impairment,
    down: Impairment,
    partitioned: bool,
    rng_up: StdRng,
    rng_down: StdRng,
    flows: HashMap<SocketAddr, Flow>,
    stats: ProxyStats,
    next_id: u64,
    last_reap: Instant,
}

/// A packet waiting for its delivery time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    at: Instant,
    id: u64,
    dir: Direction,
    /// The agent socket of the flow.
    client: SocketAddr,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Shared {
    listen: Arc<UdpSocket>,
    upstream: SocketAddr,
    state: Mutex<State>,
    queue: mpsc::UnboundedSender<Held>,
}

/// Flows with no packet from their agent socket for this long are forgotten (longer than any
/// QUIC idle timeout in use, so a live connection is never cut by the proxy itself).
const FLOW_IDLE: Duration = Duration::from_secs(180);
/// Largest UDP payload handled.
const MAX_DATAGRAM: usize = 65_535;

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides a packet's fate and queues it if it survives.
    fn admit(&self, st: &mut State, dir: Direction, client: SocketAddr, data: &[u8]) {
        let (imp, rng) = match dir {
            Direction::Up => (st.up, &mut st.rng_up),
            Direction::Down => (st.down, &mut st.rng_down),
        };
        let fate = if st.partitioned {
            Err(true)
        } else {
            imp.decide(rng).ok_or(false)
        };
        let stats = match dir {
            Direction::Up => &mut st.stats.up,
            Direction::Down => &mut st.stats.down,
        };
        stats.received += 1;
        match fate {
            Err(true) => stats.cut += 1,
            Err(false) => stats.lost += 1,
            Ok(delay) => {
                st.next_id += 1;
                let _ = self.queue.send(Held {
                    at: Instant::now() + delay,
                    id: st.next_id,
                    dir,
                    client,
                    data: data.to_vec(),
                });
            }
        }
    }
}

/// A UDP proxy on loopback that impairs traffic between agents and a collector.
#[derive(Debug)]
pub struct ImpairProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

fn bind_towards(upstream: SocketAddr) -> Result<UdpSocket> {
    let any: SocketAddr = if upstream.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let s = std::net::UdpSocket::bind(any).context("bind an upstream socket")?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s)?)
}

/// Reads the collector's packets for one flow until the flow is replaced or dropped.
async fn read_upstream(shared: Arc<Shared>, socket: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors surface here on some systems; the socket stays usable.
            Err(_) => continue,
        };
        if from != shared.upstream {
            continue;
        }
        let mut st = shared.state();
        shared.admit(&mut st, Direction::Down, client, &buf[..n]);
    }
}

/// Reads agents' packets from the listening socket, opening a flow per agent socket.
async fn read_clients(shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match shared.listen.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(_) => continue,
        };
        let now = Instant::now();
        let mut st = shared.state();
        if now.duration_since(st.last_reap) > Duration::from_secs(10) {
            st.last_reap = now;
            st.flows.retain(|_, f| {
                let keep = now.duration_since(f.last_seen) < FLOW_IDLE;
                if !keep {
                    f.reader.abort();
                }
                keep
            });
        }
        let st = &mut *st;
        match st.flows.entry(from) {
            std::collections::hash_map::Entry::Occupied(mut f) => f.get_mut().last_seen = now,
            std::collections::hash_map::Entry::Vacant(v) => {
                let Ok(socket) = bind_towards(shared.upstream) else {
                    continue;
                };
                let socket = Arc::new(socket);
                let reader = tokio::spawn(read_upstream(shared.clone(), socket.clone(), from));
                v.insert(Flow {
                    socket,
                    reader,
                    last_seen: now,
                });
                st.stats.flows_opened += 1;
            }
        }
        shared.admit(st, Direction::Up, from, &buf[..n]);
    }
}

/// Sends held packets when they are due (dropping them if a partition began meanwhile).
async fn deliver(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Held>) {
    let mut heap: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    loop {
        let next = heap.peek().map(|Reverse(h)| h.at);
        tokio::select! {
            held = rx.recv() => match held {
                Some(h) => heap.push(Reverse(h)),
                None => return,
            },
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(h)| h.at <= now) {
            let Some(Reverse(h)) = heap.pop() else { break };
            let socket = {
                let mut st = shared.state();
                let partitioned = st.partitioned;
                let stats = match h.dir {
                    Direction::Up => &mut st.stats.up,
                    Direction::Down => &mut st.stats.down,
                };
                if partitioned {
                    stats.cut += 1;
                    continue;
                }
                stats.delivered += 1;
                match h.dir {
                    Direction::Up => st.flows.get(&h.client).map(|f| f.socket.clone()),
                    Direction::Down => Some(shared.listen.clone()),
                }
            };
            let Some(socket) = socket else { continue };
            let dest = match h.dir {
                Direction::Up => shared.upstream,
                Direction::Down => h.client,
            };
            // A failed send loses the packet, as a congested link would.
            let _ = socket.send_to(&h.data, dest).await;
        }
    }
}

impl ImpairProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`, clean until told
    /// otherwise.
    pub async fn start(upstream: SocketAddr, seed: u64) -> Result<Self> {
        let listen = Arc::new(
            UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .context("bind the proxy")?,
        );
        let addr = listen.local_addr()?;
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            listen,
            upstream,
            state: Mutex::new(State {
                up: Impairment::NONE,
                down: Impairment::NONE,
                partitioned: false,
                rng_up: StdRng::seed_from_u64(seed),
                rng_down: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
                flows: HashMap::new(),
                stats: ProxyStats::default(),
                next_id: 0,
                last_reap: Instant::now(),
            }),
            queue,
        });
        let tasks = vec![
            tokio::spawn(read_clients(shared.clone())),
            tokio::spawn(deliver(shared.clone(), rx)),
        ];
        Ok(Self {
            addr,
            shared,
            tasks,
        })
    }

    /// Where agents should send: the proxy's loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets one direction's impairment.
    pub fn set(&self, dir: Direction, imp: Impairment) {
        let mut st = self.shared.state();
        match dir {
            Direction::Up => st.up = imp,
            Direction::Down => st.down = imp,
        }
    }

    /// Sets both directions' impairment.
    pub fn set_both(&self, imp: Impairment) {
        let mut st = self.shared.state();
        st.up = imp;
        st.down = imp;
    }

    /// Starts (`true`) or ends a partition: while on, every packet both ways is dropped.
    pub fn partition(&self, on: bool) {
        self.shared.state().partitioned = on;
    }

    /// Clean link again: no loss, no delay, no partition.
    pub fn heal(&self) {
        let mut st = self.shared.state();
        st.up = Impairment::NONE;
        st.down = Impairment::NONE;
        st.partitioned = false;
    }

    /// Moves every flow to a new upstream socket (a new local port), as a NAT rebinding does:
    /// the collector sees each agent come from a new address mid-connection, and answers to
    /// the old one are lost. Returns how many flows moved.
    pub fn rebind(&self) -> Result<usize> {
        let mut st = self.shared.state();
        let clients: Vec<SocketAddr> = st.flows.keys().copied().collect();
        for client in &clients {
            let socket = Arc::new(bind_towards(self.shared.upstream)?);
            let reader = tokio::spawn(read_upstream(self.shared.clone(), socket.clone(), *client));
            if let Some(f) = st.flows.get_mut(client) {
                f.reader.abort();
                f.socket = socket;
                f.reader = reader;
            }
        }
        st.stats.rebinds += clients.len() as u64;
        Ok(clients.len())
    }

    /// The upstream (collector-facing) local address of every flow.
    pub fn upstream_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .state()
            .flows
            .values()
            .filter_map(|f| f.socket.local_addr().ok())
            .collect()
    }

    /// Packet counts so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.state().stats
    }
}

impl Drop for ImpairProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for f in self.shared.state().flows.values() {
            f.reader.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger: what agents generated against what the collector stored.

/// What one terminal was given to send.
#[derive(Debug, Default)]
struct TerminalLedger {
    /// Spool epoch of the agent.
    epoch: u64,
    /// seq → marker of every record appended.
    sent: BTreeMap<u64, u64>,
    /// Records the spool evicted to stay within its bound (by design not delivered).
    shed: BTreeSet<u64>,
}

/// Records appended to a live fleet, each marked with a unique number (carried as a
/// heartbeat's `uptime_secs`), so what the collector stored can be audited record by record.
#[derive(Debug, Default)]
pub struct Ledger {
    terminals: BTreeMap<TerminalId, TerminalLedger>,
    next_marker: u64,
}

/// The audit of one terminal or of a whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Audit {
    /// Records appended to agents' spools.
    pub generated: u64,
    /// Records the collector holds for these terminals.
    pub stored: u64,
    /// Generated records the collector does not hold (excluding those the spool shed).
    pub lost: u64,
    /// Stored records beyond the first copy of a generated record, or not generated at all.
    pub duplicated: u64,
    /// Records the agents' spools shed to stay within their bound.
    pub shed: u64,
}

impl Audit {
    /// True when every generated record is stored exactly once.
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.shed == 0 && self.stored == self.generated
    }
}

fn marked(marker: u64) -> RecordBody {
    RecordBody::Heartbeat(Heartbeat {
        cpu_percent: 1.0,
        mem_used_bytes: 1 << 20,
        mem_total_bytes: 1 << 30,
        disk_free_bytes: 1 << 30,
        uptime_secs: marker,
        temperature_c: None,
        battery_percent: None,
        spool_records: 0,
    })
}

/// Reads every stored record of a terminal as (epoch, seq, marker); non-heartbeats get marker
/// `u64::MAX`.
fn stored_of(store: &Store, t: &TerminalId) -> Result<Vec<(u64, u64, u64)>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let rows = store
            .records(t, after, 10_000)
            .with_context(|| format!("read the records of {t}"))?;
        let Some(last) = rows.last() else { break };
        let last_seq = last.key.seq;
        for r in &rows {
            let marker = match &r.record.body {
                RecordBody::Heartbeat(h) => h.uptime_secs,
                _ => u64::MAX,
            };
            out.push((r.key.epoch, r.key.seq, marker));
        }
        if rows.len() < 10_000 {
            break;
        }
        after = Some(last_seq);
    }
    Ok(out)
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `per_agent` marked records to every agent's spool (one durable commit per agent)
    /// and notes their sequence numbers.
    pub async fn append_round(&mut self, fleet: &LiveFleet, per_agent: usize) -> Result<()> {
        let mut joins = tokio::task::JoinSet::new();
        let now = crate::replay::wall_ms();
        let terminals: Vec<TerminalId> = fleet.terminals().cloned().collect();
        for t in terminals {
            let Some(agent) = fleet.agent(&t).cloned() else {
                continue;
            };
            let markers: Vec<u64> = (0..per_agent as u64)
                .map(|i| self.next_marker + i)
                .collect();
            self.next_marker += per_agent as u64;
            let records = markers
                .iter()
                .map(|&m| NewRecord {
                    time_unix_ms: now,
                    body: marked(m),
                })
                .collect();
            joins.spawn(async move {
                let epoch = agent.inner().spool.meta().epoch;
                let appended = agent.append(records).await;
                (t, epoch, markers, appended)
            });
        }
        while let Some(r) = joins.join_next().await {
            let (t, epoch, markers, appended) = r?;
            let a = appended.with_context(|| format!("append to {t}"))?;
            if a.count != markers.len() as u64 {
                bail!(
                    "{t}: {} seqs assigned for {} records",
                    a.count,
                    markers.len()
                );
            }
            let l = self.terminals.entry(t).or_default();
            l.epoch = epoch;
            for (i, m) in markers.into_iter().enumerate() {
                l.sent.insert(a.first_seq.0 + i as u64, m);
            }
            l.shed.extend(a.evicted.iter().map(|s| s.0));
            // A record can be shed in the very commit that created it.
            let kept: BTreeSet<u64> = a.stored.iter().map(|e| e.seq.0).collect();
            for i in 0..a.count {
                let s = a.first_seq.0 + i;
                if !kept.contains(&s) {
                    l.shed.insert(s);
                }
            }
        }
        Ok(())
    }

    /// Records appended so far.
    pub fn generated(&self) -> u64 {
        self.terminals.values().map(|l| l.sent.len() as u64).sum()
    }

    /// The terminals written to.
    pub fn terminals(&self) -> impl Iterator<Item = &TerminalId> {
        self.terminals.keys()
    }

    /// Records that left an agent's spool because an Ack covered them, yet are not in the
    /// collector's store with the right content. Must be zero at every moment: an Ack means
    /// durably stored. (Reads each spool, then the store, so a record acked in between is
    /// checked too.)
    pub fn acked_not_stored(&self, fleet: &LiveFleet, store: &Store) -> Result<u64> {
        let mut missing = 0;
        for (t, l) in &self.terminals {
            let Some(agent) = fleet.agent(t) else {
                continue;
            };
            let in_spool: BTreeSet<u64> = agent
                .inner()
                .spool
                .entries()
                .iter()
                .map(|e| e.seq.0)
                .collect();
            let stored: HashMap<(u64, u64), u64> = stored_of(store, t)?
                .into_iter()
                .map(|(e, s, m)| ((e, s), m))
                .collect();
            for (seq, marker) in &l.sent {
                let acked = !in_spool.contains(seq) && !l.shed.contains(seq);
                if acked && stored.get(&(l.epoch, *seq)) != Some(marker) {
                    missing += 1;
                }
            }
        }
        Ok(missing)
    }

    /// Records still waiting in the agents' spools.
    pub fn unacked(&self, fleet: &LiveFleet) -> u64 {
        self.terminals
            .keys()
            .filter_map(|t| fleet.agent(t))
            .map(|a| a.inner().spool.meta().records)
            .sum()
    }

    /// Compares what the collector stored for each terminal with what was generated.
    pub fn audit(&self, store: &Store) -> Result<Audit> {
        let mut total = Audit::default();
        for (t, l) in &self.terminals {
            let stored = stored_of(store, t)?;
            let mut copies: HashMap<u64, u64> = HashMap::new();
            for (_, _, m) in &stored {
                *copies.entry(*m).or_default() += 1;
            }
            let generated: BTreeSet<u64> = l.sent.values().copied().collect();
            let shed: BTreeSet<u64> = l
                .shed
                .iter()
                .filter_map(|s| l.sent.get(s))
                .copied()
                .collect();
            total.generated += generated.len() as u64;
            total.stored += stored.len() as u64;
            total.shed += shed.len() as u64;
            for m in &generated {
                if copies.get(m).copied().unwrap_or(0) == 0 && !shed.contains(m) {
                    total.lost += 1;
                }
            }
            for (m, n) in &copies {
                total.duplicated += if generated.contains(m) { n - 1 } else { *n };
            }
            // Every stored key must also carry the record generated under it.
            for (e, s, m) in &stored {
                if *e == l.epoch && l.sent.get(s).is_some_and(|g| g != m) {
                    total.duplicated += 1;
                }
            }
        }
        Ok(total)
    }
}

/// Percentile (0-100) of a sample, by nearest rank; `None` for an empty sample.
pub fn percentile(sample: &[Duration], p: f64) -> Option<Duration> {
    if sample.is_empty() {
        return None;
    }
    let mut v = sample.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

/// Ack latency: appends one marked record to `t`'s agent and waits until its spool no longer
/// holds it (the collector acked it). Gives up after `limit`.
pub async fn ack_latency(
    ledger: &mut Ledger,
    fleet: &LiveFleet,
    t: &TerminalId,
    limit: Duration,
) -> Result<Duration> {
    let agent = fleet
        .agent(t)
        .cloned()
        .with_context(|| format!("unknown terminal {t}"))?;
    let marker = ledger.next_marker;
    ledger.next_marker += 1;
    let epoch = agent.inner().spool.meta().epoch;
    let started = Instant::now();
    let a = agent
        .append(vec![NewRecord {
            time_unix_ms: crate::replay::wall_ms(),
            body: marked(marker),
        }])
        .await?;
    let seq = a.first_seq.0;
    let l = ledger.terminals.entry(t.clone()).or_default();
    l.epoch = epoch;
    l.sent.insert(seq, marker);
    loop {
        let pending = agent.inner().spool.entries().iter().any(|e| e.seq.0 == seq);
        if !pending {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{t}: record {seq} not acked within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A rig: collector, proxy in front of it, a live fleet behind it, and the ledger.

/// The identity of the `i`th terminal of a hostile-network run.
pub fn identity(i: usize) -> Result<Identity> {
    let l = |s: String| Label::new(s).map_err(anyhow::Error::from);
    Ok(Identity {
        terminal_id: TerminalId::new(format!("HOST{i:05}"))?,
        merchant_id: l(format!("M{}", i % 7))?,
        store_id: l(format!("S{}", i / 3))?,
        region: l(format!("R{}", i % 4))?,
        city: l("深圳".into())?,
        acquirer: l("acq-a".into())?,
        qr_channel: l("alipay".into())?,
        carrier: l("cmcc".into())?,
        link: LinkType::Cellular,
        model: l("P300".into())?,
        firmware: l("2.3.1".into())?,
        app_version: l("5.0.2".into())?,
    })
}

/// Every terminal's `records_received` (records the collector counted as new), read page by
/// page from `GET /api/v1/terminals` of the collector whose HTTP API is at `http`.
pub async fn records_received(http: SocketAddr) -> Result<BTreeMap<String, u64>> {
    let client = reqwest::Client::new();
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut req = client
            .get(format!("http://{http}/api/v1/terminals"))
            .query(&[("limit", "1000")]);
        if let Some(a) = &after {
            req = req.query(&[("after", a.as_str())]);
        }
        let v: serde_json::Value = req.send().await?.error_for_status()?.json().await?;
        for t in v["terminals"].as_array().context("no terminal list")? {
            if let (Some(id), Some(n)) = (t["terminal_id"].as_str(), t["records_received"].as_u64())
            {
                out.insert(id.to_owned(), n);
            }
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return Ok(out),
        }
    }
}

/// An in-process collector, an [`ImpairProxy`] in front of it, and a [`LiveFleet`] of real
/// agents that reach the collector only through the proxy.
#[derive(Debug)]
pub struct Rig {
    /// The collector.
    pub collector: storepulse_collector::Collector,
    /// The proxy between agents and collector.
    pub proxy: ImpairProxy,
    /// The agents.
    pub fleet: LiveFleet,
    /// What the agents were given to send.
    pub ledger: Ledger,
    /// Holds the PKI, the store and the spools.
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// Starts a collector, a proxy with `imp` both ways (seeded with `seed`) and `agents`
    /// agents connected through it.
    pub async fn start(
        agents: usize,
        seed: u64,
        uplink: LiveUplink,
        imp: Impairment,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (collector, pki) = crate::live::start_collector(dir.path()).await?;
        let proxy = ImpairProxy::start(collector.quic_addr(), seed).await?;
        proxy.set_both(imp);
        let ids: Vec<Identity> = (0..agents).map(identity).collect::<Result<_>>()?;
        let fleet =
            LiveFleet::start(&dir.path().join("agents"), &pki, proxy.addr(), &ids, uplink).await?;
        Ok(Self {
            collector,
            proxy,
            fleet,
            ledger: Ledger::new(),
            dir,
        })
    }

    /// Appends `per_agent` marked records to every agent every `every`, for `span`; checks
    /// after each round that nothing acked is missing from the store.
    pub async fn generate(
        &mut self,
        span: Duration,
        every: Duration,
        per_agent: usize,
    ) -> Result<()> {
        let end = Instant::now() + span;
        while Instant::now() < end {
            self.ledger.append_round(&self.fleet, per_agent).await?;
            let missing = self
                .ledger
                .acked_not_stored(&self.fleet, self.collector.store())?;
            if missing > 0 {
                bail!("{missing} acked records are not in the store");
            }
            tokio::time::sleep(every).await;
        }
        Ok(())
    }

    /// Waits until every agent's spool is empty (all acked), checking meanwhile that nothing
    /// acked is missing; returns how long it took.
    pub async fn drain(&self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let missing = self
                .ledger
                .acked_not_stored(&self.fleet, self.collector.store())?;
            if missing > 0 {
                bail!("{missing} acked records are not in the store");
            }
            let left = self.ledger.unacked(&self.fleet);
            if left == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("{left} records still unacked after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Records the collector counted as new for the ledger's terminals (its registry's
    /// `records_received`, from the HTTP API); a duplicate stored or counted twice shows here.
    pub async fn counted(&self) -> Result<u64> {
        let per = records_received(self.collector.http_addr()).await?;
        Ok(self
            .ledger
            .terminals()
            .filter_map(|t| per.get(t.as_str()))
            .sum())
    }

    /// How many agents have a connection up right now.
    pub fn connected(&self) -> usize {
        self.fleet
            .terminals()
            .filter_map(|t| self.fleet.agent(t))
            .filter(|a| a.link().connection.is_some())
            .count()
    }

    /// The QUIC connection id of each connected agent.
    pub fn connection_ids(&self) -> BTreeMap<TerminalId, usize> {
        self.fleet
            .terminals()
            .filter_map(|t| {
                let id = self.fleet.agent(t)?.link().connection.as_ref()?.stable_id();
                Some((t.clone(), id))
            })
            .collect()
    }

    /// Stops the agents and the collector.
    pub async fn shutdown(self) -> Result<()> {
        self.proxy.heal();
        self.fleet.shutdown().await;
        self.collector.shutdown().await?;
        drop(self.proxy);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rate_follows_the_probability() {
        let mut rng = StdRng::seed_from_u64(1);
        let imp = Impairment::loss(0.2);
        let lost = (0..100_000)
            .filter(|_| imp.decide(&mut rng).is_none())
            .count();
        assert!((19_000..21_000).contains(&lost), "{lost}");
    }

    #[test]
    fn a_clean_link_neither_loses_nor_delays() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..1000 {
            assert_eq!(Impairment::NONE.decide(&mut rng), Some(Duration::ZERO));
        }
    }

    #[test]
    fn uniform_jitter_stays_in_its_band_and_covers_it() {
        let mut rng = StdRng::seed_from_u64(3);
        let imp = Impairment::delay(Duration::from_millis(300), Duration::from_millis(100));
        let d: Vec<Duration> = (0..10_000).filter_map(|_| imp.decide(&mut rng)).collect();
        assert_eq!(d.len(), 10_000);
        let min = d.iter().min().copied().unwrap_or_default();
        let max = d.iter().max().copied().unwrap_or_default();
        assert!(min >= Duration::from_millis(200) && min < Duration::from_millis(205));
        assert!(max <= Duration::from_millis(400) && max > Duration::from_millis(395));
        let mean = d.iter().sum::<Duration>() / d.len() as u32;
        assert!(mean.abs_diff(Duration::from_millis(300)) < Duration::from_millis(5));
    }

    #[test]
    fn normal_jitter_has_its_mean_and_spread_and_never_goes_negative() {
        let mut rng = StdRng::seed_from_u64(4);
        let imp = Impairment::delay(Duration::from_millis(300), Duration::from_millis(100))
            .with_dist(JitterDist::Normal);
        let d: Vec<f64> = (0..20_000)
            .filter_map(|_| imp.decide(&mut rng))
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        assert!((mean - 300.0).abs() < 5.0, "{mean}");
        assert!((sd - 100.0).abs() < 5.0, "{sd}");
        let tight = Impairment::delay(Duration::from_millis(10), Duration::from_millis(100))
            .with_dist(JitterDist::Normal);
        assert!((0..1000).all(|_| tight.decide(&mut rng).is_some()));
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let imp =
            Impairment::delay(Duration::from_millis(50), Duration::from_millis(20)).with_loss(0.3);
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..500).map(|_| imp.decide(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let s: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&s, 50.0), Some(ms(50)));
        assert_eq!(percentile(&s, 99.0), Some(ms(99)));
        assert_eq!(percentile(&s, 100.0), Some(ms(100)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    /// An echo server behind the proxy; returns it and its address.
    async fn echo() -> Result<(JoinHandle<()>, SocketAddr)> {
        let s = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = s.local_addr()?;
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            // The first byte asks the server to also report the sender's port.
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let mut out = buf[..n].to_vec();
                out.extend_from_slice(&from.port().to_be_bytes());
                let _ = s.send_to(&out, from).await;
            }
        });
        Ok((task, addr))
    }

    async fn collect(sock: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Ok(Ok(n)) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            got.push(buf[..n].to_vec());
        }
        got
    }

    /// Sends `count` numbered packets in small paced chunks, reading answers between chunks so
    /// no socket buffer overflows (only the proxy may lose packets); then reads until `wait` of
    /// silence.
    async fn exchange(sock: &UdpSocket, count: u16, wait: Duration) -> Result<Vec<Vec<u8>>> {
        let mut got = Vec::new();
        for i in 0..count {
            sock.send(&i.to_be_bytes()).await?;
            if i % 20 == 19 {
                got.extend(collect(sock, Duration::from_millis(5)).await);
            }
        }
        got.extend(collect(sock, wait).await);
        Ok(got)
    }

    #[tokio::test]
    async fn the_proxy_loses_delays_partitions_and_rebinds() -> Result<()> {
        let (server, upstream) = echo().await?;
        let proxy = ImpairProxy::start(upstream, 7).await?;
        let client = UdpSocket::bind("127.0.0.1:0").await?;
        client.connect(proxy.addr()).await?;

        // Clean: everything comes back, from one upstream port.
        for i in 0u16..50 {
            client.send(&i.to_be_bytes()).await?;
        }
        let got = collect(&client, Duration::from_millis(300)).await;
        assert_eq!(got.len(), 50);
        let port = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        let first_port = port(&got[0]);
        assert!(got.iter().all(|p| port(p) == first_port));

        // 20 % loss up only: about 80 % come back.
        proxy.set(Direction::Up, Impairment::loss(0.2));
        let got = exchange(&client, 1000, Duration::from_millis(300)).await?;
        assert!((700..900).contains(&got.len()), "{}", got.len());
        let s = proxy.stats();
        assert_eq!(s.up.lost + s.up.delivered, s.up.received);
        assert_eq!(s.down.lost, 0);

        // Delay with jitter both ways: slower than the delay, and reordered.
        proxy.set(Direction::Up, Impairment::NONE);
        proxy.set_both(Impairment::delay(
            Duration::from_millis(60),
            Duration::from_millis(40),
        ));
        let t0 = Instant::now();
        let got = exchange(&client, 200, Duration::from_millis(500)).await?;
        assert_eq!(got.len(), 200);
        assert!(t0.elapsed() >= Duration::from_millis(40));
        let order: Vec<u16> = got
            .iter()
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        assert!(order.windows(2).any(|w| w[0] > w[1]), "never reordered");

        // Partition: nothing passes, also what was in flight.
        client.send(&[9, 9]).await?;
        proxy.partition(true);
        for i in 0u16..20 {
            client.send(&i.to_be_bytes()).await?;
        }
        assert!(
            collect(&client, Duration::from_millis(400))
                .await
                .is_empty()
        );
        proxy.heal();

        // Rebind: the server sees a new source port; answers still reach the client.
        let before = proxy.upstream_addrs();
        assert_eq!(proxy.rebind()?, 1);
        let after = proxy.upstream_addrs();
        assert_ne!(before, after);
        client.send(&[1, 2]).await?;
        let got = collect(&client, Duration::from_millis(300)).await;
        assert_eq!(got.len(), 1);
        assert_ne!(port(&got[0]), first_port);
        assert_eq!(Some(port(&got[0])), after.first().map(SocketAddr::port));
        drop(proxy);
        server.abort();
        Ok(())
    }
}

//! storepulse-sim: the fleet simulator core (issue 3). Seeded fleet, scenario faults, merchant
//! calls and ground truth, stepped on a virtual clock. No IO beyond reading a scenario file.
//!
//! # Driving it (what issue 4's evaluation does)
//!
//! ```no_run
//! use storepulse_sim::{Scenario, Sink, run};
//! # struct Detector;
//! # impl Sink for Detector {
//! #     fn record(&mut self, _: i64, _: &storepulse_shared::TerminalId, _: u64, _: &storepulse_shared::Record) {}
//! # }
//! let scenario = Scenario::from_file("tests/scenarios/merchant_config.toml".as_ref())?;
//! let mut detector = Detector; // implements Sink: hello / record / merchant_call / announcement
//! let stats = run(&scenario, &mut detector);
//! // Per ground-truth incident, the first merchant call: the deadline an alert must beat.
//! let deadlines = scenario.first_calls(&stats.calls);
//! # Ok::<(), storepulse_sim::ScenarioError>(())
//! ```
//!
//! [`run`] pushes every event to the [`Sink`] in non-decreasing time order (see the trait for
//! the tie order). `hello(now, identity, spool_epoch)` precedes a terminal's records on each
//! connection; `record(arrival, terminal, spool_epoch, record)` is what the collector would
//! receive (backlog arrives late, with its original `time_unix_ms`); `merchant_call` is ground
//! truth the detector must not peek at; `announcement` is a published maintenance notice the
//! detector may use. For a wall-clock (live) engine, `observed` and `link_changed` give each
//! terminal's own schedule: what its POS app reports and when its network is down.
//! [`EventLog`] writes every event as one canonical line; [`Fnv64`] hashes it.
//!
//! # Generated fleet: the names scenario files use
//!
//! | label | values |
//! |---|---|
//! | region | `R01`, `R02`, ... (`fleet.regions`) |
//! | city | `R01-C01` ... (`fleet.cities_per_region` per region) |
//! | merchant_id | `M0001` ...: chains first (`fleet.chains` of them, each with `fleet.chain_stores` stores), then single shops |
//! | store_id | `M0001-S001` ... (single shops have exactly `Mnnnn-S001`) |
//! | terminal_id | `M0001-S001-T1` ... (every store has `-T1`) |
//! | acquirer | `ACQ-A`, `ACQ-B`, ... (A, C, ... answer with CUP codes; B, D, ... with ISO 8583) |
//! | qr_channel | `QR-A`, `QR-B`, ... (QR payments: WeChat Pay 55 %, Alipay 40 %, UnionPay QR 5 %) |
//! | carrier | `CMCC`, `CUCC`, `CTCC`, `CBN` (the first `fleet.carriers`; SIM carrier for cellular terminals, the store's ISP otherwise) |
//! | link | `wired`, `wifi`, `cellular` |
//! | model | `A920`, `N910` (handheld, cellular or Wi-Fi), `P2`, `V2-Pro` (countertop) |
//! | firmware | `2.3.0` (20 %), `2.3.1` (50 %), `2.4.0` (30 %) |
//! | app_version | `5.1.2`, `5.2.0` |
//!
//! Scope keys are the label keys of `storepulse_shared::LabelKey`; the short forms `merchant`,
//! `store` and `terminal` (used by the files written before the keys took their `Identity`
//! names) are accepted for `merchant_id`, `store_id` and `terminal_id`.
//!
//! Generation stops at exactly `fleet.terminals` terminals, so a chain or shop past that count
//! does not exist; naming it in a scope is a load error with the line. Shapes from all
//! single-terminal shops (`chains = 0`, `shop_terminals = [1, 1]`) to one chain with most of the
//! fleet (`chains = 1`, `chain_stores = [n, n]`) are a matter of these numbers.
//!
//! # Scenario files (`tests/scenarios/*.toml`)
//!
//! ```toml
//! [scenario]
//! name = "merchant_config"            # short name
//! description = "..."                 # what it tests
//! seed = 42                           # every random draw derives from it
//! start = "2026-03-02T00:00:00+08:00" # RFC 3339 with offset; the offset is local time
//! duration = "24h"                    # 1s .. 7d; units d h m s ms
//!
//! [fleet]                             # all optional; defaults shown
//! terminals = 1000
//! regions = 4
//! cities_per_region = 3
//! chains = 10
//! chain_stores = [5, 30]              # stores per chain, inclusive
//! chain_store_terminals = [1, 4]
//! shop_terminals = [1, 2]
//! low_volume_share = 0.2              # share of single shops taking a handful of payments a day
//! acquirers = 3
//! qr_channels = 2
//! qr_share = 0.65
//! volume_scale = 1.0                  # multiplies every terminal's payments (0, 100]
//! carriers = 3                        # 1-4: CMCC, CUCC, CTCC, CBN
//! chain_regions = 2                   # regions a chain spreads over: 1; 2 = a home region
//!                                     # with 70 % of its stores and a second; n > 2 = evenly
//! heartbeat_interval_secs = 60        # every terminal's; or, instead, a mix over terminals:
//! # heartbeat_mix = [{ secs = 30, share = 0.6 }, { secs = 180, share = 0.4 }]  # shares sum to 1
//! net_quality_interval_secs = 300
//!
//! [traffic]                           # optional: without it every day is a weekday
//! weekend = false                     # Saturdays and Sundays take the weekend shape
//! holidays = []                       # local dates ("2026-10-01") with the holiday shape
//! weekend_volume = 1.2                # a weekend day's volume against a weekday's
//! holiday_volume = 1.5
//! daily_variation = 0.0               # sigma of a log-normal factor per local day, fleet-wide
//!
//! [calls]                             # optional; defaults shown
//! k = 3                               # failures ...
//! w_minutes = 10                      # ... within this window
//! t_minutes = 20                      # or failing this long without a success
//! business_hours = [8, 22]            # local hours, [open, close)
//! cooldown_minutes = 120
//!
//! [[calls.profile]]                   # optional, repeatable: merchants of other patience
//! share = 0.2                         # of merchants (drawn per merchant; shares sum <= 1)
//! k = 1                               # any rule above; those left out are [calls]'s
//!
//! [delivery]                          # optional; defaults shown
//! backlog_records_per_sec = 50
//! spool_max_records = 5000
//! reconnect_max_secs = 60
//!
//! [[fault]]
//! kind = "merchant_config"            # see below
//! start = "+10h30m"                   # offset from start, or RFC 3339
//! end = "+12h"
//! scope = { merchant_id = "M0003" }   # label = value, all must match; values must exist
//! intensity = 0.9                     # 0..1, default 1
//! codes = ["iso8583:03"]              # optional override, scheme:code from the taxonomy
//! # announced_at = "+2h"              # acquirer_maintenance only (required there)
//! # silent = true                     # terminal_fault only: the terminal dies
//!
//! [[incident]]                        # ground truth
//! kind = "merchant_config"            # one of the 11 incident kinds
//! scope = { merchant_id = "M0003" }
//! start = "+10h30m"
//! end = "+12h"
//! ```
//!
//! Fault kinds and what they do (intensity is the per-payment probability unless noted):
//!
//! | kind | scope must name | effect |
//! |---|---|---|
//! | `terminal_fault` | terminal_id | terminal-fault codes (ISO 30/88, CUP A0, SIGNERROR, ...), hot and busy heartbeats; `silent = true`: the terminal dies (no records, reboots after) |
//! | `terminal_config` | terminal_id | terminal-config codes (CUP 97 not registered, 58, ...) |
//! | `store_network` | store_id | RTT ×(1+9i), loss up to 25 %·i, timeouts (68 / SYSTEMERROR) for half of i, fewer payments |
//! | `store_offline` | store_id | link down: nothing arrives, payments fail locally, backlog replays after |
//! | `merchant_config` | merchant_id | merchant-config codes (03, MCHID_NOT_EXIST, ACQ.SELLER_NOT_EXIST, ...) on all its terminals |
//! | `routing_missing` | store_id | merchant-config codes on one branch (03, MCH_NOT_EXISTS, ACQ.INVALID_STORE_ID) |
//! | `firmware_regression` | firmware | terminal-fault and routing codes (30, 92, SIGNERROR, ...) on that version |
//! | `carrier_outage` | carrier | cellular terminals only: share i go silent, the rest degrade |
//! | `regional_outage` | region or city | share i of the stores go silent |
//! | `acquirer_outage` | acquirer or qr_channel | 96/91/98/68, SYSTEMERROR, 20000 on card (acquirer) or QR (qr_channel) payments; endpoint probes time out |
//! | `acquirer_maintenance` | acquirer or qr_channel | as above with 90 (cut-over); announced at `announced_at` |
//! | `qr_notification_delay` | qr_channel | QR payments left without a final state (ORDERNOTEXIST, USERPAYING, ACQ.TRADE_NOT_EXIST, 25) |
//! | `decline_surge` | anything (empty: fleet) | more payments, i of them declined for insufficient funds; not an incident |
//!
//! Without faults: hour-of-day traffic (retail and restaurant curves, other curves on weekends
//! and holidays: [`traffic`]), card/QR mix, cardholder declines 3.5 % (card) / 2 % (QR), risk
//! declines 0.2 %, transient network errors 0.2 %. Each terminal beats at its own interval
//! from its first minute. Merchants call by the rules in [`calls`], each by its profile's.
//!
//! Sections and fields added after the first scenario files are all optional, and their
//! defaults draw nothing from the random sequence: older files replay exactly as before.
//!
//! # Generated scenarios
//!
//! [`generate::generate`] writes a whole scenario in this format from a seed (see the module
//! for what it draws); `storepulse-lab generate` saves them and `storepulse-lab eval
//! --generate N --seed S` evaluates them. [`FleetClass`] classes a fleet (shape, size, cadence)
//! for eval's tables.

pub mod calls;
mod codes;
pub mod engine;
pub mod fleet;
pub mod generate;
pub mod log;
pub mod scenario;
pub mod shape;
pub mod time;
pub mod traffic;

pub use calls::{CallReason, MerchantCall};
pub use engine::{Announcement, RunStats, Sink, run};
pub use fleet::{Fleet, FleetSpec};
pub use log::{CountingSink, EventLog, Fnv64};
pub use scenario::{
    CallProfile, CallRules, DeliverySpec, Fault, FaultKind, Incident, Scenario, ScenarioError,
    Scope,
};
pub use shape::FleetClass;
/// The vocabulary is the shared one: detection and the simulator name labels and incident
/// kinds alike.
pub use storepulse_shared::{IncidentKind, LabelKey};
pub use traffic::{DayKind, TrafficSpec};

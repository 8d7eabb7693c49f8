//! The canonical event log: one line per emitted event, and small sinks built on it.
//!
//! Line formats (times are Unix ms; floats use Rust's shortest round-trip formatting):
//!
//! ```text
//! <ms> hello <terminal> epoch=<u64> merchant=.. store=.. region=.. city=.. acquirer=.. qr=.. carrier=.. link=.. model=.. fw=.. app=..
//! <ms> rec <terminal> <epoch> <seq> t=<observed ms> hb cpu=.. mem=<used>/<total> disk=.. up=.. temp=.. batt=.. spool=..
//! <ms> rec <terminal> <epoch> <seq> t=<observed ms> net rtt=.. jitter=.. loss=.. [<endpoint>:<dns>/<tcp>/<error>]..
//! <ms> rec <terminal> <epoch> <seq> t=<observed ms> txn <scheme> <code> lat=.. <card|qr> route=..
//! <ms> rec <terminal> <epoch> <seq> t=<observed ms> drops hb=.. net=.. txn=..
//! <ms> call <merchant> <store> <terminal> failures=<n> | no_success=<minutes>m
//! <ms> announce <kind> <scope> from=<ms> to=<ms> at=<ms>
//! ```
//!
//! The same seed gives a byte-identical log; [`Fnv64`] hashes it without storing it.

use std::fmt::Write as _;
use std::io;

use storepulse_shared::{Identity, PayMethod, Record, RecordBody, TerminalId};

use crate::calls::{CallReason, MerchantCall};
use crate::engine::{Announcement, Sink};

/// A [`Sink`] that writes the canonical log to `W`.
#[derive(Debug)]
pub struct EventLog<W: io::Write> {
    out: W,
    line: String,
    error: Option<io::Error>,
}

/// FNV-1a 64-bit hash as an [`io::Write`]: a stable digest of a log (independent of the Rust
/// version, unlike `DefaultHasher`).
#[derive(Debug, Clone, Copy)]
pub struct Fnv64 {
    /// The running hash.
    pub hash: u64,
    /// Bytes hashed.
    pub bytes: u64,
}

/// A [`Sink`] that only counts (for benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingSink {
    /// Every call.
    pub events: u64,
}

impl<W: io::Write> EventLog<W> {
    /// A log writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: String::with_capacity(256),
            error: None,
        }
    }

    /// The writer back, or the first write error.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_line(&mut self) {
        self.line.push('\n');
        if self.error.is_none()
            && let Err(e) = self.out.write_all(self.line.as_bytes())
        {
            self.error = Some(e);
        }
        self.line.clear();
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self {
            hash: 0xcbf2_9ce4_8422_2325,
            bytes: 0,
        }
    }
}

impl io::Write for Fnv64 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn opt_f32(v: Option<f32>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// Appends the canonical text of a record (without arrival time and terminal) to `out`.
pub fn format_record(out: &mut String, record: &Record) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{} t={} ", record.seq.0, record.time_unix_ms);
    let _ = match &record.body {
        RecordBody::Heartbeat(h) => write!(
            out,
            "hb cpu={} mem={}/{} disk={} up={} temp={} batt={} spool={}",
            h.cpu_percent,
            h.mem_used_bytes,
            h.mem_total_bytes,
            h.disk_free_bytes,
            h.uptime_secs,
            opt_f32(h.temperature_c),
            opt_f32(h.battery_percent),
            h.spool_records
        ),
        RecordBody::NetQuality(n) => {
            let _ = write!(
                out,
                "net rtt={} jitter={} loss={}",
                opt_f32(n.rtt_ms),
                opt_f32(n.jitter_ms),
                opt_f32(n.loss_percent)
            );
            for e in &n.endpoints {
                let _ = write!(
                    out,
                    " {}:{}/{}/{:?}",
                    e.name,
                    opt_f32(e.dns_ms),
                    opt_f32(e.tcp_connect_ms),
                    e.error
                );
            }
            Ok(())
        }
        RecordBody::TxnOutcome(x) => write!(
            out,
            "txn {} {} lat={} {} route={}",
            x.scheme.as_str(),
            x.code,
            x.latency_ms,
            if x.method == PayMethod::Card {
                "card"
            } else {
                "qr"
            },
            x.route.as_ref().map_or("-", |r| r.as_str())
        ),
        RecordBody::SpoolDrops(d) => write!(
            out,
            "drops hb={} net={} txn={}",
            d.heartbeats, d.net_quality, d.txn_outcomes
        ),
    };
}

impl<W: io::Write> Sink for EventLog<W> {
    fn hello(&mut self, now_ms: i64, id: &Identity, spool_epoch: u64) {
        let _ = write!(
            self.line,
            "{now_ms} hello {} epoch={spool_epoch} merchant={} store={} region={} city={} acquirer={} qr={} carrier={} link={} model={} fw={} app={}",
            id.terminal_id,
            id.merchant_id,
            id.store_id,
            id.region,
            id.city,
            id.acquirer,
            id.qr_channel,
            id.carrier,
            id.link.as_str(),
            id.model,
            id.firmware,
            id.app_version
        );
        self.flush_line();
    }

    fn record(
        &mut self,
        arrival_ms: i64,
        terminal: &TerminalId,
        spool_epoch: u64,
        record: &Record,
    ) {
        let _ = write!(self.line, "{arrival_ms} rec {terminal} {spool_epoch} ");
        format_record(&mut self.line, record);
        self.flush_line();
    }

    fn merchant_call(&mut self, now_ms: i64, call: &MerchantCall) {
        let _ = write!(
            self.line,
            "{now_ms} call {} {} {} ",
            call.merchant, call.store, call.terminal
        );
        let _ = match call.reason {
            CallReason::Failures { count } => write!(self.line, "failures={count}"),
            CallReason::NoSuccess { minutes } => write!(self.line, "no_success={minutes}m"),
        };
        self.flush_line();
    }

    fn announcement(&mut self, now_ms: i64, a: &Announcement) {
        let _ = write!(
            self.line,
            "{now_ms} announce {} {} from={} to={} at={}",
            a.kind, a.scope, a.start_ms, a.end_ms, a.announced_at_ms
        );
        self.flush_line();
    }
}

impl Sink for CountingSink {
    fn hello(&mut self, _: i64, _: &Identity, _: u64) {
        self.events += 1;
    }

    fn record(&mut self, _: i64, _: &TerminalId, _: u64, _: &Record) {
        self.events += 1;
    }

    fn merchant_call(&mut self, _: i64, _: &MerchantCall) {
        self.events += 1;
    }

    fn announcement(&mut self, _: i64, _: &Announcement) {
        self.events += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn fnv_is_the_reference_fnv1a() {
        let mut h = Fnv64::default();
        h.write_all(b"a").expect("infallible");
        assert_eq!(h.hash, 0xaf63_dc4c_8601_ec8c);
    }
}

//! Probes: a heartbeat (host health from sysinfo) and a network-quality sample (QUIC path
//! statistics plus DNS and TCP connect timing to the payment endpoints), each on its own
//! interval, each sample appended to the spool as one record.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storepulse_agent_core::{NewRecord, Spool};
use storepulse_shared::check::MAX_MILLIS;
use storepulse_shared::{EndpointProbe, Heartbeat, NetQuality, ProbeError, RecordBody};
use sysinfo::{Components, Disks, System};
use tokio::sync::watch;

use crate::config::Endpoint;
use crate::state::{Agent, unix_ms};

/// Time allowed for one endpoint's DNS lookup, and again for its TCP connect.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs both probes until `stop` turns true.
pub async fn run(agent: Arc<Agent>, stop: watch::Receiver<bool>) {
    let hb = tokio::spawn(heartbeat_loop(Arc::clone(&agent), stop.clone()));
    let nq = tokio::spawn(net_loop(agent, stop));
    let _ = hb.await;
    let _ = nq.await;
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

async fn heartbeat_loop(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let mut sys = System::new().ok();
    if let Some(s) = sys.as_mut() {
        // CPU use is a difference between two refreshes; take the first one now.
        s.refresh_cpu_usage();
    }
    let intervals = agent.intervals();
    loop {
        let period = intervals.borrow().heartbeat;
        if sleep_or_stop(period, &mut stop).await {
            return;
        }
        let a = Arc::clone(&agent);
        let result = tokio::task::spawn_blocking(move || {
            let body = sample_heartbeat(&mut sys, &a);
            let r = a
                .append_blocking(vec![NewRecord {
                    time_unix_ms: unix_ms(),
                    body,
                }])
                .and_then(|_| a.flush_drops_blocking());
            (sys, r)
        })
        .await;
        match result {
            Ok((s, r)) => {
                sys = s;
                if let Err(error) = r {
                    tracing::error!(%error, "Spool write failed, heartbeat lost");
                }
            }
            Err(error) => {
                tracing::error!(%error, "Heartbeat probe failed");
                sys = System::new().ok();
            }
        }
    }
}

fn sample_heartbeat(sys: &mut Option<System>, agent: &Agent) -> RecordBody {
    let (cpu_percent, mem_used_bytes, mem_total_bytes) = match sys.as_mut() {
        Some(sys) => {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            (
                // A NaN (no sample yet on some hosts) would be quarantined by the collector.
                Some(sys.global_cpu_usage())
                    .filter(|c| c.is_finite())
                    .map_or(0.0, |c| c.clamp(0.0, 100.0)),
                sys.used_memory(),
                sys.total_memory(),
            )
        }
        None => (0.0, 0, 0),
    };
    let spool_path = &agent.config().spool.path;
    let temperature_c = Components::new_with_refreshed_list().ok().and_then(|c| {
        c.iter()
            .filter_map(|c| c.temperature())
            .filter(|t| t.is_finite())
            .reduce(f32::max)
    });
    RecordBody::Heartbeat(Heartbeat {
        cpu_percent,
        mem_used_bytes,
        mem_total_bytes,
        disk_free_bytes: disk_free(spool_path).unwrap_or(0),
        uptime_secs: System::uptime().unwrap_or(0),
        temperature_c: within(temperature_c, -100.0, 200.0),
        battery_percent: within(battery_percent(), 0.0, 100.0),
        spool_records: agent.inner().spool.meta().records,
    })
}

/// Free space on the disk whose mount point is the longest prefix of the spool's path.
fn disk_free(spool: &Path) -> Option<u64> {
    let dir = spool.parent().unwrap_or(spool);
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let disks = Disks::new_with_refreshed_list().ok()?;
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| d.available_space())
}

/// Battery charge from `/sys/class/power_supply` (Linux); `None` without a battery.
fn battery_percent() -> Option<f32> {
    let entries = std::fs::read_dir("/sys/class/power_supply").ok()?;
    for e in entries.flatten() {
        let p = e.path();
        let is_battery =
            std::fs::read_to_string(p.join("type")).is_ok_and(|t| t.trim() == "Battery");
        if is_battery
            && let Some(c) = std::fs::read_to_string(p.join("capacity"))
                .ok()
                .and_then(|s| s.trim().parse::<f32>().ok())
        {
            return Some(c.clamp(0.0, 100.0));
        }
    }
    None
}

async fn net_loop(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let intervals = agent.intervals();
    loop {
        let period = intervals.borrow().net_probe;
        if sleep_or_stop(period, &mut stop).await {
            return;
        }
        let body = sample_net(&agent).await;
        if let Err(error) = agent
            .append(vec![NewRecord {
                time_unix_ms: unix_ms(),
                body,
            }])
            .await
        {
            tracing::error!(%error, "Spool write failed, network sample lost");
        }
    }
}

async fn sample_net(agent: &Agent) -> RecordBody {
    let (rtt_ms, jitter_ms, loss_percent) = {
        let mut link = agent.link();
        let conn = link.connection.clone();
        match conn {
            Some(conn) => {
                link.rtt.push(conn.rtt().as_secs_f32() * 1000.0);
                let stats = conn.stats();
                let loss = link.loss.sample(
                    conn.stable_id() as u64,
                    stats.path.lost_packets,
                    stats.path.sent_packets,
                );
                let (rtt, jitter) = link.rtt.take();
                (rtt, jitter, loss)
            }
            None => (None, None, None),
        }
    };
    let endpoints = probe_endpoints(&agent.config().probes.endpoints).await;
    agent.set_last_probe(endpoints.clone());
    let ms = |v: Option<f32>| within(v, 0.0, MAX_MILLIS);
    RecordBody::NetQuality(NetQuality {
        rtt_ms: ms(rtt_ms),
        jitter_ms: ms(jitter_ms),
        loss_percent: within(loss_percent, 0.0, 100.0),
        endpoints: endpoints
            .into_iter()
            .map(|e| EndpointProbe {
                dns_ms: ms(e.dns_ms),
                tcp_connect_ms: ms(e.tcp_connect_ms),
                ..e
            })
            .collect(),
    })
}

/// `v` if it is finite and within `min..=max` (the ranges of PROTOCOL.md, which the collector
/// enforces by quarantining the record), else `None`: a measurement the agent cannot trust is
/// not sent, so the rest of the sample is still stored.
fn within(v: Option<f32>, min: f32, max: f32) -> Option<f32> {
    let v = v?;
    (v.is_finite() && (min..=max).contains(&v)).then_some(v)
}

/// Probes every endpoint, all at once.
pub async fn probe_endpoints(endpoints: &[Endpoint]) -> Vec<EndpointProbe> {
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in endpoints.iter().cloned().enumerate() {
        set.spawn(async move { (i, probe_endpoint(&e).await) });
    }
    let mut out: Vec<(usize, EndpointProbe)> = Vec::with_capacity(endpoints.len());
    while let Some(r) = set.join_next().await {
        if let Ok(p) = r {
            out.push(p);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, p)| p).collect()
}

fn ms_since(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}

/// DNS lookup and TCP connect timing for one endpoint.
pub async fn probe_endpoint(e: &Endpoint) -> EndpointProbe {
    let mut out = EndpointProbe {
        name: e.name.clone(),
        dns_ms: None,
        tcp_connect_ms: None,
        error: None,
    };
    let addr = match e.host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, e.port),
        Err(_) => {
            let t = Instant::now();
            let lookup = tokio::time::timeout(
                ENDPOINT_TIMEOUT,
                tokio::net::lookup_host((e.host.as_str(), e.port)),
            )
            .await;
            match lookup {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(a) => {
                        out.dns_ms = Some(ms_since(t));
                        a
                    }
                    None => {
                        out.error = Some(ProbeError::DnsFailed);
                        return out;
                    }
                },
                Ok(Err(_)) | Err(_) => {
                    out.error = Some(ProbeError::DnsFailed);
                    return out;
                }
            }
        }
    };
    let t = Instant::now();
    match tokio::time::timeout(ENDPOINT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => out.tcp_connect_ms = Some(ms_since(t)),
        Ok(Err(err)) => {
            out.error = Some(match err.kind() {
                std::io::ErrorKind::ConnectionRefused => ProbeError::Refused,
                std::io::ErrorKind::TimedOut => ProbeError::Timeout,
                _ => ProbeError::Other,
            });
        }
        Err(_) => out.error = Some(ProbeError::Timeout),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrustworthy_measurements_are_not_sent() {
        assert_eq!(within(Some(f32::NAN), 0.0, 100.0), None);
        assert_eq!(within(Some(f32::INFINITY), 0.0, 1.0), None);
        assert_eq!(within(Some(150.0), 0.0, 100.0), None);
        assert_eq!(within(Some(-1.0), 0.0, 100.0), None);
        assert_eq!(within(Some(42.0), 0.0, 100.0), Some(42.0));
        assert_eq!(within(None, 0.0, 100.0), None);
    }

    #[tokio::test]
    async fn endpoint_probe_times_connect_and_maps_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ok = probe_endpoint(&Endpoint {
            name: "up".into(),
            host: "127.0.0.1".into(),
            port,
        })
        .await;
        assert!(
            ok.tcp_connect_ms.is_some() && ok.error.is_none() && ok.dns_ms.is_none(),
            "{ok:?}"
        );
        let named = probe_endpoint(&Endpoint {
            name: "named".into(),
            host: "localhost".into(),
            port,
        })
        .await;
        assert!(
            named.dns_ms.is_some() || named.error == Some(ProbeError::DnsFailed),
            "{named:?}"
        );
        drop(listener);
        let refused = probe_endpoint(&Endpoint {
            name: "down".into(),
            host: "127.0.0.1".into(),
            port,
        })
        .await;
        assert_eq!(refused.error, Some(ProbeError::Refused));
        let bad = probe_endpoint(&Endpoint {
            name: "bad".into(),
            host: "no-such-host.invalid".into(),
            port: 1,
        })
        .await;
        assert_eq!(bad.error, Some(ProbeError::DnsFailed));
    }

    #[tokio::test]
    async fn heartbeat_sample_is_plausible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Agent::open(crate::config::tests::test_config(dir.path())).expect("open");
        let mut sys = System::new().ok();
        let RecordBody::Heartbeat(hb) = sample_heartbeat(&mut sys, &agent) else {
            panic!("heartbeat")
        };
        assert!(hb.mem_total_bytes > 0 && hb.mem_used_bytes <= hb.mem_total_bytes);
        assert!((0.0..=100.0).contains(&hb.cpu_percent));
        assert_eq!(hb.spool_records, 0);
    }
}

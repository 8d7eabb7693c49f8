//! The demo's parts (`src/bin/storepulse-demo.rs` wires them): the guard that keeps the demo
//! from wiping a directory it did not create, the fault-free continuation that keeps the fleet
//! running after the scripted timeline, wall-clock times in the local zone, and the watcher
//! that prints the incidents detection opens and resolves.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use storepulse_sim::Scenario;

/// Name of the file that marks a directory as the demo's own (safe to wipe on the next run).
pub const MARKER: &str = ".storepulse-demo";

/// Virtual length of one fault-free continuation chunk, ms.
pub const CONTINUATION_MS: i64 = 30 * 60_000;

/// Makes `dir` an empty directory the demo owns. A missing or empty directory is created and
/// marked; one holding the demo's marker (an earlier demo run) is wiped; anything else is
/// refused, so `--data ~/important` cannot lose files.
pub fn prepare_data_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("--data {} exists and is not a directory", dir.display());
        }
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty {
            if !dir.join(MARKER).is_file() {
                bail!(
                    "--data {} is not empty and was not created by the demo; refusing to wipe it \
                     (choose another --data, or remove it yourself) / 目录非空且不是演示程序创建的，拒绝清空",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "Created by storepulse-demo; the next demo run with this --data wipes it.\n",
    )
    .with_context(|| format!("marking {}", dir.display()))?;
    Ok(())
}

/// The `n`-th (from 1) fault-free continuation of `scenario`: the same fleet, fresh traffic
/// (its own seed), starting where the previous part ended, [`CONTINUATION_MS`] long.
pub fn continuation(scenario: &Scenario, n: u32) -> Scenario {
    let mut c = scenario.clone();
    c.name = format!("{} (continued, part {n})", scenario.name);
    c.seed = scenario.seed ^ (0x00C0_FFEE_u64 * u64::from(n));
    c.start_ms = scenario.end_ms() + i64::from(n - 1) * CONTINUATION_MS;
    c.duration_ms = CONTINUATION_MS;
    c.faults.clear();
    c.incidents.clear();
    c
}

/// `virtual_ms` of scenario time as wall time at `speed`, at least `floor_ms`.
pub fn scaled_ms(virtual_ms: i64, speed: f64, floor_ms: i64) -> i64 {
    ((virtual_ms as f64 / speed.max(0.001)) as i64).max(floor_ms)
}

/// Detection's default resolve hold (`[detect] resolve_hold_secs`), scenario time.
const RESOLVE_HOLD_MS: i64 = 5 * 60_000;

/// Hold before an incident resolves for a demo played at `speed`: detection's default hold
/// (5 minutes) of scenario time, in wall time, at least 20 s.
pub fn resolve_hold_ms(speed: f64) -> i64 {
    scaled_ms(RESOLVE_HOLD_MS, speed, 20_000)
}

/// Maps scenario time to the wall clock while the timeline plays.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Scenario time at `wall0_ms`.
    pub virtual0_ms: i64,
    /// Wall clock when playing started, Unix ms.
    pub wall0_ms: i64,
    /// Playback speed.
    pub speed: f64,
}

impl Clock {
    /// The wall-clock time at which scenario time `virtual_ms` plays.
    pub fn wall(&self, virtual_ms: i64) -> i64 {
        self.wall0_ms + ((virtual_ms - self.virtual0_ms) as f64 / self.speed) as i64
    }
}

/// `HH:MM:SS` in the machine's time zone (as the dashboard shows it by default).
pub fn local_hms(unix_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(unix_ms) {
        Ok(t) => t
            .to_zoned_datetime(jiff::tz::TimeZone::system())
            .strftime("%H:%M:%S")
            .to_string(),
        Err(_) => "--:--:--".to_owned(),
    }
}

/// The machine's zone as the demo prints it (`UTC`, `Asia/Shanghai`, or an offset).
pub fn local_zone_name() -> String {
    let tz = jiff::tz::TimeZone::system();
    tz.iana_name().map_or_else(
        || {
            jiff::Timestamp::now()
                .to_zoned_datetime(tz.clone())
                .strftime("UTC%:z")
                .to_string()
        },
        str::to_owned,
    )
}

/// One line per scripted fault: its window in wall-clock time and what it is.
pub fn schedule_lines(scenario: &Scenario, clock: &Clock) -> Vec<String> {
    scenario
        .incidents
        .iter()
        .map(|i| {
            format!(
                "  {} .. {}  {:<22} {}",
                local_hms(clock.wall(i.start_ms)),
                local_hms(clock.wall(i.end_ms)),
                i.kind.as_str(),
                scope_text(i)
            )
        })
        .collect()
}

fn scope_text(i: &storepulse_sim::Incident) -> String {
    i.scope
        .pairs()
        .map(|(k, v)| format!("{}={v}", k.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prints each scripted fault as it starts and ends, in wall-clock time.
#[derive(Debug, Default)]
pub struct ScriptPrinter {
    started: Vec<bool>,
    ended: Vec<bool>,
}

impl ScriptPrinter {
    /// Lines for the faults whose start or end scenario time `virtual_now_ms` has passed.
    pub fn step(&mut self, scenario: &Scenario, virtual_now_ms: i64) -> Vec<String> {
        let n = scenario.incidents.len();
        self.started.resize(n, false);
        self.ended.resize(n, false);
        let mut out = Vec::new();
        for (k, i) in scenario.incidents.iter().enumerate() {
            if !self.started[k] && virtual_now_ms >= i.start_ms {
                self.started[k] = true;
                out.push(format!(
                    "[{}] scripted fault starts / 故障开始: {} {}",
                    local_hms(crate::replay::wall_ms()),
                    i.kind.as_str(),
                    scope_text(i)
                ));
            }
            if !self.ended[k] && virtual_now_ms >= i.end_ms {
                self.ended[k] = true;
                out.push(format!(
                    "[{}] scripted fault ends / 故障结束:   {} {}",
                    local_hms(crate::replay::wall_ms()),
                    i.kind.as_str(),
                    scope_text(i)
                ));
            }
        }
        out
    }
}

/// What the watcher last saw of an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    resolved: bool,
}

/// Follows `GET /api/v1/incidents?state=all` and reports incidents detection opened or
/// resolved since the previous call.
#[derive(Debug)]
pub struct IncidentWatcher {
    url: String,
    http: reqwest::Client,
    seen: HashMap<String, Seen>,
}

impl IncidentWatcher {
    /// Watches the collector whose HTTP API is at `http_addr`.
    pub fn new(http_addr: std::net::SocketAddr) -> Self {
        Self {
            url: format!("http://{http_addr}/api/v1/incidents?state=all&limit=200"),
            http: reqwest::Client::new(),
            seen: HashMap::new(),
        }
    }

    /// Lines for what changed since the last call (nothing if the API cannot be read).
    pub async fn poll(&mut self) -> Vec<String> {
        let Ok(r) = self.http.get(&self.url).send().await else {
            return Vec::new();
        };
        let Ok(v) = r.json::<serde_json::Value>().await else {
            return Vec::new();
        };
        let mut incidents: Vec<&serde_json::Value> = v["incidents"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        incidents.sort_by_key(|i| i["id"].as_u64().unwrap_or(0));
        let mut out = Vec::new();
        for i in incidents {
            let id = i["id"].to_string();
            let resolved = i["state"] == "resolved";
            let scope = i["scope"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let kind = i["kind"].as_str().unwrap_or("?");
            let was = self.seen.insert(id.clone(), Seen { resolved });
            let at = |field: &str| local_hms(i[field].as_i64().unwrap_or_default());
            match was {
                None if !resolved => out.push(format!(
                    "[{}] detected / 发现事件 #{id}: {kind} {scope} (since {})",
                    at("opened_unix_ms"),
                    at("started_unix_ms")
                )),
                None => out.push(format!(
                    "[{}] resolved / 已恢复 #{id}: {kind} {scope}",
                    at("resolved_unix_ms")
                )),
                Some(s) if !s.resolved && resolved => out.push(format!(
                    "[{}] resolved / 已恢复 #{id}: {kind} {scope}",
                    at("resolved_unix_ms")
                )),
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_dir_guard_wipes_only_its_own() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let fresh = tmp.path().join("fresh");
        prepare_data_dir(&fresh)?;
        assert!(fresh.join(MARKER).is_file());
        std::fs::write(fresh.join("store.db"), "x")?;
        // A second run wipes the demo's own directory.
        prepare_data_dir(&fresh)?;
        assert!(!fresh.join("store.db").exists());

        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs)?;
        std::fs::write(theirs.join("thesis.tex"), "precious")?;
        let e = prepare_data_dir(&theirs).expect_err("must refuse");
        assert!(e.to_string().contains("refusing to wipe"), "{e}");
        assert!(theirs.join("thesis.tex").is_file());

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty)?;
        prepare_data_dir(&empty)?;
        assert!(empty.join(MARKER).is_file());
        Ok(())
    }

    #[test]
    fn the_hold_scales_with_speed() {
        assert_eq!(resolve_hold_ms(1.0), 300_000);
        assert_eq!(resolve_hold_ms(10.0), 30_000);
        assert_eq!(resolve_hold_ms(600.0), 20_000);
    }
}

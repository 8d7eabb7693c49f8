//! Tests of the config file: the example parses, defaults, refusals, one heartbeat source.

use super::*;

/// An environment in which every variable is set (the example names some).
fn any_env(var: &str) -> Option<String> {
    Some(format!("https://example.invalid/{var}"))
}

const MINIMAL: &str =
    "[tls]\nca_cert='/p/ca.pem'\ncert='c.pem'\nkey='c.key'\n[store]\npath='data'\n";

#[test]
fn example_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(dir.join("collector.example.toml")).expect("example");
    let c = Config::from_toml_with_env(&text, dir, &any_env).expect("example parses");
    assert!(
        c.tls.ca_cert.starts_with(dir),
        "relative paths resolve against the file"
    );
    assert_eq!(c.agents.heartbeat_interval_secs, 30);
    assert_eq!(c.ingest.group_commit.max_delay, Duration::from_millis(10));
    assert_eq!(
        c.detect,
        DetectSettings::default(),
        "the example's [detect] shows the defaults"
    );
    assert_eq!(
        c.alerts.receivers.len(),
        0,
        "receivers that need secrets are commented out"
    );
    assert_eq!(c.log.format, LogFormat::Text);
}

/// Issue 16: the example works as copied, with no environment variable set.
#[test]
fn example_config_needs_no_secret() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(dir.join("collector.example.toml")).expect("example");
    Config::from_toml_with_env(&text, dir, &|_| None).expect("parses without any variable");
    // Its commented-out receivers are well-formed once enabled (with their variables set).
    let enabled: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with("[[alerts.receivers]]")
                    || rest.starts_with("name =")
                    || rest.starts_with("type =")
                    || rest.starts_with("url")
                    || rest.starts_with("routing_key_env")
                    || rest.starts_with("secret_env")
                    || rest.starts_with("repeat_interval_secs")
                    || rest.starts_with("default_receivers") =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml_with_env(&enabled, dir, &any_env).expect("enabled receivers parse");
    assert_eq!(c.alerts.receivers.len(), 5);
}

#[test]
fn log_format_is_read() {
    let c = Config::from_toml(
        &format!("{MINIMAL}[log]\nformat = \"json\"\n"),
        Path::new("/"),
    )
    .expect("parses");
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(
        Config::from_toml(
            &format!("{MINIMAL}[log]\nformat = \"xml\"\n"),
            Path::new("/")
        )
        .is_err()
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_toml(MINIMAL, Path::new("/etc/sp")).expect("parses");
    assert_eq!(c.quic.listen, SocketAddr::from(([0, 0, 0, 0], 4433)));
    assert_eq!(c.http.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
    assert_eq!(c.tls.ca_cert, PathBuf::from("/p/ca.pem"));
    assert_eq!(c.tls.cert, PathBuf::from("/etc/sp/c.pem"));
    assert_eq!(c.store.path, PathBuf::from("/etc/sp/data"));
    assert_eq!(c.tls.crl, None);
    assert_eq!(c.fleet.stale_after_ms, 90_000);
    assert_eq!(c.ingest.max_frame_bytes, 1 << 20);
    assert_eq!(c.quic.keep_alive, None);
    // `with_defaults` is the same configuration.
    let d = Config::with_defaults(c.tls.clone(), c.store.path.clone());
    assert_eq!(d.fleet, c.fleet);
    assert_eq!(d.agents, c.agents);
    assert_eq!(d.detect, c.detect);
    assert_eq!(d.ingest.rate_limit, c.ingest.rate_limit);
    assert_eq!(d.alerts.notify, c.alerts.notify);
}

#[test]
fn detect_defaults_are_the_cores() {
    let c = Config::from_toml(MINIMAL, Path::new("/")).expect("parses");
    assert_eq!(
        c.detector(),
        DetectorConfig {
            heartbeat_interval_ms: 30_000,
            ..DetectorConfig::default()
        }
    );
}

#[test]
fn the_detector_assumes_the_heartbeat_agents_are_told() {
    let text = format!(
        "{MINIMAL}[agents]\nheartbeat_interval_secs = 45\n[detect]\nresolve_hold_secs = 120\nmin_significance = 8.0\n"
    );
    let c = Config::from_toml(&text, Path::new("/")).expect("parses");
    assert_eq!(c.agents.welcome().heartbeat_interval_secs, 45);
    let d = c.detector();
    assert_eq!(d.heartbeat_interval_ms, 45_000);
    assert_eq!(d.resolve_hold_ms, 120_000);
    assert!((d.min_significance - 8.0).abs() < 1e-12);
}

#[test]
fn unknown_fields_and_bad_values_are_refused() {
    let unknown = format!("{MINIMAL}[quic]\nlisten_addr='0.0.0.0:1'\n");
    assert!(matches!(
        Config::from_toml(&unknown, Path::new(".")),
        Err(ConfigError::Parse { .. })
    ));
    for bad in [
        "[fleet]\nstale_after_secs=300\noffline_after_secs=90\n",
        "[detect]\nmin_significance=0\n",
        "[detect]\nmin_significance=nan\n",
        "[detect]\nstay_open_significance=9.0\n",
        "[detect]\nresolve_hold_secs=0\n",
        "[detect]\nfalse_incidents_per_fleet_day=-1.0\n",
        "[agents]\nheartbeat_interval_secs=0\n",
        "[quic]\nidle_timeout_secs=10\nkeep_alive_interval_secs=10\n",
        "[alerts]\nresolution_hold_secs=86401\n",
    ] {
        let text = format!("{MINIMAL}{bad}");
        assert!(
            matches!(
                Config::from_toml(&text, Path::new(".")),
                Err(ConfigError::Invalid(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        Config::from_toml(
            &format!("{MINIMAL}[detect]\nhalf_life_hours=1\n"),
            Path::new(".")
        ),
        Err(ConfigError::Parse { .. })
    ));
}

#[test]
fn tokens_come_from_the_file_or_the_environment_and_stay_secret() {
    let text = format!(
        "{MINIMAL}[http]\nlisten='0.0.0.0:8080'\ntokens=[{{name='a',role='read',token='0123456789abcdefX'}},{{name='b',role='admin',token_env='B_TOKEN'}}]\n"
    );
    let env = |v: &str| (v == "B_TOKEN").then(|| "from-the-environment-42".to_owned());
    let c = Config::from_toml_with_env(&text, Path::new("/"), &env).expect("parses");
    assert_eq!(c.http.tokens.len(), 2);
    assert_eq!(c.http.tokens[1].value.expose(), "from-the-environment-42");
    assert!(
        !format!("{c:?}").contains("0123456789abcdefX"),
        "Debug redacts"
    );
    assert!(matches!(
        Config::from_toml_with_env(&text, Path::new("/"), &|_| None),
        Err(ConfigError::Invalid(_))
    ));
}

#[test]
fn worker_threads_default_to_the_cores_available() {
    let c = Config::from_toml(MINIMAL, Path::new("/")).expect("parses");
    assert_eq!(c.runtime.worker_threads, available_cores());
    assert!(c.runtime.worker_threads >= 1);
    let d = Config::with_defaults(c.tls.clone(), c.store.path.clone());
    assert_eq!(d.runtime, c.runtime);
    // The default is resolved against the cores passed in, not fixed at 1 or 2.
    assert_eq!(
        RawRuntime::default().settings(6).expect("valid"),
        RuntimeSettings { worker_threads: 6 }
    );

    let three = format!("{MINIMAL}[runtime]\nworker_threads = 3\n");
    let c = Config::from_toml(&three, Path::new("/")).expect("parses");
    assert_eq!(c.runtime.worker_threads, 3);

    for bad in ["worker_threads = 0", "worker_threads = 100000"] {
        let text = format!("{MINIMAL}[runtime]\n{bad}\n");
        assert!(
            matches!(
                Config::from_toml(&text, Path::new("/")),
                Err(ConfigError::Invalid(m)) if m.contains("runtime.worker_threads")
            ),
            "{bad}"
        );
    }
    for bad in ["worker_threads = -1", "workers = 2"] {
        let text = format!("{MINIMAL}[runtime]\n{bad}\n");
        assert!(
            matches!(
                Config::from_toml(&text, Path::new("/")),
                Err(ConfigError::Parse { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn defaults_are_valid() {
    let hold = Config::from_toml(
        &format!("{MINIMAL}[alerts]\nresolution_hold_secs=0\n"),
        Path::new("."),
    )
    .expect("a hold of 0 is valid");
    assert_eq!(hold.alerts.resolution_hold_ms, 0);
    let _ = AlertSettings::default();
    let q = QuicSettings::default();
    assert!(q.admission.max_connections > 0);
}

/// Issue 19: the dashboard's time zone is an IANA name or unset (the browser's).
#[test]
fn http_time_zone_is_an_iana_name_or_unset() {
    let base = Path::new("/etc/storepulse");
    let c = Config::from_toml_with_env(MINIMAL, base, &any_env).expect("minimal");
    assert_eq!(c.http.time_zone, None, "default: the browser's zone");
    for zone in [
        "Asia/Shanghai",
        "UTC",
        "America/Argentina/Salta",
        "Etc/GMT-8",
    ] {
        let text = format!("{MINIMAL}[http]\ntime_zone = '{zone}'\n");
        let c = Config::from_toml_with_env(&text, base, &any_env).expect(zone);
        assert_eq!(c.http.time_zone.as_deref(), Some(zone));
    }
    for zone in ["", "Asia/", "+08:00", "Asia/Shanghai\"><script>", "../etc"] {
        let text = format!("{MINIMAL}[http]\ntime_zone = '{zone}'\n");
        let err = Config::from_toml_with_env(&text, base, &any_env).expect_err(zone);
        assert!(err.to_string().contains("http.time_zone"), "{zone}: {err}");
    }
}

//! The Debian packages, installed for real on this machine: both `.deb`s are built with
//! cargo-deb, installed with `dpkg -i`, their systemd units checked with `systemd-analyze
//! verify` (systemd itself is not running here), the installed binaries run as the packaged
//! `storepulse` user with the packaged configs (edited as an operator would: addresses and
//! the terminal's provisioning files), an upgrade in place keeps the edited config, then both
//! packages are removed and purged.
//!
//! The packages carry the dev-profile binaries the test command built (`cargo deb --no-build
//! --profile dev`, stripped by cargo-deb): a release build of both binaries would take longer
//! than the rest of the suite. Release packages are `cargo deb -p storepulse-agent` and
//! `cargo deb -p storepulse-collector` (README, "Packages").
//!
//! Needs root, dpkg, cargo-deb and systemd-analyze (scripts/install-test-deps.sh installs
//! cargo-deb); it fails, it does not skip, when one is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use storepulse_tests::{free_tcp_port, free_udp_port, wait_for};

const PACKAGES: [&str; 2] = ["storepulse-agent", "storepulse-collector"];
const PKI: &str = "/var/lib/storepulse-collector/pki";
const TERMINAL: &str = "PKG-0001";

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok(out)
}

fn ok(cmd: &mut Command) -> Result<String> {
    let out = run(cmd)?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command run as the packaged service user, as systemd would (`User=storepulse`).
fn as_service(bin: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=storepulse",
        "--regid=storepulse",
        "--init-groups",
        "--",
        bin,
    ]);
    c
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Purges both packages when dropped (also when the test fails half-way) and stops what it
/// started.
struct Installed {
    children: Vec<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("dpkg")
            .args(["--purge"])
            .args(PACKAGES)
            .output();
        let _ = std::fs::remove_dir_all("/var/lib/storepulse-collector");
        for f in ["terminal-id", "ca.pem", "enrol.token"] {
            let _ = std::fs::remove_file(Path::new("/etc/storepulse").join(f));
        }
        let _ = std::fs::remove_dir("/etc/storepulse");
    }
}

fn preconditions() -> Result<()> {
    let uid = ok(Command::new("id").arg("-u"))?;
    ensure!(
        uid.trim() == "0",
        "this test installs packages: run it as root (as CI does)"
    );
    for tool in ["dpkg", "systemd-analyze", "setpriv"] {
        ensure!(
            run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))?
                .status
                .success(),
            "{tool} is missing (Debian: apt-get install systemd util-linux)"
        );
    }
    ensure!(
        run(Command::new("cargo").args(["deb", "--version"]))?
            .status
            .success(),
        "cargo-deb is missing: bash scripts/install-test-deps.sh installs it"
    );
    Ok(())
}

/// `cargo deb --no-build --profile dev` for one package; returns the .deb.
fn build_deb(package: &str, out: &Path) -> Result<PathBuf> {
    let stdout = ok(Command::new("cargo")
        .current_dir(workspace())
        .args(["deb", "--no-build", "--profile", "dev", "-p", package, "-o"])
        .arg(out))?;
    let deb = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .with_context(|| format!("cargo deb printed no .deb path: {stdout}"))?;
    Ok(PathBuf::from(deb))
}

fn mode_and_group(path: &str) -> Result<String> {
    Ok(ok(Command::new("stat").args(["-c", "%a %G", path]))?
        .trim()
        .to_owned())
}

fn edit(path: &str, from: &str, to: &str) -> Result<()> {
    let text = std::fs::read_to_string(path)?;
    ensure!(text.contains(from), "{path} has no {from:?}");
    std::fs::write(path, text.replace(from, to))?;
    Ok(())
}

fn spawn(mut cmd: Command, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)?;
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?)
}

fn sigterm(child: &mut Child) -> Result<()> {
    ok(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
    for _ in 0..200 {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("process {} did not stop within 10 s of SIGTERM", child.id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_packages_install_run_upgrade_and_purge() -> Result<()> {
    preconditions()?;
    let tmp = tempfile::tempdir()?;
    // A run that died half-way may have left them installed.
    let _ = run(Command::new("dpkg").arg("--purge").args(PACKAGES));
    let debs: Vec<PathBuf> = PACKAGES
        .iter()
        .map(|p| build_deb(p, tmp.path()))
        .collect::<Result<_>>()?;
    for d in &debs {
        let size = std::fs::metadata(d)?.len();
        eprintln!("{}: {size} bytes", d.display());
    }
    ok(Command::new("dpkg").arg("-i").args(&debs))?;
    let mut installed = Installed {
        children: Vec::new(),
    };

    // What the packages put in place.
    ok(Command::new("getent").args(["passwd", "storepulse"]))?;
    for bin in ["/usr/bin/storepulse-agent", "/usr/bin/storepulse-collector"] {
        ensure!(Path::new(bin).exists(), "{bin} not installed");
    }
    assert_eq!(
        mode_and_group("/etc/storepulse/agent.toml")?,
        "640 storepulse"
    );
    assert_eq!(
        mode_and_group("/etc/storepulse/collector.toml")?,
        "640 storepulse"
    );
    assert_eq!(
        mode_and_group("/var/lib/storepulse-agent")?,
        "750 storepulse"
    );
    for unit in PACKAGES {
        let path = format!("/usr/lib/systemd/system/{unit}.service");
        let out = run(Command::new("systemd-analyze").args(["verify", &path]))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            out.status.success() && !text.contains(unit),
            "systemd-analyze verify {path}: {text}"
        );
        let unit_text = std::fs::read_to_string(&path)?;
        for line in [
            "User=storepulse",
            "ProtectSystem=strict",
            "PrivateTmp=true",
            "NoNewPrivileges=true",
            "Restart=on-failure",
            &format!("StateDirectory={unit}"),
        ] {
            ensure!(unit_text.contains(line), "{path} lacks {line}");
        }
    }

    // The collector, as its service would run it, on free ports.
    let (quic, http) = (free_udp_port(), free_tcp_port());
    let cfg = "/etc/storepulse/collector.toml";
    edit(cfg, "0.0.0.0:4433", &format!("127.0.0.1:{quic}"))?;
    edit(cfg, "127.0.0.1:8080", &format!("127.0.0.1:{http}"))?;
    ok(as_service("/usr/bin/storepulse-collector").args([
        "pki",
        "init",
        "--dir",
        PKI,
        "--server-name",
        "collector.storepulse.local",
    ]))?;
    ok(as_service("/usr/bin/storepulse-collector").args(["check-config", "--config", cfg]))?;
    let mut serve = as_service("/usr/bin/storepulse-collector");
    serve.args(["serve", "--config", cfg]);
    installed
        .children
        .push(spawn(serve, &tmp.path().join("collector.log"))?);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    wait_for(Duration::from_secs(20), "collector /healthz", || {
        let (client, url) = (client.clone(), format!("{base}/healthz"));
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await
    .with_context(|| {
        std::fs::read_to_string(tmp.path().join("collector.log")).unwrap_or_default()
    })?;

    // The agent refuses to start unprovisioned, naming what is missing.
    let agent_cfg = "/etc/storepulse/agent.toml";
    let out = run(Command::new("/usr/bin/storepulse-agent").args([
        "check-config",
        "--config",
        agent_cfg,
    ]))?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(64) && err.contains("identity.terminal_id_file"),
        "unprovisioned check-config: {:?} {err}",
        out.status
    );

    // Provisioning, as README says: id, CA, and (pre-provisioned here) key and certificate.
    std::fs::write("/etc/storepulse/terminal-id", format!("{TERMINAL}\n"))?;
    std::fs::copy(format!("{PKI}/ca.pem"), "/etc/storepulse/ca.pem")?;
    ok(as_service("/usr/bin/storepulse-collector").args([
        "pki",
        "issue",
        "--dir",
        PKI,
        "--terminal",
        TERMINAL,
    ]))?;
    let tls = "/var/lib/storepulse-agent/tls";
    ok(Command::new("install").args([
        "-d",
        "-o",
        "storepulse",
        "-g",
        "storepulse",
        "-m",
        "0700",
        tls,
    ]))?;
    for (from, to) in [("pem", "terminal.pem"), ("key", "terminal.key")] {
        ok(Command::new("install")
            .args(["-o", "storepulse", "-g", "storepulse", "-m", "0600"])
            .arg(format!("{PKI}/terminals/{TERMINAL}.{from}"))
            .arg(format!("{tls}/{to}")))?;
    }
    let intake = free_tcp_port();
    edit(
        agent_cfg,
        "collector.storepulse.local:4433",
        &format!("127.0.0.1:{quic}"),
    )?;
    edit(agent_cfg, "127.0.0.1:7878", &format!("127.0.0.1:{intake}"))?;
    let check =
        ok(as_service("/usr/bin/storepulse-agent").args(["check-config", "--config", agent_cfg]))?;
    ensure!(check.contains("certificate ok"), "{check}");
    let mut agent = as_service("/usr/bin/storepulse-agent");
    agent.args(["--config", agent_cfg]);
    installed
        .children
        .push(spawn(agent, &tmp.path().join("agent.log"))?);
    let txn =
        serde_json::json!([{"scheme": "cup", "code": "00", "latency_ms": 4242, "method": "card"}]);
    wait_for(Duration::from_secs(20), "agent intake", || {
        let client = client.clone();
        let body = txn.to_string();
        async move {
            client
                .post(format!("http://127.0.0.1:{intake}/v1/txn"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await
    .with_context(|| std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default())?;
    wait_for(Duration::from_secs(20), "the outcome stored", || {
        let client = client.clone();
        let url = format!("{base}/api/v1/terminals/{TERMINAL}/records?limit=1000");
        async move {
            let v: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            v["records"]
                .as_array()?
                .iter()
                .any(|r| r["body"]["latency_ms"] == 4242)
                .then_some(())
        }
    })
    .await
    .with_context(|| std::fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default())?;
    ensure!(
        Path::new("/var/lib/storepulse-agent/spool.redb").exists(),
        "the spool lives in the state directory"
    );
    for c in &mut installed.children {
        sigterm(c)?;
    }
    installed.children.clear();

    // An upgrade in place keeps the operator's config (dpkg conffile), untouched.
    let before = std::fs::read_to_string(agent_cfg)?;
    ok(Command::new("dpkg").arg("-i").args(&debs))?;
    assert_eq!(std::fs::read_to_string(agent_cfg)?, before);

    // Remove keeps configs; purge removes them and the state (not the CA).
    ok(Command::new("dpkg").arg("--remove").args(PACKAGES))?;
    ensure!(!Path::new("/usr/bin/storepulse-agent").exists());
    ensure!(Path::new(agent_cfg).exists(), "remove keeps the config");
    ok(Command::new("dpkg").arg("--purge").args(PACKAGES))?;
    ensure!(!Path::new(agent_cfg).exists(), "purge removes the config");
    ensure!(!Path::new("/etc/storepulse/collector.toml").exists());
    ensure!(!Path::new("/var/lib/storepulse-agent").exists());
    ensure!(!Path::new("/var/lib/storepulse-collector/store").exists());
    ensure!(
        Path::new(PKI).join("ca.key").exists(),
        "purge keeps the fleet CA"
    );
    drop(installed);
    Ok(())
}

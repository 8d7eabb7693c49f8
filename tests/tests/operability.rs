//! Operability (issue 16 §7), with the real binaries: the agent's `check-config` refuses a
//! certificate that names another terminal or comes from another CA and says which server
//! name the collector's certificate must carry; both binaries write plain text without colour
//! codes when standard error is not a terminal, and one JSON object per line with
//! `--log-format json` or `[log] format = "json"`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use storepulse_tests::{Pki, bin, free_tcp_port, free_udp_port};

fn agent_toml(dir: &Path, pki: &Path, terminal: &str, cert_of: &str, log: &str) -> String {
    format!(
        r#"[identity]
terminal_id = "{terminal}"
merchant_id = "M1"
store_id = "S1"
region = "east"
city = "上海"
acquirer = "acq-a"
qr_channel = "wechatpay"
carrier = "cmcc"
link = "wifi"
model = "P300"
firmware = "2.3.1"
app_version = "5.0.2"
[collector]
address = "127.0.0.1:{quic}"
ca_cert = "{pki}/ca.pem"
cert = "{pki}/terminals/{cert_of}.pem"
key = "{pki}/terminals/{cert_of}.key"
[spool]
path = "{dir}/spool.redb"
[intake]
listen = "127.0.0.1:{intake}"
[log]
format = "{log}"
"#,
        quic = free_udp_port(),
        intake = free_tcp_port(),
        pki = pki.display(),
        dir = dir.display(),
    )
}

fn run(cmd: &mut Command) -> Result<(bool, String, String)> {
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn agent_check_config_checks_its_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::init(&dir.path().join("pki"))?;
    pki.issue("T1")?;
    pki.issue("T2")?;
    let other = Pki::init(&dir.path().join("other"))?;
    other.issue("T1")?;
    let cfg = dir.path().join("agent.toml");
    let check = |text: String| -> Result<(bool, String, String)> {
        std::fs::write(&cfg, text)?;
        run(Command::new(bin("storepulse-agent")?)
            .args(["check-config", "--config"])
            .arg(&cfg))
    };

    let (ok, out, err) = check(agent_toml(dir.path(), &pki.dir, "T1", "T1", "text"))?;
    ensure!(ok, "{out}{err}");
    ensure!(out.contains("certificate ok: CN T1"), "{out}");
    ensure!(
        out.contains("must name collector.storepulse.local"),
        "{out}"
    );

    let (ok, out, err) = check(agent_toml(dir.path(), &pki.dir, "T1", "T2", "text"))?;
    ensure!(
        !ok && err.contains("names \"T2\""),
        "another terminal's: {out}{err}"
    );

    let mut foreign = agent_toml(dir.path(), &pki.dir, "T1", "T1", "text");
    foreign = foreign.replace(
        &format!("{}/terminals", pki.dir.display()),
        &format!("{}/terminals", other.dir.display()),
    );
    let (ok, out, err) = check(foreign)?;
    ensure!(
        !ok && err.contains("not issued by the fleet CA"),
        "another CA's: {out}{err}"
    );
    Ok(())
}

fn no_ansi_and_json(log_text: &str, log_json: &str, what: &str) -> Result<()> {
    ensure!(!log_text.is_empty(), "{what}: no text log");
    ensure!(
        !log_text.contains('\u{1b}'),
        "{what}: colour codes in a log that is not a terminal:\n{log_text}"
    );
    let lines: Vec<&str> = log_json.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!lines.is_empty(), "{what}: no JSON log");
    for l in lines {
        let v: serde_json::Value =
            serde_json::from_str(l).with_context(|| format!("{what}: not JSON: {l}"))?;
        ensure!(v.is_object() && v["level"].is_string(), "{what}: {l}");
    }
    Ok(())
}

/// Starts `cmd` with standard error into a file (not a terminal), waits until it has logged
/// (at most 10 s), gives it a moment more, kills it and returns what it logged.
fn log_of(mut cmd: Command) -> Result<String> {
    let file = tempfile::NamedTempFile::new()?;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(file.reopen()?)
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(file.path())?.len() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill()?;
    child.wait()?;
    Ok(std::fs::read_to_string(file.path())?)
}

#[test]
fn logs_are_plain_text_or_json_lines() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::init(&dir.path().join("pki"))?;
    pki.issue("T1")?;

    // The agent: text from its config, JSON from its config, and the flag over the config.
    let cfg = dir.path().join("agent.toml");
    let agent = |format: &str, flag: Option<&str>| -> Result<String> {
        std::fs::write(&cfg, agent_toml(dir.path(), &pki.dir, "T1", "T1", format))?;
        let mut cmd = Command::new(bin("storepulse-agent")?);
        cmd.arg("--config").arg(&cfg).env_remove("NO_COLOR");
        if let Some(f) = flag {
            cmd.args(["--log-format", f]);
        }
        log_of(cmd)
    };
    no_ansi_and_json(&agent("text", None)?, &agent("json", None)?, "agent config")?;
    no_ansi_and_json(
        &agent("json", Some("text"))?,
        &agent("text", Some("json"))?,
        "agent flag",
    )?;

    // The collector.
    let ccfg = dir.path().join("collector.toml");
    let collector = |format: &str| -> Result<String> {
        std::fs::write(
            &ccfg,
            format!(
                "[quic]\nlisten = \"127.0.0.1:{}\"\n[tls]\nca_cert = \"pki/ca.pem\"\ncert = \"pki/collector.pem\"\nkey = \"pki/collector.key\"\n[store]\npath = \"store\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[log]\nformat = \"{format}\"\n",
                free_udp_port(),
                free_tcp_port()
            ),
        )?;
        let mut cmd = Command::new(bin("storepulse-collector")?);
        cmd.arg("serve")
            .arg("--config")
            .arg(&ccfg)
            .env_remove("NO_COLOR");
        log_of(cmd)
    };
    no_ansi_and_json(&collector("text")?, &collector("json")?, "collector")?;
    Ok(())
}

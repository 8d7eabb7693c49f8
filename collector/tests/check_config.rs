//! `storepulse-collector check-config`: the real binary on real files. A good config and its PKI
//! pass (with the `[runtime]` worker threads they set); an unknown field, a bad `[detect]` value,
//! an unset secret variable, a missing certificate and zero worker threads each fail with exit
//! code 64 and a message naming the problem.

use std::path::Path;
use std::process::{Command, Output};

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storepulse-collector"))
        .args(["check-config", "--config"])
        .arg(config)
        .env_remove("CHECK_CONFIG_TEST_TOKEN")
        .output()
        .expect("runs the binary")
}

const BASE: &str = r#"[tls]
ca_cert = "pki/ca.pem"
cert = "pki/collector.pem"
key = "pki/collector.key"
crl = "pki/crl.pem"
[store]
path = "store"
"#;

#[test]
fn good_and_bad_configs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    storepulse_collector::pki::init(
        &tmp.path().join("pki"),
        storepulse_collector::pki::DEFAULT_SERVER_NAME,
    )
    .expect("pki");
    let path = tmp.path().join("collector.toml");

    std::fs::write(&path, format!("{BASE}[detect]\nresolve_hold_secs = 300\n")).expect("write");
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("config ok:"), "{stdout}");

    std::fs::write(&path, format!("{BASE}[runtime]\nworker_threads = 3\n")).expect("write");
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains(", 3 worker thread(s)"), "{stdout}");

    for (text, expect) in [
        (
            format!("{BASE}[detect]\nmin_significanse = 7.0\n"),
            "min_significanse",
        ),
        (
            format!("{BASE}[detect]\nmin_significance = 0.0\n"),
            "min_significance",
        ),
        (
            format!(
                "{BASE}[http]\ntokens = [{{ name = \"ops\", role = \"admin\", token_env = \"CHECK_CONFIG_TEST_TOKEN\" }}]\n"
            ),
            "CHECK_CONFIG_TEST_TOKEN",
        ),
        (
            BASE.replace("pki/collector.pem", "pki/missing.pem"),
            "missing.pem",
        ),
        (
            format!("{BASE}[runtime]\nworker_threads = 0\n"),
            "runtime.worker_threads",
        ),
    ] {
        std::fs::write(&path, &text).expect("write");
        let out = check(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}\n{stderr}");
        assert!(stderr.contains(expect), "{text}\n{stderr}");
    }
}

/// Issue 16: `collector.example.toml` as copied, beside a PKI from `pki init`, passes with no
/// environment variable set, and says which server names agents may use.
#[test]
fn the_example_config_works_as_copied() {
    let tmp = tempfile::tempdir().expect("tempdir");
    storepulse_collector::pki::init(
        &tmp.path().join("pki"),
        storepulse_collector::pki::DEFAULT_SERVER_NAME,
    )
    .expect("pki");
    let path = tmp.path().join("collector.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("collector.example.toml"),
        &path,
    )
    .expect("copy");
    let out = Command::new(env!("CARGO_BIN_EXE_storepulse-collector"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env_clear()
        .output()
        .expect("runs the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("agents may use server_name collector.storepulse.local"),
        "{stdout}"
    );
    assert!(stdout.contains("will be created"), "{stdout}");
}

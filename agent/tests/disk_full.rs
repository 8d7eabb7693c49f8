//! The agent's spool on a full disk (issue 7, faults): a real tmpfs fills up under the redb
//! spool. Appends must fail with a clear error, what the disk cost is counted as `SpoolDrops`
//! with reason `DiskError`, what was already spooled stays readable (so the link keeps
//! sending it), and once space returns appends work again and the file still opens.
//!
//! Runs as root (as CI does): it mounts a tmpfs. If the mount fails the test fails, it does
//! not skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use storepulse_agent::RedbSpool;
use storepulse_agent_core::{NewRecord, Spool};
use storepulse_shared::{DropReason, Heartbeat, RecordBody, SpoolDrops};

/// A tmpfs mounted for the test's lifetime; unmounted (lazily) when dropped.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (run it as root, as CI does): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            _parent: parent,
        }
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes a file taking all the free space left on the file system (until ENOSPC).
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0xA5u8; 4096];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    // Partial last chunk: byte by byte until full.
    while f.write_all(&[0]).is_ok() {
        written += 1;
    }
    let _ = f.sync_all();
    written
}

fn heartbeat(n: u64) -> NewRecord {
    NewRecord {
        time_unix_ms: 1_700_000_000_000 + i64::try_from(n).expect("small"),
        body: RecordBody::Heartbeat(Heartbeat {
            cpu_percent: 1.0,
            mem_used_bytes: n,
            mem_total_bytes: 1 << 30,
            disk_free_bytes: 0,
            uptime_secs: n,
            temperature_c: None,
            battery_percent: None,
            spool_records: 0,
        }),
    }
}

#[test]
fn spool_on_a_full_disk_fails_clearly_counts_disk_drops_and_recovers() {
    let fs = Tmpfs::mount("4m");
    let path = fs.path().join("spool.redb");
    let none = BTreeSet::new();
    let mut spool = RedbSpool::open(&path, 64 << 20, 7).expect("open on an empty tmpfs");
    for n in 0..20 {
        spool.append(vec![heartbeat(n)], &none).expect("append");
    }
    let before = spool.records().expect("read");
    assert_eq!(before.len(), 20);

    // Take every free byte, then keep appending: redb must fail, not panic or corrupt.
    let filler = fs.path().join("filler");
    fill(&filler);
    let mut failures = 0u64;
    let mut first_error = None;
    for n in 20..2_000 {
        match spool.append(vec![heartbeat(n)], &none) {
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        if failures >= 5 {
            break;
        }
    }
    let first_error = first_error.expect("appends must fail on a full disk");
    assert!(
        first_error.contains("No space left on device"),
        "the error names the cause: {first_error}"
    );
    assert!(spool.is_failing());
    assert_eq!(spool.disk_error_drops().heartbeats, failures);
    assert!(
        spool.flush_drops(1, &none).is_err(),
        "nothing can be written while the disk is full"
    );

    // What was spooled before is still readable: the link can keep sending it.
    let during = spool
        .records()
        .expect("spooled records stay readable on a full disk");
    assert!(during.len() >= before.len());

    // Space returns.
    std::fs::remove_file(&filler).expect("free the space");
    let a = spool
        .append(vec![heartbeat(5_000)], &none)
        .expect("append works again once space returns");
    assert_eq!(a.count, 1);
    let flushed = spool
        .flush_drops(2, &none)
        .expect("flush works again")
        .expect("a SpoolDrops record for what the disk cost");
    let recs = spool.records().expect("read");
    let drops: Vec<&SpoolDrops> = recs
        .iter()
        .filter_map(|r| match &r.body {
            RecordBody::SpoolDrops(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(flushed.count, 1, "one SpoolDrops record: {flushed:?}");
    assert!(!spool.is_failing());
    let disk: u64 = drops
        .iter()
        .filter(|d| d.reason == DropReason::DiskError)
        .map(|d| d.heartbeats)
        .sum();
    assert_eq!(disk, failures, "every heartbeat the disk cost is reported");

    // The file still opens, with everything that was committed.
    let committed = spool.records().expect("read");
    drop(spool);
    let reopened = RedbSpool::open(&path, 64 << 20, 8).expect("reopen after the disk was full");
    assert_eq!(reopened.records().expect("read"), committed);
    assert_eq!(reopened.meta().epoch, 7);
}

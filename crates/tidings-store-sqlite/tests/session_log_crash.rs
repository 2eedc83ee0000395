//! Kill -9 of a process that keeps live sessions in the SQLite recovery log: every live session
//! whose write was confirmed (a `flush` answered after it) is recoverable when the next process
//! opens the file — with its latest confirmed rooms, as disconnected at the dead process's last
//! sign of life — and no session that was forgotten comes back. The child is this binary's
//! ignored test, re-run by the parent (the style of `tidings_store_tests::crash`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidings_core::session_log::{SessionLog, SessionRecord, now_millis};
use tidings_core::{Room, Sid};
use tidings_store_sqlite::SqliteSessionLog;

const CHILD_LOG: &str = "TIDINGS_CRASH_CHILD_RECOVERY_LOG";
const CHILD_ROUNDS: usize = 10_000;
const CHILD_DEADLINE: Duration = Duration::from_secs(30);

fn record(pid: &str, sid: Sid, rooms: usize) -> SessionRecord {
    SessionRecord {
        pid: pid.to_owned(),
        sid,
        namespace: "/".to_owned(),
        rooms: (0..rooms).map(|r| Room::from(format!("r{r}"))).collect(),
        base_offset: 1,
        last_offset: 0,
        disconnected_at: now_millis(),
    }
}

/// The child process of `confirmed_live_sessions_survive_sigkill`. Not a test of its own.
/// Each round: 20 sessions connect, each joins one more room than the last, one in four
/// leaves for good (forgotten); then a flush, and a line per confirmed fact.
#[test]
#[ignore = "the child process of confirmed_live_sessions_survive_sigkill, which runs it; not a test"]
fn crash_child_process_not_a_test() {
    let Some(path) = std::env::var_os(CHILD_LOG) else {
        panic!("run by confirmed_live_sessions_survive_sigkill with {CHILD_LOG} set; not a test");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = SqliteSessionLog::open(Path::new(&path)).unwrap();
        let started = Instant::now();
        for round in 0..CHILD_ROUNDS {
            if started.elapsed() > CHILD_DEADLINE {
                return;
            }
            let mut lines = Vec::new();
            for i in 0..20 {
                let pid = format!("p{round}-{i}");
                let sid = Sid::new();
                log.persist_live(record(&pid, sid, 1));
                log.persist_live(record(&pid, sid, 2));
                if i % 4 == 0 {
                    log.forget_session(&pid);
                    lines.push(format!("forgotten {pid}"));
                } else {
                    lines.push(format!("live {pid} {sid} 2"));
                }
            }
            log.flush().await.unwrap();
            let at = now_millis();
            for line in lines {
                // One println is one write of a whole line.
                println!("{line} {at}");
            }
        }
    });
}

enum Fact {
    Live {
        pid: String,
        sid: Sid,
        rooms: usize,
        at: u64,
    },
    Forgotten(String),
}

fn parse(line: &str) -> Option<Fact> {
    // libtest may print its own text before the first line of ours.
    let start = line.find("live ").or_else(|| line.find("forgotten "))?;
    let mut parts = line[start..].split_whitespace();
    match parts.next()? {
        "live" => Some(Fact::Live {
            pid: parts.next()?.to_owned(),
            sid: parts.next()?.parse().ok()?,
            rooms: parts.next()?.parse().ok()?,
            at: parts.next()?.parse().ok()?,
        }),
        "forgotten" => Some(Fact::Forgotten(parts.next()?.to_owned())),
        _ => None,
    }
}

#[test]
fn confirmed_live_sessions_survive_sigkill() {
    let exe = std::env::current_exe().unwrap();
    for (round, kill_after) in [30usize, 600].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery.sqlite3");
        let mut child = Command::new(&exe)
            .args([
                "crash_child_process_not_a_test",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_LOG, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut facts = Vec::new();
        while facts.len() < kill_after {
            match lines.next() {
                Some(Ok(line)) => facts.extend(parse(&line)),
                _ => break,
            }
        }
        child.kill().unwrap();
        facts.extend(lines.map_while(Result::ok).filter_map(|l| parse(&l)));
        let status = child.wait().unwrap();
        assert!(
            facts.len() >= kill_after,
            "round {round}: the child stopped after {} lines ({status})",
            facts.len()
        );

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let log = SqliteSessionLog::open(&path).unwrap();
            let last_confirmed = facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Live { at, .. } => Some(*at),
                    Fact::Forgotten(_) => None,
                })
                .max()
                .unwrap();
            for fact in &facts {
                match fact {
                    Fact::Live {
                        pid, sid, rooms, ..
                    } => {
                        let r = log.take_session(pid).await.unwrap();
                        let r = r.unwrap_or_else(|| {
                            panic!("round {round}: confirmed live session {pid} lost")
                        });
                        assert_eq!(r.sid, *sid);
                        assert_eq!(r.rooms.len(), *rooms, "{pid}: its latest rooms");
                        assert!(
                            r.disconnected_at + 100 >= last_confirmed
                                && r.disconnected_at <= now_millis(),
                            "{pid}: disconnected at the last sign of life ({} < {last_confirmed})",
                            r.disconnected_at
                        );
                    }
                    Fact::Forgotten(pid) => {
                        assert!(
                            log.take_session(pid).await.unwrap().is_none(),
                            "round {round}: forgotten session {pid} came back"
                        );
                    }
                }
            }
        });
    }
}

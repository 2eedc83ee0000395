//! How a client scenario of `tests/clients` (npm `socket.io-client`, PyPI `python-socketio`)
//! reports a pass, for every Rust runner of those scripts (this crate's `support`, and
//! `tidings`'s `tests/common` through `#[path]`).
//!
//! Exit 0 alone proves nothing: a scenario whose `main` returned early, or whose last wait
//! had no timer (node exits 0 once its event loop is empty), exits 0 with checks unrun. A
//! scenario passes when it exits 0 *and* its last line on stdout is the summary that
//! `tests/clients/js/lib.mjs` and `tests/clients/py/common.py` print at the very end,
//! `ok: M checks (at least N declared)`, with N >= 1 declared by the script and M >= N.

use std::process::ExitStatus;

/// `(ran, declared)` from the summary line, when stdout's last non-empty line is one.
pub fn summary(stdout: &str) -> Option<(u64, u64)> {
    let last = stdout.lines().rev().find(|line| !line.trim().is_empty())?;
    let rest = last.trim_end().strip_prefix("ok: ")?;
    let (ran, rest) = rest.split_once(" checks (at least ")?;
    let declared = rest.strip_suffix(" declared)")?;
    Some((ran.parse().ok()?, declared.parse().ok()?))
}

/// Why the run of scenario `what` did not pass, if it did not.
pub fn failure(status: ExitStatus, stdout: &str) -> Option<String> {
    if !status.success() {
        return Some(format!("it failed ({status})"));
    }
    match summary(stdout) {
        None => Some(
            "it exited 0 without its summary line `ok: M checks (at least N declared)` last on \
             stdout: it stopped before its end"
                .to_owned(),
        ),
        Some((_, 0)) => Some("it declares no checks".to_owned()),
        Some((ran, declared)) if ran < declared => Some(format!(
            "it ran {ran} checks, fewer than the {declared} it declares"
        )),
        Some(_) => None,
    }
}

/// Panics with the scenario's output unless it passed (see the module docs); else prints its
/// summary line to stderr (shown with `--nocapture`).
pub fn assert_passed(what: &str, status: ExitStatus, stdout: &str, stderr: &str) {
    if let Some(why) = failure(status, stdout) {
        panic!("{what}: {why}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    }
    eprintln!("{what}: {}", stdout.lines().last().unwrap_or_default());
}

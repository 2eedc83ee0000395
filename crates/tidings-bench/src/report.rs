//! Medians over repetitions, the summary tables, ratios against the peers of the same run, and
//! the target table marked met / not met / not measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::metrics::{Record, median};
use crate::server::Peer;

/// The median of each figure over the repetitions of one (scenario, step, peer).
#[derive(Debug, Clone)]
pub struct Agg {
    /// Scenario id.
    pub scenario: &'static str,
    /// Step label.
    pub step: String,
    /// Step order.
    pub order: u64,
    /// The system.
    pub peer: Peer,
    /// Repetitions that reached this step.
    pub reps: usize,
    /// Median figures.
    pub values: BTreeMap<&'static str, f64>,
}

impl Agg {
    fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }
}

/// Groups records and takes medians.
pub fn aggregate(records: &[Record]) -> Vec<Agg> {
    let mut groups: BTreeMap<(&'static str, u64, String, Peer), Vec<&Record>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.scenario, r.order, r.step.clone(), r.peer))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((scenario, order, step, peer), recs)| {
            let mut keys: Vec<&'static str> =
                recs.iter().flat_map(|r| r.values.keys().copied()).collect();
            keys.sort_unstable();
            keys.dedup();
            let values = keys
                .into_iter()
                .filter_map(|k| {
                    let mut vs: Vec<f64> = recs
                        .iter()
                        .filter_map(|r| r.values.get(k))
                        .copied()
                        .collect();
                    median(&mut vs).map(|m| (k, m))
                })
                .collect();
            Agg {
                scenario,
                step,
                order,
                peer,
                reps: recs.len(),
                values,
            }
        })
        .collect()
}

fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) if x.is_finite() => {
            let s = format!("{x:.decimals$}");
            // Thousands separators on the integer part, for reading big rates at a glance.
            let (int, frac) = s
                .split_once('.')
                .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
            let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            match frac {
                Some(f) => format!("{sign}{out}.{f}"),
                None => format!("{sign}{out}"),
            }
        }
        _ => "–".to_owned(),
    }
}

fn in_scenario<'a>(aggs: &'a [Agg], scenario: &str) -> Vec<&'a Agg> {
    aggs.iter().filter(|a| a.scenario == scenario).collect()
}

/// The markdown tables of one run.
pub fn tables(aggs: &[Agg]) -> String {
    let mut out = String::new();
    let rows = in_scenario(aggs, "idle");
    if !rows.is_empty() {
        out.push_str("#### Idle connections\n\n");
        out.push_str("| connections | peer | connected | connects/s | server RSS (MiB) | RSS per connection (KiB) | connect CPU (ms/conn) | idle CPU (µs per conn per s) | reps |\n");
        out.push_str("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for a in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                num(Some(a.order as f64), 0),
                a.peer.name(),
                num(a.get("conns"), 0),
                num(a.get("connects_per_s"), 0),
                num(a.get("rss_mib"), 1),
                num(a.get("rss_kib_per_conn"), 1),
                num(a.get("connect_cpu_ms_per_conn"), 3),
                num(a.get("idle_cpu_us_per_conn_s"), 2),
                a.reps
            );
        }
        out.push('\n');
    }
    let rows = in_scenario(aggs, "idle-durable");
    if !rows.is_empty() {
        out.push_str("#### Idle durable subscribers (tidings)\n\n");
        out.push_str("Each connection has its own identity and one subscription (1,000 topics); nothing is published.\n\n");
        out.push_str("| subscribers | connected | RSS per subscriber (KiB) | idle CPU (µs per subscriber per s) | store claims while idle | reps |\n");
        out.push_str("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for a in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                num(Some(a.order as f64), 0),
                num(a.get("conns"), 0),
                num(a.get("rss_kib_per_conn"), 1),
                num(a.get("idle_cpu_us_per_conn_s"), 2),
                num(a.get("store_claims_while_idle"), 0),
                a.reps
            );
        }
        out.push('\n');
    }
    for (scenario, title) in [
        ("fanout", "Room fan-out (one room)"),
        ("rooms", "Many small rooms"),
    ] {
        let rows = in_scenario(aggs, scenario);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "#### {title}\n");
        out.push_str("| broadcasts/s | peer | delivered / expected | completeness | deliveries/s | server CPU s per M deliveries | p50 ms | p99 ms | p99.9 ms | server RSS MiB | generator CPU s | other processes' CPU s | reps |\n");
        out.push_str("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for a in rows {
            let _ = writeln!(
                out,
                "| {}{} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                a.step,
                if a.get("saturated").unwrap_or(0.0) >= 0.5 {
                    " (sat.)"
                } else {
                    ""
                },
                a.peer.name(),
                num(a.get("delivered"), 0),
                num(a.get("expected"), 0),
                num(a.get("completeness"), 4),
                num(a.get("deliveries_per_s"), 0),
                num(a.get("cpu_s_per_m"), 2),
                num(a.get("p50_ms"), 2),
                num(a.get("p99_ms"), 2),
                num(a.get("p999_ms"), 2),
                num(a.get("rss_mib"), 1),
                num(a.get("gen_cpu_s"), 2),
                num(a.get("other_cpu_s"), 2),
                a.reps
            );
        }
        out.push('\n');
    }
    let rows = in_scenario(aggs, "publish");
    if !rows.is_empty() {
        out.push_str("#### Durable publish, confirmed after fsync (256-byte messages)\n\n");
        out.push_str("| publishers | peer | confirmed msg/s | completeness | p50 ms | p99 ms | p99.9 ms | server CPU s per M msgs | publishes per fsync | other processes' CPU s | reps |\n");
        out.push_str(
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for a in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                a.step,
                a.peer.name(),
                num(a.get("msgs_per_s"), 0),
                num(a.get("completeness"), 4),
                num(a.get("p50_ms"), 2),
                num(a.get("p99_ms"), 2),
                num(a.get("p999_ms"), 2),
                num(a.get("cpu_s_per_m"), 2),
                num(a.get("per_fsync"), 1),
                num(a.get("other_cpu_s"), 2),
                a.reps
            );
        }
        out.push('\n');
    }
    let rows = in_scenario(aggs, "fanout-durable");
    if !rows.is_empty() {
        out.push_str("#### Durable fan-out into offline subscribers' queues\n\n");
        out.push_str("| setup | peer | confirmed msg/s | queue entries/s | queued / expected | p99 confirm ms | reps |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
        for a in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} / {} | {} | {} |",
                a.step,
                a.peer.name(),
                num(a.get("msgs_per_s"), 0),
                num(a.get("entries_per_s"), 0),
                num(a.get("delivered"), 0),
                num(a.get("expected"), 0),
                num(a.get("p99_ms"), 2),
                a.reps
            );
        }
        out.push('\n');
    }
    let rows = in_scenario(aggs, "drain");
    if !rows.is_empty() {
        out.push_str("#### Backlog drain (one subscriber, ack per message)\n\n");
        out.push_str("| backlog | peer | acked msg/s | distinct / expected | fill msg/s (64 publishers) | server CPU s per M msgs | RSS growth per retained message (bytes) | reps |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for a in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} / {} | {} | {} | {} | {} |",
                a.step,
                a.peer.name(),
                num(a.get("msgs_per_s"), 0),
                num(a.get("delivered"), 0),
                num(a.get("expected"), 0),
                num(a.get("fill_msgs_per_s"), 0),
                num(a.get("cpu_s_per_m"), 2),
                num(a.get("rss_bytes_per_msg"), 0),
                a.reps
            );
        }
        out.push('\n');
    }
    out
}

/// The best delivery rate a peer reached in a room scenario: the median over repetitions of
/// each repetition's best step (a step only one repetition reached does not decide alone).
fn best_rate(records: &[Record], scenario: &str, peer: Peer) -> Option<f64> {
    let mut per_rep: BTreeMap<usize, f64> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.scenario == scenario && r.peer == peer)
    {
        if let Some(v) = r.values.get("deliveries_per_s") {
            let best = per_rep.entry(r.rep).or_insert(0.0);
            *best = best.max(*v);
        }
    }
    let mut values: Vec<f64> = per_rep.into_values().collect();
    median(&mut values)
}

/// Whether the peer's ladder stopped at a saturated step in most repetitions (else it ran to
/// the top rate, and its best is only a lower bound of what it can do).
fn saturated(records: &[Record], scenario: &str, peer: Peer) -> bool {
    let mut per_rep: BTreeMap<usize, bool> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.scenario == scenario && r.peer == peer)
    {
        let sat = r.values.get("saturated").copied().unwrap_or(0.0) >= 0.5;
        *per_rep.entry(r.rep).or_insert(false) |= sat;
    }
    let n = per_rep.len();
    n > 0 && per_rep.values().filter(|s| **s).count() * 2 > n
}

/// CPU per million deliveries of both peers at the highest step both ran unsaturated (a
/// saturated server batches more per wake-up, which flatters its CPU per delivery), else at the
/// highest step both ran.
fn cpu_at_common_step(
    aggs: &[Agg],
    scenario: &str,
    a: Peer,
    b: Peer,
) -> Option<(String, f64, f64)> {
    let rows = in_scenario(aggs, scenario);
    let unsaturated = |r: &Agg| r.get("saturated").unwrap_or(0.0) < 0.5;
    let mut best: Option<(bool, u64, String, f64, f64)> = None;
    for x in rows.iter().filter(|r| r.peer == a) {
        if let Some(y) = rows.iter().find(|r| r.peer == b && r.order == x.order)
            && let (Some(cx), Some(cy)) = (x.get("cpu_s_per_m"), y.get("cpu_s_per_m"))
        {
            let both = unsaturated(x) && unsaturated(y);
            let key = (both, x.order);
            if best.as_ref().is_none_or(|(b0, o, ..)| key > (*b0, *o)) {
                let step = if both {
                    x.step.clone()
                } else {
                    format!("{}, a side saturated", x.step)
                };
                best = Some((both, x.order, step, cx, cy));
            }
        }
    }
    best.map(|(_, _, step, cx, cy)| (step, cx, cy))
}

/// The best `key` of `peer`'s steps in `scenario` (the closed-loop steps: order below 1000).
fn best_of(aggs: &[Agg], scenario: &str, key: &str, peer: Peer) -> Option<f64> {
    in_scenario(aggs, scenario)
        .into_iter()
        .filter(|a| a.peer == peer && a.order < 1000)
        .filter_map(|a| a.get(key))
        .reduce(f64::max)
}

/// Ratios of tidings against each peer measured in this run.
pub fn ratios(aggs: &[Agg], records: &[Record]) -> String {
    let mut out = String::new();
    let mut any = false;
    for scenario in ["fanout", "rooms"] {
        // The emitter row compares tidings' own broadcast with the same fan-out published by a
        // Node service's emitter through Redis.
        for peer in [Peer::Node, Peer::Socketioxide, Peer::BareWs, Peer::Emitter] {
            let (Some(t), Some(p)) = (
                best_rate(records, scenario, Peer::Tidings),
                best_rate(records, scenario, peer),
            ) else {
                continue;
            };
            if !any {
                out.push_str("#### Ratios (tidings ÷ peer, same run, medians)\n\n");
                out.push_str("| scenario | peer | best rate ratio (median of per-repetition bests) | saturated (tidings / peer) | CPU per delivery ratio (at step) |\n");
                out.push_str("| --- | --- | ---: | --- | ---: |\n");
                any = true;
            }
            let sat = |p: Peer| {
                if saturated(records, scenario, p) {
                    "yes"
                } else {
                    "no"
                }
            };
            let cpu = cpu_at_common_step(aggs, scenario, Peer::Tidings, peer)
                .map(|(step, ct, cp)| format!("{:.2} (at {step})", ct / cp))
                .unwrap_or_else(|| "–".to_owned());
            let _ = writeln!(
                out,
                "| {scenario} | {} | {:.2} | {} / {} | {cpu} |",
                peer.name(),
                t / p,
                sat(Peer::Tidings),
                sat(peer)
            );
        }
    }
    for (scenario, key) in [
        ("publish", "msgs_per_s"),
        ("fanout-durable", "entries_per_s"),
        ("drain", "msgs_per_s"),
    ] {
        let best = |peer: Peer| best_of(aggs, scenario, key, peer);
        // The embedded store against Redis, and Redis mode against the same Redis driven
        // directly (issue 22: the Socket.IO hop is all Redis mode adds).
        for ours in [Peer::Tidings, Peer::RedisMode] {
            let (Some(t), Some(r)) = (best(ours), best(Peer::Redis)) else {
                continue;
            };
            if !any {
                out.push_str("#### Ratios (tidings ÷ peer, same run, medians)\n\n");
                out.push_str("| scenario | peer | best rate ratio (median of per-repetition bests) | saturated (tidings / peer) | CPU per delivery ratio (at step) |\n");
                out.push_str("| --- | --- | ---: | --- | ---: |\n");
                any = true;
            }
            let _ = writeln!(
                out,
                "| {scenario} ({key}) | {} ÷ redis | {:.2} | closed loop | – |",
                ours.name(),
                t / r
            );
        }
    }
    if any {
        out.push('\n');
    }
    out
}

/// Verdict of one target.
fn verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// The target table, each row with its evidence from this run.
pub fn targets(aggs: &[Agg], records: &[Record]) -> String {
    let mut out = String::new();
    out.push_str("#### Targets (issue 6), from this run\n\n| target | evidence | verdict |\n| --- | --- | --- |\n");
    let t_fan = best_rate(records, "fanout", Peer::Tidings);
    let mut row = |target: &str, evidence: String, ok: Option<bool>| {
        let _ = writeln!(out, "| {target} | {evidence} | {} |", verdict(ok));
    };
    for (peer, factor, label) in [
        (Peer::Node, 5.0, "Room fan-out ≥ 5× Node's deliveries/s"),
        (Peer::Socketioxide, 1.5, "Room fan-out ≥ 1.5× socketioxide"),
        (
            Peer::BareWs,
            0.7,
            "Room fan-out ≥ 0.7× the bare WebSocket server",
        ),
    ] {
        let p = best_rate(records, "fanout", peer);
        let (t_sat, p_sat) = (
            saturated(records, "fanout", Peer::Tidings),
            saturated(records, "fanout", peer),
        );
        match (t_fan, p) {
            (Some(t), Some(p)) => {
                let ratio = t / p;
                // A ratio of best rates only means something where a side saturated: an
                // unsaturated side's best is a lower bound of what it can do.
                let ok = match (t_sat, p_sat) {
                    (true, true) => Some(ratio >= factor),
                    (false, true) if ratio >= factor => Some(true),
                    (true, false) if ratio < factor => Some(false),
                    _ => None,
                };
                let note = match (t_sat, p_sat) {
                    (true, true) => "both saturated",
                    (false, false) => "neither saturated at the top rate: the ratio says nothing",
                    (true, false) => "only tidings saturated: the ratio is an upper bound",
                    (false, true) => "only the peer saturated: the ratio is a lower bound",
                };
                row(
                    label,
                    format!(
                        "best {} vs {} deliveries/s: {ratio:.2}× ({note})",
                        num(Some(t), 0),
                        num(Some(p), 0)
                    ),
                    ok,
                )
            }
            _ => row(label, "peer not run".to_owned(), None),
        }
    }
    match cpu_at_common_step(aggs, "fanout", Peer::Tidings, Peer::Node) {
        Some((step, ct, cn)) => row(
            "Room fan-out ≤ 1/5 of Node's CPU per delivery",
            format!(
                "at {step}: {ct:.2} vs {cn:.2} CPU s per M deliveries ({:.2}×)",
                ct / cn
            ),
            Some(ct <= cn / 5.0),
        ),
        None => row(
            "Room fan-out ≤ 1/5 of Node's CPU per delivery",
            "no common step".to_owned(),
            None,
        ),
    }
    let idle = in_scenario(aggs, "idle")
        .into_iter()
        .filter(|a| a.peer == Peer::Tidings)
        .min_by_key(|a| a.order.abs_diff(10_000));
    match idle.and_then(|a| a.get("rss_kib_per_conn").map(|v| (a.order, v))) {
        Some((n, kib)) => row(
            "≤ 8 KB RSS per idle WebSocket connection",
            format!("{kib:.1} KiB per connection at {n} connections"),
            Some(kib * 1024.0 <= 8000.0),
        ),
        None => row(
            "≤ 8 KB RSS per idle WebSocket connection",
            "not run".to_owned(),
            None,
        ),
    }
    let tid_rooms: Vec<&Agg> = aggs
        .iter()
        .filter(|a| a.peer == Peer::Tidings && (a.scenario == "fanout" || a.scenario == "rooms"))
        .collect();
    if tid_rooms.is_empty() {
        row(
            "Every delivery delivered (rooms)",
            "not run".to_owned(),
            None,
        );
    } else {
        let worst = tid_rooms
            .iter()
            .filter_map(|a| a.get("completeness"))
            .fold(1.0f64, f64::min);
        row(
            "Every delivery delivered (rooms)",
            format!(
                "lowest completeness over {} steps: {worst:.4}",
                tid_rooms.len()
            ),
            Some(worst >= 1.0),
        );
    }
    let publish: Vec<&Agg> = in_scenario(aggs, "publish")
        .into_iter()
        .filter(|a| a.peer == Peer::Tidings)
        .collect();
    let best_pub = publish
        .iter()
        .filter(|a| a.order < 1000)
        .filter_map(|a| a.get("msgs_per_s").map(|v| (v, a.step.clone())))
        .reduce(|x, y| if y.0 > x.0 { y } else { x });
    match &best_pub {
        Some((v, step)) => row(
            "Durable publish ≥ 100k msg/s, fsync before confirm",
            format!("best {} msg/s ({step})", num(Some(*v), 0)),
            Some(*v >= 100_000.0),
        ),
        None => row(
            "Durable publish ≥ 100k msg/s, fsync before confirm",
            "not run".to_owned(),
            None,
        ),
    }
    match publish.iter().find(|a| a.order == 1000) {
        Some(a) => {
            let p99 = a.get("p99_ms").unwrap_or(f64::NAN);
            let rate = a.get("msgs_per_s").unwrap_or(0.0);
            // The target is p99 at half of 100k msg/s; when the best rate is below target,
            // the run measured half of *our* best, which the evidence states.
            row(
                "p99 confirm ≤ 10 ms at half that load",
                format!(
                    "p99 {p99:.2} ms at {} msg/s (half of our best, not of 100k)",
                    num(Some(rate), 0)
                ),
                if best_pub.as_ref().is_some_and(|(v, _)| *v >= 100_000.0) {
                    Some(p99 <= 10.0)
                } else {
                    None
                },
            );
        }
        None => row(
            "p99 confirm ≤ 10 ms at half that load",
            "not run".to_owned(),
            None,
        ),
    }
    match in_scenario(aggs, "fanout-durable")
        .into_iter()
        .find(|a| a.peer == Peer::Tidings)
        .and_then(|a| a.get("entries_per_s").map(|v| (v, a.step.clone())))
    {
        Some((v, step)) => row(
            "Durable fan-out ≥ 500k queue entries/s",
            format!("{} entries/s ({step})", num(Some(v), 0)),
            Some(v >= 500_000.0),
        ),
        None => row(
            "Durable fan-out ≥ 500k queue entries/s",
            "not run".to_owned(),
            None,
        ),
    }
    match in_scenario(aggs, "drain")
        .into_iter()
        .find(|a| a.peer == Peer::Tidings)
        .and_then(|a| a.get("msgs_per_s").map(|v| (v, a.step.clone())))
    {
        Some((v, step)) => row(
            "Backlog drain ≥ 200k msg/s acked",
            format!("{} msg/s ({step})", num(Some(v), 0)),
            Some(v >= 200_000.0),
        ),
        None => row(
            "Backlog drain ≥ 200k msg/s acked",
            "not run".to_owned(),
            None,
        ),
    }
    // Issue 22: Redis mode against a direct client of the same kind of Redis.
    for (scenario, key, what, bound) in [
        (
            "publish",
            "msgs_per_s",
            "Redis mode: confirmed publishes ≥ 0.9× a direct XADD client",
            0.9,
        ),
        (
            "drain",
            "msgs_per_s",
            "Redis mode: drain ≥ 0.5× XREADGROUP + XACK",
            0.5,
        ),
    ] {
        let best = |peer: Peer| best_of(aggs, scenario, key, peer);
        match (best(Peer::RedisMode), best(Peer::Redis)) {
            (Some(t), Some(r)) => row(
                what,
                format!("{} vs {} ({:.2}×)", num(Some(t), 0), num(Some(r), 0), t / r),
                Some(t / r >= bound),
            ),
            _ => row(what, "not run".to_owned(), None),
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(num(Some(1234567.0), 0), "1,234,567");
        assert_eq!(num(Some(-1234.5), 1), "-1,234.5");
        assert_eq!(num(Some(12.0), 2), "12.00");
        assert_eq!(num(None, 0), "–");
    }

    #[test]
    fn aggregates_medians_per_peer_and_step() {
        let mut records = Vec::new();
        for (rep, v) in [1.0, 5.0, 3.0].into_iter().enumerate() {
            let mut r = Record::new("fanout", "100/s".into(), 100, Peer::Tidings);
            r.set("deliveries_per_s", v).set("rep", rep as f64);
            records.push(r);
        }
        let aggs = aggregate(&records);
        assert_eq!(aggs.len(), 1);
        assert_eq!(aggs[0].reps, 3);
        assert_eq!(aggs[0].get("deliveries_per_s"), Some(3.0));
    }
}

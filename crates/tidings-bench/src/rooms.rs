//! Room fan-out and many small rooms: receivers joined to rooms, one publisher broadcasting
//! 100-byte events at fixed rates, every delivery counted and timed.
//!
//! Each step sends `rate × secs` broadcasts, paced from a schedule (not in bursts per second),
//! then waits until every expected delivery arrived or nothing arrived for `drain` — so a peer
//! that drops messages shows as completeness below 1, not as a hang. Payloads carry the step
//! number, so a straggler of an earlier step is never counted in a later one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use indicatif::ProgressBar;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_websockets::Message;

use crate::metrics::{Clock, Record, Shards};
use crate::server::{Peer, ServerProc, Usage, machine_busy_secs};
use crate::sio::{self, Ws};
use crate::{Ctx, bar};

/// Size and ladder of one room scenario.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    /// `fanout` (one room) or `rooms` (many small rooms).
    pub scenario: &'static str,
    /// Receiving clients.
    pub clients: usize,
    /// Rooms; client `i` joins room `i % rooms`, broadcast `k` goes to room `k % rooms`.
    pub rooms: usize,
    /// Broadcasts per second, one step each, in order; the ladder stops at saturation.
    pub rates: Vec<u64>,
    /// Seconds each step sends for.
    pub step_secs: f64,
    /// Give up waiting for the rest of a step's deliveries after this long without progress.
    pub drain: Duration,
}

/// Per-step counters shared with every receiver task.
struct StepState {
    step: AtomicU64,
    delivered: AtomicU64,
    stale: AtomicU64,
    last_us: AtomicU64,
    hist: Shards,
}

/// Concurrent connection attempts while setting up.
const CONNECT_PARALLELISM: usize = 128;

/// The event body: step, send time, padding to 100 bytes of JSON.
fn body(step: u64, t: u64) -> String {
    let head = format!(r#"{{"s":{step},"t":{t},"p":""#);
    let pad = 100usize.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Runs one room scenario against `peer`, one record per step.
pub async fn run(ctx: &Ctx, peer: Peer, spec: &RoomSpec, rep: usize) -> Result<Vec<Record>> {
    let tag = format!("{}-{}-{rep}", spec.scenario, peer.name().replace(' ', "_"));
    let server = ServerProc::start(peer, &ctx.programs, &tag).await?;
    let result = run_against(ctx, peer, spec, &server).await;
    server.stop().await;
    result
}

async fn run_against(
    ctx: &Ctx,
    peer: Peer,
    spec: &RoomSpec,
    server: &ServerProc,
) -> Result<Vec<Record>> {
    let state = Arc::new(StepState {
        step: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        stale: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
        hist: Shards::new(16),
    });
    let pb = bar(
        ctx,
        spec.clients as u64,
        &format!("{} {}: connecting", spec.scenario, peer.name()),
    );
    let mut receivers = JoinSet::new();
    let joined: Vec<Result<Ws>> = stream::iter(0..spec.clients)
        .map(|i| {
            let src = ctx.source(i);
            let room = format!("r{}", i % spec.rooms);
            let pb = pb.clone();
            async move {
                let ws = join(peer, server.addr, &server.path, src, &room).await;
                pb.inc(1);
                ws
            }
        })
        .buffer_unordered(CONNECT_PARALLELISM)
        .collect()
        .await;
    pb.finish_and_clear();
    // A client that cannot connect or join is reported, not fatal: a peer that refuses
    // connections under load is a finding too. Expected deliveries count joined members only.
    let mut members = vec![0u64; spec.rooms.max(1)];
    let mut join_failed = 0u64;
    let mut first_error = None;
    for (i, ws) in joined.into_iter().enumerate() {
        match ws {
            Ok(ws) => {
                members[i % spec.rooms.max(1)] += 1;
                let state = state.clone();
                let clock = ctx.clock;
                receivers.spawn(receive(ws, i, state, clock));
            }
            Err(e) => {
                join_failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        ctx.say(format!(
            "  {} {}: {join_failed} of {} clients could not join; first: {e:#}",
            spec.scenario,
            peer.name(),
            spec.clients
        ))?;
    }
    if join_failed as usize == spec.clients {
        bail!("no client could join on {}", peer.name());
    }
    let mut publisher = match &server.redis {
        Some(redis) => Publisher::Emitter(
            redis::Client::open(redis.url.as_str())?
                .get_multiplexed_async_connection()
                .await
                .context("publisher's Redis connection")?,
        ),
        None if peer.is_socketio() => Publisher::Ws(
            sio::connect(server.addr, &server.path, ctx.source(spec.clients), None).await?,
        ),
        None => {
            Publisher::Ws(sio::open_ws(server.addr, &server.path, ctx.source(spec.clients)).await?)
        }
    };

    // Warm-up, not recorded: one second at the first rate (step 0), so that the first step
    // does not pay for lazy initialisation (JIT in Node, buffers everywhere).
    let warm_rate = spec.rates.first().copied().unwrap_or(100);
    let warm = bar(
        ctx,
        0,
        &format!("{} {}: warm-up", spec.scenario, peer.name()),
    );
    publish(
        &mut publisher,
        peer,
        warm_rate,
        warm_rate,
        spec.rooms,
        0,
        &ctx.clock,
        &state,
        &warm,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    warm.finish_and_clear();

    let mut records = Vec::new();
    for (step_no, &rate) in spec.rates.iter().enumerate() {
        let step = step_no as u64 + 1;
        state.step.store(step, Ordering::SeqCst);
        state.delivered.store(0, Ordering::SeqCst);
        state.stale.store(0, Ordering::SeqCst);
        state.hist.take();
        let count = ((rate as f64) * spec.step_secs).round().max(1.0) as u64;
        let expected: u64 = (0..count)
            .map(|k| members[(k as usize) % members.len()])
            .sum();
        let pb = bar(
            ctx,
            expected,
            &format!("{} {} {rate}/s", spec.scenario, peer.name()),
        );
        let before = server.usage()?;
        let gen_before = Usage::of(std::process::id())?;
        let busy_before = machine_busy_secs();
        let start_us = ctx.clock.now_us();
        let sent = publish(
            &mut publisher,
            peer,
            rate,
            count,
            spec.rooms,
            step,
            &ctx.clock,
            &state,
            &pb,
        )
        .await?;
        let send_secs = (ctx.clock.now_us() - start_us) as f64 / 1e6;
        // Wait for the rest: until complete, or no progress for `drain`.
        let mut last_seen = state.delivered.load(Ordering::SeqCst);
        let mut last_progress = Instant::now();
        let hard_stop = Instant::now() + spec.drain * 10;
        loop {
            let now_delivered = state.delivered.load(Ordering::SeqCst);
            pb.set_position(now_delivered);
            if now_delivered >= expected || Instant::now() > hard_stop {
                break;
            }
            if now_delivered != last_seen {
                last_seen = now_delivered;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > spec.drain {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = server.usage()?;
        let gen_after = Usage::of(std::process::id())?;
        let busy = machine_busy_secs() - busy_before;
        pb.finish_and_clear();
        let delivered = state.delivered.load(Ordering::SeqCst);
        let last_us = state.last_us.load(Ordering::SeqCst).max(start_us + 1);
        let span = (last_us - start_us) as f64 / 1e6;
        let mut rec = Record::new(spec.scenario, format!("{rate}/s"), rate, peer);
        rec.set("target_rate", rate as f64)
            .set("sent", sent as f64)
            .set("send_rate", sent as f64 / send_secs.max(1e-9))
            .set("expected", expected as f64)
            .set("delivered", delivered as f64)
            .set("completeness", delivered as f64 / expected.max(1) as f64)
            .set("deliveries_per_s", delivered as f64 / span)
            .set("target_deliveries_per_s", expected as f64 / spec.step_secs)
            .set(
                "cpu_s_per_m",
                (after.cpu_secs - before.cpu_secs) / (delivered.max(1) as f64) * 1e6,
            )
            .set("server_cpu_s", after.cpu_secs - before.cpu_secs)
            .set("gen_cpu_s", gen_after.cpu_secs - gen_before.cpu_secs)
            .set("wall_s", span)
            .set(
                "other_cpu_s",
                (busy
                    - (after.cpu_secs - before.cpu_secs)
                    - (gen_after.cpu_secs - gen_before.cpu_secs))
                    .max(0.0),
            )
            .set("rss_mib", after.rss_kib as f64 / 1024.0)
            .set("stale", state.stale.load(Ordering::SeqCst) as f64)
            .set("join_failed", join_failed as f64)
            .set_latency(&state.hist.take());
        ctx.say(format!(
            "  {:<10} {:<14} {:>7}/s  delivered {}/{} ({:.4})  {:>10.0} deliveries/s  p99 {:.1} ms",
            spec.scenario,
            peer.name(),
            rate,
            delivered,
            expected,
            delivered as f64 / expected.max(1) as f64,
            delivered as f64 / span,
            rec.values.get("p99_ms").copied().unwrap_or(f64::NAN),
        ))?;
        // Saturated: the publisher fell behind its schedule, or deliveries/s fell behind the
        // target. The step is recorded; higher rates would only measure a queue growing.
        // Missing deliveries do not stop the ladder (they are the completeness figure, and a
        // peer that drops still has a speed), unless half of them are gone.
        let rate_bound = (sent as f64 / send_secs) < 0.9 * rate as f64
            || (delivered as f64 / span) < 0.9 * expected as f64 / spec.step_secs;
        let saturated = rate_bound || delivered * 2 < expected;
        rec.set("saturated", if saturated { 1.0 } else { 0.0 });
        records.push(rec);
        if saturated {
            break;
        }
    }
    receivers.shutdown().await;
    Ok(records)
}

/// Connects one receiver and joins `room`.
async fn join(
    peer: Peer,
    addr: SocketAddr,
    path: &str,
    src: Option<IpAddr>,
    room: &str,
) -> Result<Ws> {
    if peer.is_socketio() {
        let mut ws = sio::connect(addr, path, src, None).await?;
        sio::call_ok(&mut ws, 0, "join", json!({ "room": room })).await?;
        Ok(ws)
    } else {
        let mut ws = sio::open_ws(addr, path, src).await?;
        ws.send(Message::text(format!("j{room}"))).await?;
        let answer = sio::next_text(&mut ws).await?;
        if answer != "j" {
            bail!("bare join answered {answer:.40}");
        }
        Ok(ws)
    }
}

/// A receiver: counts and times every event until the connection ends or the task is aborted.
async fn receive(mut ws: Ws, index: usize, state: Arc<StepState>, clock: Clock) {
    while let Some(Ok(msg)) = ws.next().await {
        let Some(text) = msg.as_text() else { continue };
        if text == "2" {
            if ws.send(Message::text("3")).await.is_err() {
                return;
            }
            continue;
        }
        let (Some(step), Some(t)) = (
            sio::find_u64(text, r#""s":"#),
            sio::find_u64(text, r#""t":"#),
        ) else {
            continue;
        };
        if step != state.step.load(Ordering::Relaxed) {
            state.stale.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let now = clock.now_us();
        state.hist.record(index, now.saturating_sub(t));
        state.delivered.fetch_add(1, Ordering::Relaxed);
        state.last_us.fetch_max(now, Ordering::Relaxed);
    }
}

/// Who sends the broadcasts: a client of the peer, or (for [`Peer::Emitter`]) a Redis
/// connection publishing what Node's `@socket.io/redis-emitter` publishes.
enum Publisher {
    Ws(Ws),
    Emitter(redis::aio::MultiplexedConnection),
}

/// What `new Emitter(redis).to(room).emit("m", data)` publishes: the channel and the
/// MessagePack `[uid, packet, opts]` of socket.io-redis-emitter 5.
fn emitter_message(room: &str, data: &str) -> Result<(String, Vec<u8>)> {
    use rmpv::Value as M;
    let data: serde_json::Value = serde_json::from_str(data)?;
    let pad = data["p"].as_str().unwrap_or_default();
    // The body as the object it is in JavaScript: {s, t, p}.
    let body = M::Map(vec![
        ("s".into(), M::from(data["s"].as_u64().unwrap_or(0))),
        ("t".into(), M::from(data["t"].as_u64().unwrap_or(0))),
        ("p".into(), M::from(pad)),
    ]);
    let message = M::Array(vec![
        M::from("emitter"),
        M::Map(vec![
            ("type".into(), M::from(2)),
            ("data".into(), M::Array(vec![M::from("m"), body])),
            ("nsp".into(), M::from("/")),
        ]),
        M::Map(vec![
            ("rooms".into(), M::Array(vec![M::from(room)])),
            ("flags".into(), M::Map(Vec::new())),
            ("except".into(), M::Array(Vec::new())),
        ]),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &message)?;
    Ok((format!("socket.io#/#{room}#"), bytes))
}

/// Sends `count` broadcasts at `rate` per second from the schedule `start + k / rate`;
/// returns how many were sent.
#[allow(clippy::too_many_arguments)]
async fn publish(
    publisher: &mut Publisher,
    peer: Peer,
    rate: u64,
    count: u64,
    rooms: usize,
    step: u64,
    clock: &Clock,
    state: &StepState,
    pb: &ProgressBar,
) -> Result<u64> {
    match publisher {
        Publisher::Ws(ws) => publish_ws(ws, peer, rate, count, rooms, step, clock, state, pb).await,
        Publisher::Emitter(conn) => {
            publish_emitter(conn, rate, count, rooms, step, clock, state, pb).await
        }
    }
}

/// The schedule of a step: `count` sends at `rate` per second from `start + k / rate`, checked
/// every millisecond; bounded in time as well as in count (three times the step plus 10 s), so
/// a peer that stops reading cannot hang the run.
struct Schedule {
    start: Instant,
    rate: u64,
    count: u64,
    ticker: tokio::time::Interval,
    deadline: Instant,
}

impl Schedule {
    fn new(rate: u64, count: u64) -> Schedule {
        let start = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let deadline = start + Duration::from_secs_f64(count as f64 / rate as f64 * 3.0 + 10.0);
        Schedule {
            start,
            rate,
            count,
            ticker,
            deadline,
        }
    }

    /// Whether the step may go on: `sent` is short of the count and the deadline has not passed.
    fn going(&self, sent: u64) -> bool {
        sent < self.count && Instant::now() <= self.deadline
    }

    /// How many sends are due by now.
    fn due(&self) -> u64 {
        ((self.start.elapsed().as_secs_f64() * self.rate as f64) as u64 + 1).min(self.count)
    }
}

/// [`publish`] through Redis, paced the same way; each tick's messages in one pipeline (as a
/// Node service's client pipelines what it publishes within one turn of its event loop).
#[allow(clippy::too_many_arguments)]
async fn publish_emitter(
    conn: &mut redis::aio::MultiplexedConnection,
    rate: u64,
    count: u64,
    rooms: usize,
    step: u64,
    clock: &Clock,
    state: &StepState,
    pb: &ProgressBar,
) -> Result<u64> {
    let mut schedule = Schedule::new(rate, count);
    let mut sent = 0u64;
    while schedule.going(sent) {
        schedule.ticker.tick().await;
        let due = schedule.due();
        if sent >= due {
            continue;
        }
        let mut pipe = redis::pipe();
        while sent < due {
            let room = format!("r{}", (sent as usize) % rooms);
            let (channel, payload) = emitter_message(&room, &body(step, clock.now_us()))?;
            pipe.publish(channel, payload).ignore();
            sent += 1;
        }
        pipe.query_async::<()>(conn)
            .await
            .context("publish to Redis")?;
        pb.set_position(state.delivered.load(Ordering::Relaxed));
    }
    Ok(sent)
}

/// [`publish`] over the peer's own protocol, answering pings and swallowing acks meanwhile.
#[allow(clippy::too_many_arguments)]
async fn publish_ws(
    ws: &mut Ws,
    peer: Peer,
    rate: u64,
    count: u64,
    rooms: usize,
    step: u64,
    clock: &Clock,
    state: &StepState,
    pb: &ProgressBar,
) -> Result<u64> {
    let mut schedule = Schedule::new(rate, count);
    let mut sent = 0u64;
    while schedule.going(sent) {
        tokio::select! {
            _ = schedule.ticker.tick() => {
                let due = schedule.due();
                while sent < due {
                    let room = format!("r{}", (sent as usize) % rooms);
                    let data = body(step, clock.now_us());
                    let frame = if peer.is_socketio() {
                        // Ack ids are only for the peers' sake (they all ack); the generator
                        // does not wait on them.
                        format!(
                            r#"42{sent}["broadcast",{{"room":"{room}","event":"m","data":{data}}}]"#
                        )
                    } else {
                        format!("b{room}\n{data}")
                    };
                    ws.feed(Message::text(frame)).await.context("publish")?;
                    sent += 1;
                }
                ws.flush().await.context("publish flush")?;
                pb.set_position(state.delivered.load(Ordering::Relaxed));
            }
            msg = ws.next() => {
                let msg = msg.ok_or_else(|| anyhow!("publisher connection closed"))??;
                if msg.as_text() == Some("2") {
                    ws.send(Message::text("3")).await?;
                }
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_100_bytes_and_readable() {
        let b = body(3, 123_456_789);
        assert_eq!(b.len(), 100);
        assert_eq!(sio::find_u64(&b, r#""t":"#), Some(123_456_789));
        assert_eq!(sio::find_u64(&b, r#""s":"#), Some(3));
        let _: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
    }

    /// The bytes socket.io-redis-emitter 5 publishes for `to("r0").emit("m", {s, t, p})`
    /// (notepack.io: fixarray, fixmap with keys in insertion order, positive fixint type).
    #[test]
    fn the_emitter_message_is_what_the_node_emitter_publishes() {
        let (channel, bytes) = emitter_message("r0", r#"{"s":1,"t":2,"p":"x"}"#).unwrap();
        assert_eq!(channel, "socket.io#/#r0#");
        let expected: &[u8] = &[
            0x93, 0xa7, b'e', b'm', b'i', b't', b't', b'e', b'r', // ["emitter",
            0x83, 0xa4, b't', b'y', b'p', b'e', 0x02, // {type: 2,
            0xa4, b'd', b'a', b't', b'a', 0x92, 0xa1, b'm', // data: ["m",
            0x83, 0xa1, b's', 0x01, 0xa1, b't', 0x02, 0xa1, b'p', 0xa1, b'x', // {s, t, p}],
            0xa3, b'n', b's', b'p', 0xa1, b'/', // nsp: "/"},
            0x83, 0xa5, b'r', b'o', b'o', b'm', b's', 0x91, 0xa2, b'r',
            b'0', // {rooms: ["r0"],
            0xa5, b'f', b'l', b'a', b'g', b's', 0x80, // flags: {},
            0xa6, b'e', b'x', b'c', b'e', b'p', b't', 0x90, // except: []}]
        ];
        assert_eq!(bytes, expected);
    }
}

//! Durable scenarios: confirm-after-fsync publishing, fan-out into offline subscribers' queues,
//! and a backlog drain — tidings' built-in `publish` / `subscribe` events and deliveries with
//! acks (docs/PROTOCOL.md), against Redis Streams with `appendfsync always` as the reference
//! for a fsync-confirmed append (XADD; consumer groups for fan-out; XREADGROUP + XACK to drain).
//!
//! Node socket.io and socketioxide have no durable store, so they are not in these rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_websockets::Message;

use crate::metrics::{Record, Shards};
use crate::server::{Peer, RedisProc, ServerProc, Usage, machine_busy_secs};
use crate::sio::{self, Ws};
use crate::{Ctx, bar};

/// 256 bytes of message data (the JSON string, quotes included).
fn data_256() -> String {
    format!("\"{}\"", "d".repeat(254))
}

/// Where durable messages go.
enum Target<'a> {
    Tidings(&'a ServerProc),
    Redis(&'a RedisProc),
}

impl Target<'_> {
    fn pid(&self) -> u32 {
        match self {
            Target::Tidings(s) => s.pid,
            Target::Redis(r) => r.pid,
        }
    }
}

/// What a publishing run gave.
struct PublishRun {
    confirmed: u64,
    failed: u64,
    secs: f64,
    cpu_secs: f64,
    hist: hdrhistogram::Histogram<u64>,
    /// CPU seconds of processes other than the server and the generator meanwhile.
    other_cpu: f64,
    /// The embedded store's fsyncs meanwhile (tidings with its journal only).
    fsyncs: Option<f64>,
}

/// `publishers` concurrent publishers into `topic`, each sending `depth` publishes at once and
/// awaiting their confirmations before the next window (depth 1: one at a time), for `secs`
/// (or until `limit` messages in all); with `rate`, each publisher paces itself to its share of
/// it (latency is then measured from the actual send). Redis gets the same windows as pipelines
/// of XADDs.
#[allow(clippy::too_many_arguments)] // one private call shape, used four times
async fn publish_run(
    ctx: &Ctx,
    target: &Target<'_>,
    topic: &str,
    (publishers, depth): (usize, usize),
    secs: f64,
    limit: Option<u64>,
    rate: Option<f64>,
    label: &str,
) -> Result<PublishRun> {
    let depth = depth.max(1);
    let hist = Arc::new(Shards::new(8));
    let confirmed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let budget = Arc::new(AtomicU64::new(limit.unwrap_or(u64::MAX)));
    let pb = bar(ctx, limit.unwrap_or(0), label);
    let mut tasks = JoinSet::new();
    // Connect everyone first, so that connecting is not measured.
    let mut conns = Vec::new();
    for i in 0..publishers {
        conns.push(match target {
            Target::Tidings(s) => {
                Conn::Sio(sio::connect(s.addr, &s.path, ctx.source(i), None).await?)
            }
            Target::Redis(r) => Conn::Redis(
                redis::Client::open(r.url.as_str())?
                    .get_multiplexed_async_connection()
                    .await
                    .context("redis connect")?,
            ),
        });
    }
    let fsyncs_before = match target {
        Target::Tidings(s) => crate::server::store_fsyncs(s.addr).await,
        Target::Redis(_) => None,
    };
    let before = Usage::of(target.pid())?;
    let gen_before = Usage::of(std::process::id())?;
    let busy_before = machine_busy_secs();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let interval = rate.map(|r| Duration::from_secs_f64(publishers as f64 / r.max(1.0)));
    for (i, conn) in conns.into_iter().enumerate() {
        let hist = hist.clone();
        let confirmed = confirmed.clone();
        let failed = failed.clone();
        let budget = budget.clone();
        let topic = topic.to_owned();
        let clock = ctx.clock;
        tasks.spawn(async move {
            let mut conn = conn;
            let data = data_256();
            let clock_now = move || clock.now_us();
            let mut id = 1u64;
            let mut next_at = start
                + interval
                    .map(|d| d.mul_f64(i as f64 / publishers as f64))
                    .unwrap_or_default();
            while Instant::now() < deadline {
                let n = depth as u64;
                if budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(n))
                    .is_err()
                {
                    break;
                }
                if let Some(d) = interval {
                    tokio::time::sleep_until(next_at.into()).await;
                    next_at += d;
                }
                let sent = clock.now_us();
                let window = conn
                    .publish_window(id, depth, &topic, &data, clock_now)
                    .await;
                id += n;
                match window {
                    Ok(answers) => {
                        for (ok, at) in answers {
                            if ok {
                                hist.record(i, at.saturating_sub(sent));
                                confirmed.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(n, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
    }
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            pb.set_position(confirmed.load(Ordering::Relaxed));
        }
    };
    tokio::select! {
        _ = async { while tasks.join_next().await.is_some() {} } => {}
        _ = ticker => {}
        // Bounded even if a confirmation never comes.
        _ = tokio::time::sleep(Duration::from_secs_f64(secs * 3.0 + 600.0)) => {
            tasks.shutdown().await;
        }
    }
    let secs_taken = start.elapsed().as_secs_f64();
    let after = Usage::of(target.pid())?;
    let gen_cpu = Usage::of(std::process::id())?.cpu_secs - gen_before.cpu_secs;
    let other_cpu =
        (machine_busy_secs() - busy_before - (after.cpu_secs - before.cpu_secs) - gen_cpu).max(0.0);
    pb.finish_and_clear();
    let fsyncs = match (target, fsyncs_before) {
        (Target::Tidings(s), Some(before)) => crate::server::store_fsyncs(s.addr)
            .await
            .map(|after| after - before),
        _ => None,
    };
    Ok(PublishRun {
        fsyncs,
        other_cpu,
        confirmed: confirmed.load(Ordering::SeqCst),
        failed: failed.load(Ordering::SeqCst),
        secs: secs_taken,
        cpu_secs: after.cpu_secs - before.cpu_secs,
        hist: hist.take(),
    })
}

/// A publisher's connection.
enum Conn {
    Sio(Ws),
    Redis(redis::aio::MultiplexedConnection),
}

impl Conn {
    /// Sends `depth` publishes with ack ids `first..first + depth` at once and waits for every
    /// confirmation. Returns, per publish, whether it was confirmed (false: refused) and when
    /// its answer arrived (µs on `now`'s clock).
    async fn publish_window(
        &mut self,
        first: u64,
        depth: usize,
        topic: &str,
        data: &str,
        now: impl Fn() -> u64,
    ) -> Result<Vec<(bool, u64)>> {
        match self {
            Conn::Sio(ws) => {
                for id in first..first + depth as u64 {
                    ws.feed(Message::text(format!(
                        r#"42{id}["publish",{{"topic":"{topic}","event":"m","data":{data}}}]"#
                    )))
                    .await?;
                }
                ws.flush().await?;
                let mut answers = Vec::with_capacity(depth);
                while answers.len() < depth {
                    let text = sio::next_text(ws).await?;
                    if sio::ack_id(&text).is_some_and(|id| id >= first && id < first + depth as u64)
                    {
                        answers.push((text.contains(r#""ok":true"#), now()));
                    }
                }
                Ok(answers)
            }
            Conn::Redis(conn) => {
                let mut pipe = redis::pipe();
                for _ in 0..depth {
                    pipe.cmd("XADD").arg(topic).arg("*").arg("d").arg(data);
                }
                let ids: Vec<String> = pipe.query_async(conn).await?;
                let at = now();
                Ok(ids.iter().map(|_| (true, at)).collect())
            }
        }
    }
}

/// Scenario 4a: confirmed publishes per second and confirmation latency at each concurrency
/// (one publish in flight per publisher), then with `pipelined` (publishers, publishes in
/// flight each), then a paced run at half the best one-at-a-time rate (the target's "p99 ≤
/// 10 ms at half that load").
pub async fn publish(
    ctx: &Ctx,
    peer: Peer,
    concurrency: &[usize],
    pipelined: &[(usize, usize)],
    secs: f64,
    rep: usize,
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let tag = format!("publish-{}-{rep}", peer.name().replace(' ', "_"));
    let (server, redis) = start(ctx, peer, &tag).await?;
    let target = target(&server, &redis)?;
    let mut best = 0f64;
    for (k, &p) in concurrency.iter().enumerate() {
        let run = publish_run(
            ctx,
            &target,
            "bench.publish",
            (p, 1),
            secs,
            None,
            None,
            &format!("publish {} ×{p}", peer.name()),
        )
        .await?;
        let rate = run.confirmed as f64 / run.secs;
        best = best.max(rate);
        let mut rec = Record::new("publish", format!("{p} pub"), k as u64, peer);
        fill(&mut rec, &run);
        println_rec(ctx, &rec)?;
        records.push(rec);
    }
    for (k, &(p, depth)) in pipelined.iter().enumerate() {
        let run = publish_run(
            ctx,
            &target,
            "bench.publish",
            (p, depth),
            secs,
            None,
            None,
            &format!("publish {} ×{p} ×{depth} in flight", peer.name()),
        )
        .await?;
        let step = format!("{p} pub × {depth} in flight");
        let mut rec = Record::new("publish", step, 500 + k as u64, peer);
        fill(&mut rec, &run);
        println_rec(ctx, &rec)?;
        records.push(rec);
    }
    // Half load: the best closed-loop rate / 2, spread over the largest concurrency.
    let p = concurrency.iter().copied().max().unwrap_or(1);
    let half = best / 2.0;
    let run = publish_run(
        ctx,
        &target,
        "bench.publish",
        (p, 1),
        secs,
        None,
        Some(half),
        &format!("publish {} half load", peer.name()),
    )
    .await?;
    let mut rec = Record::new("publish", "½ best, paced".to_owned(), 1000, peer);
    fill(&mut rec, &run);
    rec.set("target_rate", half);
    println_rec(ctx, &rec)?;
    records.push(rec);
    stop(server, redis).await;
    Ok(records)
}

fn fill(rec: &mut Record, run: &PublishRun) {
    let attempted = (run.confirmed + run.failed).max(1) as f64;
    rec.set("confirmed", run.confirmed as f64)
        .set("completeness", run.confirmed as f64 / attempted)
        .set("msgs_per_s", run.confirmed as f64 / run.secs)
        .set(
            "cpu_s_per_m",
            run.cpu_secs / run.confirmed.max(1) as f64 * 1e6,
        )
        .set("other_cpu_s", run.other_cpu)
        .set_latency(&run.hist);
    if let Some(fsyncs) = run.fsyncs.filter(|&f| f > 0.0) {
        rec.set("per_fsync", run.confirmed as f64 / fsyncs);
    }
}

fn println_rec(ctx: &Ctx, rec: &Record) -> Result<()> {
    let v = |k: &str| rec.values.get(k).copied().unwrap_or(f64::NAN);
    ctx.say(format!(
        "  {:<14} {:<12} {:<14} {:>9.0} msg/s  completeness {:.4}  p50 {:.2} ms  p99 {:.2} ms",
        rec.scenario,
        rec.peer.name(),
        rec.step,
        v("msgs_per_s"),
        v("completeness"),
        v("p50_ms"),
        v("p99_ms"),
    ))?;
    Ok(())
}

async fn start(
    ctx: &Ctx,
    peer: Peer,
    tag: &str,
) -> Result<(Option<ServerProc>, Option<RedisProc>)> {
    match peer {
        Peer::Tidings | Peer::RedisMode => Ok((
            Some(ServerProc::start(peer, &ctx.programs, tag).await?),
            None,
        )),
        Peer::Redis => Ok((None, Some(RedisProc::start(&ctx.programs.log_dir).await?))),
        other => bail!("{} has no durable store", other.name()),
    }
}

fn target<'a>(server: &'a Option<ServerProc>, redis: &'a Option<RedisProc>) -> Result<Target<'a>> {
    match (server, redis) {
        (Some(s), _) => Ok(Target::Tidings(s)),
        (_, Some(r)) => Ok(Target::Redis(r)),
        _ => bail!("no durable target"),
    }
}

async fn stop(server: Option<ServerProc>, redis: Option<RedisProc>) {
    if let Some(s) = server {
        s.stop().await;
    }
    if let Some(r) = redis {
        r.stop().await;
    }
}

/// The scale check of issue 22: publishing to a topic of its own while `server` holds
/// `subscriptions` idle durable subscribers (10,000 on 1,000 other topics in the full run; 0 for
/// the baseline on the same server before they connect), `publishers` one at a time each, for
/// `secs` — two rows of the publish table: the cost of a publish must not grow with other
/// topics' subscriptions.
pub async fn publish_beside_subscriptions(
    ctx: &Ctx,
    server: &ServerProc,
    subscriptions: usize,
    publishers: usize,
    secs: f64,
) -> Result<Record> {
    let target = Target::Tidings(server);
    let label = format!("publish ×{publishers} beside {subscriptions} subscriptions");
    let run = publish_run(
        ctx,
        &target,
        "bench.scale",
        (publishers, 1),
        secs,
        None,
        None,
        &label,
    )
    .await?;
    let step = format!("{publishers} pub, {subscriptions} subs on other topics");
    let order = 900 + u64::from(subscriptions > 0);
    let mut rec = Record::new("publish", step, order, Peer::Tidings);
    fill(&mut rec, &run);
    println_rec(ctx, &rec)?;
    Ok(rec)
}

/// Scenario 4b: `subscribers` offline subscriptions on one topic, `publishers` publishing for
/// `secs`; queue entries per second = confirmed × subscribers / time. Completeness: what the
/// subscriptions report pending afterwards / what was confirmed × subscribers.
pub async fn fanout(
    ctx: &Ctx,
    peer: Peer,
    subscribers: usize,
    publishers: usize,
    secs: f64,
    rep: usize,
) -> Result<Record> {
    let tag = format!("fanout-durable-{}-{rep}", peer.name().replace(' ', "_"));
    let (server, redis) = start(ctx, peer, &tag).await?;
    let target = target(&server, &redis)?;
    let topic = "bench.fanout";
    // The subscriptions, then everyone goes offline.
    match &target {
        Target::Tidings(s) => {
            for i in 0..subscribers {
                let mut ws = subscriber(ctx, s, i, &format!("offline-{i}")).await?;
                sio::call_ok(
                    &mut ws,
                    1,
                    "subscribe",
                    json!({"topic": topic, "from": "new"}),
                )
                .await?;
                let _ = ws.close().await;
            }
        }
        Target::Redis(r) => {
            let mut conn = redis::Client::open(r.url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            for i in 0..subscribers {
                let _: () = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(topic)
                    .arg(format!("g{i}"))
                    .arg("$")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await?;
            }
        }
    }
    let run = publish_run(
        ctx,
        &target,
        topic,
        (publishers, 1),
        secs,
        None,
        None,
        &format!("durable fan-out {} ×{subscribers}", peer.name()),
    )
    .await?;
    // Count what the queues hold.
    let mut pending = 0u64;
    match &target {
        Target::Tidings(s) => {
            for i in 0..subscribers {
                let mut ws = subscriber(ctx, s, i, &format!("offline-{i}")).await?;
                let answer = sio::call_ok(&mut ws, 1, "subscribe", json!({"topic": topic})).await?;
                pending += answer.get("pending").and_then(Value::as_u64).unwrap_or(0);
                let _ = ws.close().await;
            }
        }
        Target::Redis(r) => {
            let mut conn = redis::Client::open(r.url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(topic)
                .query_async(&mut conn)
                .await?;
            for group in groups {
                // Flat key/value list; `lag` is what the group has not read yet.
                for pair in group.chunks(2) {
                    if let [redis::Value::BulkString(k), v] = pair
                        && k.as_slice() == b"lag"
                        && let redis::Value::Int(n) = v
                    {
                        pending += *n as u64;
                    }
                }
            }
        }
    }
    let expected = run.confirmed * subscribers as u64;
    let mut rec = Record::new(
        "fanout-durable",
        format!("{subscribers} subs, {publishers} pub"),
        0,
        peer,
    );
    fill(&mut rec, &run);
    rec.set("entries_per_s", expected as f64 / run.secs)
        .set("expected", expected as f64)
        .set("delivered", pending as f64)
        .set("completeness", pending as f64 / expected.max(1) as f64);
    ctx.say(format!(
        "  fanout-durable {:<12} {:>9.0} entries/s  queued {pending}/{expected}",
        peer.name(),
        expected as f64 / run.secs
    ))?;
    stop(server, redis).await;
    Ok(rec)
}

async fn subscriber(ctx: &Ctx, s: &ServerProc, i: usize, client_id: &str) -> Result<Ws> {
    sio::connect(
        s.addr,
        &s.path,
        ctx.source(i),
        Some(&json!({ "clientId": client_id })),
    )
    .await
}

/// Scenario 5: `count` messages queued for one offline subscription (filled by 64 publishers),
/// then that subscriber connects and acknowledges every delivery; acked messages per second
/// from connect to the last ack. Completeness counts distinct offsets.
pub async fn drain(
    ctx: &Ctx,
    peer: Peer,
    count: u64,
    stall: Duration,
    rep: usize,
) -> Result<Record> {
    let tag = format!("drain-{}-{rep}", peer.name().replace(' ', "_"));
    let (server, redis) = start(ctx, peer, &tag).await?;
    let target = target(&server, &redis)?;
    let topic = "bench.drain";
    let mut redis_conn = None;
    match &target {
        Target::Tidings(s) => {
            let mut ws = subscriber(ctx, s, 0, "drainer").await?;
            sio::call_ok(
                &mut ws,
                1,
                "subscribe",
                json!({"topic": topic, "from": "new"}),
            )
            .await?;
            let _ = ws.close().await;
        }
        Target::Redis(r) => {
            let mut conn = redis::Client::open(r.url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            let _: () = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(topic)
                .arg("g")
                .arg("$")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await?;
            redis_conn = Some(conn);
        }
    }
    // The memory the backlog takes where it is kept: the server's for the embedded store,
    // redis-server's for Redis (tidings --redis keeps it in a Redis the bench does not watch).
    let empty = Usage::of(target.pid())?;
    let fill = publish_run(
        ctx,
        &target,
        topic,
        (64, 1),
        3600.0,
        Some(count),
        None,
        &format!("drain {}: filling", peer.name()),
    )
    .await?;
    if fill.confirmed != count {
        bail!(
            "filling the backlog confirmed {} of {count} messages",
            fill.confirmed
        );
    }
    let pb = bar(ctx, count, &format!("drain {}", peer.name()));
    let before = Usage::of(target.pid())?;
    let retained_bytes_per_msg =
        (before.rss_kib.saturating_sub(empty.rss_kib) * 1024) as f64 / count as f64;
    let start = Instant::now();
    let (acked, distinct) = match &target {
        Target::Tidings(s) => {
            let ws = subscriber(ctx, s, 0, "drainer").await?;
            drain_sio(ws, count, stall, &pb).await?
        }
        Target::Redis(_) => {
            let conn = redis_conn
                .as_mut()
                .ok_or_else(|| anyhow!("no redis connection"))?;
            drain_redis(conn, topic, count, stall, &pb).await?
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let after = Usage::of(target.pid())?;
    pb.finish_and_clear();
    let mut rec = Record::new("drain", format!("{count} msgs"), 0, peer);
    rec.set("expected", count as f64)
        .set("delivered", distinct as f64)
        .set("completeness", distinct as f64 / count as f64)
        .set("acked", acked as f64)
        .set("msgs_per_s", distinct as f64 / secs)
        .set("fill_msgs_per_s", fill.confirmed as f64 / fill.secs);
    if peer != Peer::RedisMode {
        rec.set("rss_bytes_per_msg", retained_bytes_per_msg);
    }
    rec.set(
        "cpu_s_per_m",
        (after.cpu_secs - before.cpu_secs) / distinct.max(1) as f64 * 1e6,
    );
    ctx.say(format!(
        "  drain      {:<14} {distinct}/{count} acked  {:>9.0} msg/s (filled at {:.0} msg/s)",
        peer.name(),
        distinct as f64 / secs,
        fill.confirmed as f64 / fill.secs,
    ))?;
    stop(server, redis).await;
    Ok(rec)
}

/// Reads deliveries `42<id>["m",data,meta]`, acks each (`43<id>[]`, batched into one flush per
/// burst of ready frames), and counts distinct offsets until `count` or a stall.
async fn drain_sio(
    mut ws: Ws,
    count: u64,
    stall: Duration,
    pb: &indicatif::ProgressBar,
) -> Result<(u64, u64)> {
    let mut seen = vec![false; count as usize + 1];
    let mut distinct = 0u64;
    let mut acked = 0u64;
    while distinct < count {
        let first = tokio::time::timeout(stall, ws.next())
            .await
            .map_err(|_| anyhow!("drain stalled at {distinct}/{count}"))
            .and_then(|m| m.ok_or_else(|| anyhow!("connection closed")));
        let mut batch = vec![first?];
        while batch.len() < 1024 {
            match ws.next().now_or_never() {
                Some(Some(m)) => batch.push(m),
                _ => break,
            }
        }
        for msg in batch {
            let msg = msg.context("websocket read")?;
            let Some(text) = msg.as_text() else { continue };
            if text == "2" {
                ws.feed(Message::text("3")).await?;
                continue;
            }
            let Some(id) = sio::event_ack_id(text) else {
                continue;
            };
            if let Some(offset) = sio::find_u64(text, r#""offset":"#)
                && let Some(slot) = seen.get_mut(offset as usize)
                && !*slot
            {
                *slot = true;
                distinct += 1;
            }
            ws.feed(Message::text(format!("43{id}[]"))).await?;
            acked += 1;
        }
        ws.flush().await?;
        if acked % 1024 < 64 {
            pb.set_position(distinct);
        }
    }
    let _ = ws.close().await;
    Ok((acked, distinct))
}

/// The Redis reference: one consumer reads 100 at a time with XREADGROUP and XACKs them.
async fn drain_redis(
    conn: &mut redis::aio::MultiplexedConnection,
    topic: &str,
    count: u64,
    stall: Duration,
    pb: &indicatif::ProgressBar,
) -> Result<(u64, u64)> {
    let mut done = 0u64;
    let mut last_progress = Instant::now();
    while done < count {
        if last_progress.elapsed() > stall {
            bail!("redis drain stalled at {done}/{count}");
        }
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(100)
            .arg("STREAMS")
            .arg(topic)
            .arg(">")
            .query_async(conn)
            .await?;
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids.into_iter().map(|e| e.id))
            .collect();
        if ids.is_empty() {
            continue;
        }
        let n: u64 = redis::cmd("XACK")
            .arg(topic)
            .arg("g")
            .arg(&ids)
            .query_async(conn)
            .await?;
        done += n;
        last_progress = Instant::now();
        pb.set_position(done);
    }
    Ok((done, done))
}

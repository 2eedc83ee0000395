//! The parcels demo: durable topics, a competing-consumer group and an offline catch-up, as
//! one scripted story against a running tidings server.
//!
//! - Two vendors, `vendor-a` and `vendor-b`, publish `pickup` orders to the topic `pickup` and
//!   watch their own notice topics, `vendor.store-a` and `vendor.store-b`.
//! - Three drivers, `driver-1` to `driver-3`, are members of the group `drivers` on `pickup`:
//!   each order goes to exactly one of them. The driver publishes `in-transit`, then
//!   `delivered`, to the vendor's topic, and only then acknowledges the order.
//! - `vendor-b` goes offline right after placing its orders. The drivers take orders as they
//!   arrive but leave the depot only once every order is placed, so `vendor-b` is offline
//!   before the first notice. When it comes back, every notice is waiting for it.
//!
//! ```sh
//! cargo run --release -p tidings -- serve --data-dir /tmp/parcels-data    # terminal 1
//! cargo run --example parcels -p tidings-client -- --url http://127.0.0.1:3000
//! ```
//!
//! Options: `--orders N` (per vendor, default 3), `--drive-ms MS` (the time a driver takes
//! between two notices, default 150). The demo ends with a summary and exits with status 0
//! only when every order was taken by exactly one driver and every notice reached its vendor.
//! It can be run again and again against the same server: each run tags its messages with a
//! run id, and messages of other runs (or of the Node version) are acknowledged and skipped.
//!
//! `crates/tidings-client/tests/parcels_demo.rs` runs the same story against an in-process
//! server with the SQLite store.

use std::collections::{BTreeMap, HashSet};
use std::error::Error;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tidings_client::{Client, ClientOptions, MessageId, SubscribeOptions, Subscription};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Errors of the story's setup steps.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The topic orders are published to, and the event name they carry.
pub const PICKUP: &str = "pickup";
/// The drivers' competing-consumer group.
pub const DRIVERS: &str = "drivers";

/// What the story does.
#[derive(Debug, Clone)]
pub struct Story {
    /// The server, e.g. `http://127.0.0.1:3000`.
    pub url: String,
    /// Orders each vendor places.
    pub orders_per_vendor: usize,
    /// How long a driver takes to reach the store and then the customer.
    pub drive_time: Duration,
    /// How long the story may wait for deliveries before it gives up.
    pub timeout: Duration,
}

impl Story {
    /// The defaults of the command line: 3 orders per vendor, 150 ms drives, 30 s timeout.
    pub fn new(url: impl Into<String>) -> Story {
        Story {
            url: url.into(),
            orders_per_vendor: 3,
            drive_time: Duration::from_millis(150),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Prints narration lines; the test collects them instead.
pub type Narrator = Arc<dyn Fn(String) + Send + Sync>;

/// How the story ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Orders placed.
    pub orders: usize,
    /// Orders taken by exactly one driver, once.
    pub taken_once: usize,
    /// Orders each driver took.
    pub per_driver: BTreeMap<String, usize>,
    /// Distinct notices each vendor received, out of the number expected.
    pub notices: BTreeMap<String, (usize, usize)>,
    /// Notices that were waiting for `vendor-b` when it came back online.
    pub caught_up: usize,
    /// First deliveries that arrived after a notice with a higher offset on the same
    /// subscription (docs/PROTOCOL.md promises offset order per subscription).
    pub out_of_order: usize,
    /// Redeliveries seen (at-least-once delivery; none expected in this story).
    pub redeliveries: usize,
    /// Messages of other runs that were acknowledged and skipped.
    pub stale: usize,
    /// What went wrong; empty when the story succeeded.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether every order was taken exactly once and every notice reached its vendor, in
    /// offset order.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary printed at the end.
    pub fn summary(&self) -> Vec<String> {
        let drivers: Vec<String> = self
            .per_driver
            .iter()
            .map(|(d, n)| format!("{d}: {n}"))
            .collect();
        let mut lines = vec![
            "summary".to_owned(),
            format!("  orders placed              {}", self.orders),
            format!(
                "  taken exactly once         {}/{}  ({})",
                self.taken_once,
                self.orders,
                drivers.join(", ")
            ),
        ];
        for (vendor, (got, expected)) in &self.notices {
            let how = if vendor == "vendor-b" {
                format!(
                    "{} of them waiting when it came back online",
                    self.caught_up
                )
            } else {
                "live".to_owned()
            };
            lines.push(format!(
                "  {vendor} notices           {got}/{expected}  ({how})"
            ));
        }
        let total: usize = self.notices.values().map(|(got, _)| got).sum();
        lines.push(format!(
            "  in offset order            {}/{total}",
            total - self.out_of_order
        ));
        lines.push(format!(
            "  redeliveries               {}",
            self.redeliveries
        ));
        if self.stale > 0 {
            lines.push(format!(
                "  skipped, not from this run {} (acknowledged)",
                self.stale
            ));
        }
        if self.is_ok() {
            lines.push(
                "OK: every order was taken exactly once; every notice reached its vendor, in order"
                    .to_owned(),
            );
        } else {
            for problem in &self.problems {
                lines.push(format!("FAILED: {problem}"));
            }
        }
        lines
    }
}

/// An order, the payload of a `pickup` message.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    /// The run that placed it; orders without one (e.g. from the Node version of the demo)
    /// are skipped like those of other runs.
    #[serde(default)]
    run: String,
    order: String,
    store: String,
    parcel: String,
}

/// A notice to a vendor, the payload of `in-transit` and `delivered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Notice {
    #[serde(default)]
    run: String,
    order: String,
    driver: String,
}

/// What happened, as the drivers and vendors saw it.
#[derive(Default)]
struct Ledger {
    /// Order → the drivers that took it (one entry per delivery handled).
    taken: BTreeMap<String, Vec<String>>,
    /// Orders whose `delivered` notice is published and whose delivery is acknowledged.
    completed: usize,
    /// Vendor → (order, event, offset, attempt) as received, in arrival order, without
    /// duplicates.
    received: BTreeMap<String, Vec<(String, String, u64, u32)>>,
    /// Message ids already received by each vendor (redeliveries are counted, not recorded).
    seen: HashSet<(String, MessageId)>,
    /// Notices received by `vendor-b` after it came back.
    caught_up: usize,
    redeliveries: usize,
    stale: usize,
    problems: Vec<String>,
}

/// What the tasks share: the run id, the ledger and the narrator.
#[derive(Clone)]
struct Ctx {
    run: String,
    start: Instant,
    ledger: Arc<Mutex<Ledger>>,
    changed: watch::Sender<u64>,
    say: Narrator,
    drive_time: Duration,
    /// The vans leave the depot once this is true.
    depart: watch::Receiver<bool>,
}

impl Ctx {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let t = self.start.elapsed().as_secs_f64();
        (self.say)(format!("[{t:6.2}s] {who:<9} {}", what.as_ref()));
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records something in the ledger and wakes whoever waits for a change.
    fn record(&self, f: impl FnOnce(&mut Ledger)) {
        f(&mut self.ledger());
        self.changed.send_modify(|v| *v += 1);
    }

    fn problem(&self, who: &str, what: String) {
        self.say(who, format!("PROBLEM: {what}"));
        self.record(|l| l.problems.push(format!("{who}: {what}")));
    }

    /// Waits until `done` holds for the ledger, or the deadline passes (false).
    async fn wait_until(&self, deadline: Instant, done: impl Fn(&Ledger) -> bool) -> bool {
        let mut changes = self.changed.subscribe();
        loop {
            changes.borrow_and_update();
            if done(&self.ledger()) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return done(&self.ledger()),
            }
        }
    }
}

fn vendor_topic(store: &str) -> String {
    format!("vendor.{store}")
}

async fn connect(url: &str, identity: &str) -> Result<Client, BoxError> {
    let options = ClientOptions::builder(url)
        .auth(json!({ "clientId": identity }))
        .reconnect_delay(Duration::from_millis(100), Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    Ok(Client::connect(options).await?)
}

/// A driver: takes the orders the group hands it, one at a time.
async fn drive(ctx: Ctx, name: String, client: Client, mut orders: Subscription) {
    while let Some(delivery) = orders.recv().await {
        let order: Order = match delivery.data() {
            Ok(order) => order,
            Err(e) => {
                ctx.problem(&name, format!("malformed order: {e}"));
                let _ = delivery.ack().await;
                continue;
            }
        };
        if order.run != ctx.run {
            ctx.say(
                &name,
                format!("skips order {}: not from this run", order.order),
            );
            ctx.record(|l| l.stale += 1);
            let _ = delivery.ack().await;
            continue;
        }
        let meta = &delivery.meta;
        ctx.say(
            &name,
            format!(
                "took order {} from {} ({}, pickup offset {}, attempt {})",
                order.order, order.store, order.parcel, meta.offset, meta.attempt
            ),
        );
        ctx.record(|l| {
            l.taken
                .entry(order.order.clone())
                .or_default()
                .push(name.clone());
            if meta.attempt > 1 {
                l.redeliveries += 1;
            }
        });
        // Wait at the depot until the vans leave; after that this returns at once.
        let mut depart = ctx.depart.clone();
        let _ = depart.wait_for(|go| *go).await;

        let topic = vendor_topic(&order.store);
        let notice = Notice {
            run: ctx.run.clone(),
            order: order.order.clone(),
            driver: name.clone(),
        };
        for event in ["in-transit", "delivered"] {
            tokio::time::sleep(ctx.drive_time).await;
            // The key makes a retry (or a redelivered order) harmless: the server stores a
            // notice once per order and event.
            let key = format!("{}:{}:{event}", ctx.run, order.order);
            match client.publish_with_key(&topic, event, &notice, &key).await {
                Ok(published) => ctx.say(
                    &name,
                    format!(
                        "{} {event:<10} -> {topic} (offset {}{})",
                        order.order,
                        published.offset,
                        if published.duplicate {
                            ", duplicate"
                        } else {
                            ""
                        }
                    ),
                ),
                Err(e) => {
                    // Not acknowledged: the group redelivers the order to a driver.
                    ctx.problem(
                        &name,
                        format!("cannot publish {event} for {}: {e}", order.order),
                    );
                    return;
                }
            }
        }
        match delivery.ack().await {
            Ok(()) => ctx.record(|l| l.completed += 1),
            Err(e) => ctx.problem(&name, format!("cannot acknowledge {}: {e}", order.order)),
        }
    }
}

/// A vendor's notice feed: records and acknowledges every notice until the client closes.
async fn watch_notices(ctx: Ctx, name: String, mut notices: Subscription, catching_up: bool) {
    while let Some(delivery) = notices.recv().await {
        let notice: Notice = match delivery.data() {
            Ok(notice) => notice,
            Err(e) => {
                ctx.problem(&name, format!("malformed notice: {e}"));
                let _ = delivery.ack().await;
                continue;
            }
        };
        if notice.run != ctx.run {
            ctx.say(
                &name,
                format!(
                    "skips a notice not from this run ({} {})",
                    notice.order, delivery.event
                ),
            );
            ctx.record(|l| l.stale += 1);
            let _ = delivery.ack().await;
            continue;
        }
        let id = delivery.meta.id;
        let fresh = {
            let mut l = ctx.ledger();
            l.seen.insert((name.clone(), id))
        };
        ctx.say(
            &name,
            format!(
                "{}: {} {} by {} (offset {}{})",
                if catching_up { "caught up" } else { "notice" },
                notice.order,
                delivery.event,
                notice.driver,
                delivery.meta.offset,
                if fresh { "" } else { ", redelivered" }
            ),
        );
        let (event, offset, attempt) = (
            delivery.event.clone(),
            delivery.meta.offset,
            delivery.meta.attempt,
        );
        if let Err(e) = delivery.ack().await {
            ctx.problem(&name, format!("cannot acknowledge a notice: {e}"));
        }
        ctx.record(|l| {
            if fresh {
                l.received.entry(name.clone()).or_default().push((
                    notice.order.clone(),
                    event,
                    offset,
                    attempt,
                ));
                if catching_up {
                    l.caught_up += 1;
                }
            } else {
                l.redeliveries += 1;
            }
        });
    }
}

/// Runs the story and checks it: see the module docs.
///
/// # Errors
///
/// When a client cannot connect, subscribe or publish an order: the story cannot go on.
/// Anything that goes wrong after the orders are placed is reported in [`Outcome::problems`].
pub async fn run(story: &Story, say: Narrator) -> Result<Outcome, BoxError> {
    let run = format!("{:08x}", fastrand::u32(..));
    let (changed, _) = watch::channel(0u64);
    let (depart_tx, depart) = watch::channel(false);
    let ctx = Ctx {
        run: run.clone(),
        start: Instant::now(),
        ledger: Arc::default(),
        changed,
        say,
        drive_time: story.drive_time,
        depart,
    };
    let n = story.orders_per_vendor;
    (ctx.say)(format!(
        "parcels: run {run} on {}: 2 vendors x {n} orders, 3 drivers in group `{DRIVERS}`",
        story.url
    ));
    let mut tasks = JoinSet::new();
    let stores = [("vendor-a", "store-a", 'A'), ("vendor-b", "store-b", 'B')];

    // The vendors open: each subscribes (durably) to its own notice topic.
    let mut vendors = Vec::new();
    for (vendor, store, _) in stores {
        let client = connect(&story.url, vendor).await?;
        let topic = vendor_topic(store);
        let notices = client.subscribe(SubscribeOptions::new(&topic)).await?;
        ctx.say(vendor, format!("online, subscribed to {topic}"));
        tasks.spawn(watch_notices(
            ctx.clone(),
            vendor.to_owned(),
            notices,
            false,
        ));
        vendors.push(client);
    }

    // The drivers start their shift: each joins the group; the group shares one queue.
    let mut drivers = Vec::new();
    for i in 1..=3 {
        let name = format!("driver-{i}");
        let client = connect(&story.url, &name).await?;
        let orders = client
            .subscribe(SubscribeOptions::new(PICKUP).group(DRIVERS))
            .await?;
        ctx.say(
            &name,
            format!("on shift: member of group `{DRIVERS}` on topic `{PICKUP}`"),
        );
        tasks.spawn(drive(ctx.clone(), name, client.clone(), orders));
        drivers.push(client);
    }

    // The vendors place their orders; vendor-b then goes offline.
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((vendor, store, letter), client) in stores.iter().zip(&vendors).rev() {
        for k in 1..=n {
            let order = Order {
                run: run.clone(),
                order: format!("{letter}{k}"),
                store: (*store).to_owned(),
                parcel: format!("parcel of {}", ["books", "tea", "shoes", "plants"][k % 4]),
            };
            let key = format!("{run}:{}", order.order);
            let published = client
                .publish_with_key(PICKUP, PICKUP, &order, &key)
                .await?;
            ctx.say(
                vendor,
                format!(
                    "published order {} to {PICKUP} (offset {})",
                    order.order, published.offset
                ),
            );
            expected
                .entry((*vendor).to_owned())
                .or_default()
                .push(order.order);
        }
        if *vendor == "vendor-b" {
            client.disconnect().await;
            ctx.say(
                vendor,
                "goes OFFLINE (its subscription stays on the server)",
            );
        }
    }
    let orders: usize = expected.values().map(Vec::len).sum();

    // The vans leave: drivers publish their notices from now on.
    ctx.say("dispatch", "vans leave the depot");
    let _ = depart_tx.send(true);
    let deadline = Instant::now() + story.timeout;
    if !ctx.wait_until(deadline, |l| l.completed >= orders).await {
        let done = ctx.ledger().completed;
        ctx.problem(
            "dispatch",
            format!("only {done} of {orders} orders were delivered in time"),
        );
    } else {
        ctx.say("dispatch", format!("all {orders} orders delivered"));
    }

    // vendor-b comes back: every notice published while it was away is waiting.
    let vendor_b = connect(&story.url, "vendor-b").await?;
    let topic_b = vendor_topic("store-b");
    let notices = vendor_b.subscribe(SubscribeOptions::new(&topic_b)).await?;
    ctx.say(
        "vendor-b",
        format!(
            "back ONLINE: {} notices waiting on {topic_b}",
            notices.pending()
        ),
    );
    tasks.spawn(watch_notices(
        ctx.clone(),
        "vendor-b".to_owned(),
        notices,
        true,
    ));
    let want: BTreeMap<String, usize> = expected
        .iter()
        .map(|(v, o)| (v.clone(), 2 * o.len()))
        .collect();
    let all_received = ctx
        .wait_until(deadline, |l| {
            want.iter()
                .all(|(v, n)| l.received.get(v).map_or(0, Vec::len) >= *n)
        })
        .await;
    if !all_received {
        ctx.problem(
            "dispatch",
            "timed out waiting for the vendors' notices".to_owned(),
        );
    }

    for client in vendors.iter().chain(&drivers).chain([&vendor_b]) {
        client.disconnect().await;
    }
    while tasks.join_next().await.is_some() {}

    Ok(check(&ctx, &expected, orders))
}

/// Checks the ledger: each order taken once, each vendor got one `in-transit` and one
/// `delivered` for each of its orders and nothing else; counts notices out of offset order.
fn check(ctx: &Ctx, expected: &BTreeMap<String, Vec<String>>, orders: usize) -> Outcome {
    let l = ctx.ledger();
    let mut out = Outcome {
        orders,
        caught_up: l.caught_up,
        redeliveries: l.redeliveries,
        stale: l.stale,
        problems: l.problems.clone(),
        ..Outcome::default()
    };
    for order in expected.values().flatten() {
        match l.taken.get(order).map(Vec::as_slice) {
            Some([driver]) => {
                out.taken_once += 1;
                *out.per_driver.entry(driver.clone()).or_default() += 1;
            }
            Some(drivers) => out.problems.push(format!(
                "order {order} was taken {} times ({})",
                drivers.len(),
                drivers.join(", ")
            )),
            None => out.problems.push(format!("order {order} was never taken")),
        }
    }
    for (vendor, orders) in expected {
        let received = l.received.get(vendor).cloned().unwrap_or_default();
        let mut want = Vec::new();
        for order in orders {
            let mut of_order: Vec<&str> = received
                .iter()
                .filter(|(o, ..)| o == order)
                .map(|(_, event, ..)| event.as_str())
                .collect();
            of_order.sort_unstable();
            if of_order != ["delivered", "in-transit"] {
                out.problems.push(format!(
                    "{vendor} got {of_order:?} for order {order}, expected one in-transit and one delivered"
                ));
            }
            want.push(order);
        }
        let unexpected = received.iter().filter(|(o, ..)| !want.contains(&o)).count();
        // A redelivery (attempt > 1) may come after later offsets; a first delivery may not.
        let mut highest = 0;
        let mut late = 0;
        for (_, _, offset, attempt) in &received {
            if *offset < highest && *attempt == 1 {
                late += 1;
            }
            highest = highest.max(*offset);
        }
        if late > 0 {
            out.problems.push(format!(
                "{late} of {vendor}'s notices arrived after a later offset \
                 (docs/PROTOCOL.md: offset order per subscription)"
            ));
        }
        out.out_of_order += late;
        if unexpected > 0 {
            out.problems.push(format!(
                "{vendor} got {unexpected} notices for orders not its own"
            ));
        }
        out.notices
            .insert(vendor.clone(), (received.len(), 2 * orders.len()));
    }
    out
}

const USAGE: &str = "usage: parcels [--url URL] [--orders N] [--drive-ms MS]";

fn parse_args() -> Result<Story, String> {
    let mut story = Story::new("http://127.0.0.1:3000");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--url" => story.url = value("--url")?,
            "--orders" => {
                story.orders_per_vendor = value("--orders")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("--orders: a number from 1 to 1000")?;
            }
            "--drive-ms" => {
                let ms: u64 = value("--drive-ms")?
                    .parse()
                    .map_err(|_| "--drive-ms: a number of milliseconds")?;
                story.drive_time = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    Ok(story)
}

#[tokio::main]
async fn main() -> ExitCode {
    // Narration goes to stdout; client logs (warnings and up by default) to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let story = match parse_args() {
        Ok(story) => story,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let say: Narrator = Arc::new(|line| println!("{line}"));
    match run(&story, say).await {
        Ok(outcome) => {
            for line in outcome.summary() {
                println!("{line}");
            }
            if outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!(
                "parcels: {e} (is `tidings serve` running at {}?)",
                story.url
            );
            ExitCode::FAILURE
        }
    }
}

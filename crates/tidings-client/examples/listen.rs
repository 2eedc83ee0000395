//! Subscribes to a durable topic and prints every delivery as one JSON line on stdout, then
//! acknowledges it.
//!
//! ```sh
//! cargo run -p tidings-client --example listen -- pickup
//! cargo run -p tidings-client --example listen -- pickup --url http://127.0.0.1:3000 \
//!     --client-id driver-7 --group drivers --from earliest
//! ```
//!
//! Logs go to stderr (`RUST_LOG=tidings_client=debug` for more). Stop with Ctrl-C.

use std::process::ExitCode;

use serde_json::json;
use tidings_client::{Client, ClientOptions, StartFrom, SubscribeOptions};

struct Args {
    url: String,
    topic: String,
    client_id: String,
    group: Option<String>,
    from: Option<StartFrom>,
}

const USAGE: &str =
    "usage: listen TOPIC [--url URL] [--client-id ID] [--group GROUP] [--from new|earliest|OFFSET]";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        url: "http://127.0.0.1:3000".to_owned(),
        topic: String::new(),
        client_id: "listen-example".to_owned(),
        group: None,
        from: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => parsed.url = value("--url")?,
            "--client-id" => parsed.client_id = value("--client-id")?,
            "--group" => parsed.group = Some(value("--group")?),
            "--from" => {
                parsed.from = Some(match value("--from")?.as_str() {
                    "new" => StartFrom::New,
                    "earliest" => StartFrom::Earliest,
                    offset => StartFrom::Offset(
                        offset
                            .parse()
                            .map_err(|_| format!("--from: bad offset {offset:?}"))?,
                    ),
                });
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            topic if parsed.topic.is_empty() && !topic.starts_with('-') => {
                parsed.topic = topic.to_owned();
            }
            other => return Err(format!("unexpected argument {other:?}\n{USAGE}")),
        }
    }
    if parsed.topic.is_empty() {
        return Err(USAGE.to_owned());
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("listen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let options = ClientOptions::builder(&args.url)
        .auth(json!({ "clientId": args.client_id }))
        .build()?;
    let client = Client::connect(options).await?;

    let mut subscribe = SubscribeOptions::new(&args.topic);
    subscribe.group = args.group;
    subscribe.from = args.from;
    let mut deliveries = client.subscribe(subscribe).await?;
    eprintln!(
        "subscribed to {} ({} pending); Ctrl-C to stop",
        deliveries.topic(),
        deliveries.pending()
    );

    let mut gaps = client.gaps();
    loop {
        tokio::select! {
            delivery = deliveries.recv() => {
                let Some(delivery) = delivery else { break };
                let meta = &delivery.meta;
                let line = json!({
                    "event": delivery.event,
                    "data": delivery.data,
                    "topic": meta.topic,
                    "id": meta.id,
                    "offset": meta.offset,
                    "group": meta.group,
                    "attempt": meta.attempt,
                    "publishedAt": meta.published_at,
                });
                println!("{line}");
                delivery.ack().await?;
            }
            Some(gap) = gaps.recv() => {
                eprintln!("gap in {}: offsets {}..={} were removed unsettled", gap.topic, gap.from, gap.to);
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    Ok(())
}

//! `tidings listen`: subscribe to a durable topic and print each delivery as a JSON line,
//! acknowledging it once printed. Binary parts of a message are printed as
//! `{"_binary":"<base64>"}`, the HTTP API's form (docs/PROTOCOL.md "Binary data").

use std::io::Write;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tidings_client::{Client, ClientOptions, ConnectError, StartFrom, SubscribeOptions};

use crate::remote::{RemoteArgs, tls_failure};

/// Options of `tidings listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The topic.
    topic: String,
    /// Join this competing-consumer group (each message goes to one member).
    #[arg(long)]
    group: Option<String>,
    /// The durable identity to listen as; its queue survives restarts of this command.
    #[arg(long, env = "TIDINGS_CLIENT_ID", default_value = "tidings-cli")]
    client_id: String,
    /// Where a new subscription starts: `new`, `earliest` or an offset.
    #[arg(long)]
    from: Option<String>,
    /// Exit after this many deliveries (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn start_from(from: &str) -> anyhow::Result<StartFrom> {
    Ok(match from {
        "new" => StartFrom::New,
        "earliest" => StartFrom::Earliest,
        offset => {
            StartFrom::Offset(offset.parse().with_context(|| {
                format!("--from must be new, earliest or an offset, got {offset}")
            })?)
        }
    })
}

/// Why `listen` could not connect, naming the likely cause: "is the server running?" only when
/// nothing answered.
fn connect_failure(e: ConnectError, remote: &RemoteArgs) -> anyhow::Error {
    let url = &remote.url;
    let nothing_answered = matches!(&e, ConnectError::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
    ));
    let upgrade_refused = matches!(e, ConnectError::Handshake(_));
    let refused = matches!(e, ConnectError::Refused { .. });
    let e = anyhow::Error::new(e);
    if let Some(why) = tls_failure(&e, url, remote.ca_file.as_deref()) {
        return anyhow::anyhow!(why);
    }
    let context = if refused {
        // The server answered: its reason says what is wrong (a bad token, say).
        format!("{url} refused the connection")
    } else if nothing_answered {
        format!("cannot reach {url} (is `tidings serve` running?)")
    } else if upgrade_refused && url.starts_with("http://") {
        format!(
            "cannot connect to {url}: the WebSocket upgrade was refused (a server started with \
             --tls-cert answers so to http://: use https://)"
        )
    } else {
        format!("cannot connect to {url}")
    };
    e.context(context)
}

pub async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let url = &args.remote.url;
    // With a token the server takes the identity from its `sub` and ignores `clientId`.
    let auth = match &args.remote.token {
        Some(token) => json!({ "clientId": args.client_id, "token": token }),
        None => json!({ "clientId": args.client_id }),
    };
    let mut options = ClientOptions::builder(url).auth(auth);
    if let Some(tls) = args.remote.tls()? {
        options = options.tls(tls);
    }
    let options = options.build().context("invalid client options")?;
    let client = Client::connect(options)
        .await
        .map_err(|e| connect_failure(e, &args.remote))?;
    let mut subscribe = SubscribeOptions::new(&args.topic);
    subscribe.group = args.group.clone();
    subscribe.from = args.from.as_deref().map(start_from).transpose()?;
    let mut deliveries = client
        .subscribe(subscribe)
        .await
        .context("subscribe failed")?;
    eprintln!(
        "listening to {} as {}{} ({} pending); Ctrl-C to stop",
        deliveries.topic(),
        if args.remote.token.is_some() {
            "the token's subject"
        } else {
            &args.client_id
        },
        args.group
            .as_deref()
            .map(|g| format!(" in group {g}"))
            .unwrap_or_default(),
        deliveries.pending()
    );
    let mut gaps = client.gaps();
    let mut received = 0u64;
    let stdout = std::io::stdout();
    while args.count.is_none_or(|n| received < n) {
        tokio::select! {
            delivery = deliveries.recv() => {
                let Some(delivery) = delivery else { break };
                let meta = &delivery.meta;
                let line = json!({
                    "event": delivery.event,
                    "data": tidings_core::binary::inline(&delivery.data, &delivery.attachments),
                    "topic": meta.topic,
                    "id": meta.id,
                    "offset": meta.offset,
                    "group": meta.group,
                    "attempt": meta.attempt,
                    "publishedAt": meta.published_at,
                });
                {
                    let mut out = stdout.lock();
                    writeln!(out, "{line}")?;
                    out.flush()?;
                }
                // Acknowledged only once printed: a crash before this line redelivers it.
                delivery.ack().await.context("ack failed")?;
                received += 1;
            }
            Some(gap) = gaps.recv() => {
                eprintln!("gap in {}: offsets {}..={} were removed before being settled", gap.topic, gap.from, gap.to);
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    eprintln!("{received} deliveries");
    Ok(())
}

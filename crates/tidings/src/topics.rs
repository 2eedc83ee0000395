//! `tidings publish` and `tidings topics`: the durable-topic API from the command line.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::http::{api_error, call, segment};
use crate::remote::RemoteArgs;

/// Options of `tidings publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The topic, e.g. `pickup` or `vendor.store-42`.
    topic: String,
    /// The event name subscribers receive.
    event: String,
    /// The message data, as JSON (e.g. '{"parcel":"P-1"}'; a bare word is not JSON: quote it);
    /// binary parts as '{"_binary":"<base64>"}'.
    data: String,
    /// Idempotency key: a repeat within 24 h is stored once.
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let data: Value = serde_json::from_str(&args.data)
        .with_context(|| format!("the data is not valid JSON: {}", args.data))?;
    let mut body = json!({ "event": args.event, "data": data });
    if let Some(key) = &args.key {
        body["key"] = Value::from(key.as_str());
    }
    let path = format!("/v1/topics/{}/messages", segment(&args.topic));
    let (status, answer) = call(&args.remote, "POST", &path, Some(&body)).await?;
    if status != 201 {
        return Err(api_error(status, &answer));
    }
    println!("{answer}");
    Ok(())
}

/// Options of `tidings topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only the topics whose name starts with this (e.g. `vendor.`).
    #[arg(long)]
    prefix: Option<String>,
    /// At most this many topics, by name (default: all of them).
    #[arg(long)]
    limit: Option<u64>,
    /// Start after this topic name: the one a previous `--limit` listing said to continue
    /// from.
    #[arg(long)]
    after: Option<String>,
}

/// Topics asked for per request: the server's largest page, so that listing 100,000 topics
/// never makes it build one answer with all of them.
const PAGE: u64 = 1000;

pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let listing = list_pages(&args).await?;
    if args.json {
        let mut out = json!({ "topics": listing.topics });
        if args.limit.is_some() {
            out["next"] = listing.next.clone().map_or(Value::Null, Value::from);
            out["total"] = Value::from(listing.total);
        }
        println!("{out}");
        return Ok(());
    }
    print!("{}", table(&listing.topics, args.remote.token.is_some()));
    if let Some(next) = &listing.next {
        let shown = listing.topics.len();
        println!(
            "({shown} of {} topics shown; the next ones: --after {next})",
            listing.total
        );
    }
    Ok(())
}

/// What the pages of `GET /v1/topics` held.
struct Listing {
    topics: Vec<Value>,
    /// The name to continue after, when `--limit` stopped before the last topic.
    next: Option<String>,
    /// How many topics matched (before `--after` and `--limit`).
    total: u64,
}

/// Fetches the topics page by page, saying on a terminal how far it got when there are more
/// than one page of them.
async fn list_pages(args: &TopicsArgs) -> anyhow::Result<Listing> {
    use std::io::IsTerminal;
    let progress = std::io::stderr().is_terminal();
    let mut listing = Listing {
        topics: Vec::new(),
        next: None,
        total: 0,
    };
    let mut after = args.after.clone();
    loop {
        let fetched = listing.topics.len() as u64;
        let want = args
            .limit
            .map_or(PAGE, |l| l.saturating_sub(fetched).min(PAGE));
        if want == 0 {
            break;
        }
        let mut path = format!("/v1/topics?limit={want}");
        if let Some(prefix) = &args.prefix {
            path.push_str(&format!("&prefix={}", segment(prefix)));
        }
        if let Some(after) = &after {
            path.push_str(&format!("&after={}", segment(after)));
        }
        let (status, answer) = call(&args.remote, "GET", &path, None).await?;
        if status != 200 {
            return Err(api_error(status, &answer));
        }
        let Some(page) = answer["topics"].as_array() else {
            bail!("unexpected answer from the server: {answer}");
        };
        listing.topics.extend(page.iter().cloned());
        listing.total = answer["total"].as_u64().unwrap_or(0);
        listing.next = answer["next"].as_str().map(str::to_owned);
        if progress && listing.total > PAGE {
            eprint!(
                "\rfetched {} of {} topics…",
                listing.topics.len(),
                listing.total
            );
        }
        match &listing.next {
            Some(next) => after = Some(next.clone()),
            None => break,
        }
    }
    if progress && listing.total > PAGE {
        eprintln!();
    }
    Ok(listing)
}

/// One row per subscription (a topic without subscriptions gets one row of its own). With a
/// token the server lists only the topics it may read, so an empty list says that.
fn table(topics: &[Value], with_token: bool) -> String {
    let mut rows = vec![
        [
            "TOPIC",
            "HEAD",
            "RETAINED",
            "SUBSCRIPTION",
            "PENDING",
            "IN FLIGHT",
            "DEAD",
            "GAPS",
        ]
        .map(str::to_owned),
    ];
    let n = |v: &Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
    for t in topics {
        let subs = t["subscriptions"].as_array().cloned().unwrap_or_default();
        let head = [
            t["topic"].as_str().unwrap_or("?").to_owned(),
            n(&t["head"]),
            n(&t["retained"]),
        ];
        if subs.is_empty() {
            rows.push([
                head[0].clone(),
                head[1].clone(),
                head[2].clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for s in subs {
            rows.push([
                head[0].clone(),
                head[1].clone(),
                head[2].clone(),
                s["name"].as_str().unwrap_or("?").to_owned(),
                n(&s["pending"]),
                n(&s["inFlight"]),
                n(&s["dead"]),
                n(&s["gaps"]),
            ]);
        }
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if topics.is_empty() && with_token {
        out.push_str("(no topics this token may read)\n");
    } else if topics.is_empty() {
        out.push_str("(no topics yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_subscription() {
        let topics = vec![json!({
            "topic": "pickup", "head": 12, "retained": 12,
            "subscriptions": [
                {"name": "group:drivers", "pending": 3, "inFlight": 1, "dead": 0, "gaps": 0},
                {"name": "id:ops", "pending": 0, "inFlight": 0, "dead": 2, "gaps": 1}
            ]
        })];
        let text = table(&topics, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("pickup") && lines[1].contains("group:drivers"));
        assert!(lines[2].contains("id:ops") && lines[2].ends_with('1'));
    }

    #[test]
    fn an_empty_list_says_whose_it_is() {
        assert!(table(&[], false).ends_with("(no topics yet)\n"));
        // With a token the server lists only what it may read: topics may well exist.
        assert!(table(&[], true).ends_with("(no topics this token may read)\n"));
    }
}

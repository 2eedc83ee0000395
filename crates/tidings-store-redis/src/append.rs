//! The group commit of appends: concurrent [`Store::append`](tidings_core::store::Store::append)s
//! of a store, whatever their topics, share one script call.
//!
//! # Contract
//!
//! - **Batching.** An append joins the store's queue. A flusher task takes everything queued
//!   (at most [`MAX_BATCH`] messages, [`MAX_BATCH_BYTES`] of payload) and sends it as one
//!   `append_batch` script call, with at most [`BATCHES_IN_FLIGHT`] (one) call in flight; the
//!   appends that arrive meanwhile queue up and go in the next one. Under load a batch carries
//!   as many messages as arrived during a round trip — and with `appendfsync always` Redis
//!   fsyncs its AOF once for it, as an embedded journal does once per group commit.
//! - **Order.** Batches reach Redis one after the other, so the messages of a topic get
//!   offsets in queue order: a caller's appends, awaited one by one or in flight together, are
//!   in the order it made them. (The server handles each publish in a task of its own, so it
//!   promises no order between a socket's concurrent publishes; the store keeps the order it
//!   is given.)
//! - **Confirmation.** Each append is answered only from Redis's reply to the call that
//!   carried it (and after `WAITAOF`, when configured): `Ok` with its own offset, id and
//!   duplicate flag, or its own error. Nothing is confirmed that Redis did not answer.
//! - **Failure.** When the call fails (connection lost or refused, a timeout, Redis out of
//!   memory or read-only) every append of the batch fails with that error, as one append on
//!   its own would: none is confirmed. As for any write whose answer was lost, some may have
//!   been stored — a retry may then store a message twice (at least once), a confirmed one is
//!   never lost. A key of the wrong type under one topic (corruption) fails only that topic's
//!   appends, as `Corrupt`; the script leaves the other topics' appends of the batch alone.
//! - **Cancellation.** An append whose caller stops waiting stays queued and is stored
//!   anyway (its answer is dropped). If the flusher itself is dropped mid-call (its runtime
//!   shut down), its appends fail as unavailable and the next append starts a new flusher.
//!
//! A message is [`APPEND_FIELDS`] script arguments; a new per-message field is one more
//! argument in [`push_message`] and in `append_one` of `store.lua`.

use std::collections::VecDeque;

use tidings_core::store::{Appended, Millis, NewMessage, StoreError, Topic};
use tokio::sync::oneshot;

use crate::RedisStore;
use crate::reply::{self, at};

/// Script arguments per message of an `append_batch` call (`APPEND_FIELDS` in `store.lua`).
pub(crate) const APPEND_FIELDS: usize = 8;

/// Most messages in one batch: a script blocks Redis while it runs (a few µs per message), so
/// a batch keeps other clients waiting about a millisecond at most; past a few dozen messages a
/// larger batch no longer lowers Redis's CPU per message (BENCHMARKS.md).
pub(crate) const MAX_BATCH: usize = 256;

/// Most payload bytes in one batch (a batch's first message is taken whatever its size).
pub(crate) const MAX_BATCH_BYTES: usize = 4 << 20;

/// Most batches in flight at once: one. Redis fsyncs once per event-loop turn, and a batch
/// that reaches it while it is busy with the previous one usually gets a turn, and an fsync,
/// of its own; one batch at a time makes the batches as large as the load makes them. Measured
/// on 2026-12-06 (BENCHMARKS.md): with 4 in flight, 64 publishers confirmed 6.1k–6.4k/s
/// where one in flight gave 13.7k–21k/s, in the same alternating runs. With one in flight the
/// batches also reach Redis in queue order.
pub(crate) const BATCHES_IN_FLIGHT: usize = 1;

/// An append waiting for its batch.
struct Queued {
    topic: Topic,
    id: String,
    msg: NewMessage,
    dedup_window: Millis,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl Queued {
    fn size(&self) -> usize {
        self.msg.event.len() + self.msg.payload_len() as usize
    }
}

/// The appends not yet sent, and whether a flusher is running.
#[derive(Default)]
pub(crate) struct AppendQueue {
    queue: VecDeque<Queued>,
    is_flushing: bool,
}

/// Resets `is_flushing` if the flusher is dropped before it empties the queue (its runtime
/// shut down): the next append then starts a new one instead of waiting for ever.
struct FlushGuard<'a> {
    store: &'a RedisStore,
    is_done: bool,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if !self.is_done {
            self.store.inner.appends.lock().is_flushing = false;
        }
    }
}

/// The arguments of one message, in the order `store.lua`'s `append_batch` reads them.
/// `encoded` is the message's published_at, dedup window and attachments (`bin`, '' for
/// none) as text.
fn push_message<'a>(args: &mut Vec<&'a str>, q: &'a Queued, encoded: &'a [String; 3]) {
    args.extend([
        q.topic.as_str(),
        q.id.as_str(),
        q.msg.event.as_str(),
        q.msg.data.as_str(),
        encoded[0].as_str(),
        q.msg.key.as_deref().unwrap_or(""),
        encoded[1].as_str(),
        encoded[2].as_str(),
    ]);
}

impl RedisStore {
    /// Queues one append and waits for the reply to the batch that carries it.
    pub(crate) async fn append_batched(
        &self,
        topic: &Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            topic: topic.clone(),
            id: reply::id_to_hex(tidings_core::store::MessageId::new()),
            msg,
            dedup_window,
            reply,
        };
        let start_flusher = {
            let mut appends = self.inner.appends.lock();
            appends.queue.push_back(queued);
            !std::mem::replace(&mut appends.is_flushing, true)
        };
        if start_flusher {
            let store = self.clone();
            tokio::spawn(async move { store.flush_appends().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "redis: the append batch was dropped before redis answered".to_owned(),
            ))
        })
    }

    /// Sends batches until the queue is empty, at most [`BATCHES_IN_FLIGHT`] at a time; see
    /// the module docs.
    async fn flush_appends(&self) {
        let mut guard = FlushGuard {
            store: self,
            is_done: false,
        };
        loop {
            // Waiting for a free slot lets the queue grow into the next batch.
            let Ok(permit) = self.inner.batch_slots.clone().acquire_owned().await else {
                // Never closed; if it were, the queue would be failed below by the next flusher.
                return;
            };
            let batch = {
                let mut appends = self.inner.appends.lock();
                if appends.queue.is_empty() {
                    appends.is_flushing = false;
                    guard.is_done = true;
                    return;
                }
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(next) = appends.queue.front() {
                    if batch.len() == MAX_BATCH
                        || (!batch.is_empty() && bytes + next.size() > MAX_BATCH_BYTES)
                    {
                        break;
                    }
                    bytes += next.size();
                    batch.extend(appends.queue.pop_front());
                }
                batch
            };
            let store = self.clone();
            tokio::spawn(async move {
                let _slot = permit;
                store.answer_batch(batch).await;
            });
        }
    }

    /// Sends one batch and answers each of its appends.
    async fn answer_batch(&self, batch: Vec<Queued>) {
        match self.append_batch(&batch).await {
            Ok(answers) => {
                for (q, answer) in batch.into_iter().zip(answers) {
                    let _ = q.reply.send(answer);
                }
            }
            Err(e) => {
                for q in batch {
                    let _ = q.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One `append_batch` call: an answer per message, in order, or the call's error.
    async fn append_batch(
        &self,
        batch: &[Queued],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        const WHAT: &str = "append";
        let encoded: Vec<[String; 3]> = batch
            .iter()
            .map(|q| {
                [
                    q.msg.published_at.to_string(),
                    q.dedup_window.to_string(),
                    reply::encode_bin(&q.msg.attachments),
                ]
            })
            .collect();
        let mut args = Vec::with_capacity(batch.len() * APPEND_FIELDS);
        for (q, n) in batch.iter().zip(&encoded) {
            push_message(&mut args, q, n);
        }
        let reply = self.invoke("append_batch", "", args, true).await?;
        let r = crate::status(WHAT, "(batch)", reply)?;
        let lines = reply::bytes_of(at(&r, 0, WHAT)?, WHAT)?;
        let lines: Vec<&[u8]> = lines.split(|b| *b == b'\n').collect();
        if lines.len() != batch.len() {
            return Err(reply::corrupt(WHAT, &r[0]));
        }
        Ok(lines
            .into_iter()
            .zip(batch)
            .map(|(line, q)| appended(line, q.topic.as_str()))
            .collect())
    }
}

/// One line of `append_batch`'s reply: `<offset> <id> <duplicate>` (the offset as its stream
/// id `<offset>-0` for a new message), or `!<reason>` when the message's topic has a key of
/// the wrong type.
fn appended(line: &[u8], topic: &str) -> Result<Appended, StoreError> {
    const WHAT: &str = "append";
    let bad = || {
        StoreError::Corrupt(format!(
            "unexpected reply from redis for {WHAT}: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        ))
    };
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    if let Some(reason) = text.strip_prefix('!') {
        return Err(StoreError::Corrupt(format!("topic {topic}: {reason}")));
    }
    let mut parts = text.split(' ');
    let (Some(offset), Some(id), Some(duplicate), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    Ok(Appended {
        offset: offset
            .strip_suffix("-0")
            .unwrap_or(offset)
            .parse()
            .map_err(|_| bad())?,
        id: reply::id_from_hex(id)?,
        duplicate: match duplicate {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_append_fields_arguments() {
        let (reply, _answer) = oneshot::channel();
        let q = Queued {
            topic: Topic::new("t").unwrap(),
            id: "00".to_owned(),
            msg: NewMessage {
                event: "e".to_owned(),
                data: "{}".to_owned(),
                attachments: Vec::new(),
                key: None,
                published_at: 5,
            },
            dedup_window: 9,
            reply,
        };
        let encoded = ["5".to_owned(), "9".to_owned(), String::new()];
        let mut args = Vec::new();
        push_message(&mut args, &q, &encoded);
        assert_eq!(args, ["t", "00", "e", "{}", "5", "", "9", ""]);
        assert_eq!(args.len(), APPEND_FIELDS);
    }

    #[test]
    fn reply_lines_are_offset_id_duplicate_or_a_reason() {
        let id = "000000000000000000000000000000ff";
        let a = appended(format!("12 {id} 1").as_bytes(), "t").unwrap();
        assert_eq!((a.offset, a.id.0, a.duplicate), (12, 255, true));
        let a = appended(format!("13-0 {id} 0").as_bytes(), "t").unwrap();
        assert_eq!((a.offset, a.duplicate), (13, false));
        assert!(matches!(
            appended(b"!WRONGTYPE x", "t"),
            Err(StoreError::Corrupt(m)) if m == "topic t: WRONGTYPE x"
        ));
        for bad in ["12", "12 ff 2", "x ff 0", "1-1 ff 0", "1 ff 0 extra", ""] {
            assert!(appended(bad.as_bytes(), "t").is_err(), "{bad}");
        }
    }
}

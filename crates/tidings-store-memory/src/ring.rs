//! A topic's retained messages, in chunks that a checkpoint can share instead of copying.
//!
//! The journal store checkpoints by encoding the whole state, and every operation waits for
//! the state's lock meanwhile. Encoding millions of retained messages under that lock paused
//! every publish for over a second (BENCHMARKS.md, the quiet run at 7888d31: a 1.1 s p99.9).
//! Retained messages never change once appended — retention only removes the oldest — so the
//! ring keeps them in chunks of [`CHUNK`] behind an `Arc`: [`MessageRing::share`] takes a
//! [`SharedMessages`] (one reference count per chunk, not a copy per message) under the lock,
//! and the messages are encoded from it after the lock is released. An append to a chunk that
//! a checkpoint still holds copies that chunk first (at most `CHUNK - 1` messages, once).
//!
//! The price: a message retention removes from a chunk still in use keeps its slot (its event
//! name and payload are freed at once, unless a checkpoint holds the chunk) until the whole
//! chunk is removed — at most `CHUNK - 1` slots per topic.

use std::collections::VecDeque;
use std::sync::Arc;

use tidings_core::store::StoredMessage;

/// Messages per chunk. Small enough that the slots retention leaves behind and the copy an
/// append makes of a shared chunk stay negligible; large enough that sharing a ring of
/// millions of messages costs thousands of reference counts, not millions.
pub(crate) const CHUNK: usize = 64;

/// The retained messages of one topic, oldest first.
#[derive(Default)]
pub(crate) struct MessageRing {
    /// Every chunk holds `CHUNK` messages but the last, which fills up before a new one starts.
    chunks: VecDeque<Arc<Vec<StoredMessage>>>,
    /// Messages of the first chunk already removed.
    skip: usize,
    len: usize,
}

impl MessageRing {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn front(&self) -> Option<&StoredMessage> {
        self.get(0)
    }

    /// The message `index` places after the oldest.
    pub(crate) fn get(&self, index: usize) -> Option<&StoredMessage> {
        if index >= self.len {
            return None;
        }
        let at = index + self.skip;
        self.chunks.get(at / CHUNK)?.get(at % CHUNK)
    }

    pub(crate) fn push_back(&mut self, message: StoredMessage) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            // Grown as it fills (to `CHUNK` exactly: a power of two), so a topic of a few
            // messages does not hold room for 64.
            self.chunks.push_back(Arc::new(Vec::new()));
        }
        if let Some(last) = self.chunks.back_mut() {
            // Copies the chunk only while a checkpoint still shares it.
            Arc::make_mut(last).push(message);
            self.len += 1;
        }
    }

    /// Removes the oldest message.
    pub(crate) fn pop_front(&mut self) {
        let Some(first) = self.chunks.front_mut() else {
            return;
        };
        // Free the payload now when no checkpoint holds the chunk; the slot goes with it.
        if let Some(slot) = Arc::get_mut(first).and_then(|c| c.get_mut(self.skip)) {
            slot.event = String::new();
            slot.data = String::new();
            slot.attachments = Vec::new();
        }
        self.skip += 1;
        self.len -= 1;
        if self.skip == first.len() {
            self.chunks.pop_front();
            self.skip = 0;
        }
    }

    /// The messages from `index` on, oldest first.
    pub(crate) fn iter_from(&self, index: usize) -> impl Iterator<Item = &StoredMessage> {
        let at = index.min(self.len) + self.skip;
        self.chunks
            .iter()
            .skip(at / CHUNK)
            .flat_map(|c| c.iter())
            .skip(at % CHUNK)
            .take(self.len.saturating_sub(index))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &StoredMessage> {
        self.iter_from(0)
    }

    /// The messages as they are now, for reading after the lock is released.
    pub(crate) fn share(&self) -> SharedMessages {
        SharedMessages {
            chunks: self.chunks.iter().cloned().collect(),
            skip: self.skip,
            len: self.len,
        }
    }
}

/// What [`MessageRing::share`] took: the ring's messages at that moment, whatever the ring
/// does after.
pub(crate) struct SharedMessages {
    chunks: Vec<Arc<Vec<StoredMessage>>>,
    skip: usize,
    len: usize,
}

impl SharedMessages {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &StoredMessage> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .skip(self.skip)
            .take(self.len)
    }
}

#[cfg(test)]
mod tests {
    use tidings_core::store::MessageId;

    use super::*;

    fn message(offset: u64) -> StoredMessage {
        StoredMessage {
            id: MessageId(u128::from(offset)),
            offset,
            event: "e".into(),
            data: format!("{offset}"),
            attachments: Vec::new(),
            published_at: offset,
        }
    }

    fn offsets<'a>(it: impl Iterator<Item = &'a StoredMessage>) -> Vec<u64> {
        it.map(|m| m.offset).collect()
    }

    /// The ring against a `VecDeque` through pushes and pops that cross chunk edges, with
    /// every index and every `iter_from` start checked after each step.
    #[test]
    fn behaves_as_a_deque() {
        let mut ring = MessageRing::default();
        let mut model = VecDeque::new();
        let mut next = 1;
        // Pushes and pops in runs of varying length, so that the front and the back each
        // land on every position of a chunk.
        for round in 0..40usize {
            for _ in 0..(round * 7) % 150 {
                ring.push_back(message(next));
                model.push_back(next);
                next += 1;
            }
            for _ in 0..(round * 5) % 130 {
                ring.pop_front();
                model.pop_front();
            }
            assert_eq!(ring.len(), model.len());
            assert_eq!(ring.front().map(|m| m.offset), model.front().copied());
            for (i, want) in model.iter().enumerate() {
                assert_eq!(ring.get(i).map(|m| m.offset), Some(*want));
            }
            assert!(ring.get(model.len()).is_none());
            for start in [0, 1, CHUNK - 1, CHUNK, model.len() / 2, model.len()] {
                let want: Vec<u64> = model.iter().skip(start).copied().collect();
                assert_eq!(offsets(ring.iter_from(start)), want, "from {start}");
            }
        }
        assert!(next > 1_000, "the rounds pushed {next} messages");
    }

    /// What a checkpoint shares keeps the messages of that moment while the ring appends
    /// into the shared chunk and retention removes from it.
    #[test]
    fn a_share_is_unchanged_by_later_pushes_and_pops() {
        let mut ring = MessageRing::default();
        for offset in 1..=(CHUNK as u64 * 2 + 10) {
            ring.push_back(message(offset));
        }
        ring.pop_front();
        let before = offsets(ring.iter());
        let shared = ring.share();
        for offset in 0..(CHUNK as u64 * 2) {
            ring.push_back(message(1_000 + offset));
            ring.pop_front();
        }
        assert_eq!(shared.len(), before.len());
        assert_eq!(offsets(shared.iter()), before);
        let data: Vec<String> = shared.iter().map(|m| m.data.clone()).collect();
        let want: Vec<String> = before.iter().map(u64::to_string).collect();
        assert_eq!(data, want, "payloads kept while shared");
        assert_ne!(offsets(ring.iter()), before);
    }

    #[test]
    fn popping_frees_the_payload_of_an_unshared_chunk() {
        let mut ring = MessageRing::default();
        for offset in 1..=3 {
            ring.push_back(message(offset));
        }
        ring.pop_front();
        let chunk = ring.chunks.front().unwrap();
        assert!(
            chunk[0].data.is_empty(),
            "the removed message's payload is freed"
        );
        assert_eq!(chunk[1].data, "2");
    }
}

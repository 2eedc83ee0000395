use std::fmt;
use std::str::FromStr;

/// Length in characters of a [`Sid`] rendered as text.
const SID_TEXT_LEN: usize = 22;

/// URL-safe base64 alphabet (RFC 4648 §5), without padding.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A session or socket id: 128 random bits from the operating system's CSPRNG.
///
/// It is rendered as 22 characters of URL-safe base64 (no padding), which is what clients see in
/// the Engine.IO handshake and in the Socket.IO CONNECT reply. 128 bits make ids unguessable:
/// knowing a socket's id lets a peer address that socket's room, so ids must not be predictable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(u128);

impl Sid {
    /// A new random id.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes; a server that cannot draw
    /// unpredictable ids must not hand out predictable ones instead.
    pub fn new() -> Self {
        Sid(random_u128())
    }
}

/// 128 bits from the operating system's CSPRNG.
///
/// # Panics
///
/// Panics if the operating system cannot provide random bytes.
#[allow(clippy::expect_used)]
pub(crate) fn random_u128() -> u128 {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed"); // allow-unwrap: # Panics above
    u128::from_le_bytes(bytes)
}

/// 128 bits for an id that must be unique but is not a secret (a message id), without a system
/// call: a keyed hash (SipHash, keyed once per thread from the operating system's random
/// source by [`std::hash::RandomState`]) of a per-thread counter. Distinct counters give
/// outputs as unrelated as random ones, so two ids collide with the odds of 128 random bits;
/// drawing each id from the OS instead cost a `getrandom` call per publish (~2 % of the
/// server's CPU on the durable publish path).
pub(crate) fn unique_u128() -> u128 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static KEYS: RandomState = RandomState::new();
        static COUNTER: Cell<u64> = const { Cell::new(0) };
    }
    let n = COUNTER.with(|c| {
        let n = c.get();
        c.set(n.wrapping_add(1));
        n
    });
    KEYS.with(|keys| {
        let high = keys.hash_one((n, 0u8));
        let low = keys.hash_one((n, 1u8));
        (u128::from(high) << 64) | u128::from(low)
    })
}

/// Writes the 22-character text form of `v`.
pub(crate) fn write_u128(mut v: u128, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut buf = [0u8; SID_TEXT_LEN];
    for slot in buf.iter_mut() {
        *slot = ALPHABET[(v & 63) as usize];
        v >>= 6;
    }
    // The alphabet is ASCII, so the buffer is always valid UTF-8.
    f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

/// Parses the 22-character text form.
pub(crate) fn parse_u128(s: &str) -> Result<u128, SidParseError> {
    if s.len() != SID_TEXT_LEN {
        return Err(SidParseError);
    }
    let mut v: u128 = 0;
    for (i, b) in s.bytes().enumerate() {
        let digit = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(SidParseError),
        } as u128;
        // The last character carries only 2 significant bits (22 * 6 = 132 > 128).
        if i == SID_TEXT_LEN - 1 && digit > 3 {
            return Err(SidParseError);
        }
        v |= digit << (6 * i);
    }
    Ok(v)
}

impl Default for Sid {
    fn default() -> Self {
        Sid::new()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_u128(self.0, f)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

/// The text given to [`Sid::from_str`] is not an id this server could have issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id")]
pub struct SidParseError;

impl FromStr for Sid {
    type Err = SidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_u128(s).map(Sid)
    }
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn text_form_round_trips() {
        for _ in 0..1000 {
            let sid = Sid::new();
            let text = sid.to_string();
            assert_eq!(text.len(), SID_TEXT_LEN);
            assert_eq!(text.parse::<Sid>(), Ok(sid));
        }
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: HashSet<Sid> = (0..10_000).map(|_| Sid::new()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn unique_ids_do_not_repeat_across_threads_and_look_random() {
        let draw = || (0..10_000).map(|_| unique_u128()).collect::<Vec<_>>();
        let other = std::thread::spawn(draw).join().expect("thread");
        let mine = draw();
        let all: HashSet<u128> = mine.iter().chain(&other).copied().collect();
        assert_eq!(all.len(), 20_000, "an id repeated");
        // Consecutive ids of one thread share no structure a counter would leave: about half
        // of their bits differ (a plain counter changes 1–2 bits per step).
        let differing: u32 = mine.windows(2).map(|w| (w[0] ^ w[1]).count_ones()).sum();
        let mean = f64::from(differing) / (mine.len() - 1) as f64;
        assert!((56.0..72.0).contains(&mean), "mean differing bits {mean}");
    }

    #[test]
    fn rejects_foreign_text() {
        assert_eq!("short".parse::<Sid>(), Err(SidParseError));
        assert_eq!("AAAAAAAAAAAAAAAAAAAAA!".parse::<Sid>(), Err(SidParseError));
        // 22 valid characters, but the last one would need more than 128 bits.
        assert_eq!("AAAAAAAAAAAAAAAAAAAAAz".parse::<Sid>(), Err(SidParseError));
    }

    #[test]
    fn text_is_url_safe() {
        let text = Sid::new().to_string();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}

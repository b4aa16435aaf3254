//! A request rate per key, for the API's per-token limit and, in the API and the built-in MCP
//! server, the per-address limit of failed authentications.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys a limiter remembers before it forgets those with no debt.
const KEYS_MAX: usize = 100_000;

/// A request rate per key (GCRA: a key's "theoretical arrival time" moves forward by 1/rate per
/// request and may run at most `burst` requests ahead of now): per token, and per client
/// address for failed authentications.
#[derive(Debug)]
pub struct RateLimiter<K> {
    interval: Option<Duration>,
    tolerance: Duration,
    tat: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// `rate` requests per second (0: unlimited) with bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        let tolerance = interval.map_or(Duration::ZERO, |i| i * burst.max(1));
        Self { interval, tolerance, tat: Mutex::new(HashMap::new()) }
    }

    /// Ok (and counted), or how long to wait before the next request would be allowed.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        self.take(key, true)
    }

    /// Whether one more request would be allowed now, without counting it.
    pub fn peek(&self, key: K) -> Result<(), Duration> {
        self.take(key, false)
    }

    fn take(&self, key: K, count: bool) -> Result<(), Duration> {
        let Some(interval) = self.interval else { return Ok(()) };
        let now = Instant::now();
        let mut map = self.tat.lock().expect("rate limiter poisoned");
        if map.len() >= KEYS_MAX {
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(&key).copied().unwrap_or(now).max(now);
        let next = tat + interval;
        if next > now + self.tolerance {
            return Err(next - (now + self.tolerance));
        }
        if count {
            map.insert(key, next);
        }
        Ok(())
    }
}

/// Keys seen lately, each for `ttl`: token hashes found unknown, or found valid. At most
/// [`KEYS_MAX`] at once; beyond, expired ones are dropped, and a new key is not remembered while
/// none has expired (forgetting only costs a lookup).
#[derive(Debug)]
pub struct Recent<K> {
    ttl: Duration,
    seen: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> Recent<K> {
    /// Remembers keys for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, seen: Mutex::new(HashMap::new()) }
    }

    /// True when `key` was remembered within the last `ttl`.
    pub fn contains(&self, key: &K) -> bool {
        let seen = self.seen.lock().expect("recent keys poisoned");
        seen.get(key).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers `key` from now.
    pub fn insert(&self, key: K) {
        let mut seen = self.seen.lock().expect("recent keys poisoned");
        if seen.len() >= KEYS_MAX {
            seen.retain(|_, at| at.elapsed() < self.ttl);
            if seen.len() >= KEYS_MAX {
                return;
            }
        }
        seen.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate() {
        let l = RateLimiter::<u64>::new(10.0, 3);
        let t = 7_u64;
        for _ in 0..3 {
            assert!(l.check(t).is_ok());
        }
        let wait = l.check(t).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.check(8).is_ok(), "another token has its own budget");
        assert!(RateLimiter::<u64>::new(0.0, 1).check(t).is_ok());
    }

    #[test]
    fn peeking_does_not_spend_the_budget() {
        let l = RateLimiter::<IpAddr>::new(1.0, 2);
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..5 {
            assert!(l.peek(ip).is_ok());
        }
        assert!(l.check(ip).is_ok() && l.check(ip).is_ok());
        assert!(l.peek(ip).is_err() && l.check(ip).is_err());
    }
}

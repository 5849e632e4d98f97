//! Relay policing: what a member may send through us to another member.
//!
//! Transit is only ever member to member (forwarding routes nothing else),
//! and [`super::forward`] already refused what no relay carries (martian
//! destinations, our own addresses as the source). What is left is the rate:
//! each member has a token bucket ([`Bucket`]) holding a quarter of a second
//! of its cap, so one friend cannot fill a relay's uplink.

use embassy_time::{Duration, Instant};

use crate::wg::MAX_DATAGRAM;

/// The configured cap (kbit/s, as users write it) in bytes per second: the
/// one place the unit changes.
pub const fn bytes_per_second(kbit: u32) -> u32 {
    kbit.saturating_mul(125)
}

/// One member's transit allowance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bucket {
    /// Bytes that may go now.
    tokens: u32,
    /// When the bucket was last filled.
    at: Option<Instant>,
}

impl Bucket {
    /// May `len` more bytes of transit go now, under a cap of `rate_kbit`
    /// (`None`: no cap)?
    pub fn allow(&mut self, now: Instant, rate_kbit: Option<u32>, len: usize) -> bool {
        let Some(rate) = rate_kbit.map(bytes_per_second) else {
            return true;
        };
        // A quarter of a second of burst, at least a few full packets.
        let cap = (rate / 4).max(8 * MAX_DATAGRAM as u32);
        let elapsed = self.at.map_or(Duration::from_secs(1), |at| {
            now.saturating_duration_since(at)
        });
        let refill = (rate as u64 * elapsed.as_micros() / 1_000_000).min(cap as u64) as u32;
        self.tokens = self.tokens.saturating_add(refill).min(cap);
        self.at = Some(now);
        let need = len as u32;
        if self.tokens < need {
            return false;
        }
        self.tokens -= need;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::from_secs(100);

    #[test]
    fn a_member_gets_a_quarter_second_of_burst_then_its_rate() {
        let mut b = Bucket::default();
        // 8000 kbit/s = 1 MB/s: a burst of 250 kB.
        let rate = Some(8_000);
        let mut sent = 0;
        while b.allow(T0, rate, 1000) {
            sent += 1000;
        }
        assert_eq!(sent, 250_000);
        // 10 ms later, 10 kB more.
        let later = T0 + Duration::from_millis(10);
        let mut more = 0;
        while b.allow(later, rate, 1000) {
            more += 1000;
        }
        assert_eq!(more, 10_000);
    }

    #[test]
    fn without_a_cap_everything_goes() {
        let mut b = Bucket::default();
        assert!((0..10_000).all(|_| b.allow(T0, None, MAX_DATAGRAM)));
    }

    #[test]
    fn a_slow_cap_still_lets_whole_packets_through() {
        let mut b = Bucket::default();
        // 8 kbit/s is 1000 B/s: a new member has a second's worth, then the
        // bucket fills up to 8 full datagrams (not a quarter second's 250 B).
        assert!(b.allow(T0, Some(8), 1000));
        assert!(!b.allow(T0, Some(8), 1));
        let full = T0 + Duration::from_secs(12);
        assert!((0..8).all(|_| b.allow(full, Some(8), MAX_DATAGRAM)));
        assert!(!b.allow(full, Some(8), MAX_DATAGRAM));
    }

    #[test]
    fn kilobits_become_bytes_once() {
        assert_eq!(bytes_per_second(20_000), 2_500_000);
        assert_eq!(bytes_per_second(u32::MAX), u32::MAX);
    }
}

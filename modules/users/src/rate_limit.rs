//! Login throttling per account and per client address (GCRA, in memory, per process).

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared_kernel::ApiError;
use std::num::NonZeroU32;

pub struct LoginRateLimiter {
    per_account: DefaultKeyedRateLimiter<String>,
    per_address: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl LoginRateLimiter {
    pub fn new(per_account_per_minute: u32, per_address_per_minute: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            per_account: RateLimiter::keyed(quota(per_account_per_minute)),
            per_address: RateLimiter::keyed(quota(per_address_per_minute)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one attempt for `account` (a normalised email) and `address`.
    ///
    /// # Errors
    /// 429 with the seconds until the next attempt is allowed.
    pub fn check(&self, account: &str, address: Option<&str>) -> Result<(), ApiError> {
        self.forget_idle_keys();
        if let Some(address) = address
            && let Err(not_until) = self.per_address.check_key(&address.to_owned())
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ApiError::rate_limited("too many login attempts from this address", wait.as_secs().max(1)));
        }
        if let Err(not_until) = self.per_account.check_key(&account.to_owned()) {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ApiError::rate_limited("too many login attempts for this account", wait.as_secs().max(1)));
        }
        Ok(())
    }

    fn forget_idle_keys(&self) {
        if self.per_account.len() > 10_000 {
            self.per_account.retain_recent();
        }
        if self.per_address.len() > 10_000 {
            self.per_address.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_attempt_in_a_minute_is_refused_with_a_retry_after() {
        let limiter = LoginRateLimiter::new(5, 100);
        for _ in 0..5 {
            limiter.check("ada@example.com", Some("10.0.0.1")).unwrap();
        }
        let refused = limiter.check("ada@example.com", Some("10.0.0.2")).unwrap_err();
        assert_eq!(refused.status(), 429);
        assert!(refused.retry_after_secs().unwrap() >= 1);
        limiter.check("grace@example.com", Some("10.0.0.1")).unwrap();
    }

    #[test]
    fn one_address_cannot_try_many_accounts() {
        let limiter = LoginRateLimiter::new(100, 3);
        for n in 0..3 {
            limiter.check(&format!("user{n}@example.com"), Some("10.0.0.9")).unwrap();
        }
        assert_eq!(limiter.check("user9@example.com", Some("10.0.0.9")).unwrap_err().status(), 429);
    }
}

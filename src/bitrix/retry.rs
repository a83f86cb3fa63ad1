//! The one backoff of the service: how long to wait before trying again, doubling from a base
//! step up to a cap, jittered so that callers that failed together do not come back together.
//! The client waits it between the HTTP attempts of one call; the worker waits it (far longer
//! steps) between the attempts of a deal's job.

use std::time::Duration;

use rand::Rng;

/// How much of the step is left to chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Anywhere in `[0, step]` ("full jitter"): the client's quick retries of one call, where
    /// spreading matters more than waiting.
    Full,
    /// Half fixed, half chance, `[step/2, step]`: a job retried never comes back at once,
    /// and the retries of many deals are spread all the same.
    Half,
}

/// The wait before the retry that follows `retries` earlier ones (0 for the first retry): a
/// step of `base * 2^retries` (the exponent bounded at 20), at most `max`, jittered.
pub fn backoff(base: Duration, max: Duration, retries: u32, jitter: Jitter) -> Duration {
    let step = base
        .saturating_mul(2u32.saturating_pow(retries.min(20)))
        .min(max);
    let (fixed, chance) = match jitter {
        Jitter::Full => (Duration::ZERO, step),
        Jitter::Half => (step / 2, step / 2),
    };
    fixed + Duration::from_secs_f64(rand::rng().random_range(0.0..=chance.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_cap_and_stay_inside_their_jitter() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        for _ in 0..200 {
            let full = backoff(base, max, 0, Jitter::Full);
            assert!(full <= base, "{full:?}");
            let half = backoff(base, max, 2, Jitter::Half);
            assert!(
                (Duration::from_millis(200)..=Duration::from_millis(400)).contains(&half),
                "{half:?}"
            );
            let capped = backoff(base, max, 40, Jitter::Half);
            assert!(
                (Duration::from_millis(500)..=max).contains(&capped),
                "{capped:?}"
            );
        }
    }
}

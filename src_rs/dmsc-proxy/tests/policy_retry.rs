//! Retry decisions, backoff bounds and the retry budget.

use std::time::Duration;

use dmsc_proxy::config::{self, BackoffStrategy};
use dmsc_proxy::policy::{AttemptOutcome, RetryBudget, RetryPolicy};

fn policy(retry_on: &[&str], codes: &[u16], non_idempotent: bool) -> RetryPolicy {
    let config = config::RetryPolicy {
        retry_on: retry_on.iter().map(|s| (*s).to_owned()).collect(),
        retriable_status_codes: codes.to_vec(),
        retry_non_idempotent: non_idempotent,
        ..Default::default()
    };
    RetryPolicy::compile(Some(&config)).expect("valid policy")
}

#[test]
fn retry_decisions_follow_envoy() {
    use AttemptOutcome::{ConnectFailure as Connect, Reset, Status, Timeout};
    // (retry_on, outcome, idempotent, retried)
    let table: &[(&[&str], AttemptOutcome, bool, bool)] = &[
        (&["connect-failure"], Connect, false, true),
        (&["connect-failure"], Reset, true, false),
        (&["connect-failure"], Status(503), true, false),
        (&["5xx"], Status(500), true, true),
        (&["5xx"], Status(599), true, true),
        (&["5xx"], Status(404), true, false),
        (&["5xx"], Status(500), false, false),
        (&["5xx"], Connect, false, true),
        (&["5xx"], Reset, true, true),
        (&["5xx"], Timeout, true, true),
        (&["5xx"], Timeout, false, false),
        (&["gateway-error"], Status(500), true, false),
        (&["gateway-error"], Status(502), true, true),
        (&["gateway-error"], Status(503), true, true),
        (&["gateway-error"], Status(504), true, true),
        (&["gateway-error"], Timeout, true, true),
        (&["gateway-error"], Connect, true, true),
        (&["reset"], Reset, true, true),
        (&["reset"], Reset, false, false),
        (&["reset"], Timeout, true, false),
        (&["reset"], Status(502), true, false),
        (&["reset"], Connect, true, false),
        (&["retriable-status-codes"], Status(409), true, true),
        (&["retriable-status-codes"], Status(410), true, false),
        (&[], Connect, true, false),
        (&[], Status(503), true, false),
    ];
    for &(retry_on, outcome, idempotent, expected) in table {
        let p = policy(retry_on, &[409], false);
        assert_eq!(
            p.retriable(outcome, idempotent),
            expected,
            "{retry_on:?} {outcome:?} idempotent={idempotent}"
        );
    }
    let lenient = policy(&["5xx", "reset"], &[], true);
    assert!(lenient.retriable(Status(503), false));
    assert!(lenient.retriable(Reset, false));
    // Codes listed without the condition do nothing.
    assert!(!policy(&["5xx"], &[409], true).retriable(Status(409), true));
}

#[test]
fn the_default_policy_retries_once_on_connect_failure() {
    let p = RetryPolicy::compile(None).unwrap();
    assert_eq!(p.num_retries, 1);
    assert_eq!(p.per_try_timeout, None);
    assert!(p.retriable(AttemptOutcome::ConnectFailure, false));
    assert!(!p.retriable(AttemptOutcome::Status(503), true));
    let timed = config::RetryPolicy {
        per_try_timeout_ms: 250,
        num_retries: 4,
        ..Default::default()
    };
    let p = RetryPolicy::compile(Some(&timed)).unwrap();
    assert_eq!(
        (p.num_retries, p.per_try_timeout),
        (4, Some(Duration::from_millis(250)))
    );
}

#[test]
fn bad_retry_policies_name_the_field() {
    let unknown = config::RetryPolicy {
        retry_on: vec!["5xx".into(), "sometimes".into()],
        ..Default::default()
    };
    let err = RetryPolicy::compile(Some(&unknown)).unwrap_err();
    assert_eq!(err.path, "retry.retry_on[1]");
    assert!(err.message.contains("sometimes"), "{err}");
    let code = config::RetryPolicy {
        retriable_status_codes: vec![503, 42],
        ..Default::default()
    };
    assert_eq!(
        RetryPolicy::compile(Some(&code)).unwrap_err().path,
        "retry.retriable_status_codes[1]"
    );
    let backoff = config::RetryPolicy {
        backoff: config::Backoff {
            strategy: BackoffStrategy::Exponential,
            base_ms: 100,
            max_ms: 50,
        },
        ..Default::default()
    };
    assert_eq!(
        RetryPolicy::compile(Some(&backoff)).unwrap_err().path,
        "retry.backoff.max_ms"
    );
}

fn backoff(strategy: BackoffStrategy, base_ms: u64, max_ms: u64) -> RetryPolicy {
    let config = config::RetryPolicy {
        backoff: config::Backoff {
            strategy,
            base_ms,
            max_ms,
        },
        ..Default::default()
    };
    RetryPolicy::compile(Some(&config)).unwrap()
}

#[test]
fn fixed_and_exponential_backoff() {
    let fixed = backoff(BackoffStrategy::Fixed, 40, 400);
    for retry in [1, 2, 10, u32::MAX] {
        assert_eq!(fixed.backoff.delay(retry, 12345), Duration::from_millis(40));
    }
    let exp = backoff(BackoffStrategy::Exponential, 25, 250);
    let delays: Vec<u64> = (1..=6)
        .map(|n| exp.backoff.delay(n, 0).as_millis() as u64)
        .collect();
    assert_eq!(delays, vec![25, 50, 100, 200, 250, 250]);
    // Retry 0 is treated as the first retry; huge retry numbers do not overflow.
    assert_eq!(exp.backoff.delay(0, 0), Duration::from_millis(25));
    assert_eq!(exp.backoff.delay(64, 0), Duration::from_millis(250));
    assert_eq!(exp.backoff.delay(u32::MAX, 0), Duration::from_millis(250));
    let huge = backoff(BackoffStrategy::Exponential, u64::MAX / 2, u64::MAX);
    assert!(huge.backoff.delay(40, 0) >= huge.backoff.delay(1, 0));
}

#[test]
fn full_jitter_stays_within_its_ceiling_for_any_input() {
    let p = backoff(BackoffStrategy::FullJitter, 25, 250);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut lowest = Duration::MAX;
    let mut highest = Duration::ZERO;
    for _ in 0..20_000 {
        let retry = rng.u32(..);
        let random = rng.u64(..);
        let delay = p.backoff.delay(retry, random);
        assert!(
            delay <= Duration::from_millis(250),
            "{retry} {random} {delay:?}"
        );
        let small = rng.u32(1..=4);
        let ceiling = Duration::from_millis(25 << (small - 1));
        assert!(p.backoff.delay(small, random) <= ceiling);
        lowest = lowest.min(delay);
        highest = highest.max(delay);
    }
    // Uniform over the range: both ends are approached.
    assert!(lowest < Duration::from_millis(5) && highest > Duration::from_millis(245));
    assert_eq!(p.backoff.delay(3, 0), Duration::ZERO);
    assert_eq!(p.backoff.delay(3, u64::MAX), Duration::from_millis(100));
}

#[test]
fn budget_admits_the_floor_then_a_share_of_active_requests() {
    let budget = RetryBudget::new(&config::RetryBudget {
        budget_percent: 20.0,
        min_retry_concurrency: 2,
    });
    let floor: Vec<_> = (0..2)
        .map(|_| budget.try_retry().expect("within the floor"))
        .collect();
    assert!(budget.try_retry().is_none());
    assert_eq!(budget.exhausted(), 1);
    // 20 requests in flight: 20% is 4 retries.
    (0..20).for_each(|_| budget.request_started());
    let more: Vec<_> = (0..2)
        .map(|_| budget.try_retry().expect("within 20%"))
        .collect();
    assert!(budget.try_retry().is_none());
    assert_eq!(budget.exhausted(), 2);
    drop(floor);
    assert_eq!(budget.active_retries(), 2);
    let again: Vec<_> = (0..2).map(|_| budget.try_retry().expect("freed")).collect();
    (0..20).for_each(|_| budget.request_finished());
    // Finishing more than started never goes below zero.
    budget.request_finished();
    assert_eq!(budget.allowed(), 2);
    assert!(budget.try_retry().is_none());
    drop((more, again));
    assert_eq!(budget.active_retries(), 0);
}

#[test]
fn budget_holds_under_concurrency() {
    let budget = RetryBudget::new(&config::RetryBudget {
        budget_percent: 0.0,
        min_retry_concurrency: 3,
    });
    let peak = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..5000 {
                    if let Some(token) = budget.try_retry() {
                        peak.fetch_max(
                            budget.active_retries(),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        drop(token);
                    }
                }
            });
        }
    });
    assert!(peak.into_inner() <= 3);
    assert_eq!(budget.active_retries(), 0);
}

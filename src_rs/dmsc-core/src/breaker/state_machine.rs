//! The circuit breaker state machine, with resilience4j's semantics.
//!
//! * CLOSED lets every call through and records outcomes in the closed window (count- or
//!   time-based). Once the window holds `minimum_number_of_calls` (capped at `window_size` for a
//!   count window), a failure rate or slow-call rate at or above its threshold opens the breaker.
//! * OPEN refuses calls. The first [`CircuitBreaker::allow`] once `wait_duration_in_open_state`
//!   has elapsed moves to HALF_OPEN (lazily: there is no timer thread). Outcomes recorded while
//!   OPEN (calls admitted before it opened) still go to the window it inherited.
//! * HALF_OPEN admits `permitted_calls_in_half_open_state` trial calls, recorded in a fresh count
//!   window of that size. When it holds `min(minimum_number_of_calls, permitted)` outcomes the
//!   rates decide: at or above a threshold → OPEN, below both → CLOSED. If
//!   `max_wait_in_half_open_state` is non-zero and passes without a decision, the breaker is OPEN
//!   from that deadline on (applied by the next operation that looks at the breaker).
//! * DISABLED (always admits, records nothing) and FORCED_OPEN (always refuses) are entered and
//!   left only by the manual transitions.
//!
//! Every transition into CLOSED, HALF_OPEN, DISABLED or FORCED_OPEN starts a fresh window and
//! not-permitted count; OPEN keeps those of the state it came from. Re-entering the current state
//! by hand restarts it (fresh window, new wait) but is not counted as a transition.
//!
//! Concurrency: the state is mirrored in an atomic so that `allow` in CLOSED (the common case)
//! takes no lock; everything else takes one `parking_lot` mutex for O(1) work.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

use super::config::{CircuitBreakerConfig, WindowType};
use super::window::{CountWindow, Counts, Outcome, TimeWindow};
use crate::clock::{Clock, Nanos};
use crate::InvalidArgument;

/// How many recent transitions [`CircuitBreaker::events`] keeps.
pub const EVENT_LOG_CAPACITY: usize = 64;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls flow; outcomes are evaluated.
    Closed = 0,
    /// Calls are refused until the wait has elapsed.
    Open = 1,
    /// A limited number of trial calls decide between OPEN and CLOSED.
    HalfOpen = 2,
    /// Calls flow and nothing is recorded (manual only).
    Disabled = 3,
    /// Calls are refused until a manual transition (manual only).
    ForcedOpen = 4,
}

impl State {
    /// Lower-case name: `"closed"`, `"open"`, `"half_open"`, `"disabled"`, `"forced_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            _ => State::ForcedOpen,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change, as kept in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// State left.
    pub from: State,
    /// State entered.
    pub to: State,
}

/// A consistent snapshot of the breaker's state and current window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerMetrics {
    /// Current state.
    pub state: State,
    /// Failed over recorded calls, or -1 while the window holds fewer than the minimum calls.
    pub failure_rate: f64,
    /// Slow over recorded calls, or -1 while the window holds fewer than the minimum calls.
    pub slow_call_rate: f64,
    /// Calls in the current window.
    pub buffered_calls: u64,
    /// Failed calls in the current window.
    pub failed_calls: u64,
    /// Slow calls in the current window.
    pub slow_calls: u64,
    /// Calls in the current window that were slow and failed.
    pub slow_failed_calls: u64,
    /// Calls refused since the current window started.
    pub not_permitted_calls: u64,
    /// State changes since construction.
    pub transitions: u64,
}

#[derive(Debug)]
enum ClosedWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

/// Which window the current state records into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActiveWindow {
    Closed,
    HalfOpen,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    BelowMinimumCalls,
    BelowThresholds,
    Exceeded,
}

#[derive(Debug)]
struct Inner {
    state: State,
    closed_window: ClosedWindow,
    half_open_window: CountWindow,
    active: ActiveWindow,
    not_permitted: u64,
    opened_at: Nanos,
    half_open_since: Nanos,
    permits_left: u64,
    transitions: u64,
    events: VecDeque<Transition>,
}

/// Reads the clock at most once per operation, and only if the operation needs the time.
struct LazyNow<'a> {
    clock: &'a Clock,
    now: Option<Nanos>,
}

impl LazyNow<'_> {
    #[inline]
    fn get(&mut self) -> Nanos {
        *self.now.get_or_insert_with(|| self.clock.now())
    }
}

/// A resilience4j-style circuit breaker; see the module documentation for the semantics.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: CircuitBreakerConfig,
    clock: Clock,
    state: AtomicU8,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A CLOSED breaker with `config`, reading time from `clock`.
    pub fn new(config: CircuitBreakerConfig, clock: Clock) -> Result<Self, InvalidArgument> {
        config.validate()?;
        let size = config.window_size as usize;
        let closed_window = match config.window_type {
            WindowType::CountBased => ClosedWindow::Count(CountWindow::new(size)),
            WindowType::TimeBased => ClosedWindow::Time(TimeWindow::new(size)),
        };
        let permitted = config.permitted_calls_in_half_open_state;
        Ok(Self {
            inner: Mutex::new(Inner {
                state: State::Closed,
                closed_window,
                half_open_window: CountWindow::new(permitted as usize),
                active: ActiveWindow::Closed,
                not_permitted: 0,
                opened_at: 0,
                half_open_since: 0,
                permits_left: 0,
                transitions: 0,
                events: VecDeque::with_capacity(EVENT_LOG_CAPACITY),
            }),
            state: AtomicU8::new(State::Closed as u8),
            config,
            clock,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// Asks permission for one call. In HALF_OPEN each `true` uses one trial permit, which the
    /// call's [`record`](Self::record) (or [`release`](Self::release)) accounts for.
    #[inline]
    pub fn allow(&self) -> bool {
        match State::from_u8(self.state.load(Ordering::Acquire)) {
            State::Closed | State::Disabled => true,
            _ => self.allow_slow(),
        }
    }

    #[cold]
    fn allow_slow(&self) -> bool {
        let mut inner = self.inner.lock();
        let now = self.clock.now();
        self.expire_half_open(&mut inner, now);
        match inner.state {
            State::Closed | State::Disabled => true,
            State::ForcedOpen => refuse(&mut inner),
            State::Open => {
                if now.saturating_sub(inner.opened_at) >= self.config.wait_duration_in_open_state {
                    self.enter(&mut inner, State::HalfOpen, now);
                    take_permit(&mut inner)
                } else {
                    refuse(&mut inner)
                }
            }
            State::HalfOpen => take_permit(&mut inner),
        }
    }

    /// Gives back a HALF_OPEN permit whose call was never made; does nothing in other states.
    pub fn release(&self) {
        let mut inner = self.inner.lock();
        if inner.state == State::HalfOpen
            && inner.permits_left < self.config.permitted_calls_in_half_open_state
        {
            inner.permits_left += 1;
        }
    }

    /// Records the outcome of a call that took `latency` nanoseconds and applies the transition
    /// it causes. Ignored in DISABLED and FORCED_OPEN.
    pub fn record(&self, success: bool, latency: Nanos) {
        let outcome = Outcome::of(success, latency > self.config.slow_call_duration_threshold);
        let mut now = LazyNow {
            clock: &self.clock,
            now: None,
        };
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if inner.state == State::HalfOpen && self.config.max_wait_in_half_open_state > 0 {
            self.expire_half_open(inner, now.get());
        }
        if matches!(inner.state, State::Disabled | State::ForcedOpen) {
            return;
        }
        let (counts, minimum_calls) = match (inner.active, &mut inner.closed_window) {
            (ActiveWindow::HalfOpen, _) => (
                inner.half_open_window.record(outcome),
                self.config.half_open_minimum_calls(),
            ),
            (ActiveWindow::Closed, ClosedWindow::Count(window)) => {
                (window.record(outcome), self.config.closed_minimum_calls())
            }
            (ActiveWindow::Closed, ClosedWindow::Time(window)) => (
                window.record(outcome, now.get()),
                self.config.closed_minimum_calls(),
            ),
        };
        let verdict = self.verdict(&counts, minimum_calls);
        match (inner.state, verdict) {
            (State::Closed | State::HalfOpen, Verdict::Exceeded) => {
                self.enter(inner, State::Open, now.get());
            }
            (State::HalfOpen, Verdict::BelowThresholds) => {
                self.enter(inner, State::Closed, 0);
            }
            _ => {}
        }
    }

    /// The current state (a HALF_OPEN past its maximum wait reads as OPEN).
    pub fn state(&self) -> State {
        let state = State::from_u8(self.state.load(Ordering::Acquire));
        if state == State::HalfOpen && self.config.max_wait_in_half_open_state > 0 {
            let mut inner = self.inner.lock();
            self.expire_half_open(&mut inner, self.clock.now());
            return inner.state;
        }
        state
    }

    /// State, rates and counters of the current window, taken under one lock.
    pub fn metrics(&self) -> BreakerMetrics {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let mut now = LazyNow {
            clock: &self.clock,
            now: None,
        };
        if inner.state == State::HalfOpen && self.config.max_wait_in_half_open_state > 0 {
            self.expire_half_open(inner, now.get());
        }
        let (counts, minimum_calls) = match (inner.active, &mut inner.closed_window) {
            (ActiveWindow::HalfOpen, _) => (
                inner.half_open_window.snapshot(),
                self.config.half_open_minimum_calls(),
            ),
            (ActiveWindow::Closed, ClosedWindow::Count(window)) => {
                (window.snapshot(), self.config.closed_minimum_calls())
            }
            (ActiveWindow::Closed, ClosedWindow::Time(window)) => (
                window.snapshot(now.get()),
                self.config.closed_minimum_calls(),
            ),
        };
        let evaluated = counts.calls > 0 && counts.calls >= minimum_calls;
        let rate = |value: f64| if evaluated { value } else { -1.0 };
        BreakerMetrics {
            state: inner.state,
            failure_rate: rate(counts.failure_rate()),
            slow_call_rate: rate(counts.slow_call_rate()),
            buffered_calls: counts.calls,
            failed_calls: counts.failed,
            slow_calls: counts.slow,
            slow_failed_calls: counts.slow_failed,
            not_permitted_calls: inner.not_permitted,
            transitions: inner.transitions,
        }
    }

    /// State changes since construction.
    pub fn transitions(&self) -> u64 {
        self.inner.lock().transitions
    }

    /// The most recent transitions, oldest first (at most [`EVENT_LOG_CAPACITY`]).
    pub fn events(&self) -> Vec<Transition> {
        self.inner.lock().events.iter().copied().collect()
    }

    /// Back to a fresh CLOSED state, as if just built (the transition count is kept).
    pub fn reset(&self) {
        self.transition_to(State::Closed);
    }

    /// Moves to `state` by hand (resilience4j's `transitionTo...State`).
    pub fn transition_to(&self, state: State) {
        let mut inner = self.inner.lock();
        let now = self.clock.now();
        self.enter(&mut inner, state, now);
    }

    fn verdict(&self, counts: &Counts, minimum_calls: u64) -> Verdict {
        if counts.calls == 0 || counts.calls < minimum_calls {
            Verdict::BelowMinimumCalls
        } else if counts.failure_rate() >= self.config.failure_rate_threshold
            || counts.slow_call_rate() >= self.config.slow_call_rate_threshold
        {
            Verdict::Exceeded
        } else {
            Verdict::BelowThresholds
        }
    }

    /// Applies the HALF_OPEN deadline: OPEN from the moment it passed, as a timer would have.
    fn expire_half_open(&self, inner: &mut Inner, now: Nanos) {
        let max_wait = self.config.max_wait_in_half_open_state;
        if inner.state == State::HalfOpen && max_wait > 0 {
            let deadline = inner.half_open_since.saturating_add(max_wait);
            if now >= deadline {
                self.enter(inner, State::Open, deadline);
            }
        }
    }

    /// Enters `to` at time `at`, resetting what that state starts fresh.
    fn enter(&self, inner: &mut Inner, to: State, at: Nanos) {
        let from = inner.state;
        match to {
            State::Open => inner.opened_at = at,
            State::HalfOpen => {
                inner.half_open_window.reset();
                inner.active = ActiveWindow::HalfOpen;
                inner.not_permitted = 0;
                inner.half_open_since = at;
                inner.permits_left = self.config.permitted_calls_in_half_open_state;
            }
            State::Closed | State::Disabled | State::ForcedOpen => {
                match &mut inner.closed_window {
                    ClosedWindow::Count(window) => window.reset(),
                    ClosedWindow::Time(window) => window.reset(),
                }
                inner.active = ActiveWindow::Closed;
                inner.not_permitted = 0;
            }
        }
        inner.state = to;
        self.state.store(to as u8, Ordering::Release);
        if from != to {
            inner.transitions += 1;
            if inner.events.len() == EVENT_LOG_CAPACITY {
                inner.events.pop_front();
            }
            inner.events.push_back(Transition { from, to });
        }
    }
}

#[inline]
fn take_permit(inner: &mut Inner) -> bool {
    if inner.permits_left > 0 {
        inner.permits_left -= 1;
        true
    } else {
        refuse(inner)
    }
}

#[inline]
fn refuse(inner: &mut Inner) -> bool {
    inner.not_permitted += 1;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const S: Nanos = 1_000_000_000;

    fn breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new(0);
        let breaker = CircuitBreaker::new(config, Clock::Manual(clock.clone())).unwrap();
        (breaker, clock)
    }

    fn small() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            window_size: 4,
            minimum_number_of_calls: 4,
            permitted_calls_in_half_open_state: 2,
            wait_duration_in_open_state: 10 * S,
            slow_call_duration_threshold: S,
            ..Default::default()
        }
    }

    fn record_n(breaker: &CircuitBreaker, n: usize, success: bool) {
        for _ in 0..n {
            assert!(breaker.allow());
            breaker.record(success, 0);
        }
    }

    #[test]
    fn closed_opens_at_the_failure_rate_once_minimum_calls_are_in() {
        let (breaker, _) = breaker(small());
        record_n(&breaker, 1, true);
        record_n(&breaker, 2, false);
        // 2 of 3 failed, but the minimum is 4 calls.
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.metrics().failure_rate, -1.0);
        record_n(&breaker, 1, true);
        // 2 of 4 = 50% >= 50%.
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.metrics().failure_rate, 0.5);
        assert!(!breaker.allow());
        assert_eq!(breaker.metrics().not_permitted_calls, 1);
    }

    #[test]
    fn below_threshold_stays_closed_and_window_slides() {
        let (breaker, _) = breaker(small());
        record_n(&breaker, 1, false);
        record_n(&breaker, 3, true);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.metrics().failure_rate, 0.25);
        record_n(&breaker, 1, true);
        // The failure slid out of the 4-call window.
        assert_eq!(breaker.metrics().failed_calls, 0);
    }

    #[test]
    fn slow_calls_open_the_breaker() {
        let (breaker, _) = breaker(CircuitBreakerConfig {
            slow_call_rate_threshold: 0.75,
            ..small()
        });
        for latency in [2 * S, 2 * S, S, 3 * S] {
            assert_eq!(breaker.state(), State::Closed);
            breaker.record(true, latency);
        }
        // Exactly the threshold is not slow: 3 of 4 slow = 75%.
        let metrics = breaker.metrics();
        assert_eq!(metrics.state, State::Open);
        assert_eq!(metrics.slow_call_rate, 0.75);
    }

    #[test]
    fn open_waits_then_half_open_permits_only_the_trial_calls() {
        let (breaker, clock) = breaker(small());
        record_n(&breaker, 4, false);
        assert_eq!(breaker.state(), State::Open);
        clock.advance(10 * S - 1);
        assert!(!breaker.allow());
        assert_eq!(breaker.state(), State::Open);
        clock.advance(1);
        // The transition is lazy: reading the state does not perform it.
        assert_eq!(breaker.state(), State::Open);
        assert!(breaker.allow());
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(breaker.allow());
        assert!(!breaker.allow());
        assert_eq!(breaker.metrics().not_permitted_calls, 1);
        breaker.release();
        assert!(breaker.allow());
    }

    #[test]
    fn half_open_closes_or_reopens_on_the_trial_outcomes() {
        let (breaker, clock) = breaker(small());
        record_n(&breaker, 4, false);
        clock.advance(10 * S);
        assert!(breaker.allow());
        breaker.record(true, 0);
        assert_eq!(breaker.state(), State::HalfOpen);
        breaker.record(false, 0);
        // 1 of 2 trial calls failed: 50% reopens.
        assert_eq!(breaker.state(), State::Open);
        clock.advance(10 * S);
        record_n(&breaker, 2, true);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.metrics().buffered_calls, 0);
        let path: Vec<(State, State)> = breaker.events().iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            path,
            [
                (State::Closed, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Open),
                (State::Open, State::HalfOpen),
                (State::HalfOpen, State::Closed),
            ]
        );
        assert_eq!(breaker.transitions(), 5);
    }

    #[test]
    fn half_open_gives_up_after_its_maximum_wait() {
        let (breaker, clock) = breaker(CircuitBreakerConfig {
            max_wait_in_half_open_state: 5 * S,
            ..small()
        });
        record_n(&breaker, 4, false);
        clock.advance(10 * S);
        assert!(breaker.allow());
        clock.advance(5 * S);
        assert_eq!(breaker.state(), State::Open);
        // OPEN began at the deadline, so the next half-open is 10 s after it.
        clock.advance(10 * S - 1);
        assert!(!breaker.allow());
        clock.advance(1);
        assert!(breaker.allow());
        assert_eq!(breaker.state(), State::HalfOpen);
    }

    #[test]
    fn time_window_forgets_old_seconds() {
        let (breaker, clock) = breaker(CircuitBreakerConfig {
            window_type: WindowType::TimeBased,
            window_size: 2,
            minimum_number_of_calls: 2,
            ..small()
        });
        breaker.record(false, 0);
        clock.advance(2 * S);
        // The first failure expired before the second one arrived.
        breaker.record(false, 0);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.metrics().buffered_calls, 1);
        clock.advance(S);
        breaker.record(false, 0);
        assert_eq!(breaker.state(), State::Open);
    }

    #[test]
    fn manual_states() {
        let (breaker, _) = breaker(small());
        breaker.transition_to(State::ForcedOpen);
        assert!(!breaker.allow());
        breaker.record(false, 0);
        assert_eq!(breaker.metrics().buffered_calls, 0);
        breaker.transition_to(State::Disabled);
        record_n(&breaker, 10, false);
        assert_eq!(breaker.state(), State::Disabled);
        breaker.transition_to(State::Open);
        assert!(!breaker.allow());
        breaker.reset();
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.transitions(), 4);
        // Re-entering the same state is not a transition.
        breaker.reset();
        assert_eq!(breaker.transitions(), 4);
    }

    #[test]
    fn event_log_is_bounded() {
        let (breaker, _) = breaker(small());
        for _ in 0..EVENT_LOG_CAPACITY {
            breaker.transition_to(State::Open);
            breaker.transition_to(State::Closed);
        }
        assert_eq!(breaker.events().len(), EVENT_LOG_CAPACITY);
        assert_eq!(breaker.transitions(), 2 * EVENT_LOG_CAPACITY as u64);
    }

    #[test]
    fn concurrent_half_open_never_admits_more_than_the_permits() {
        let (breaker, clock) = breaker(CircuitBreakerConfig {
            permitted_calls_in_half_open_state: 3,
            ..small()
        });
        record_n(&breaker, 4, false);
        clock.advance(10 * S);
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..100).filter(|_| breaker.allow()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 3);
    }
}

//! Waiting for something another process does (a stat flushed, a port bound, a file written,
//! a log line), with a deadline and a message naming what never happened.

use std::thread;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
const INTERVAL: Duration = Duration::from_millis(50);

/// Check `probe` until it gives a value, for at most `timeout` (at least once);
/// `None` when it never did.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(INTERVAL);
    }
}

/// Check `probe` until it gives a value, for at most `timeout`, and return that value.
///
/// # Panics
/// After `timeout`: `timed out after {timeout:?} waiting for {what}`.
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    match poll(timeout, probe) {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Check `done` until it holds, for at most `timeout`.
///
/// # Panics
/// After `timeout`: `timed out after {timeout:?} waiting for {what}`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    wait_for(what, timeout, || done().then_some(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut calls = 0;
        let value = wait_for("the third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!(value, 30);
    }

    #[test]
    fn gives_up_after_the_timeout() {
        let mut calls = 0;
        assert_eq!(
            poll(Duration::from_millis(120), || {
                calls += 1;
                None::<()>
            }),
            None
        );
        assert!(calls >= 2, "checked {calls} times");
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible")]
    fn the_panic_names_what_never_happened() {
        wait_until("the impossible", Duration::ZERO, || false);
    }
}

//! Updating proxy-wide shared data with compare-and-swap, the one retry loop every plugin
//! uses.
//!
//! Shared data is one map for every worker of an Envoy. An update reads an entry with its
//! CAS token, computes the new value, and writes it only if the token still matches; a
//! mismatch means another worker wrote in between, so the update reads again. The number
//! of attempts is bounded: under sustained contention the caller gets
//! [`Updated::Contended`] and decides (refuse, let through, keep the old value).

use crate::host::{Host, HostError};

/// The CAS token written for an entry that did not exist when read. Envoy ignores the
/// token when the key is missing (the write creates it) and compares it when the key
/// exists, and its tokens never reach `u32::MAX`: so the write creates the entry only if
/// no other worker created it meanwhile, instead of overwriting theirs. (A write with no
/// token at all, or 0, would always succeed.)
pub const NEW_ENTRY: u32 = u32::MAX;

/// One attempt's plan, made from what it read.
#[derive(Debug)]
pub enum Plan<T, V: AsRef<[u8]> = Vec<u8>> {
    /// Write `value` to `key` if the entry is as read: `cas` is the token read with it,
    /// `None` when it did not exist (and must still not). The update ends with `then`
    /// once written.
    Write {
        key: String,
        value: V,
        cas: Option<u32>,
        then: T,
    },
    /// Nothing to write: the update ends with this.
    Stop(T),
}

/// What an update came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated<T> {
    /// The value was written.
    Written(T),
    /// The plan chose not to write.
    Stopped(T),
    /// Every attempt lost against another writer.
    Contended,
    /// The host refused a write for another reason than a CAS mismatch.
    Failed(HostError),
}

/// Run `plan` against the current shared data and write what it asks for, at most
/// `attempts` times while other workers win the race. `plan` only reads (it gets the host
/// shared), so a lost race costs a read and a write, and each attempt sees fresh values.
pub fn update<T, V: AsRef<[u8]>>(
    host: &mut dyn Host,
    attempts: u32,
    mut plan: impl FnMut(&dyn Host) -> Plan<T, V>,
) -> Updated<T> {
    for _ in 0..attempts {
        let (key, value, cas, then) = match plan(&*host) {
            Plan::Stop(result) => return Updated::Stopped(result),
            Plan::Write {
                key,
                value,
                cas,
                then,
            } => (key, value, cas, then),
        };
        match host.set_shared_data(&key, value.as_ref(), Some(cas.unwrap_or(NEW_ENTRY))) {
            Ok(()) => return Updated::Written(then),
            Err(HostError::CasMismatch) => continue,
            Err(err) => return Updated::Failed(err),
        }
    }
    Updated::Contended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeHost;

    /// Add one to a decimal counter at `key`.
    fn increment(host: &mut FakeHost, attempts: u32) -> Updated<u64> {
        update(host, attempts, |host| {
            let (value, cas) = host.shared_data("n");
            let n: u64 = value
                .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0);
            Plan::Write {
                key: "n".to_owned(),
                value: (n + 1).to_string().into_bytes(),
                cas,
                then: n + 1,
            }
        })
    }

    #[test]
    fn a_missing_entry_is_created_and_an_existing_one_replaced() {
        let mut host = FakeHost::new();
        assert_eq!(increment(&mut host, 4), Updated::Written(1));
        assert_eq!(increment(&mut host, 4), Updated::Written(2));
        assert_eq!(host.proxy.shared("n").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn a_lost_race_reads_again_and_writes_on_the_new_value() {
        let mut host = FakeHost::new();
        host.proxy.state().write_shared("n", b"5");
        // Another worker writes "10" just before each of the next two writes.
        host.proxy.race_writes("n", 2, |state| {
            state.write_shared("n", b"10");
            Ok(())
        });
        assert_eq!(increment(&mut host, 4), Updated::Written(11));
        assert_eq!(host.proxy.shared("n").as_deref(), Some(&b"11"[..]));
    }

    #[test]
    fn the_attempts_are_bounded() {
        let mut host = FakeHost::new();
        host.proxy.state().write_shared("n", b"5");
        host.proxy.lose_writes("n", 10);
        assert_eq!(increment(&mut host, 3), Updated::Contended);
        assert_eq!(host.host_calls()["set_shared_data"], 3);
    }

    #[test]
    fn an_entry_created_meanwhile_is_not_overwritten() {
        let mut host = FakeHost::new();
        let mut first = true;
        let outcome = update(&mut host, 1, |host| {
            let (_, cas) = host.shared_data("k");
            Plan::Write {
                key: "k".to_owned(),
                value: b"mine".to_vec(),
                cas,
                then: (),
            }
        });
        assert_eq!(outcome, Updated::Written(()));
        // Read as missing, but another worker created it before the write.
        let outcome = update(&mut host, 1, |_| {
            let cas = if std::mem::take(&mut first) {
                None
            } else {
                Some(1)
            };
            Plan::Write {
                key: "k".to_owned(),
                value: b"theirs".to_vec(),
                cas,
                then: (),
            }
        });
        assert_eq!(outcome, Updated::Contended);
        assert_eq!(host.proxy.shared("k").as_deref(), Some(&b"mine"[..]));
    }

    #[test]
    fn a_stop_writes_nothing_and_a_host_failure_ends_the_update() {
        let mut host = FakeHost::new();
        let outcome: Updated<&str> = update(&mut host, 4, |_| Plan::<_, Vec<u8>>::Stop("no"));
        assert_eq!(outcome, Updated::Stopped("no"));
        host.proxy.state().fail_shared_writes = Some(HostError::Failed("full".into()));
        assert_eq!(
            increment(&mut host, 4),
            Updated::Failed(HostError::Failed("full".into()))
        );
        assert_eq!(host.host_calls()["set_shared_data"], 1);
    }
}

//! Merchants who call support: the call rules, and matching calls to ground-truth incidents.
//!
//! Rules (per scenario `[calls]`): a store calls when it sees `k` failed payments within
//! `w_minutes` (any terminal of the store), or when the store (or one of its terminals) has been
//! failing for `t_minutes` without a single success in between during business hours. (A
//! merchant notices "no successful payment" only while trying to take payments, so a quiet shop
//! does not call; a run of failures with a gap longer than `t_minutes` starts afresh.) Failures the
//! merchant blames on the customer (cardholder declines, risk declines) do not count. After a
//! call the store waits `cooldown_minutes` before calling again.

use std::collections::VecDeque;

use storepulse_shared::{Label, TerminalId};

use crate::scenario::{CallRules, Scenario};
use crate::time::{MINUTE_MS, local_hour};

/// Why a merchant called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallReason {
    /// `k` failures within `w` minutes.
    Failures {
        /// Failures counted in the window.
        count: u32,
    },
    /// Failing for `t` minutes without a success.
    NoSuccess {
        /// Minutes since the first failure of the run.
        minutes: u32,
    },
}

/// One call to the support line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantCall {
    /// When, Unix ms.
    pub time_ms: i64,
    /// The calling merchant.
    pub merchant: Label,
    /// The store that called.
    pub store: Label,
    /// The terminal whose failure triggered the call.
    pub terminal: TerminalId,
    /// Why.
    pub reason: CallReason,
}

/// Per-store call state.
#[derive(Debug, Default, Clone)]
pub(crate) struct StoreCalls {
    recent: VecDeque<i64>,
    last_call: Option<i64>,
    run: TermCalls,
}

/// Per-terminal "failing since" state.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TermCalls {
    fail_since: Option<i64>,
    last_fail: i64,
}

impl CallRules {
    fn in_business_hours(&self, t: i64, offset_secs: i32) -> bool {
        let h = local_hour(t, offset_secs);
        h >= self.business_hours.0 && h < self.business_hours.1
    }
}

/// Feeds one payment attempt as the merchant saw it; returns a call if the rules fire.
pub(crate) fn observe(
    rules: &CallRules,
    offset_secs: i32,
    store: &mut StoreCalls,
    term: &mut TermCalls,
    t: i64,
    failed: bool,
) -> Option<CallReason> {
    if !failed {
        term.fail_since = None;
        store.run.fail_since = None;
        return None;
    }
    let t_ms = i64::from(rules.t_minutes) * MINUTE_MS;
    for run in [&mut *term, &mut store.run] {
        if run.fail_since.is_none() || t - run.last_fail > t_ms {
            run.fail_since = Some(t);
        }
        run.last_fail = t;
    }
    store.recent.push_back(t);
    let w_ms = i64::from(rules.w_minutes) * MINUTE_MS;
    while store.recent.front().is_some_and(|&f| f <= t - w_ms) {
        store.recent.pop_front();
    }
    let cooling = store
        .last_call
        .is_some_and(|c| t - c < i64::from(rules.cooldown_minutes) * MINUTE_MS);
    if cooling {
        return None;
    }
    let since = term
        .fail_since
        .unwrap_or(t)
        .min(store.run.fail_since.unwrap_or(t));
    let reason = if store.recent.len() >= rules.k as usize {
        // The window holds at most a day of failures; the count fits in u32.
        CallReason::Failures {
            count: u32::try_from(store.recent.len()).unwrap_or(u32::MAX),
        }
    } else if t - since >= t_ms && rules.in_business_hours(t, offset_secs) {
        CallReason::NoSuccess {
            minutes: u32::try_from((t - since) / MINUTE_MS).unwrap_or(u32::MAX),
        }
    } else {
        return None;
    };
    store.last_call = Some(t);
    store.recent.clear();
    Some(reason)
}

impl Scenario {
    /// Grace after an incident's end during which a call still counts as about it.
    pub const CALL_GRACE_MS: i64 = 60 * MINUTE_MS;

    /// The incidents (indexes into [`Scenario::incidents`]) a call is about: those whose
    /// terminals include one of the calling store's and whose window (plus
    /// [`Self::CALL_GRACE_MS`]) contains the call.
    pub fn incidents_of_call(&self, call: &MerchantCall) -> Vec<usize> {
        let store_terms: &[usize] = self
            .fleet
            .stores
            .iter()
            .find(|s| s.id == call.store)
            .map_or(&[], |s| &s.terminals);
        self.incidents
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                call.time_ms >= i.start_ms
                    && call.time_ms < i.end_ms + Self::CALL_GRACE_MS
                    && store_terms
                        .iter()
                        .any(|t| i.terminals.binary_search(t).is_ok())
            })
            .map(|(n, _)| n)
            .collect()
    }

    /// Per incident, the time of the first merchant call about it: the deadline an alert must
    /// beat. `None` when no merchant called.
    pub fn first_calls(&self, calls: &[MerchantCall]) -> Vec<Option<i64>> {
        let mut first = vec![None; self.incidents.len()];
        for c in calls {
            for i in self.incidents_of_call(c) {
                let slot: &mut Option<i64> = &mut first[i];
                if slot.is_none_or(|f| c.time_ms < f) {
                    *slot = Some(c.time_ms);
                }
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> CallRules {
        CallRules {
            k: 3,
            w_minutes: 10,
            t_minutes: 20,
            business_hours: (8, 22),
            cooldown_minutes: 60,
        }
    }

    #[test]
    fn k_failures_within_w_call_once_then_cool_down() {
        let (mut s, mut t) = (StoreCalls::default(), TermCalls::default());
        let r = rules();
        assert_eq!(observe(&r, 0, &mut s, &mut t, 0, true), None);
        assert_eq!(observe(&r, 0, &mut s, &mut t, 11 * MINUTE_MS, true), None);
        assert_eq!(observe(&r, 0, &mut s, &mut t, 12 * MINUTE_MS, true), None);
        assert_eq!(
            observe(&r, 0, &mut s, &mut t, 13 * MINUTE_MS, true),
            Some(CallReason::Failures { count: 3 })
        );
        assert_eq!(observe(&r, 0, &mut s, &mut t, 14 * MINUTE_MS, true), None);
    }

    #[test]
    fn failing_for_t_minutes_calls_in_business_hours_only() {
        let r = CallRules { k: 100, ..rules() };
        let nine = 9 * 60 * MINUTE_MS;
        let (mut s, mut t) = (StoreCalls::default(), TermCalls::default());
        assert_eq!(observe(&r, 0, &mut s, &mut t, nine, true), None);
        assert_eq!(
            observe(&r, 0, &mut s, &mut t, nine + 15 * MINUTE_MS, true),
            None
        );
        assert_eq!(
            observe(&r, 0, &mut s, &mut t, nine + 21 * MINUTE_MS, true),
            Some(CallReason::NoSuccess { minutes: 21 })
        );
        let (mut s, mut t) = (StoreCalls::default(), TermCalls::default());
        let three = 3 * 60 * MINUTE_MS;
        assert_eq!(observe(&r, 0, &mut s, &mut t, three, true), None);
        assert_eq!(
            observe(&r, 0, &mut s, &mut t, three + 15 * MINUTE_MS, true),
            None
        );
        assert_eq!(
            observe(&r, 0, &mut s, &mut t, three + 30 * MINUTE_MS, true),
            None
        );
        // A success resets the run.
        let (mut s, mut t) = (StoreCalls::default(), TermCalls::default());
        observe(&r, 0, &mut s, &mut t, nine, true);
        observe(&r, 0, &mut s, &mut t, nine + 10 * MINUTE_MS, false);
        assert_eq!(
            observe(&r, 0, &mut s, &mut t, nine + 21 * MINUTE_MS, true),
            None
        );
    }
}

//! One-to-one scoring of detected incidents against a scenario's ground truth (issue 14).
//!
//! **When a detected incident shows a fault.** One state of an incident (its kind and scope at
//! an event: opened or updated) *shows* a true fault when its kind is the fault's and its scope
//! labels are the fault's (equal as sets of `key=value`), at a moment between [`EARLY_MS`]
//! before the fault's start and [`LATE_MS`] after its end. That is the rule eval always had.
//!
//! **One-to-one.** An incident counts for at most one fault and a fault for at most one
//! incident. The pairs are chosen greedily in time order: every (incident, fault) pair where
//! the incident shows the fault is an edge, stamped with the first moment it does; edges are
//! taken earliest first (ties: the incident opened first, then the lower incident id, then the
//! fault listed first), skipping an edge whose incident or fault is already taken. So each
//! fault belongs to the incident that showed it first, as on-call saw it.
//!
//! Why not a maximum matching (Hungarian, augmenting paths): the rule is temporal — an
//! incident opened again for a fault that already had one is false. A maximum matching may
//! re-pair to raise the count: with incident A showing fault 1 and, hours later, fault 2, and
//! a duplicate B of fault 1, it pairs B with 1 and A with 2 and scores 2 of 2, although fault 2
//! was never paged on its own (it was absorbed into A) and B was a second page for fault 1.
//! The greedy pairing scores that 1 of 2 with one split. The greedy result is still a maximal
//! matching: an edge left over always has its incident or its fault taken.
//!
//! **Splits and reopens.** An incident left unpaired that shows some fault is a *duplicate*:
//! a *reopen* when the incident paired with that fault had resolved before the duplicate first
//! showed it, a *split* when the two were open together. Both count as false incidents. One
//! incident showing two faults gets one of them; the other is a miss unless another incident
//! shows it.

use std::collections::BTreeSet;

use storepulse_shared::IncidentKind;

/// A state may precede the fault's start by this much and still show it.
pub const EARLY_MS: i64 = 10 * 60_000;
/// ... and follow its end by this much.
pub const LATE_MS: i64 = 60 * 60_000;
/// An incident still open this long after its fault ended is a lingering one.
pub const LINGER_MS: i64 = 15 * 60_000;

/// Scope labels as `(key, value)` pairs.
pub type ScopeSet = BTreeSet<(String, String)>;

/// A true fault (a ground-truth incident).
#[derive(Debug, Clone, PartialEq)]
pub struct TrueFault {
    /// Incident kind.
    pub kind: IncidentKind,
    /// Scope labels.
    pub scope: ScopeSet,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms.
    pub end_ms: i64,
}

/// One state of a detected incident: when, kind, scope.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// When it was opened or updated to this, Unix ms.
    pub time_ms: i64,
    /// Kind.
    pub kind: IncidentKind,
    /// Scope labels.
    pub scope: ScopeSet,
}

/// A detected incident's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// The engine's incident id.
    pub id: u64,
    /// Its states in time order; the first is its opening (never empty).
    pub states: Vec<State>,
    /// When it resolved; `None` while still open at the end of the run.
    pub resolved_ms: Option<i64>,
}

impl Detected {
    /// When it was opened.
    pub fn opened_ms(&self) -> i64 {
        self.states.first().map_or(i64::MAX, |s| s.time_ms)
    }

    /// The first moment it shows `fault`.
    pub fn first_showing(&self, fault: &TrueFault) -> Option<i64> {
        self.states
            .iter()
            .filter(|s| shows(s, fault))
            .map(|s| s.time_ms)
            .min()
    }

    /// Its kind as on-call last saw it.
    pub fn last_kind(&self) -> Option<IncidentKind> {
        self.states.last().map(|s| s.kind)
    }
}

/// Whether `state` shows `fault` (kind, scope and time window).
pub fn shows(state: &State, fault: &TrueFault) -> bool {
    state.kind == fault.kind
        && state.scope == fault.scope
        && state.time_ms >= fault.start_ms - EARLY_MS
        && state.time_ms <= fault.end_ms + LATE_MS
}

/// What a detected incident counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Paired with fault `fault` (an index into the faults), first showing it at `at_ms`.
    Matched {
        /// The fault.
        fault: usize,
        /// First moment this incident showed it.
        at_ms: i64,
    },
    /// A second incident for a fault another incident was paired with, open at the same time.
    Split {
        /// The fault.
        fault: usize,
    },
    /// A second incident for a fault whose paired incident had already resolved.
    Reopen {
        /// The fault.
        fault: usize,
    },
    /// Shows no fault at all.
    Unrelated,
}

impl Verdict {
    /// Whether it is a true positive.
    pub fn is_match(self) -> bool {
        matches!(self, Verdict::Matched { .. })
    }

    /// Whether it is a split or a reopen.
    pub fn is_duplicate(self) -> bool {
        matches!(self, Verdict::Split { .. } | Verdict::Reopen { .. })
    }

    /// The fault it is tied to (paired with, or a duplicate of).
    pub fn fault(self) -> Option<usize> {
        match self {
            Verdict::Matched { fault, .. }
            | Verdict::Split { fault }
            | Verdict::Reopen { fault } => Some(fault),
            Verdict::Unrelated => None,
        }
    }
}

/// The pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    /// Per fault: the index of its incident (into the detected slice) and the first moment
    /// that incident showed it; `None`: missed.
    pub faults: Vec<Option<(usize, i64)>>,
    /// Per detected incident, in the slice's order.
    pub incidents: Vec<Verdict>,
}

impl Matching {
    /// Incidents paired with a fault.
    pub fn matched(&self) -> usize {
        self.faults.iter().flatten().count()
    }

    /// Splits and reopens.
    pub fn duplicates(&self) -> usize {
        self.incidents.iter().filter(|v| v.is_duplicate()).count()
    }
}

/// Pairs `detected` with `faults` one to one (see the module docs).
pub fn match_one_to_one(faults: &[TrueFault], detected: &[Detected]) -> Matching {
    // Every edge: (first showing, opened, incident id, fault index, incident index).
    let mut edges: Vec<(i64, i64, u64, usize, usize)> = Vec::new();
    for (di, d) in detected.iter().enumerate() {
        for (fi, f) in faults.iter().enumerate() {
            if let Some(at) = d.first_showing(f) {
                edges.push((at, d.opened_ms(), d.id, fi, di));
            }
        }
    }
    edges.sort_unstable();
    let mut fault_of: Vec<Option<(usize, i64)>> = vec![None; faults.len()];
    let mut verdicts = vec![Verdict::Unrelated; detected.len()];
    for &(at, _, _, fi, di) in &edges {
        if fault_of[fi].is_none() && verdicts[di] == Verdict::Unrelated {
            fault_of[fi] = Some((di, at));
            verdicts[di] = Verdict::Matched {
                fault: fi,
                at_ms: at,
            };
        }
    }
    // Leftover incidents that show a fault: duplicates of the first fault they showed (its
    // fault is taken, or the greedy pass would have taken the edge).
    for &(at, _, _, fi, di) in &edges {
        if verdicts[di] != Verdict::Unrelated {
            continue;
        }
        let Some((owner, _)) = fault_of[fi] else {
            continue;
        };
        let resolved_before = detected[owner].resolved_ms.is_some_and(|r| r <= at);
        verdicts[di] = if resolved_before {
            Verdict::Reopen { fault: fi }
        } else {
            Verdict::Split { fault: fi }
        };
    }
    Matching {
        faults: fault_of,
        incidents: verdicts,
    }
}

/// Whether the incident tied to a fault stayed open more than [`LINGER_MS`] after the fault
/// ended; `run_end_ms` is when the run stopped (an incident still open then lingered only if
/// the run went on that long).
pub fn lingered(incident: &Detected, fault: &TrueFault, run_end_ms: i64) -> bool {
    let deadline = fault.end_ms + LINGER_MS;
    match incident.resolved_ms {
        Some(r) => r > deadline,
        None => run_end_ms > deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn scope(pairs: &[(&str, &str)]) -> ScopeSet {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn fault(kind: IncidentKind, s: &[(&str, &str)], start: i64, end: i64) -> TrueFault {
        TrueFault {
            kind,
            scope: scope(s),
            start_ms: start * MIN,
            end_ms: end * MIN,
        }
    }

    /// `(minute, kind, scope)`.
    type Step<'a> = (i64, IncidentKind, &'a [(&'a str, &'a str)]);

    fn incident(id: u64, states: &[Step<'_>], resolved: Option<i64>) -> Detected {
        Detected {
            id,
            states: states
                .iter()
                .map(|(t, k, s)| State {
                    time_ms: t * MIN,
                    kind: *k,
                    scope: scope(s),
                })
                .collect(),
            resolved_ms: resolved.map(|r| r * MIN),
        }
    }

    const STORE: &[(&str, &str)] = &[("store_id", "M0001-S001")];
    const OTHER_STORE: &[(&str, &str)] = &[("store_id", "M0002-S001")];
    const MERCHANT: &[(&str, &str)] = &[("merchant_id", "M0001")];

    #[test]
    fn a_split_is_one_match_and_one_false_incident() {
        let faults = [fault(IncidentKind::StoreOffline, STORE, 100, 200)];
        let det = [
            incident(1, &[(102, IncidentKind::StoreOffline, STORE)], Some(230)),
            incident(2, &[(110, IncidentKind::StoreOffline, STORE)], Some(230)),
        ];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.faults, vec![Some((0, 102 * MIN))]);
        assert_eq!(
            m.incidents,
            vec![
                Verdict::Matched {
                    fault: 0,
                    at_ms: 102 * MIN
                },
                Verdict::Split { fault: 0 }
            ]
        );
        assert_eq!((m.matched(), m.duplicates()), (1, 1));
    }

    #[test]
    fn a_reopen_after_resolving_is_false() {
        let faults = [fault(IncidentKind::StoreOffline, STORE, 100, 300)];
        // The first resolved at 150 while the fault went on; a new incident opened at 160.
        let det = [
            incident(7, &[(103, IncidentKind::StoreOffline, STORE)], Some(150)),
            incident(9, &[(160, IncidentKind::StoreOffline, STORE)], Some(320)),
        ];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.matched(), 1);
        assert_eq!(m.incidents[1], Verdict::Reopen { fault: 0 });
        assert!(!m.incidents[1].is_match());
        assert!(m.incidents[1].is_duplicate());
    }

    #[test]
    fn one_incident_covering_two_faults_counts_once() {
        // Two outages of one store an hour apart; the incident never resolved between them and
        // was updated during the second.
        let faults = [
            fault(IncidentKind::StoreOffline, STORE, 100, 130),
            fault(IncidentKind::StoreOffline, STORE, 190, 220),
        ];
        let det = [incident(
            1,
            &[
                (101, IncidentKind::StoreOffline, STORE),
                (195, IncidentKind::StoreOffline, STORE),
            ],
            Some(240),
        )];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.faults, vec![Some((0, 101 * MIN)), None]);
        assert_eq!(m.matched(), 1);
    }

    #[test]
    fn the_earlier_showing_wins_not_the_larger_count() {
        // A shows fault 0 at 101 and fault 1 at 195; B is a duplicate of fault 0. A maximum
        // matching would pair B-0 and A-1; the greedy one keeps A-0, B a split, fault 1 missed.
        let faults = [
            fault(IncidentKind::StoreOffline, STORE, 100, 130),
            fault(IncidentKind::StoreOffline, STORE, 190, 220),
        ];
        let det = [
            incident(
                1,
                &[
                    (101, IncidentKind::StoreOffline, STORE),
                    (195, IncidentKind::StoreOffline, STORE),
                ],
                Some(240),
            ),
            incident(2, &[(105, IncidentKind::StoreOffline, STORE)], Some(125)),
        ];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.faults, vec![Some((0, 101 * MIN)), None]);
        assert_eq!(m.incidents[1], Verdict::Split { fault: 0 });
    }

    #[test]
    fn kind_scope_and_window_rules_are_kept() {
        let faults = [fault(IncidentKind::MerchantConfig, MERCHANT, 100, 200)];
        let det = [
            // Right scope, wrong kind.
            incident(1, &[(101, IncidentKind::Unknown, MERCHANT)], None),
            // Right kind, another scope.
            incident(2, &[(101, IncidentKind::MerchantConfig, OTHER_STORE)], None),
            // Too early (more than 10 minutes before the start).
            incident(3, &[(89, IncidentKind::MerchantConfig, MERCHANT)], Some(95)),
            // Too late (more than an hour after the end).
            incident(4, &[(261, IncidentKind::MerchantConfig, MERCHANT)], None),
        ];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.faults, vec![None]);
        assert!(m.incidents.iter().all(|v| *v == Verdict::Unrelated));
        // Refined to the right kind later: it matches at that moment.
        let det = [incident(
            5,
            &[
                (101, IncidentKind::Unknown, MERCHANT),
                (108, IncidentKind::MerchantConfig, MERCHANT),
            ],
            None,
        )];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.faults, vec![Some((0, 108 * MIN))]);
        // The window's edges are inside it.
        let det = [incident(
            6,
            &[(90, IncidentKind::MerchantConfig, MERCHANT)],
            None,
        )];
        assert_eq!(match_one_to_one(&faults, &det).matched(), 1);
        let det = [incident(
            8,
            &[(260, IncidentKind::MerchantConfig, MERCHANT)],
            None,
        )];
        assert_eq!(match_one_to_one(&faults, &det).matched(), 1);
    }

    #[test]
    fn each_fault_and_incident_is_used_at_most_once() {
        // Three concurrent incidents over two overlapping faults of different scopes, in a
        // scrambled order: every fault has one incident, every incident one fault at most.
        let faults = [
            fault(IncidentKind::StoreOffline, STORE, 100, 200),
            fault(IncidentKind::StoreOffline, OTHER_STORE, 100, 200),
        ];
        let det = [
            incident(3, &[(104, IncidentKind::StoreOffline, OTHER_STORE)], None),
            incident(1, &[(102, IncidentKind::StoreOffline, STORE)], None),
            incident(2, &[(102, IncidentKind::StoreOffline, STORE)], None),
        ];
        let m = match_one_to_one(&faults, &det);
        assert_eq!(m.faults, vec![Some((1, 102 * MIN)), Some((0, 104 * MIN))]);
        // Equal times: the lower incident id wins, deterministically.
        assert_eq!(m.incidents[2], Verdict::Split { fault: 0 });
    }

    #[test]
    fn lingering_is_judged_against_the_fault_end() {
        let f = fault(IncidentKind::StoreOffline, STORE, 100, 200);
        let closed_in_time = incident(1, &[(101, IncidentKind::StoreOffline, STORE)], Some(215));
        let closed_late = incident(2, &[(101, IncidentKind::StoreOffline, STORE)], Some(216));
        let open = incident(3, &[(101, IncidentKind::StoreOffline, STORE)], None);
        assert!(!lingered(&closed_in_time, &f, 400 * MIN));
        assert!(lingered(&closed_late, &f, 400 * MIN));
        assert!(lingered(&open, &f, 400 * MIN));
        // The run stopped before it could tell.
        assert!(!lingered(&open, &f, 210 * MIN));
    }
}

//! The last hour's payment outcomes by code, for the till's diagnosis: a ring of per-minute
//! tallies, bounded in minutes and in distinct codes per minute. Time comes in as an argument.

use std::collections::{BTreeMap, VecDeque};

use storepulse_shared::Scheme;

/// Minutes kept.
pub const WINDOW_MIN: i64 = 60;
/// Distinct codes counted per minute; further codes count as attempts only.
const MAX_CODES_PER_MIN: usize = 64;
const MINUTE_MS: i64 = 60_000;

/// One code's count over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCount {
    /// Scheme.
    pub scheme: Scheme,
    /// Code as the POS app reported it.
    pub code: String,
    /// Outcomes with this code.
    pub count: u64,
}

/// What the window holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcomes {
    /// Outcomes in the window.
    pub attempts: u64,
    /// Of which approved.
    pub approved: u64,
    /// Every code seen (approvals included), most frequent first.
    pub codes: Vec<CodeCount>,
}

#[derive(Debug, Clone, Default)]
struct Minute {
    minute: i64,
    attempts: u64,
    approved: u64,
    codes: BTreeMap<(u8, String), u64>,
}

/// Per-minute outcome tallies of the last [`WINDOW_MIN`] minutes.
///
/// Call [`RecentOutcomes::handle_outcome`] for every outcome with its observation time and
/// [`RecentOutcomes::summary`] with the current time.
#[derive(Debug, Clone, Default)]
pub struct RecentOutcomes {
    minutes: VecDeque<Minute>,
}

fn scheme_index(s: Scheme) -> u8 {
    match s {
        Scheme::Iso8583 => 0,
        Scheme::Cup => 1,
        Scheme::Wechatpay => 2,
        Scheme::Alipay => 3,
    }
}

fn scheme_of(i: u8) -> Scheme {
    match i {
        0 => Scheme::Iso8583,
        1 => Scheme::Cup,
        2 => Scheme::Wechatpay,
        _ => Scheme::Alipay,
    }
}

impl RecentOutcomes {
    /// Counts one outcome observed at `time_unix_ms`, seen at `now_unix_ms`. Outcomes older
    /// than the window (or from the future) are ignored.
    pub fn handle_outcome(
        &mut self,
        now_unix_ms: i64,
        time_unix_ms: i64,
        scheme: Scheme,
        code: &str,
    ) {
        let now_min = now_unix_ms.div_euclid(MINUTE_MS);
        let min = time_unix_ms.div_euclid(MINUTE_MS);
        if min > now_min || now_min - min >= WINDOW_MIN {
            return;
        }
        self.evict(now_min);
        let pos = self.minutes.iter().position(|m| m.minute >= min);
        let m = match pos {
            Some(i) if self.minutes[i].minute == min => &mut self.minutes[i],
            Some(i) => {
                self.minutes.insert(
                    i,
                    Minute {
                        minute: min,
                        ..Minute::default()
                    },
                );
                &mut self.minutes[i]
            }
            None => {
                self.minutes.push_back(Minute {
                    minute: min,
                    ..Minute::default()
                });
                let last = self.minutes.len() - 1;
                &mut self.minutes[last]
            }
        };
        m.attempts += 1;
        if storepulse_shared::taxonomy::is_approval(scheme, code) {
            m.approved += 1;
        }
        let key = (scheme_index(scheme), code.to_owned());
        if let Some(n) = m.codes.get_mut(&key) {
            *n += 1;
        } else if m.codes.len() < MAX_CODES_PER_MIN {
            m.codes.insert(key, 1);
        }
    }

    fn evict(&mut self, now_min: i64) {
        while self
            .minutes
            .front()
            .is_some_and(|m| now_min - m.minute >= WINDOW_MIN)
        {
            self.minutes.pop_front();
        }
    }

    /// The window's totals at `now_unix_ms`.
    pub fn summary(&self, now_unix_ms: i64) -> Outcomes {
        let now_min = now_unix_ms.div_euclid(MINUTE_MS);
        let mut codes: BTreeMap<(u8, &str), u64> = BTreeMap::new();
        let mut out = Outcomes::default();
        for m in self
            .minutes
            .iter()
            .filter(|m| now_min - m.minute < WINDOW_MIN && m.minute <= now_min)
        {
            out.attempts += m.attempts;
            out.approved += m.approved;
            for ((s, c), n) in &m.codes {
                *codes.entry((*s, c.as_str())).or_default() += n;
            }
        }
        out.codes = codes
            .into_iter()
            .map(|((s, c), count)| CodeCount {
                scheme: scheme_of(s),
                code: c.to_owned(),
                count,
            })
            .collect();
        out.codes
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(&b.code)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn counts_the_last_hour_only() {
        let mut r = RecentOutcomes::default();
        r.handle_outcome(T0, T0, Scheme::Cup, "00");
        r.handle_outcome(T0, T0 - 1000, Scheme::Cup, "03");
        r.handle_outcome(T0 + 30 * MINUTE_MS, T0 + 30 * MINUTE_MS, Scheme::Cup, "03");
        r.handle_outcome(T0, T0 - 2 * WINDOW_MIN * MINUTE_MS, Scheme::Cup, "03");
        r.handle_outcome(T0, T0 + 10 * MINUTE_MS, Scheme::Cup, "03");
        let s = r.summary(T0 + 30 * MINUTE_MS);
        assert_eq!((s.attempts, s.approved), (3, 1));
        assert_eq!(
            s.codes[0],
            CodeCount {
                scheme: Scheme::Cup,
                code: "03".into(),
                count: 2
            }
        );
        let later = r.summary(T0 + 61 * MINUTE_MS);
        assert_eq!(later.attempts, 1, "the first minute left the window");
        assert_eq!(r.summary(T0 + 200 * MINUTE_MS), Outcomes::default());
    }

    #[test]
    fn codes_per_minute_are_bounded() {
        let mut r = RecentOutcomes::default();
        for i in 0..200 {
            r.handle_outcome(T0, T0, Scheme::Wechatpay, &format!("E{i}"));
        }
        let s = r.summary(T0);
        assert_eq!(s.attempts, 200);
        assert_eq!(s.codes.len(), MAX_CODES_PER_MIN);
    }
}

//! When customers pay: hour-of-day curves per merchant profile and per kind of day (weekday,
//! weekend, holiday), a volume per kind of day, and an optional day-to-day variation.
//!
//! Without a `[traffic]` section every day is a weekday with factor 1, as the simulator always
//! had it (older scenario files replay exactly as before).

use crate::fleet::{Profile, normal_from, unit_hash};
use crate::time::{DAY_MS, HOUR_MS};

/// The `[traffic]` section, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficSpec {
    /// Saturdays and Sundays take the weekend shape.
    pub weekend: bool,
    /// Local dates with the holiday shape, as days since 1970-01-01 (sorted).
    pub holidays: Vec<i64>,
    /// Multiplies a weekend day's volume.
    pub weekend_volume: f64,
    /// Multiplies a holiday's volume.
    pub holiday_volume: f64,
    /// Sigma of a log-normal factor drawn per local day for the whole fleet (0: none).
    pub daily_variation: f64,
}

/// Kinds of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Monday to Friday (and every day without `weekend`).
    Weekday,
    /// Saturday and Sunday.
    Weekend,
    /// A listed holiday (takes precedence over the weekend).
    Holiday,
}

/// Per local day of a run: the payment rate weight of each hour, by profile.
#[derive(Debug, Clone)]
pub(crate) struct Traffic {
    first_day: i64,
    offset_ms: i64,
    /// Per day from `first_day`: `[retail, restaurant]` curves, each hour's share of the day
    /// times the day's volume factor.
    days: Vec<[[f64; 24]; 2]>,
}

/// Hour-of-day weights (local time), relative; normalised before use.
const RETAIL_CURVE: [f64; 24] = [
    0.3, 0.15, 0.1, 0.1, 0.1, 0.2, 0.6, 1.5, 3.0, 4.5, 5.5, 6.5, 7.0, 6.5, 6.0, 6.0, 6.5, 7.5, 8.5,
    8.5, 7.5, 5.5, 3.0, 1.2,
];
const RESTAURANT_CURVE: [f64; 24] = [
    0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.5, 2.5, 3.5, 2.0, 2.5, 8.0, 12.0, 10.0, 4.0, 2.0, 2.5, 6.0,
    11.0, 11.0, 7.0, 4.0, 2.5, 1.2,
];
/// Weekends start later and stay busy through the afternoon; brunch at restaurants.
const WEEKEND_RETAIL_CURVE: [f64; 24] = [
    0.4, 0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 0.8, 1.8, 3.5, 5.5, 7.0, 7.5, 7.5, 7.5, 7.5, 8.0, 8.5, 8.5,
    8.0, 7.0, 5.5, 3.5, 1.5,
];
const WEEKEND_RESTAURANT_CURVE: [f64; 24] = [
    0.8, 0.4, 0.2, 0.1, 0.1, 0.1, 0.3, 1.5, 3.0, 3.5, 5.0, 9.0, 12.0, 11.0, 6.0, 3.5, 3.5, 7.0,
    12.0, 12.0, 8.0, 5.0, 3.0, 1.5,
];
/// Holidays: a flat, long day into the late evening.
const HOLIDAY_RETAIL_CURVE: [f64; 24] = [
    0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.3, 0.8, 1.5, 3.5, 6.0, 7.5, 8.0, 8.0, 8.0, 8.0, 8.0, 8.5, 9.0,
    9.0, 8.5, 7.0, 4.5, 2.0,
];
const HOLIDAY_RESTAURANT_CURVE: [f64; 24] = [
    1.0, 0.5, 0.2, 0.1, 0.1, 0.1, 0.3, 1.0, 2.0, 3.0, 5.0, 10.0, 13.0, 12.0, 7.0, 4.0, 4.0, 8.0,
    13.0, 13.0, 9.0, 6.0, 4.0, 2.0,
];

/// Salt of the daily-variation hash.
const DAY_SALT: u64 = 0x4441_5956_4152_0001;

impl Default for TrafficSpec {
    fn default() -> Self {
        Self {
            weekend: false,
            holidays: Vec::new(),
            weekend_volume: 1.2,
            holiday_volume: 1.5,
            daily_variation: 0.0,
        }
    }
}

impl TrafficSpec {
    /// The kind of local day `day` (days since 1970-01-01).
    pub fn day_kind(&self, day: i64) -> DayKind {
        if self.holidays.binary_search(&day).is_ok() {
            return DayKind::Holiday;
        }
        // 1970-01-01 was a Thursday: Monday is 0.
        let weekday = (day + 3).rem_euclid(7);
        if self.weekend && weekday >= 5 {
            DayKind::Weekend
        } else {
            DayKind::Weekday
        }
    }
}

impl Traffic {
    /// The curves of every local day from `start_ms` to `end_ms`.
    pub(crate) fn new(
        spec: &TrafficSpec,
        seed: u64,
        start_ms: i64,
        end_ms: i64,
        offset_secs: i32,
    ) -> Self {
        let offset_ms = i64::from(offset_secs) * 1000;
        let first_day = (start_ms + offset_ms).div_euclid(DAY_MS);
        let last_day = (end_ms + offset_ms).div_euclid(DAY_MS);
        let norm = |c: &[f64; 24], f: f64| {
            let s: f64 = c.iter().sum();
            c.map(|w| w / s * f)
        };
        let days = (first_day..=last_day)
            .map(|day| {
                let (curves, volume) = match spec.day_kind(day) {
                    DayKind::Weekday => ([&RETAIL_CURVE, &RESTAURANT_CURVE], 1.0),
                    DayKind::Weekend => (
                        [&WEEKEND_RETAIL_CURVE, &WEEKEND_RESTAURANT_CURVE],
                        spec.weekend_volume,
                    ),
                    DayKind::Holiday => (
                        [&HOLIDAY_RETAIL_CURVE, &HOLIDAY_RESTAURANT_CURVE],
                        spec.holiday_volume,
                    ),
                };
                let factor = if spec.daily_variation > 0.0 {
                    let z = normal_from(
                        unit_hash(seed, DAY_SALT, day as u64),
                        unit_hash(seed, DAY_SALT + 1, day as u64),
                    );
                    volume * (spec.daily_variation * z).exp()
                } else {
                    volume
                };
                [norm(curves[0], factor), norm(curves[1], factor)]
            })
            .collect();
        Self {
            first_day,
            offset_ms,
            days,
        }
    }

    /// The share of a day's payments (times the day's factor) that fall in the local hour of
    /// `t`, for `profile`.
    pub(crate) fn weight(&self, profile: Profile, t: i64) -> f64 {
        let local = t + self.offset_ms;
        let day = local.div_euclid(DAY_MS);
        // rem_euclid of a positive modulus is in 0..24, so the cast cannot truncate.
        let hour = local.div_euclid(HOUR_MS).rem_euclid(24) as usize;
        let idx = usize::try_from(day - self.first_day)
            .unwrap_or(0)
            .min(self.days.len().saturating_sub(1));
        self.days.get(idx).map_or(0.0, |d| {
            d[usize::from(profile == Profile::Restaurant)][hour]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekends_and_holidays_by_date() {
        // 2026-03-02 is a Monday: day 20514.
        let monday = 20_514;
        let spec = TrafficSpec {
            weekend: true,
            holidays: vec![monday + 2],
            ..TrafficSpec::default()
        };
        assert_eq!(spec.day_kind(monday), DayKind::Weekday);
        assert_eq!(spec.day_kind(monday + 2), DayKind::Holiday);
        assert_eq!(spec.day_kind(monday + 5), DayKind::Weekend);
        assert_eq!(spec.day_kind(monday + 6), DayKind::Weekend);
        assert_eq!(spec.day_kind(monday + 7), DayKind::Weekday);
        assert_eq!(
            TrafficSpec::default().day_kind(monday + 5),
            DayKind::Weekday
        );
    }

    #[test]
    fn a_day_sums_to_its_volume() {
        let monday_ms = 20_514 * DAY_MS - 8 * HOUR_MS;
        let spec = TrafficSpec {
            weekend: true,
            ..TrafficSpec::default()
        };
        let t = Traffic::new(&spec, 1, monday_ms, monday_ms + 7 * DAY_MS, 8 * 3600);
        let day_sum = |d: i64, p: Profile| -> f64 {
            (0..24)
                .map(|h| t.weight(p, monday_ms + d * DAY_MS + h * HOUR_MS))
                .sum()
        };
        assert!((day_sum(0, Profile::Retail) - 1.0).abs() < 1e-9);
        assert!((day_sum(5, Profile::Restaurant) - 1.2).abs() < 1e-9);
        // A weekend morning is quieter than a weekday morning, relative to the day.
        assert!(
            t.weight(Profile::Retail, monday_ms + 5 * DAY_MS + 8 * HOUR_MS) / 1.2
                < t.weight(Profile::Retail, monday_ms + 8 * HOUR_MS)
        );
    }
}

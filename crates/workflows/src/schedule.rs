//! Cron schedules: five fields (`min hour day month weekday`) or six with seconds first, in a
//! time zone (UTC by default). Ticks are instants: each fire is keyed by its workflow and tick,
//! so any number of orchestrators fire it once.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Cron {
    schedule: cron::Schedule,
    tz: Tz,
}

impl Cron {
    /// Parses an expression and a zone.
    ///
    /// # Errors
    /// What is wrong (a message starting with `timezone` when the zone is).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 => expr.to_owned(),
            n => {
                return Err(format!(
                    "expected 5 fields (min hour day month weekday) or 6 (seconds first), not {n}"
                ));
            }
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("not a valid cron expression: {e}"))?;
        let tz = match timezone {
            None => Tz::UTC,
            Some(z) => Tz::from_str(z)
                .map_err(|_| format!("timezone {z:?} is not an IANA zone such as Europe/Paris"))?,
        };
        Ok(Self { schedule, tz })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.after(&t.with_timezone(&self.tz)).next().map(|d| d.with_timezone(&Utc))
    }

    /// The last tick at or before `now` that is after `since`, if any.
    pub fn last_between(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.due(since, now).1
    }

    /// The ticks after `since` and at or before `now` that are at most `grace` old (oldest
    /// first), and the last due tick of all (however old).
    pub fn due_within(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let (all, last) = self.due(since, now);
        (all.into_iter().filter(|t| now - *t <= grace).collect(), last)
    }

    /// The ticks in (since, now] (the newest 1,000), and the last one.
    fn due(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Vec<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mut out = std::collections::VecDeque::new();
        let mut t = since;
        // Bounded: a schedule of every second missed over a day is 86,400 steps at most here.
        for _ in 0..100_000 {
            match self.next_after(t) {
                Some(n) if n <= now => {
                    out.push_back(n);
                    if out.len() > 1000 {
                        out.pop_front();
                    }
                    t = n;
                }
                _ => break,
            }
        }
        let last = out.back().copied();
        (out.into(), last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields_and_zones() {
        let c = Cron::parse("30 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:30 in Paris in winter is 08:30 UTC.
        assert_eq!(c.next_after(at("2026-12-01T00:00:00Z")), Some(at("2026-12-01T08:30:00Z")));
        let s = Cron::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(s.next_after(at("2026-12-01T00:00:01Z")), Some(at("2026-12-01T00:00:02Z")));
        assert_eq!(
            s.last_between(at("2026-12-01T00:00:00Z"), at("2026-12-01T00:00:07Z")),
            Some(at("2026-12-01T00:00:06Z"))
        );
        let (fresh, last) = s.due_within(
            at("2026-12-01T00:00:00Z"),
            at("2026-12-01T00:00:07Z"),
            chrono::Duration::seconds(3),
        );
        assert_eq!(fresh, [at("2026-12-01T00:00:04Z"), at("2026-12-01T00:00:06Z")]);
        assert_eq!(last, Some(at("2026-12-01T00:00:06Z")));
        assert!(Cron::parse("* * *", None).unwrap_err().contains("expected 5 fields"));
        assert!(Cron::parse("61 * * * *", None).unwrap_err().contains("cron"));
        assert!(Cron::parse("* * * * *", Some("Mars/Base")).unwrap_err().starts_with("timezone"));
    }
}

//! Revenue per month and segment: one figure per (organization, segment, month); adding one
//! again replaces it. An organization without any gets twelve months of demo figures the first
//! time it reads them ([`seed_if_empty`]), so the revenue tools work on a fresh organization.

use agentyard_core::OrgId;
use agentyard_store::Result;
use agentyard_store::domain::{Invalid, required_text};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

use super::{Write, failed};

/// Longest segment name, in characters.
pub(crate) const MAX_SEGMENT: usize = 50;
/// The segment of a figure that names none: the whole business.
pub(crate) const ALL_SEGMENTS: &str = "all";
/// The currency of a figure that names none.
pub(crate) const DEFAULT_CURRENCY: &str = "USD";
/// Below `numeric(16, 2)`'s limit.
const MAX_AMOUNT: f64 = 1e13;

/// The demo figures (USD, segment `all`) of the twelve months up to the current one, oldest
/// first: growing about 3% a month, with a dip now and then.
pub(crate) const DEMO_FIGURES: [f64; 12] = [
    42_000.0, 43_150.0, 41_800.0, 44_900.0, 46_250.0, 45_700.0, 48_300.0, 49_900.0, 51_200.0,
    50_400.0, 53_800.0, 55_600.0,
];

/// A calendar month, `YYYY-MM` in and out (years 1 to 9999).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Month(i32);

impl Month {
    /// The month of `date`.
    pub(crate) fn of(date: NaiveDate) -> Self {
        Self(date.year() * 12 + date.month0() as i32)
    }

    /// The month `n` months after this one (before, when negative).
    pub(crate) fn plus(self, n: i32) -> Self {
        Self(self.0 + n)
    }

    /// Months from `earlier` to this one.
    pub(crate) fn since(self, earlier: Self) -> i32 {
        self.0 - earlier.0
    }

    /// Its first day.
    pub(crate) fn first_day(self) -> NaiveDate {
        let month = self.0.rem_euclid(12) as u32 + 1;
        NaiveDate::from_ymd_opt(self.0.div_euclid(12), month, 1).unwrap_or(NaiveDate::MIN)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.0.div_euclid(12), self.0.rem_euclid(12) + 1)
    }
}

impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let parsed = t.split_once('-').and_then(|(y, m)| {
            let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
            if !digits(y, 4) || !digits(m, 2) {
                return None;
            }
            let (year, month): (i32, i32) = (y.parse().ok()?, m.parse().ok()?);
            ((1..=9999).contains(&year) && (1..=12).contains(&month))
                .then_some(Self(year * 12 + month - 1))
        });
        parsed.ok_or_else(|| format!("expected a month as YYYY-MM, not {s:?}"))
    }
}

impl TryFrom<String> for Month {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A month's figure as stored.
#[derive(Clone, Debug, PartialEq, Serialize, FromRow)]
pub(crate) struct RevenueRow {
    #[sqlx(try_from = "String")]
    pub(crate) month: Month,
    pub(crate) segment: String,
    /// In `currency`, to the cent.
    pub(crate) amount: f64,
    pub(crate) currency: String,
    pub(crate) updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "to_char(month, 'YYYY-MM') AS month, segment, amount::float8 AS amount, \
    currency, updated_at";

/// A segment's name: trimmed, lowercase, 1 to 50 characters; `all` when absent.
///
/// # Errors
/// An empty or too long name.
pub(crate) fn segment(value: Option<&str>) -> Result<String, Invalid> {
    match value {
        None => Ok(ALL_SEGMENTS.to_owned()),
        Some(s) => Ok(required_text("segment", s, MAX_SEGMENT)?.to_lowercase()),
    }
}

/// A valid figure to record.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NewRevenue {
    pub(crate) month: Month,
    pub(crate) segment: String,
    pub(crate) amount: f64,
    pub(crate) currency: String,
}

impl NewRevenue {
    /// The amount is rounded to the cent; the currency is uppercased.
    ///
    /// # Errors
    /// A negative, too large or non-finite `amount`, a `currency` that is not three letters, an
    /// empty or too long `segment`.
    pub(crate) fn parse(
        month: Month,
        amount: f64,
        currency: Option<&str>,
        segment_name: Option<&str>,
    ) -> Result<Self, Invalid> {
        if !(amount.is_finite() && (0.0..MAX_AMOUNT).contains(&amount)) {
            let message = format!("must be a number from 0 to below {MAX_AMOUNT:.0}, not {amount}");
            return Err(Invalid { field: "amount", message });
        }
        let currency = currency.map_or(DEFAULT_CURRENCY.to_owned(), |c| c.trim().to_uppercase());
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            let message = format!("must be a 3-letter currency code such as USD, not {currency:?}");
            return Err(Invalid { field: "currency", message });
        }
        Ok(Self { month, segment: segment(segment_name)?, amount: cents(amount), currency })
    }
}

/// `x` rounded to two decimals.
pub(crate) fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What recording a figure did.
pub(crate) struct Recorded {
    pub(crate) row: RevenueRow,
    /// The figure it replaced: (amount, currency).
    pub(crate) replaced: Option<(f64, String)>,
}

/// The org's figures of `segment` from `from` to `to` (both included), by month.
pub(crate) async fn range(
    db: impl PgExecutor<'_>,
    org: OrgId,
    segment: &str,
    from: Month,
    to: Month,
) -> Result<Vec<RevenueRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM revenue_records WHERE org_id = $1 AND segment = $2 \
         AND month BETWEEN $3 AND $4 ORDER BY month"
    )))
    .bind(org)
    .bind(segment)
    .bind(from.first_day())
    .bind(to.first_day())
    .fetch_all(db)
    .await
    .map_err(failed("revenue_range"))
}

/// Gives an org without any figure the [`DEMO_FIGURES`] of the twelve months up to the month
/// of `today`. Returns whether it did. Two at once add them once; a figure recorded meanwhile
/// is kept.
pub(crate) async fn seed_if_empty(
    db: impl PgExecutor<'_>,
    org: OrgId,
    today: NaiveDate,
) -> Result<bool> {
    let last = Month::of(today);
    let months: Vec<NaiveDate> = (0..12).map(|i| last.plus(i - 11).first_day()).collect();
    let seeded = sqlx::query(
        "INSERT INTO revenue_records(org_id, segment, month, amount, currency) \
         SELECT $1, $2, m, a, $3 FROM unnest($4::date[], $5::float8[]) AS s(m, a) \
         WHERE NOT EXISTS (SELECT 1 FROM revenue_records WHERE org_id = $1) \
         ON CONFLICT DO NOTHING",
    )
    .bind(org)
    .bind(ALL_SEGMENTS)
    .bind(DEFAULT_CURRENCY)
    .bind(months)
    .bind(DEMO_FIGURES.to_vec())
    .execute(db)
    .await
    .map_err(failed("seed_revenue"))?;
    Ok(seeded.rows_affected() > 0)
}

impl Write {
    /// Records `r`, replacing the org's figure of its month and segment.
    ///
    /// # Errors
    /// Database failures.
    pub(crate) async fn record_revenue(&mut self, r: &NewRevenue) -> Result<Recorded> {
        let (conn, org, _) = self.0.parts();
        let replaced: Option<(f64, String)> = sqlx::query_as(
            "SELECT amount::float8, currency FROM revenue_records \
             WHERE org_id = $1 AND segment = $2 AND month = $3 FOR UPDATE",
        )
        .bind(org)
        .bind(&r.segment)
        .bind(r.month.first_day())
        .fetch_optional(&mut *conn)
        .await
        .map_err(failed("record_revenue.previous"))?;
        let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO revenue_records(org_id, segment, month, amount, currency) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, segment, month) DO UPDATE \
             SET amount = EXCLUDED.amount, currency = EXCLUDED.currency, updated_at = now() \
             RETURNING {COLUMNS}"
        )))
        .bind(org)
        .bind(&r.segment)
        .bind(r.month.first_day())
        .bind(r.amount)
        .bind(&r.currency)
        .fetch_one(&mut *conn)
        .await
        .map_err(failed("record_revenue"))?;
        Ok(Recorded { row, replaced })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_read_and_print_as_year_dash_month() {
        let m: Month = "2026-01".parse().unwrap();
        assert_eq!(m.to_string(), "2026-01");
        assert_eq!(m.plus(-1).to_string(), "2025-12");
        assert_eq!(m.plus(14).to_string(), "2027-03");
        assert_eq!(m.plus(14).since(m), 14);
        assert_eq!(m.first_day(), NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        assert_eq!(
            Month::of(NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()).to_string(),
            "2026-12"
        );
        for bad in ["2026-13", "2026-1", "26-01", "2026-00", "2026/01", "", "0000-01"] {
            assert!(bad.parse::<Month>().unwrap_err().contains("YYYY-MM"), "{bad}");
        }
    }

    #[test]
    fn a_figure_is_rounded_to_the_cent_and_its_names_normalized() {
        let m: Month = "2026-01".parse().unwrap();
        let r = NewRevenue::parse(m, 10.005_1, Some(" eur "), Some(" SMB ")).unwrap();
        assert_eq!((r.amount, r.currency.as_str(), r.segment.as_str()), (10.01, "EUR", "smb"));
        let r = NewRevenue::parse(m, 0.0, None, None).unwrap();
        assert_eq!((r.currency.as_str(), r.segment.as_str()), ("USD", "all"));
        assert_eq!(NewRevenue::parse(m, -1.0, None, None).unwrap_err().field, "amount");
        assert_eq!(NewRevenue::parse(m, f64::NAN, None, None).unwrap_err().field, "amount");
        assert_eq!(NewRevenue::parse(m, 1.0, Some("dollars"), None).unwrap_err().field, "currency");
        assert_eq!(NewRevenue::parse(m, 1.0, None, Some("")).unwrap_err().field, "segment");
    }
}

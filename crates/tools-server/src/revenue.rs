//! Revenue tools: the organization's monthly revenue per segment, and its analysis (totals,
//! month-over-month growth, a naive forecast) for the revenue analysis workflow. Reading an
//! organization that has no revenue at all first gives it twelve months of demo figures.

use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ToolServer;
use crate::args::{Args, input, names};
use crate::auth::{Caller, READ, WRITE};
use crate::data::revenue::{self, Month, NewRevenue, RevenueRow, cents};
use crate::reply::{Started, ToolError, finish, reply};

/// Most months one `get_revenue` covers.
const MAX_MONTHS: i32 = 240;
/// Months the forecast covers.
const FORECAST_MONTHS: i32 = 3;

/// Arguments of `add_revenue`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddRevenue {
    /// The month, as YYYY-MM.
    #[schemars(schema_with = "names::month")]
    month: Month,
    /// The month's revenue (a number, 0 or more; rounded to the cent).
    amount: f64,
    /// A 3-letter currency code (default USD).
    #[serde(default)]
    currency: Option<String>,
    /// The business segment (default "all": the whole business); case-insensitive.
    #[serde(default)]
    segment: Option<String>,
}

/// Arguments of `get_revenue`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetRevenue {
    /// The first month, as YYYY-MM.
    #[schemars(schema_with = "names::month")]
    from: Month,
    /// The last month (included), as YYYY-MM.
    #[schemars(schema_with = "names::month")]
    to: Month,
    /// The business segment (default "all": the whole business); case-insensitive.
    #[serde(default)]
    segment: Option<String>,
}

/// What `get_revenue` answers.
#[derive(Debug, PartialEq, Serialize)]
struct Analysis {
    from: Month,
    to: Month,
    segment: String,
    /// The currency of every figure; null when there is none or they differ.
    currency: Option<String>,
    /// The figures in range, by month.
    records: Vec<RevenueRow>,
    totals: Totals,
    /// Each figure after the first, compared with the month before.
    month_over_month: Vec<Growth>,
    /// The [`FORECAST_MONTHS`] months after `to`.
    forecast: Vec<Forecast>,
    /// True when this call gave the organization its demo figures.
    seeded_demo_data: bool,
}

#[derive(Debug, PartialEq, Serialize)]
struct Totals {
    months_with_data: usize,
    /// To the cent.
    sum: f64,
    /// The sum over the months with a figure, to the cent; null without any.
    average_per_month: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize)]
struct Growth {
    month: Month,
    /// The change from the month before, in percent to 2 decimals; null when the month before
    /// has no figure or a zero one.
    growth_pct: Option<f64>,
}

#[derive(Debug, PartialEq, Serialize)]
struct Forecast {
    month: Month,
    /// A least-squares line through the figures (x = months since `from`), never below 0, to
    /// the cent.
    amount: f64,
}

fn totals(records: &[RevenueRow]) -> Totals {
    let sum: f64 = records.iter().map(|r| r.amount).sum();
    let n = records.len();
    Totals {
        months_with_data: n,
        sum: cents(sum),
        average_per_month: (n > 0).then(|| cents(sum / n as f64)),
    }
}

fn growth(records: &[RevenueRow]) -> Vec<Growth> {
    records
        .windows(2)
        .map(|w| {
            let (before, now) = (&w[0], &w[1]);
            let consecutive = now.month.since(before.month) == 1 && before.amount > 0.0;
            Growth {
                month: now.month,
                growth_pct: consecutive
                    .then(|| cents((now.amount - before.amount) / before.amount * 100.0)),
            }
        })
        .collect()
}

fn forecast(records: &[RevenueRow], from: Month, to: Month) -> Vec<Forecast> {
    if records.is_empty() {
        return Vec::new();
    }
    let n = records.len() as f64;
    let xs: Vec<f64> = records.iter().map(|r| f64::from(r.month.since(from))).collect();
    let x_mean = xs.iter().sum::<f64>() / n;
    let y_mean = records.iter().map(|r| r.amount).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - x_mean).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(records).map(|(x, r)| (x - x_mean) * (r.amount - y_mean)).sum();
    // One figure: no slope, the forecast stays at it.
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let intercept = y_mean - slope * x_mean;
    (1..=FORECAST_MONTHS)
        .map(|k| {
            let month = to.plus(k);
            let x = f64::from(month.since(from));
            Forecast { month, amount: cents((intercept + slope * x).max(0.0)) }
        })
        .collect()
}

fn currency(records: &[RevenueRow]) -> Option<String> {
    let first = &records.first()?.currency;
    records.iter().all(|r| r.currency == *first).then(|| first.clone())
}

fn sentence(a: &Analysis) -> String {
    let seeded = if a.seeded_demo_data {
        "This organization had no revenue data, so 12 months of demo figures (segment all, USD) \
         were added first. "
    } else {
        ""
    };
    let scope = format!("segment {:?} from {} to {}", a.segment, a.from, a.to);
    let Some(average) = a.totals.average_per_month else {
        return format!("{seeded}No revenue of {scope}.");
    };
    let unit = match &a.currency {
        Some(c) => c.clone(),
        None => "(mixed currencies, added as they are)".to_owned(),
    };
    let forecast: Vec<String> = a.forecast.iter().map(|f| format!("{:.2}", f.amount)).collect();
    format!(
        "{seeded}Revenue of {scope}: {} month(s) with figures, {:.2} {unit} in all, {average:.2} \
         per month on average; forecast for {} to {}: {}.",
        a.totals.months_with_data,
        a.totals.sum,
        a.to.plus(1),
        a.to.plus(FORECAST_MONTHS),
        forecast.join(", ")
    )
}

#[tool_router(router = revenue_tools, vis = "pub(crate)")]
impl ToolServer {
    /// Records the organization's revenue of one month (and business segment). A second figure
    /// for the same month and segment replaces the first. Returns the recorded figure.
    #[tool(input_schema = input::<AddRevenue>())]
    async fn add_revenue(
        &self,
        caller: Caller,
        args: Args<AddRevenue>,
    ) -> Result<CallToolResult, ToolError> {
        caller.require(WRITE)?;
        let a = args.parse()?;
        let figure =
            NewRevenue::parse(a.month, a.amount, a.currency.as_deref(), a.segment.as_deref())?;
        let mut w = match self.begin_data_write(&caller, "add_revenue").await? {
            Started::Fresh(w) => w,
            Started::Replayed(result) => return Ok(result),
        };
        let recorded = w.record_revenue(&figure).await?;
        let r = &recorded.row;
        let replacing = match &recorded.replaced {
            Some((amount, currency)) => format!(", replacing {amount:.2} {currency}"),
            None => String::new(),
        };
        let sentence = format!(
            "Recorded the revenue of {} (segment {:?}): {:.2} {}{replacing}.",
            r.month, r.segment, r.amount, r.currency
        );
        finish(w, reply(sentence, r)).await
    }

    /// Reads the organization's monthly revenue from one month to another (YYYY-MM, both
    /// included) of one business segment (default "all"), with its analysis: the sum, the
    /// average per month, the growth from each month to the next in percent, and a naive
    /// forecast of the 3 months after the range (a least-squares line through the figures).
    /// An organization without revenue data gets 12 months of demo figures (segment "all",
    /// USD, up to the current month) first.
    #[tool(input_schema = input::<GetRevenue>(), annotations(read_only_hint = true))]
    async fn get_revenue(
        &self,
        caller: Caller,
        args: Args<GetRevenue>,
    ) -> Result<CallToolResult, ToolError> {
        let c = caller.require(READ)?;
        let a = args.parse()?;
        let segment = revenue::segment(a.segment.as_deref())?;
        let months = a.to.since(a.from) + 1;
        if !(1..=MAX_MONTHS).contains(&months) {
            let last = a.from.plus(MAX_MONTHS - 1);
            let message =
                format!("must be from {} to {last} (at most {MAX_MONTHS} months)", a.from);
            return Err(ToolError::Invalid { field: "to".into(), message });
        }
        let pool = self.store.pool();
        let today = chrono::Utc::now().date_naive();
        let seeded_demo_data = revenue::seed_if_empty(pool, c.org_id, today).await?;
        let records = revenue::range(pool, c.org_id, &segment, a.from, a.to).await?;
        let analysis = Analysis {
            from: a.from,
            to: a.to,
            segment,
            currency: currency(&records),
            totals: totals(&records),
            month_over_month: growth(&records),
            forecast: forecast(&records, a.from, a.to),
            records,
            seeded_demo_data,
        };
        Ok(reply(sentence(&analysis), &analysis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(figures: &[(&str, f64)]) -> Vec<RevenueRow> {
        figures
            .iter()
            .map(|(m, amount)| RevenueRow {
                month: m.parse().unwrap(),
                segment: "all".into(),
                amount: *amount,
                currency: "USD".into(),
                updated_at: chrono::DateTime::UNIX_EPOCH,
            })
            .collect()
    }

    fn month(s: &str) -> Month {
        s.parse().unwrap()
    }

    #[test]
    fn totals_growth_and_forecast_of_a_steady_ten_percent() {
        let r = rows(&[
            ("2025-01", 1000.0),
            ("2025-02", 1100.0),
            ("2025-03", 1210.0),
            ("2025-04", 1331.0),
        ]);
        let t = totals(&r);
        assert_eq!((t.months_with_data, t.sum, t.average_per_month), (4, 4641.0, Some(1160.25)));
        let g: Vec<Option<f64>> = growth(&r).into_iter().map(|g| g.growth_pct).collect();
        assert_eq!(g, [Some(10.0), Some(10.0), Some(10.0)]);
        // y = 994.8 + 110.3 x, x = months since 2025-01.
        let f = forecast(&r, month("2025-01"), month("2025-04"));
        let f: Vec<(String, f64)> =
            f.into_iter().map(|f| (f.month.to_string(), f.amount)).collect();
        assert_eq!(
            f,
            [("2025-05".into(), 1436.0), ("2025-06".into(), 1546.3), ("2025-07".into(), 1656.6)]
        );
    }

    #[test]
    fn a_gap_or_a_zero_month_has_no_growth_and_the_forecast_starts_after_the_range() {
        let r = rows(&[("2025-01", 0.0), ("2025-02", 50.0), ("2025-04", 80.0)]);
        let g: Vec<Option<f64>> = growth(&r).into_iter().map(|g| g.growth_pct).collect();
        assert_eq!(g, [None, None]);
        let one = rows(&[("2025-03", 70.0)]);
        let f = forecast(&one, month("2025-01"), month("2025-06"));
        assert_eq!(f[0].month.to_string(), "2025-07");
        assert!(f.iter().all(|f| f.amount == 70.0));
        // A falling line stops at zero.
        let falling = rows(&[("2025-01", 100.0), ("2025-02", 10.0)]);
        assert!(
            forecast(&falling, month("2025-01"), month("2025-02")).iter().all(|f| f.amount == 0.0)
        );
        assert!(forecast(&[], month("2025-01"), month("2025-02")).is_empty());
        assert_eq!(totals(&[]).average_per_month, None);
    }

    #[test]
    fn mixed_currencies_have_no_single_currency() {
        let mut r = rows(&[("2025-01", 1.0), ("2025-02", 2.0)]);
        assert_eq!(currency(&r).as_deref(), Some("USD"));
        r[1].currency = "EUR".into();
        assert_eq!(currency(&r), None);
    }
}

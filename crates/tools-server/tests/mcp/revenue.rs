//! Revenue and report tools: the demo data of the revenue analysis workflow.

use chrono::{Datelike, Months};
use serde_json::{Value, json};

use crate::harness::{READ_WRITE, TestServer, call, data, is_error, text};

/// `YYYY-MM` of the month `offset` months from the current one.
fn month(offset: i32) -> String {
    let first = chrono::Utc::now().date_naive().with_day(1).unwrap();
    let m = if offset >= 0 {
        first + Months::new(offset.unsigned_abs())
    } else {
        first - Months::new(offset.unsigned_abs())
    };
    m.format("%Y-%m").to_string()
}

fn amounts(analysis: &Value) -> Vec<f64> {
    analysis["records"].as_array().unwrap().iter().map(|r| r["amount"].as_f64().unwrap()).collect()
}

#[tokio::test]
async fn a_fresh_organization_gets_twelve_months_of_demo_revenue_once() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let token = app.token(org, &["runs:read"]);
    let range = json!({"from": month(-11), "to": month(0)});
    let r = app.call(&token, "get_revenue", range.clone()).await;
    assert!(!is_error(&r), "{r:?}");
    assert!(text(&r).starts_with("This organization had no revenue data"), "{}", text(&r));
    let a = data(&r);
    assert_eq!(a["seeded_demo_data"], true);
    assert_eq!(a["records"][0]["month"], month(-11));
    assert_eq!(a["records"][11]["month"], month(0));
    assert_eq!(a["currency"], "USD");
    assert_eq!(
        amounts(&a),
        [
            42000.0, 43150.0, 41800.0, 44900.0, 46250.0, 45700.0, 48300.0, 49900.0, 51200.0,
            50400.0, 53800.0, 55600.0
        ]
    );
    assert_eq!(
        a["totals"],
        json!({"months_with_data": 12, "sum": 573000.0, "average_per_month": 47750.0})
    );
    assert_eq!(a["forecast"].as_array().unwrap().len(), 3);
    assert_eq!(a["forecast"][0]["month"], month(1));

    let again = data(&app.call(&token, "get_revenue", range).await);
    assert_eq!(again["seeded_demo_data"], false);
    assert_eq!(again["records"], a["records"]);

    // An organization with a figure of its own is not seeded.
    let other = app.org().await;
    let add = json!({"month": "2024-01", "amount": 10});
    assert!(!is_error(&app.call(&app.token(other, READ_WRITE), "add_revenue", add).await));
    let r = app
        .call(
            &app.token(other, &["runs:read"]),
            "get_revenue",
            json!({"from": "2020-01", "to": month(0)}),
        )
        .await;
    assert_eq!(
        (data(&r)["seeded_demo_data"].as_bool(), amounts(&data(&r))),
        (Some(false), vec![10.0])
    );
}

#[tokio::test]
async fn revenue_totals_growth_and_forecast_are_computed_from_the_figures() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let add = |args: Value| {
        let token = app.token(org, READ_WRITE);
        let app = &app;
        async move { app.call(&token, "add_revenue", args).await }
    };
    for (month, amount) in
        [("2025-01", 1000), ("2025-02", 1100), ("2025-03", 1210), ("2025-04", 1331)]
    {
        let r = add(json!({"month": month, "amount": amount})).await;
        assert!(!is_error(&r), "{r:?}");
    }
    // Another segment and months out of range change nothing below.
    add(json!({"month": "2025-02", "amount": 99, "segment": "SMB"})).await;
    add(json!({"month": "2025-05", "amount": 5000})).await;

    let r = app
        .call(
            &app.token(org, &["runs:read"]),
            "get_revenue",
            json!({"from": "2025-01", "to": "2025-04"}),
        )
        .await;
    assert!(
        text(&r).starts_with(
            "Revenue of segment \"all\" from 2025-01 to 2025-04: 4 month(s) with figures, 4641.00 \
             USD in all, 1160.25 per month on average; forecast for 2025-05 to 2025-07: 1436.00, \
             1546.30, 1656.60.\n\n"
        ),
        "{}",
        text(&r)
    );
    let mut a = data(&r);
    for record in a["records"].as_array_mut().unwrap() {
        assert!(record.as_object_mut().unwrap().remove("updated_at").is_some());
    }
    let record = |month: &str, amount: f64| json!({"month": month, "segment": "all", "amount": amount, "currency": "USD"});
    assert_eq!(
        a,
        json!({
            "from": "2025-01",
            "to": "2025-04",
            "segment": "all",
            "currency": "USD",
            "records": [
                record("2025-01", 1000.0),
                record("2025-02", 1100.0),
                record("2025-03", 1210.0),
                record("2025-04", 1331.0),
            ],
            "totals": {"months_with_data": 4, "sum": 4641.0, "average_per_month": 1160.25},
            "month_over_month": [
                {"month": "2025-02", "growth_pct": 10.0},
                {"month": "2025-03", "growth_pct": 10.0},
                {"month": "2025-04", "growth_pct": 10.0},
            ],
            "forecast": [
                {"month": "2025-05", "amount": 1436.0},
                {"month": "2025-06", "amount": 1546.3},
                {"month": "2025-07", "amount": 1656.6},
            ],
            "seeded_demo_data": false,
        })
    );
    let smb = data(
        &app.call(
            &app.token(org, &["runs:read"]),
            "get_revenue",
            json!({"from": "2025-01", "to": "2025-12", "segment": "smb"}),
        )
        .await,
    );
    assert_eq!(amounts(&smb), [99.0]);
    let r = app
        .call(
            &app.token(org, &["runs:read"]),
            "get_revenue",
            json!({"from": "2025-04", "to": "2025-01"}),
        )
        .await;
    assert!(is_error(&r) && text(&r).contains("to: "), "{r:?}");
}

#[tokio::test]
async fn a_second_figure_for_a_month_replaces_the_first_and_a_replay_writes_nothing() {
    let app = TestServer::start().await;
    let org = app.org().await;
    let first = app.token(org, READ_WRITE);
    let r = app.call(&first, "add_revenue", json!({"month": "2025-03", "amount": 1000})).await;
    assert_eq!(
        text(&r).lines().next(),
        Some("Recorded the revenue of 2025-03 (segment \"all\"): 1000.00 USD.")
    );
    let second = app.token(org, READ_WRITE);
    let args = json!({"month": "2025-03", "amount": 1250.5, "currency": "eur"});
    let r2 = app.call(&second, "add_revenue", args).await;
    assert!(text(&r2).contains("1250.50 EUR, replacing 1000.00 USD."), "{}", text(&r2));
    assert_eq!(
        (data(&r2)["amount"].as_f64(), data(&r2)["currency"].as_str()),
        (Some(1250.5), Some("EUR"))
    );
    // The first invocation, redelivered: its stored result, and the figure stays replaced.
    let replayed =
        app.call(&first, "add_revenue", json!({"month": "2025-03", "amount": 1000})).await;
    assert_eq!(text(&replayed), text(&r));
    let rows: Vec<(f64, String)> =
        sqlx::query_as("SELECT amount::float8, currency FROM revenue_records")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(rows, [(1250.5, "EUR".to_owned())]);
    let r = app
        .call(&app.token(org, READ_WRITE), "add_revenue", json!({"month": "2025-3", "amount": 1}))
        .await;
    assert!(is_error(&r) && text(&r).contains("month"), "{r:?}");
}

#[tokio::test]
async fn reports_are_saved_read_and_listed_by_their_organization_only() {
    let app = TestServer::start().await;
    let (org, other) = (app.org().await, app.org().await);
    let save = |args: Value| {
        let token = app.token(org, READ_WRITE);
        let app = &app;
        async move { app.call(&token, "save_report", args).await }
    };
    let body = "# Q1 revenue\n\nUp **10%** a month.";
    let figures = json!({"sum": 4641.0, "months": ["2025-01", "2025-02"]});
    let r = save(
        json!({"title": "Q1 revenue", "body": body, "kind": "revenue_analysis", "data": figures}),
    )
    .await;
    assert!(!is_error(&r), "{r:?}");
    let report = data(&r);
    assert_eq!(
        (&report["title"], &report["kind"]),
        (&json!("Q1 revenue"), &json!("revenue_analysis"))
    );
    assert_eq!((&report["body"], &report["data"]), (&json!(body), &figures));
    let notes = data(&save(json!({"title": "Notes", "body": "n"})).await);
    assert_eq!((&notes["kind"], &notes["data"]), (&json!("general"), &json!({})));
    let r = save(json!({"title": "t", "body": "b", "data": [1, 2]})).await;
    assert!(is_error(&r) && text(&r).contains("data"), "{r:?}");

    let client = app.connect(&app.token(org, &["runs:read"])).await;
    let r = call(&client, "get_report", json!({"report_id": report["id"]})).await;
    assert_eq!(data(&r), report);
    let all = call(&client, "list_reports", json!({})).await;
    assert!(text(&all).starts_with("2 report(s), newest first."), "{}", text(&all));
    assert_eq!(data(&all)[0]["title"], "Notes");
    assert!(data(&all)[0].get("body").is_none(), "{}", text(&all));
    let revenue = data(&call(&client, "list_reports", json!({"kind": "revenue_analysis"})).await);
    assert_eq!(revenue.as_array().unwrap().len(), 1);
    assert_eq!(revenue[0]["id"], report["id"]);
    client.cancel().await.unwrap();

    let client = app.connect(&app.token(other, READ_WRITE)).await;
    let r = call(&client, "get_report", json!({"report_id": report["id"]})).await;
    assert!(is_error(&r) && text(&r).contains("no report"), "{r:?}");
    assert_eq!(data(&call(&client, "list_reports", json!({})).await), json!([]));
    client.cancel().await.unwrap();
}

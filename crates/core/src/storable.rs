//! What Postgres can store and give back unchanged. Text (and `jsonb`) cannot hold a NUL
//! character, and `jsonb` keeps numbers as exact decimals that it prints without an exponent:
//! `1.7976931348623157e308` goes in, 309 digits come out, and a JSON reader that turns them
//! into a double overflows. Checked at the edge, so nothing is stored that cannot be read back.

use serde_json::Value;

/// Why a value cannot be stored; `path` names where (`metadata.customer.id`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct NotStorable {
    pub path: String,
    pub problem: String,
}

/// Checks a text field.
///
/// # Errors
/// When it holds a NUL character.
pub fn check_text(path: &str, text: &str) -> Result<(), NotStorable> {
    if text.contains('\0') {
        return Err(NotStorable {
            path: path.to_owned(),
            problem: "must not contain the NUL character (\\u0000)".into(),
        });
    }
    Ok(())
}

/// Checks every string, key and number of a JSON value.
///
/// # Errors
/// The first string or key with a NUL character, or number that would not read back equal.
pub fn check_json(path: &str, value: &Value) -> Result<(), NotStorable> {
    match value {
        Value::String(s) => check_text(path, s),
        Value::Number(n) => check_number(path, n),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_json(&format!("{path}[{i}]"), v))
        }
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let child = format!("{path}.{k}");
            check_text(&child, k)?;
            check_json(&child, v)
        }),
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

fn check_number(path: &str, n: &serde_json::Number) -> Result<(), NotStorable> {
    if n.is_i64() || n.is_u64() {
        return Ok(());
    }
    let Some(f) = n.as_f64() else { return Ok(()) };
    let plain = plain_decimal(&n.to_string());
    let back = serde_json::from_str::<Value>(&plain).ok().and_then(|v| v.as_f64());
    if back == Some(f) {
        return Ok(());
    }
    Err(NotStorable {
        path: path.to_owned(),
        problem: format!("the number {n} cannot be stored and read back exactly"),
    })
}

/// A JSON number's text without an exponent, as Postgres prints a `jsonb` number
/// (`1.5e3` -> `1500`, `2e-3` -> `0.002`).
fn plain_decimal(text: &str) -> String {
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    // The decimal point sits after `point` digits.
    let point = i64::try_from(int.len()).unwrap_or(i64::MAX).saturating_add(exp);
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', usize::try_from(-point).unwrap_or(0)));
        out.push_str(&digits);
    } else if point >= len {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', usize::try_from(point - len).unwrap_or(0)));
    } else {
        let p = usize::try_from(point).unwrap_or(0);
        out.push_str(&digits[..p]);
        out.push('.');
        out.push_str(&digits[p..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_postgres_would_print_back_unreadably_are_refused() {
        assert_eq!(plain_decimal("1.5e3"), "1500");
        assert_eq!(plain_decimal("2e-3"), "0.002");
        assert_eq!(plain_decimal("-12.25"), "-12.25");
        let big: Value = serde_json::from_str("1.7976931348623157e308").unwrap();
        let err = check_json("metadata", &json!({"x": [1, big]})).unwrap_err();
        assert_eq!(err.path, "metadata.x[1]");
        for fine in [json!(0.1), json!(-3.75e-5), json!(1e20), json!(u64::MAX), json!(i64::MIN)] {
            assert_eq!(check_json("m", &fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn nul_characters_are_refused_in_strings_and_keys() {
        assert!(check_text("input", "a\0b").is_err());
        let err = check_json("metadata", &json!({"a\u{0}": 1})).unwrap_err();
        assert!(err.problem.contains("NUL"), "{err}");
        assert!(check_json("metadata", &json!({"a": ["x\u{0}"]})).is_err());
        assert_eq!(check_json("metadata", &json!({"ok": "fine"})), Ok(()));
    }
}

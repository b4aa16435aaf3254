//! Durations as definitions write them: `250ms`, `30s`, `5m`, `2h`, `1d`, or a number of
//! seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration of a definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses `250ms`, `30s`, `5m`, `2h`, `1d` or a bare number of seconds.
    ///
    /// # Errors
    /// Anything else, with what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits.parse().map_err(|_| expected(text))?;
        let ms = match unit {
            "ms" => n,
            "" | "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            "d" => n.saturating_mul(86_400_000),
            _ => return Err(expected(text)),
        };
        Ok(Self(Duration::from_millis(ms)))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

fn expected(text: &str) -> String {
    format!("expected a duration such as 250ms, 30s, 5m, 2h or 1d, not {text:?}")
}

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
        for (size, unit) in units {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom(expected("a value of another type")))?
        {
            Raw::Seconds(n) => Ok(Self(Duration::from_secs(n))),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "250ms, 30s, 5m, 2h, 1d, or a number of seconds",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)?$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, ms) in [("250ms", 250), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000)] {
            let d = Dur::parse(text).unwrap();
            assert_eq!(d.0.as_millis(), ms);
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(Dur::parse("90").unwrap().0, Duration::from_secs(90));
        assert!(Dur::parse("5 minutes").unwrap_err().contains("expected a duration"));
        assert!(Dur::parse("-1s").is_err());
        let d: Dur = serde_json::from_value(serde_json::json!(3)).unwrap();
        assert_eq!(d.0, Duration::from_secs(3));
    }
}

//! Conditions (CEL) and templates (`{{ <CEL> }}` inside strings).
//!
//! Both see `inputs` (the execution's inputs) and `steps` (`steps.<id>.output`,
//! `steps.<id>.status`; a step that has not completed has a null output); an event trigger's
//! expressions see `event` instead. A string that is one template and nothing else
//! (`"{{ steps.fetch.output }}"`) keeps the value's JSON type; anywhere else a value is written
//! as text (strings as they are, everything else as JSON).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use cel::{Context, Program};
use regex::Regex;
use serde_json::Value;

/// `steps.<id>` as expressions write it.
static STEP_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bsteps\s*(?:\.\s*([a-z][a-z0-9_]*)|\[\s*["']([a-z][a-z0-9_-]*)["']\s*\])"#)
        .expect("valid regex")
});

/// A compiled CEL expression and its source.
#[derive(Debug)]
pub struct Expr {
    source: String,
    program: Program,
}

impl Expr {
    /// Compiles `source`.
    ///
    /// # Errors
    /// The parser's message.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = Program::compile(source)
            .map_err(|e| format!("not a valid CEL expression: {}", one_line(&e.to_string())))?;
        let vars = program.references();
        for v in vars.variables() {
            if !matches!(v, "inputs" | "steps" | "event") {
                return Err(format!(
                    "unknown name {v:?}: expressions see inputs, steps and (in triggers) event"
                ));
            }
        }
        Ok(Self { source: source.to_owned(), program })
    }

    /// The steps it reads (`steps.<id>`).
    pub fn step_refs(&self) -> BTreeSet<String> {
        step_refs(&self.source)
    }

    /// Its value in `scope`, as JSON.
    ///
    /// # Errors
    /// An evaluation error (a missing key, a type mismatch), as text.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        let value = self
            .program
            .execute(&scope.context())
            .map_err(|e| format!("{:?} failed: {}", self.source, one_line(&e.to_string())))?;
        value.json().map_err(|e| format!("{:?} gave a value JSON cannot hold: {e:?}", self.source))
    }

    /// Its value as a condition.
    ///
    /// # Errors
    /// An evaluation error, or a value that is not a boolean.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, String> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("{:?} must be true or false, not {other}", self.source)),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn step_refs(source: &str) -> BTreeSet<String> {
    STEP_REF
        .captures_iter(source)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str().to_owned()))
        .collect()
}

/// What expressions see.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub inputs: Value,
    /// `{<step id>: {output, status}}`.
    pub steps: Value,
    /// The event of a trigger.
    pub event: Option<Value>,
}

impl Scope {
    fn context(&self) -> Context<'static> {
        let mut ctx = Context::default();
        ctx.add_variable_from_value("inputs", to_cel(&self.inputs));
        ctx.add_variable_from_value("steps", to_cel(&self.steps));
        if let Some(e) = &self.event {
            ctx.add_variable_from_value("event", to_cel(e));
        }
        ctx
    }
}

/// JSON as CEL values. Integers are `int` whenever they fit (JSON has no unsigned type, and
/// CEL does not add `uint` and `int`).
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<Key, cel::Value> =
                o.iter().map(|(k, v)| (Key::from(k.clone()), to_cel(v))).collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// One part of a template.
#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Expr),
}

/// A string with `{{ <CEL> }}` holes.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `source`.
    ///
    /// # Errors
    /// An unclosed `{{` or an expression that does not compile.
    pub fn compile(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| "a {{ is never closed by }}".to_owned())?;
            let inner = after[..close].trim();
            if inner.is_empty() {
                return Err("an empty {{ }}".to_owned());
            }
            parts.push(Part::Expr(Expr::compile(inner)?));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The steps it reads.
    pub fn step_refs(&self) -> BTreeSet<String> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Expr(e) => Some(e.step_refs()),
                Part::Text(_) => None,
            })
            .flatten()
            .collect()
    }

    /// Its value: the expression's own value when the template is one expression and nothing
    /// else, otherwise the text.
    ///
    /// # Errors
    /// An expression that fails.
    pub fn render(&self, scope: &Scope) -> Result<Value, String> {
        if let [Part::Expr(e)] = self.parts.as_slice() {
            return e.eval(scope);
        }
        self.render_text(scope).map(Value::String)
    }

    /// Its value as text.
    ///
    /// # Errors
    /// An expression that fails.
    pub fn render_text(&self, scope: &Scope) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => match e.eval(scope)? {
                    Value::String(s) => out.push_str(&s),
                    Value::Null => {}
                    v => out.push_str(&v.to_string()),
                },
            }
        }
        Ok(out)
    }
}

/// Compiles every string in `value` as a template; returns the steps they read.
///
/// # Errors
/// The first template that does not compile, with its path inside `value`.
pub fn compile_value(value: &Value) -> Result<BTreeSet<String>, String> {
    fn walk(v: &Value, path: &str, refs: &mut BTreeSet<String>) -> Result<(), String> {
        match v {
            Value::String(s) => {
                let t = Template::compile(s).map_err(|m| at(path, &m))?;
                refs.extend(t.step_refs());
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), refs)?;
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &format!("{path}.{k}"), refs)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut refs = BTreeSet::new();
    walk(value, "", &mut refs)?;
    Ok(refs)
}

fn at(path: &str, m: &str) -> String {
    if path.is_empty() { m.to_owned() } else { format!("{}: {m}", path.trim_start_matches('.')) }
}

/// `value` with every string rendered as a template.
///
/// # Errors
/// The first template that fails, with its path.
pub fn render_value(value: &Value, scope: &Scope) -> Result<Value, String> {
    fn walk(v: &Value, path: &str, scope: &Scope) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) if s.contains("{{") => {
                Template::compile(s).and_then(|t| t.render(scope)).map_err(|m| at(path, &m))?
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| walk(x, &format!("{path}[{i}]"), scope))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| Ok((k.clone(), walk(x, &format!("{path}.{k}"), scope)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
    walk(value, "", scope)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        Scope {
            inputs: json!({"name": "Ada", "amount": 120, "tags": ["vip"]}),
            steps: json!({"fetch": {"status": "completed", "output": {"total": 3, "rows": [1, 2]}}}),
            event: None,
        }
    }

    #[test]
    fn conditions_see_inputs_and_step_outputs_with_json_numbers_as_ints() {
        let s = scope();
        let e = Expr::compile("inputs.amount + 1 > 120 && steps.fetch.output.total == 3").unwrap();
        assert!(e.eval_bool(&s).unwrap());
        assert!(Expr::compile("'vip' in inputs.tags").unwrap().eval_bool(&s).unwrap());
        let err = Expr::compile("inputs.amount").unwrap().eval_bool(&s).unwrap_err();
        assert!(err.contains("must be true or false"), "{err}");
        assert!(Expr::compile("inputs.missing == 1").unwrap().eval_bool(&s).is_err());
        assert!(Expr::compile("foo == 1").unwrap_err().contains("unknown name \"foo\""));
        assert!(Expr::compile("inputs.(").unwrap_err().contains("not a valid CEL"));
    }

    #[test]
    fn templates_keep_the_type_of_a_lone_expression_and_write_text_otherwise() {
        let s = scope();
        let t = Template::compile("{{ steps.fetch.output }}").unwrap();
        assert_eq!(t.render(&s).unwrap(), json!({"total": 3, "rows": [1, 2]}));
        let t = Template::compile("Hi {{ inputs.name }}, {{ steps.fetch.output.rows }}!").unwrap();
        assert_eq!(t.render(&s).unwrap(), json!("Hi Ada, [1,2]!"));
        assert_eq!(t.step_refs(), BTreeSet::from(["fetch".to_owned()]));
        assert!(Template::compile("{{ inputs.name").unwrap_err().contains("never closed"));
        let v = json!({"to": "{{ inputs.name }}", "n": ["{{ inputs.amount }}", 2], "k": true});
        assert_eq!(render_value(&v, &s).unwrap(), json!({"to": "Ada", "n": [120, 2], "k": true}));
        let bad = json!({"a": {"b": "{{ inputs.( }}"}});
        assert!(compile_value(&bad).unwrap_err().starts_with("a.b: "));
    }

    #[test]
    fn step_references_are_found_in_both_spellings() {
        let refs = step_refs("steps.a.output && steps['b-c'].status == 'x' || mysteps.z");
        assert_eq!(refs, BTreeSet::from(["a".to_owned(), "b-c".to_owned()]));
    }
}

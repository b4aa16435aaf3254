//! Definitions and the engine, without I/O.

use agentyard_core::RunId;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::def::{Known, from_value, parse_yaml};
use crate::engine::{
    self, Effect, ExecState, ExecStatus, Launch, SkipReason, StepError, StepStatus,
};

fn known() -> Known {
    Known {
        agent_types: ["customer_support", "data_analyst"].map(String::from).into(),
        capabilities: ["reporting"].map(String::from).into(),
        event_types: ["run.completed"].map(String::from).into(),
    }
}

fn errors(v: Value) -> Vec<String> {
    from_value(v, &known()).unwrap_err().iter().map(ToString::to_string).collect()
}

fn wf(v: Value) -> crate::Workflow {
    from_value(v, &known()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

#[test]
fn problems_name_their_path() {
    let e = errors(json!({"id": "x", "steps": [
        {"id": "a", "wait": {"duration": "1s"}},
        {"id": "b", "wait": {"duration": "1s"}, "depends_on": ["a", "triage"]}
    ]}));
    assert_eq!(e, ["steps[1].depends_on[1]: unknown step \"triage\""]);
    let e =
        errors(json!({"id": "x", "steps": [{"id": "a", "wait": {"duration": "1s"}, "colour": 1}]}));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("steps[0].colour: unknown field `colour`, expected one of"), "{e:?}");
    let e = errors(json!({"id": "x", "steps": [{"id": "a", "wait": {"duration": "soon"}}]}));
    assert!(e[0].starts_with("steps[0].wait.duration: expected a duration"), "{e:?}");
    let e = errors(json!({"id": "Bad Id", "steps": []}));
    assert!(e.iter().any(|m| m.starts_with("id: must be a slug")), "{e:?}");
    assert!(e.iter().any(|m| m.starts_with("steps: a workflow needs")), "{e:?}");
    let e = errors(json!({"id": "x", "steps": [
        {"id": "a", "wait": {"duration": "1s"}, "tool": {"name": "add_task"}},
        {"id": "b", "agent": {"type": "pilot", "input": "hi"}},
        {"id": "c", "tool": {"name": "nope"}},
        {"id": "d", "agent": {"capability": "reporting", "input": "{{ steps.b.output }}"}}
    ]}));
    assert!(
        e.contains(&"steps[0]: a step has exactly one of agent, tool, approval or wait".into())
    );
    assert!(e.iter().any(|m| m.starts_with("steps[1].agent.type: unknown agent type \"pilot\"")));
    assert!(e.iter().any(|m| m.starts_with("steps[2].tool.name: unknown tool \"nope\"")));
    assert!(
        e.iter().any(|m| m.starts_with(
            "steps[3].agent.input: refers to step \"b\", which it does not depend on"
        )),
        "{e:?}"
    );
}

#[test]
fn a_cycle_is_named() {
    let e = errors(json!({"id": "x", "steps": [
        {"id": "a", "wait": {"duration": "1s"}, "depends_on": ["c"]},
        {"id": "b", "wait": {"duration": "1s"}, "depends_on": ["a"]},
        {"id": "c", "wait": {"duration": "1s"}, "depends_on": ["b"]}
    ]}));
    assert_eq!(e, ["steps: a cycle: a → c → b → a"]);
}

#[test]
fn schedules_triggers_inputs_and_compensation_are_checked() {
    let e = errors(json!({"id": "x",
    "inputs": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
    "schedule": {"cron": "* * *", "inputs": {}},
    "on": {"event": "run.exploded", "where": "event.("},
    "concurrency": {"key": "{{ steps.a.output }}", "limit": 0},
    "steps": [
        {"id": "a", "wait": {"duration": "1s"}, "on_failure": {"compensate": "undo"}},
        {"id": "undo", "wait": {"duration": "1s"}, "depends_on": ["a"]},
        {"id": "b", "wait": {"duration": "1s"}, "depends_on": ["undo"]}
    ]}));
    for want in [
        "schedule.cron: expected 5 fields",
        "schedule.inputs: inputs: ",
        "on.event: unknown event type \"run.exploded\"",
        "on.where: not a valid CEL expression",
        "concurrency.limit: must be at least 1",
        "concurrency.key: may refer to inputs only",
        "steps[1].depends_on: a compensation step runs when its step fails",
        "steps[2].depends_on[0]: \"undo\" is a compensation step",
    ] {
        assert!(e.iter().any(|m| m.starts_with(want)), "missing {want:?} in {e:?}");
    }
}

#[test]
fn yaml_templates_parse_like_json() {
    let w = parse_yaml(
        "id: hello\nsteps:\n  - id: greet\n    agent: {type: customer_support, input: 'Hi {{ inputs.name }}'}\n",
        &known(),
    )
    .unwrap();
    assert_eq!(w.def.steps[0].id, "greet");
    let e = parse_yaml("id: hello\nsteps:\n  - id: greet\n    agent: {tpye: x}\n", &known())
        .unwrap_err();
    assert!(e[0].to_string().starts_with("steps[0].agent.tpye: unknown field `tpye`"), "{e:?}");
}

/// Runs `advance`, answering every started attempt through `result`, until nothing changes;
/// returns the order in which steps started.
fn drive(
    w: &crate::Workflow,
    inputs: &Value,
    state: &mut ExecState,
    mut now: DateTime<Utc>,
    result: impl Fn(&str, u32, &Launch) -> Result<Value, StepError>,
) -> Vec<String> {
    let mut started = Vec::new();
    for _ in 0..100 {
        let effects = engine::advance(w, inputs, state, now);
        let mut any = false;
        for e in effects {
            if let Effect::Start { step, attempt, launch } = e {
                any = true;
                started.push(step.clone());
                let run = RunId::new();
                state.steps.get_mut(&step).unwrap().run_id = Some(run);
                let r = result(&step, attempt, &launch);
                assert!(engine::attempt_ended(w, state, &step, run, r, now));
            }
        }
        if !any {
            match state.next_wake() {
                Some(t) => now = t.max(now),
                None => break,
            }
        }
    }
    started
}

fn diamond() -> crate::Workflow {
    wf(json!({"id": "d", "steps": [
        {"id": "fetch", "tool": {"name": "list_tasks"}},
        {"id": "left", "depends_on": ["fetch"], "agent": {"type": "customer_support", "input": "L {{ steps.fetch.output.n }}"}},
        {"id": "right", "depends_on": ["fetch"], "when": "inputs.big", "agent": {"type": "customer_support", "input": "R"}},
        {"id": "join", "depends_on": ["left", "right"], "tool": {"name": "add_task", "arguments": {"title": "{{ steps.left.output }}"}}}
    ]}))
}

#[test]
fn a_diamond_runs_in_dependency_order_with_parallel_branches() {
    let w = diamond();
    let inputs = json!({"big": true});
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let fx = engine::advance(&w, &inputs, &mut s, t0());
    assert_eq!(fx.len(), 1, "only the root starts: {fx:?}");
    let Effect::Start { step, .. } = &fx[0] else { panic!() };
    let run = RunId::new();
    s.steps.get_mut(step).unwrap().run_id = Some(run);
    engine::attempt_ended(&w, &mut s, "fetch", run, Ok(json!({"n": 2})), t0());
    let fx = engine::advance(&w, &inputs, &mut s, t0());
    let started: Vec<_> = fx
        .iter()
        .map(|e| match e {
            Effect::Start { step, launch, .. } => (step.clone(), launch.clone()),
            Effect::Cancel { .. } => panic!(),
        })
        .collect();
    assert_eq!(started.len(), 2, "both branches start together");
    assert!(matches!(&started[0].1, Launch::Agent { input, .. } if input == "L 2"));
    for (step, _) in &started {
        let run = RunId::new();
        s.steps.get_mut(step).unwrap().run_id = Some(run);
        engine::attempt_ended(&w, &mut s, step, run, Ok(json!("answer")), t0());
    }
    let order = drive(&w, &inputs, &mut s, t0(), |step, _, launch| match launch {
        Launch::Tool { arguments, .. } => {
            assert_eq!(step, "join");
            assert_eq!(arguments, &json!({"title": "answer"}));
            Ok(json!("done"))
        }
        Launch::Agent { .. } => Ok(json!("answer")),
    });
    // left and right had started already; only join is new.
    assert_eq!(order, ["join"]);
    assert_eq!(s.status, ExecStatus::Completed);
    assert_eq!(s.output, Some(json!({"join": "done"})));
}

#[test]
fn a_false_condition_skips_the_step_and_its_dependents_decide_for_themselves() {
    let w = diamond();
    let inputs = json!({"big": false});
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let order = drive(&w, &inputs, &mut s, t0(), |_, _, _| Ok(json!({"n": 1})));
    assert_eq!(order, ["fetch", "left", "join"]);
    assert_eq!(s.steps["right"].status, StepStatus::Skipped);
    assert_eq!(s.steps["right"].skip_reason, Some(SkipReason::Condition));
    assert_eq!(s.status, ExecStatus::Completed);
}

/// `a` (three attempts) then `b`; with a compensation, `undo` is it.
fn flaky(on_failure: Value) -> crate::Workflow {
    let mut steps = vec![
        json!({"id": "a", "tool": {"name": "list_tasks"}, "retry": {"max_attempts": 3, "backoff": "2s", "non_retryable": ["bad_input"]}, "on_failure": on_failure}),
        json!({"id": "b", "depends_on": ["a"], "tool": {"name": "list_tasks"}}),
    ];
    if on_failure.get("compensate").is_some() {
        steps.push(
            json!({"id": "undo", "tool": {"name": "add_task", "arguments": {"title": "undo"}}}),
        );
    }
    wf(json!({"id": "f", "steps": steps}))
}

#[test]
fn retries_back_off_and_then_succeed() {
    let w = flaky(json!("fail"));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let fx = engine::advance(&w, &json!({}), &mut s, t0());
    assert_eq!(fx.len(), 1);
    let run = RunId::new();
    s.steps.get_mut("a").unwrap().run_id = Some(run);
    engine::attempt_ended(&w, &mut s, "a", run, Err(StepError::new("tool_error", "boom")), t0());
    assert_eq!(s.steps["a"].status, StepStatus::Retrying);
    assert_eq!(s.next_wake(), Some(t0() + Duration::seconds(2)));
    // Nothing before the backoff; the second attempt after it.
    assert!(engine::advance(&w, &json!({}), &mut s, t0() + Duration::seconds(1)).is_empty());
    let fx = engine::advance(&w, &json!({}), &mut s, t0() + Duration::seconds(2));
    assert!(matches!(&fx[..], [Effect::Start { attempt: 2, .. }]));
    let run = RunId::new();
    s.steps.get_mut("a").unwrap().run_id = Some(run);
    engine::attempt_ended(&w, &mut s, "a", run, Err(StepError::new("tool_error", "boom")), t0());
    assert_eq!(s.next_wake(), Some(t0() + Duration::seconds(4)), "the backoff doubles");
    let order = drive(&w, &json!({}), &mut s, t0() + Duration::seconds(4), |_, _, _| Ok(json!(1)));
    assert_eq!(order, ["a", "b"]);
    assert_eq!(s.steps["a"].attempt, 3);
    assert_eq!(s.status, ExecStatus::Completed);
    let w = flaky(json!({"compensate": "undo"}));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    drive(&w, &json!({}), &mut s, t0(), |_, _, _| Ok(json!(1)));
    assert_eq!(s.status, ExecStatus::Completed);
    assert_eq!(s.steps["undo"].skip_reason, Some(SkipReason::NotNeeded), "not needed, not run");
}

#[test]
fn exhausted_retries_follow_on_failure_each_way() {
    let boom = |step: &str, _: u32, _: &Launch| {
        if step == "a" { Err(StepError::new("tool_error", "boom")) } else { Ok(json!("ok")) }
    };
    // fail: b is never run.
    let w = flaky(json!("fail"));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let order = drive(&w, &json!({}), &mut s, t0(), boom);
    assert_eq!(order, ["a", "a", "a"]);
    assert_eq!(s.status, ExecStatus::Failed);
    assert_eq!(s.steps["b"].skip_reason, Some(SkipReason::NotRun));
    assert_eq!(s.failure.as_ref().unwrap().0, "a");
    // continue: b runs.
    let w = flaky(json!("continue"));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let order = drive(&w, &json!({}), &mut s, t0(), boom);
    assert_eq!(order, ["a", "a", "a", "b"]);
    assert_eq!(s.status, ExecStatus::Completed);
    assert_eq!(s.steps["a"].status, StepStatus::Failed);
    // compensate: undo runs, then the execution fails.
    let w = flaky(json!({"compensate": "undo"}));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let order = drive(&w, &json!({}), &mut s, t0(), boom);
    assert_eq!(order, ["a", "a", "a", "undo"]);
    assert_eq!(s.status, ExecStatus::Failed);
    assert_eq!(s.steps["undo"].status, StepStatus::Completed);
    // A non-retryable code fails at once.
    let w = flaky(json!("fail"));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    let order =
        drive(&w, &json!({}), &mut s, t0(), |_, _, _| Err(StepError::new("bad_input", "no")));
    assert_eq!(order, ["a"]);
    // Retry of the execution runs the failed and not-run steps again, keeping the rest.
    engine::retry(&w, &mut s).unwrap();
    let order = drive(&w, &json!({}), &mut s, t0(), |_, _, _| Ok(json!("ok")));
    assert_eq!(order, ["a", "b"]);
    assert_eq!(s.status, ExecStatus::Completed);
    assert!(engine::retry(&w, &mut s).is_err(), "only a failed execution is retried");
}

#[test]
fn a_timeout_cancels_the_attempt_and_fails_the_step() {
    let w = wf(json!({"id": "t", "steps": [
        {"id": "slow", "timeout": "5s", "agent": {"type": "customer_support", "input": "x"}}
    ]}));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    engine::advance(&w, &json!({}), &mut s, t0());
    let run = RunId::new();
    s.steps.get_mut("slow").unwrap().run_id = Some(run);
    assert_eq!(s.next_wake(), Some(t0() + Duration::seconds(5)));
    let fx = engine::advance(&w, &json!({}), &mut s, t0() + Duration::seconds(5));
    assert_eq!(fx, [Effect::Cancel { step: "slow".into(), run_id: run }]);
    assert_eq!(s.steps["slow"].error.as_ref().unwrap().code, "step_timeout");
    assert_eq!(s.status, ExecStatus::Failed);
    // The cancelled run's end, arriving later, changes nothing.
    assert!(!engine::attempt_ended(&w, &mut s, "slow", run, Ok(json!(1)), t0()));
}

#[test]
fn approvals_wait_for_a_human_or_their_deadline_and_waits_for_their_time() {
    let w = wf(json!({"id": "a", "steps": [
        {"id": "pause", "wait": {"duration": "1m"}},
        {"id": "ok", "depends_on": ["pause"], "approval": {"message": "Send to {{ inputs.who }}?", "timeout": "1h"}},
        {"id": "auto", "depends_on": ["pause"], "approval": {"message": "fine?", "timeout": "2h", "on_timeout": "approve"}}
    ]}));
    let inputs = json!({"who": "Ada"});
    let mut s = ExecState::new(&w, ExecStatus::Running);
    assert!(engine::advance(&w, &inputs, &mut s, t0()).is_empty());
    assert_eq!(s.steps["pause"].status, StepStatus::Running);
    engine::advance(&w, &inputs, &mut s, t0() + Duration::minutes(1));
    assert_eq!(s.steps["pause"].status, StepStatus::Completed);
    assert_eq!(s.steps["ok"].status, StepStatus::Waiting);
    assert_eq!(s.steps["ok"].request.as_ref().unwrap()["message"], "Send to Ada?");
    let t = t0() + Duration::minutes(2);
    let id = engine::answer(&w, &mut s, Some("ok"), true, Some("ops".into()), None, t).unwrap();
    assert_eq!(id, "ok");
    assert_eq!(s.steps["ok"].output.as_ref().unwrap()["by"], "ops");
    assert!(engine::answer(&w, &mut s, Some("ok"), true, None, None, t).is_err());
    engine::advance(&w, &inputs, &mut s, t0() + Duration::hours(3));
    assert_eq!(s.steps["auto"].output.as_ref().unwrap()["timed_out"], true);
    assert_eq!(s.status, ExecStatus::Completed);
    // A denial fails the step.
    let mut s = ExecState::new(&w, ExecStatus::Running);
    engine::advance(&w, &inputs, &mut s, t0());
    engine::advance(&w, &inputs, &mut s, t0() + Duration::minutes(1));
    engine::answer(&w, &mut s, Some("ok"), false, None, Some("no".into()), t).unwrap();
    engine::advance(&w, &inputs, &mut s, t);
    assert_eq!(s.steps["ok"].error.as_ref().unwrap().code, "approval_denied");
    assert_eq!(s.steps["auto"].status, StepStatus::Cancelled);
    assert_eq!(s.status, ExecStatus::Failed);
}

#[test]
fn cancel_stops_running_steps_and_nothing_completes_afterwards() {
    let w = diamond();
    let mut s = ExecState::new(&w, ExecStatus::Running);
    engine::advance(&w, &json!({"big": true}), &mut s, t0());
    let run = RunId::new();
    s.steps.get_mut("fetch").unwrap().run_id = Some(run);
    let fx = engine::cancel(&mut s, t0());
    assert_eq!(fx, [Effect::Cancel { step: "fetch".into(), run_id: run }]);
    assert_eq!(s.status, ExecStatus::Cancelled);
    assert!(!engine::attempt_ended(&w, &mut s, "fetch", run, Ok(json!(1)), t0()));
    assert!(engine::advance(&w, &json!({"big": true}), &mut s, t0()).is_empty());
    assert!(s.steps.values().all(|x| x.status == StepStatus::Cancelled));
}

#[test]
fn condition_and_output_errors_are_step_errors() {
    let w = wf(json!({"id": "c", "steps": [
        {"id": "a", "when": "inputs.missing > 1", "tool": {"name": "list_tasks"}, "retry": {"max_attempts": 5}}
    ]}));
    let mut s = ExecState::new(&w, ExecStatus::Running);
    engine::advance(&w, &json!({}), &mut s, t0());
    assert_eq!(s.steps["a"].error.as_ref().unwrap().code, "condition_error");
    assert_eq!(s.status, ExecStatus::Failed, "a condition error is never retried");
    use crate::def::OutputFormat;
    assert_eq!(
        engine::agent_output(OutputFormat::Json, "```json\n{\"a\": 1}\n```").unwrap(),
        json!({"a": 1})
    );
    let e = engine::agent_output(OutputFormat::Json, "Sure! Here it is").unwrap_err();
    assert_eq!(e.code, "invalid_output");
    assert_eq!(engine::tool_output("{\"x\": 1}"), json!({"x": 1}));
    assert_eq!(engine::tool_output("plain"), json!("plain"));
    assert_eq!(engine::tool_output("Added the task.\n\n{\"id\": 7}"), json!({"id": 7}));
    assert_eq!(engine::tool_output("two\n\nparagraphs"), json!("two\n\nparagraphs"));
}

#[test]
fn an_event_wait_waits_for_its_event_or_times_out() {
    let w = wf(json!({"id": "e", "steps": [
        {"id": "hear", "wait": {"event": "run.completed", "where": "event.data.x == inputs.x", "timeout": "1m"}},
        {"id": "next", "depends_on": ["hear"], "tool": {"name": "list_tasks"}}
    ]}));
    let e = errors(
        json!({"id": "e", "steps": [{"id": "a", "wait": {"duration": "1s", "event": "run.completed"}}]}),
    );
    assert_eq!(e, ["steps[0].wait: name exactly one of duration or event"]);
    let e = errors(json!({"id": "e", "steps": [{"id": "a", "wait": {"event": "run.exploded"}}]}));
    assert!(e[0].starts_with("steps[0].wait.event: unknown event type"), "{e:?}");
    let mut s = ExecState::new(&w, ExecStatus::Running);
    assert!(engine::advance(&w, &json!({"x": 1}), &mut s, t0()).is_empty());
    assert_eq!(s.steps["hear"].status, StepStatus::Waiting);
    assert_eq!(engine::event_waits(&w, &s), [("hear".to_owned(), "run.completed".to_owned())]);
    // An approval answer does not reach an event wait.
    assert!(engine::answer(&w, &mut s, None, true, None, None, t0()).is_err());
    assert!(engine::event_arrived(&mut s, "hear", json!({"type": "run.completed"}), t0()));
    assert!(!engine::event_arrived(&mut s, "hear", json!({}), t0()), "only once");
    let fx = engine::advance(&w, &json!({"x": 1}), &mut s, t0());
    assert!(matches!(&fx[..], [Effect::Start { step, .. }] if step == "next"));
    assert!(engine::event_waits(&w, &s).is_empty());
    // Nobody sends it: the step times out.
    let mut s = ExecState::new(&w, ExecStatus::Running);
    engine::advance(&w, &json!({"x": 1}), &mut s, t0());
    engine::advance(&w, &json!({"x": 1}), &mut s, t0() + Duration::minutes(1));
    assert_eq!(s.steps["hear"].error.as_ref().unwrap().code, "wait_timed_out");
    assert_eq!(s.status, ExecStatus::Failed);
}

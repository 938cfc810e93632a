//! A workflow's or batch's definition as stored, and the plan read from it: which step
//! waits for which, which job each step is, and the args a step starts with. Pure logic.

use jobfleet_common::coordinator::{FlowId, FlowKind};
use jobfleet_common::message::{JobMessage, Membership};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};

/// The name of a batch's callback step.
pub const CALLBACK: &str = "on_complete";
/// The key of a result reference in a step's args: `{"$result": "<step>"}`.
pub const RESULT_REF: &str = "$result";

/// A flow's definition as stored in Redis (it never changes after creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// The steps, in the request's order (a batch: its jobs, then its callback).
    pub steps: Vec<Step>,
}

/// One step: its job, and the steps it waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Unique in its flow.
    pub name: String,
    /// Its job's id, `<flow id>.<name>`.
    pub job_id: String,
    /// The job's group.
    pub group: String,
    /// The job's function.
    pub function: String,
    /// The job's args, before result references are replaced.
    #[serde(default)]
    pub args: Value,
    /// The steps it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// The job's own timeout, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// A definition with its dependents worked out.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Whose plan.
    pub flow: FlowId,
    /// The definition.
    pub definition: Definition,
    index: HashMap<String, usize>,
    dependents: Vec<Vec<usize>>,
}

impl Plan {
    /// The plan of `definition` (already checked by [`check_graph`]; unknown names in
    /// `after` are ignored).
    pub fn new(flow: FlowId, definition: Definition) -> Plan {
        let index: HashMap<String, usize> = definition
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| (step.name.clone(), i))
            .collect();
        let mut dependents = vec![Vec::new(); definition.steps.len()];
        for (i, step) in definition.steps.iter().enumerate() {
            for before in &step.after {
                if let Some(&b) = index.get(before) {
                    dependents[b].push(i);
                }
            }
        }
        Plan {
            flow,
            definition,
            index,
            dependents,
        }
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.index.get(name).map(|&i| &self.definition.steps[i])
    }

    /// The step whose job is `job_id`.
    pub fn step_of_job(&self, job_id: &str) -> Option<&Step> {
        let name = job_id.strip_prefix(&self.flow.id)?.strip_prefix('.')?;
        self.step(name).filter(|step| step.job_id == job_id)
    }

    /// The names of the steps that wait for `name`.
    pub fn dependents(&self, name: &str) -> Vec<&str> {
        let Some(&i) = self.index.get(name) else {
            return Vec::new();
        };
        self.dependents[i]
            .iter()
            .map(|&d| self.definition.steps[d].name.as_str())
            .collect()
    }

    /// Each step that waits for others, with how many.
    pub fn pending(&self) -> Vec<(&str, usize)> {
        self.definition
            .steps
            .iter()
            .filter(|step| !step.after.is_empty())
            .map(|step| (step.name.as_str(), step.after.len()))
            .collect()
    }

    /// The steps that wait for nothing.
    pub fn roots(&self) -> Vec<&str> {
        self.definition
            .steps
            .iter()
            .filter(|step| step.after.is_empty())
            .map(|step| step.name.as_str())
            .collect()
    }

    /// The job message of `step` with `args`, marked as the flow's.
    pub fn job(&self, step: &Step, args: Value) -> JobMessage {
        let mut job = JobMessage::new(&step.group, &step.function, args).with_id(&step.job_id);
        job.timeout_ms = step.timeout_ms;
        job.member = match self.flow.kind {
            FlowKind::Workflow => Membership {
                workflow: Some(self.flow.id.clone()),
                step: Some(step.name.clone()),
                batch: None,
            },
            FlowKind::Batch => Membership {
                batch: Some(self.flow.id.clone()),
                ..Membership::default()
            },
        };
        job
    }
}

/// The job id of step `name` of flow `id`.
pub fn job_id_of(id: &str, name: &str) -> String {
    format!("{id}.{name}")
}

/// Why a set of steps is not a DAG: a name used twice, an `after` naming an unknown step
/// (or the step itself, or one step twice), a cycle; or a result reference to a step that
/// is not in the step's `after`.
pub fn check_graph(steps: &[Step]) -> Result<(), String> {
    let mut names = HashSet::new();
    for step in steps {
        if !names.insert(step.name.as_str()) {
            return Err(format!("step {:?} is named twice", step.name));
        }
    }
    for step in steps {
        let mut seen = HashSet::new();
        for before in &step.after {
            if !names.contains(before.as_str()) {
                return Err(format!("step {:?} waits for unknown step {before:?}", step.name));
            }
            if before == &step.name || !seen.insert(before.as_str()) {
                return Err(format!(
                    "step {:?} names {before:?} in after twice or itself",
                    step.name
                ));
            }
        }
        for reference in result_refs(&step.args) {
            if !step.after.iter().any(|a| a == &reference) {
                return Err(format!(
                    "step {:?} takes the result of {reference:?}, which is not in its after",
                    step.name
                ));
            }
        }
    }
    match cycle_member(steps) {
        Some(name) => Err(format!("the steps form a cycle through {name:?}")),
        None => Ok(()),
    }
}

/// A step on a cycle, if any (Kahn's algorithm: what is never freed lies on or behind one).
fn cycle_member(steps: &[Step]) -> Option<&str> {
    let plan = Plan::new(
        FlowId::workflow(""),
        Definition {
            steps: steps.to_vec(),
        },
    );
    let mut waits: Vec<usize> = steps.iter().map(|s| s.after.len()).collect();
    let mut free: VecDeque<usize> = (0..steps.len()).filter(|&i| waits[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = free.pop_front() {
        done += 1;
        for &d in &plan.dependents[i] {
            waits[d] -= 1;
            if waits[d] == 0 {
                free.push_back(d);
            }
        }
    }
    (done < steps.len()).then(|| {
        let stuck = waits.iter().position(|&w| w > 0).unwrap_or(0);
        steps[stuck].name.as_str()
    })
}

/// The steps whose results `args` refers to, in order of appearance.
pub fn result_refs(args: &Value) -> Vec<String> {
    let mut found = Vec::new();
    visit_refs(args, &mut |name| found.push(name.to_string()));
    found
}

fn visit_refs(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => match reference(map) {
            Some(name) => found(name),
            None => map.values().for_each(|v| visit_refs(v, found)),
        },
        Value::Array(items) => items.iter().for_each(|v| visit_refs(v, found)),
        _ => {}
    }
}

/// The step an object `{"$result": "<step>"}` refers to.
fn reference(map: &Map<String, Value>) -> Option<&str> {
    match (map.len(), map.get(RESULT_REF)) {
        (1, Some(Value::String(name))) => Some(name),
        _ => None,
    }
}

/// `args` with every result reference replaced by that step's result from `results`
/// (null for a step not in it).
pub fn substitute(args: &Value, results: &HashMap<String, Value>) -> Value {
    match args {
        Value::Object(map) => match reference(map) {
            Some(name) => results.get(name).cloned().unwrap_or(Value::Null),
            None => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), substitute(v, results)))
                    .collect(),
            ),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, results)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, after: &[&str]) -> Step {
        Step {
            name: name.into(),
            job_id: job_id_of("w", name),
            group: "g".into(),
            function: "f".into(),
            args: Value::Null,
            after: after.iter().map(|a| a.to_string()).collect(),
            timeout_ms: None,
        }
    }

    #[test]
    fn a_diamond_is_a_dag_with_its_dependents_worked_out() {
        let steps = vec![
            step("a", &[]),
            step("b", &["a"]),
            step("c", &["a"]),
            step("d", &["b", "c"]),
        ];
        assert_eq!(check_graph(&steps), Ok(()));
        let plan = Plan::new(FlowId::workflow("w"), Definition { steps });
        assert_eq!(plan.roots(), ["a"]);
        assert_eq!(plan.dependents("a"), ["b", "c"]);
        assert_eq!(plan.pending(), [("b", 1), ("c", 1), ("d", 2)]);
        assert_eq!(plan.step_of_job("w.d").map(|s| s.name.as_str()), Some("d"));
        assert!(plan.step_of_job("x.d").is_none() && plan.step_of_job("w.zz").is_none());
    }

    #[test]
    fn cycles_unknown_names_and_repeats_are_refused() {
        let cycle = vec![
            step("a", &["c"]),
            step("b", &["a"]),
            step("c", &["b"]),
            step("r", &[]),
        ];
        assert!(check_graph(&cycle).unwrap_err().contains("cycle"));
        assert!(check_graph(&[step("a", &["a"])]).is_err());
        assert!(check_graph(&[step("a", &["nope"])])
            .unwrap_err()
            .contains("unknown"));
        assert!(check_graph(&[step("a", &[]), step("a", &[])])
            .unwrap_err()
            .contains("twice"));
        assert!(check_graph(&[step("a", &[]), step("b", &["a", "a"])]).is_err());
    }

    #[test]
    fn result_references_must_name_a_dependency_and_are_replaced() {
        let mut b = step("b", &["a"]);
        b.args = json!({"n": {"$result": "a"}, "list": [{"$result": "a"}, {"$result": "a", "x": 1}]});
        assert_eq!(check_graph(&[step("a", &[]), b.clone()]), Ok(()));
        let results = HashMap::from([("a".to_string(), json!({"sum": 3}))]);
        assert_eq!(
            substitute(&b.args, &results),
            json!({"n": {"sum": 3}, "list": [{"sum": 3}, {"$result": "a", "x": 1}]})
        );
        let mut c = step("c", &[]);
        c.args = json!({"$result": "a"});
        assert!(check_graph(&[step("a", &[]), c])
            .unwrap_err()
            .contains("not in its after"));
    }
}

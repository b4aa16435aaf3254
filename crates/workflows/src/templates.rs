//! The built-in templates: `config/workflows/*.yaml`, compiled into the binary, or the
//! `workflows/` directory of `AY_CONFIG_DIR` when it has one. A template is a definition every
//! organization can start; an organization's own definition of the same id takes its place
//! for that organization. Templates carry no `schedule` or `on` (a trigger belongs to an
//! organization's definition).

use std::collections::BTreeMap;
use std::path::Path;

use crate::def::{Known, Workflow, parse_yaml};

const BUILTIN: &[(&str, &str)] = &[
    (
        "customer_onboarding.yaml",
        include_str!("../../../config/workflows/customer_onboarding.yaml"),
    ),
    ("revenue_analysis.yaml", include_str!("../../../config/workflows/revenue_analysis.yaml")),
    ("customer_support.yaml", include_str!("../../../config/workflows/customer_support.yaml")),
];

/// The templates by id.
#[derive(Clone, Debug, Default)]
pub struct Templates {
    by_id: BTreeMap<String, Workflow>,
}

impl Templates {
    /// `<dir>/workflows/*.yaml` when that directory exists, else the compiled-in templates.
    ///
    /// # Errors
    /// A file that cannot be read or fails a check, naming the file and the field.
    pub fn load(dir: Option<&Path>, known: &Known) -> Result<Self, String> {
        let mut files: Vec<(String, String)> = Vec::new();
        match dir.map(|d| d.join("workflows")).filter(|d| d.is_dir()) {
            Some(d) => {
                let mut paths: Vec<_> = std::fs::read_dir(&d)
                    .map_err(|e| format!("{}: {e}", d.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                    .collect();
                paths.sort();
                for p in paths {
                    let text =
                        std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                    files.push((p.display().to_string(), text));
                }
            }
            None => {
                for (name, text) in BUILTIN {
                    files.push((format!("config/workflows/{name}"), (*text).to_owned()));
                }
            }
        }
        let mut by_id = BTreeMap::new();
        for (name, text) in files {
            let wf = parse_yaml(&text, known).map_err(|errs| {
                let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
                format!("{name}: {}", all.join("; "))
            })?;
            if wf.def.schedule.is_some() || wf.def.on.is_some() {
                return Err(format!(
                    "{name}: a template has no schedule or on: create an organization's definition for a trigger"
                ));
            }
            if let Some(other) = by_id.insert(wf.def.id.clone(), wf) {
                return Err(format!("{name}: a second template with the id {:?}", other.def.id));
            }
        }
        Ok(Self { by_id })
    }

    /// The template `id`.
    pub fn get(&self, id: &str) -> Option<&Workflow> {
        self.by_id.get(id)
    }

    /// Every template, by id.
    pub fn all(&self) -> impl Iterator<Item = &Workflow> {
        self.by_id.values()
    }
}

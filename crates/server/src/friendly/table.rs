//! What the friendly routes know about a model, worked out once: its features (names, aliases,
//! the name → position lookup), its input tensor, its classes ([`Table`], one per served
//! version); and what one route reads and answers ([`Spec`], one per route).

use std::collections::HashMap;

use ferroserve_core::config::{Answer, Layout, RequestForm, RouteConfig, RouteMethod};
use ferroserve_core::{DataType, ModelMetadata, Task};
use ferroserve_runtime::ServedVersion;

/// One served version as the friendly routes see it.
#[derive(Debug)]
pub struct Table {
    pub model: String,
    pub version: u64,
    /// Feature names in input order (`f0`, `f1`, ... when the model has none).
    pub names: Vec<String>,
    /// Feature names and `feature_aliases` → position.
    lookup: HashMap<String, usize>,
    /// `feature_aliases` as (alias, position), for documentation.
    pub aliases: Vec<(String, usize)>,
    pub input_name: String,
    pub input_dtype: DataType,
    /// Class labels in class order (classifiers only).
    pub classes: Option<Vec<String>>,
    /// The outputs answers are read from, as the model's task names them: a classifier's label
    /// and class probabilities, a regressor's value.
    pub label_output: Option<String>,
    pub probabilities_output: Option<String>,
    pub value_output: Option<String>,
    /// Whether the label output holds strings (BYTES) rather than integers.
    pub label_is_text: bool,
    /// The class names are not what the label output holds (integer labels, named classes in
    /// `model.toml`, as ONNX Runtime graphs answer): answers name the class of the first
    /// maximum of the probabilities instead.
    pub names_from_probabilities: bool,
    /// Width of the regression output (1 for a single target).
    pub targets: usize,
    pub max_rows: usize,
    /// The model's outputs are the answer as they are (`Task::Custom`, a Python predictor):
    /// answered by [`super::custom`], every output asked for.
    pub custom: bool,
    /// Example rows: `sample_rows` from model.toml, or one row of zeros.
    pub samples: Vec<Vec<f64>>,
    pub description: String,
}

impl Table {
    /// The table of a served version, or why the friendly routes cannot serve it.
    pub fn build(served: &ServedVersion) -> Result<Table, String> {
        let meta: &ModelMetadata = served.model.metadata();
        let Some(n) = meta.tabular_features() else {
            return Err(format!(
                "model '{}' does not read one table of features (it has {} input(s)); use /v2/models/{}/infer",
                served.name,
                meta.inputs.len(),
                served.name
            ));
        };
        let input = &meta.inputs[0];
        if matches!(input.datatype, DataType::Bytes | DataType::Bool) {
            return Err(format!(
                "model '{}' reads {} values; the friendly routes send numbers (use /v2/models/{}/infer)",
                served.name, input.datatype, served.name
            ));
        }
        let names = meta.feature_names_or_default();
        let mut lookup: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut aliases = Vec::new();
        for (alias, target) in &served.config.feature_aliases {
            if let Some(&i) = lookup.get(target) {
                aliases.push((alias.clone(), i));
            }
        }
        for (alias, i) in &aliases {
            lookup.entry(alias.clone()).or_insert(*i);
        }
        // What the answers are made of: the model's task says which output holds what.
        let (classes, label_output, probabilities_output, value_output) = match &meta.task {
            Task::Classifier(c) => match (&c.label_output, &c.probabilities_output) {
                (Some(l), Some(p)) => (
                    Some(c.labels.as_strings()),
                    Some(l.clone()),
                    Some(p.clone()),
                    None,
                ),
                _ => return Err(unanswerable(&served.name, meta)),
            },
            Task::Regressor(r) => (None, None, None, Some(r.output.clone())),
            Task::Custom => (None, None, None, None),
            Task::Other => return Err(unanswerable(&served.name, meta)),
        };
        let output = |name: &Option<String>| {
            name.as_ref()
                .and_then(|n| meta.outputs.iter().find(|o| &o.name == n))
        };
        let label_is_text = output(&label_output).is_some_and(|o| o.datatype == DataType::Bytes);
        let targets = output(&value_output)
            .and_then(|o| o.shape.get(1).copied())
            .map(|t| t.max(1) as usize)
            .unwrap_or(1);
        let names_from_probabilities = !label_is_text
            && classes.as_ref().is_some_and(|c| {
                c.iter()
                    .enumerate()
                    .any(|(i, name)| name.parse::<usize>() != Ok(i))
            });
        let samples = if served.config.sample_rows.is_empty() {
            vec![vec![0.0; n]]
        } else {
            served.config.sample_rows.clone()
        };
        Ok(Table {
            model: served.name.clone(),
            version: served.version,
            names,
            lookup,
            aliases,
            input_name: input.name.clone(),
            input_dtype: input.datatype,
            classes,
            label_output,
            probabilities_output,
            value_output,
            label_is_text,
            names_from_probabilities,
            targets,
            max_rows: served.config.max_request_rows(),
            custom: meta.task == Task::Custom,
            samples,
            description: meta.description.clone(),
        })
    }

    pub fn n(&self) -> usize {
        self.names.len()
    }

    pub fn is_classifier(&self) -> bool {
        self.classes.is_some()
    }

    /// The position of a feature name or alias.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.lookup.get(name).copied()
    }

    /// The outputs to ask the model for, for an answer (plus probabilities when asked for).
    pub fn outputs_for(&self, answer: Answer, with_probabilities: bool) -> Vec<&str> {
        let label = self.label_output.as_deref();
        let probabilities = self.probabilities_output.as_deref();
        if self.custom {
            return Vec::new();
        }
        if !self.is_classifier() {
            return self.value_output.as_deref().into_iter().collect();
        }
        match (answer, with_probabilities) {
            (Answer::Label, _) if self.names_from_probabilities => {
                probabilities.into_iter().collect()
            }
            (Answer::Label, false) => label.into_iter().collect(),
            (Answer::Label, true) => label.into_iter().chain(probabilities).collect(),
            (Answer::ClassIndex | Answer::Probabilities | Answer::Probability, _) => {
                probabilities.into_iter().collect()
            }
        }
    }
}

/// Why the friendly routes cannot answer for a model whose task does not say which of its
/// outputs is the prediction.
fn unanswerable(model: &str, meta: &ModelMetadata) -> String {
    let outputs: Vec<&str> = meta.outputs.iter().map(|o| o.name.as_str()).collect();
    format!(
        "model '{model}' does not say which of its outputs ({}) is the prediction; use /v2/models/{model}/infer",
        outputs.join(", ")
    )
}

/// What one route reads and answers.
#[derive(Debug, Clone)]
pub struct Spec {
    pub model: String,
    pub method: RouteMethod,
    /// The URL path as documented (`/models/iris/predict`, `/predict`).
    pub path: String,
    pub form: RequestForm,
    pub request_key: Option<String>,
    pub csv_field: Option<String>,
    /// The route's own names for the features, in feature order.
    pub names: Option<Vec<String>>,
    names_lookup: HashMap<String, usize>,
    pub answer: Answer,
    pub layout: Layout,
    pub response_key: String,
    pub unwrap_single: bool,
    /// Whether the route answers CSV to clients that prefer it (the built-in routes).
    pub csv_answer: bool,
    pub summary: Option<String>,
    /// Whether this is a route alias from model.toml (rather than a built-in route).
    pub alias: bool,
    /// A route alias that starts a batch job ([`crate::jobs::from_alias`]).
    pub job: bool,
}

impl Spec {
    /// The built-in `/models/{model}/predict` route.
    pub fn predict(model: &str, method: RouteMethod) -> Spec {
        Spec {
            model: model.to_string(),
            method,
            path: format!("/models/{model}/predict"),
            form: match method {
                RouteMethod::Get => RequestForm::Query,
                RouteMethod::Post => RequestForm::Auto,
            },
            request_key: None,
            csv_field: None,
            names: None,
            names_lookup: HashMap::new(),
            answer: Answer::Label,
            layout: Layout::Object,
            response_key: "predictions".into(),
            unwrap_single: false,
            csv_answer: true,
            summary: None,
            alias: false,
            job: false,
        }
    }

    /// The built-in KServe v1 `/v1/models/{model}:predict` route.
    pub fn kserve_v1(model: &str) -> Spec {
        Spec {
            path: format!("/v1/models/{model}:predict"),
            form: RequestForm::Instances,
            csv_answer: false,
            ..Spec::predict(model, RouteMethod::Post)
        }
    }

    /// A route alias from model.toml.
    pub fn alias(model: &str, r: &RouteConfig) -> Spec {
        let names_lookup = r
            .features
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Spec {
            model: model.to_string(),
            method: r.method,
            path: r.path.clone(),
            form: r.form(),
            request_key: r.request_key.clone(),
            csv_field: r.csv_field.clone(),
            names: r.features.clone(),
            names_lookup,
            answer: r.answer.unwrap_or(Answer::Label),
            layout: r.response,
            response_key: r.response_key().to_string(),
            unwrap_single: r.unwrap_single,
            csv_answer: false,
            summary: r.summary.clone(),
            alias: true,
            job: r.job,
        }
    }

    /// The position of a feature named on this route: its own names first, then the model's.
    pub fn lookup(&self, table: &Table, name: &str) -> Option<usize> {
        self.names_lookup
            .get(name)
            .copied()
            .or_else(|| table.lookup(name))
    }

    /// The name this route shows for feature `i`.
    pub fn name<'a>(&'a self, table: &'a Table, i: usize) -> &'a str {
        match &self.names {
            Some(n) => &n[i],
            None => &table.names[i],
        }
    }

    /// The names this route shows, in feature order.
    pub fn display_names<'a>(&'a self, table: &'a Table) -> &'a [String] {
        match &self.names {
            Some(n) => n,
            None => &table.names,
        }
    }

    /// `sepal length (cm), sepal width (cm), ...` (at most 8 names), for error messages.
    pub fn names_hint(&self, table: &Table) -> String {
        let names = self.display_names(table);
        let mut s = names
            .iter()
            .take(8)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > 8 {
            s.push_str(&format!(", ... ({} in all)", names.len()));
        }
        s
    }
}

#[cfg(test)]
impl Table {
    /// A table for parser tests: FP32 input, these feature names and aliases, outputs named as
    /// the trees backend names them.
    pub fn for_tests(names: &[&str], aliases: &[(&str, usize)], max_rows: usize) -> Table {
        let mut lookup: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i))
            .collect();
        for (a, i) in aliases {
            lookup.insert(a.to_string(), *i);
        }
        Table {
            model: "m".into(),
            version: 1,
            names: names.iter().map(|n| n.to_string()).collect(),
            lookup,
            aliases: aliases.iter().map(|(a, i)| (a.to_string(), *i)).collect(),
            input_name: "input".into(),
            input_dtype: DataType::Fp32,
            classes: None,
            label_output: Some("label".into()),
            probabilities_output: Some("probabilities".into()),
            value_output: Some("value".into()),
            label_is_text: false,
            names_from_probabilities: false,
            targets: 1,
            max_rows,
            custom: false,
            samples: vec![vec![0.0; names.len()]],
            description: String::new(),
        }
    }
}

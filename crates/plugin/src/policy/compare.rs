//! [`Comparison`]: one version's answers set against the live answers to
//! the same inputs, as a shadow or a trial counts them.
//!
//! Agreement is the kind's own ([`PolicyKindSpec::agree`]) and is counted
//! per kind of the live decision, so "agrees on 99% of retries" is not
//! hidden inside "agrees on 99.9% of calls". A failed call of the other
//! version (trap, deadline, invalid answer) counts as a disagreement and
//! as `failed`: in live service the native policy would have answered it.
//! Only the last [`DISAGREEMENTS_KEPT_MAX`] disagreements are kept, each
//! with its inputs (what the plugin could read: header values are those
//! the binding lists, never a credential).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::{Value, json};

use super::Source;
use super::spec::PolicyKindSpec;
use crate::error::Failure;

/// Disagreements kept with their inputs, per comparison (the newest).
pub const DISAGREEMENTS_KEPT_MAX: usize = 32;

/// One live call, recorded: its inputs and what was decided.
pub struct Entry<K: PolicyKindSpec> {
    pub(crate) input: K::Owned,
    pub(crate) live: K::Answer,
    pub(crate) source: Source,
}

/// Counts for one kind of live decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecisionCounts {
    pub compared: u64,
    pub agreed: u64,
}

/// One input on which the two versions decided differently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// The recorded inputs.
    pub input: Value,
    /// The live answer (sanitized: what the request got).
    pub live: Value,
    /// Who gave it: `plugin <version>`, `native`, `fallback <version>: <why>`
    /// or `quarantined <version>`.
    pub live_source: String,
    /// The other version's answer, or `{"failed": "<why>"}`.
    pub other: Value,
}

/// The other version's answers against the live ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Comparison {
    pub compared: u64,
    pub agreed: u64,
    pub disagreed: u64,
    /// Disagreements that were failed calls of the other version.
    pub failed: u64,
    /// Keyed by the kind of the live decision (`retry`, `give-up`, ...).
    pub by_decision: BTreeMap<&'static str, DecisionCounts>,
    /// The newest disagreements, oldest first, at most
    /// [`DISAGREEMENTS_KEPT_MAX`].
    pub disagreements: VecDeque<Disagreement>,
}

impl Comparison {
    /// Counts the other version's answer (`other`) to `entry`'s inputs.
    pub(crate) fn add<K: PolicyKindSpec>(
        &mut self,
        entry: &Entry<K>,
        other: &Result<K::Answer, Failure>,
    ) {
        let agreed = matches!(other, Ok(answer) if K::agree(&entry.live, answer));
        self.compared += 1;
        let counts = self
            .by_decision
            .entry(K::decision_kind(&entry.live))
            .or_default();
        counts.compared += 1;
        if agreed {
            self.agreed += 1;
            counts.agreed += 1;
            return;
        }
        self.disagreed += 1;
        let other = match other {
            Ok(answer) => K::answer_json(answer),
            Err(failure) => {
                self.failed += 1;
                json!({ "failed": failure.to_string() })
            }
        };
        if self.disagreements.len() == DISAGREEMENTS_KEPT_MAX {
            self.disagreements.pop_front();
        }
        self.disagreements.push_back(Disagreement {
            input: K::input_json(&entry.input),
            live: K::answer_json(&entry.live),
            live_source: source_label(&entry.source),
            other,
        });
    }
}

/// How a disagreement names who gave the live answer.
fn source_label(source: &Source) -> String {
    let short = |version: &str| version.chars().take(12).collect::<String>();
    match source {
        Source::Plugin { version, .. } => format!("plugin {}", short(version)),
        Source::Native => "native".to_string(),
        Source::Fallback {
            version, failure, ..
        } => format!("fallback {}: {failure}", short(version)),
        Source::Quarantined { version, .. } => format!("quarantined {}", short(version)),
    }
}

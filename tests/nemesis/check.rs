//! The checks on the final state: the replicas agree on every key, what
//! they hold was written (and not refused), and every acknowledged write is
//! there or superseded by a newer write that may have applied (acked or
//! outcome unknown). "Newer" is judged by version when both are known, and
//! always by real time: a write that completed before an acknowledged
//! write began cannot supersede it (levee's clock issues versions in order).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

use crate::history::{Outcome, Ver, WriteOp};

/// Writes of a key shown in a failure report, at most (the latest).
const KEY_HISTORY_LINES_MAX: usize = 40;
/// Examples printed per finding category, at most.
const EXAMPLES_MAX: usize = 8;
/// Keys whose history is printed, at most.
const HISTORIES_MAX: usize = 4;

/// The writes, indexed.
pub struct History<'a> {
    pub by_key: BTreeMap<&'a str, Vec<&'a WriteOp>>,
    pub by_sha: HashMap<&'a str, &'a WriteOp>,
}

impl<'a> History<'a> {
    pub fn new(writes: &'a [WriteOp]) -> History<'a> {
        let mut by_key: BTreeMap<&str, Vec<&WriteOp>> = BTreeMap::new();
        let mut by_sha = HashMap::new();
        for write in writes {
            by_key.entry(write.key.as_str()).or_default().push(write);
            if let Some(sha) = &write.sha {
                by_sha.insert(sha.as_str(), write);
            }
        }
        for ops in by_key.values_mut() {
            ops.sort_by_key(|op| op.start_us);
        }
        History { by_key, by_sha }
    }

    pub fn of(&self, key: &str) -> &[&'a WriteOp] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn acked(&self, key: &str) -> impl Iterator<Item = &'a WriteOp> + '_ {
        self.of(key)
            .iter()
            .copied()
            .filter(|w| w.outcome == Outcome::Acked)
    }

    /// DELETEs of `key` that may have applied.
    pub fn deletes(&self, key: &str) -> Vec<&'a WriteOp> {
        self.of(key)
            .iter()
            .copied()
            .filter(|w| w.is_delete() && w.outcome.may_have_applied())
            .collect()
    }

    /// The key's latest writes, one per line.
    pub fn render_key(&self, key: &str) -> String {
        let ops = self.of(key);
        let mut text = format!("history of {key} ({} writes, latest last):\n", ops.len());
        for op in &ops[ops.len().saturating_sub(KEY_HISTORY_LINES_MAX)..] {
            let _ = writeln!(text, "    {op}");
        }
        text
    }
}

/// What the checks found: failures fail the test, notes are printed.
#[derive(Default)]
pub struct Findings {
    pub failures: BTreeMap<&'static str, Vec<(String, String)>>,
    pub notes: BTreeMap<&'static str, Vec<(String, String)>>,
}

impl Findings {
    pub fn fail(&mut self, category: &'static str, key: &str, message: String) {
        self.failures
            .entry(category)
            .or_default()
            .push((key.into(), message));
    }

    pub fn note(&mut self, category: &'static str, key: &str, message: String) {
        self.notes
            .entry(category)
            .or_default()
            .push((key.into(), message));
    }

    pub fn render(&self, history: &History, seed: u64) -> String {
        let mut text = String::new();
        for (title, findings) in [("FAILURES", &self.failures), ("notes", &self.notes)] {
            for (category, items) in findings {
                let _ = writeln!(text, "{title} [seed {seed}] {category}: {}", items.len());
                for (key, message) in items.iter().take(EXAMPLES_MAX) {
                    let _ = writeln!(text, "  - {key}: {message}");
                }
            }
        }
        let keys: BTreeSet<&str> = self
            .failures
            .values()
            .flatten()
            .map(|(key, _)| key.as_str())
            .filter(|key| history.by_key.contains_key(key))
            .collect();
        for key in keys.into_iter().take(HISTORIES_MAX) {
            text.push_str(&history.render_key(key));
        }
        text
    }
}

/// What a replica holds for a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Held {
    Absent,
    Value {
        sha: String,
        version: Option<Ver>,
        raw: String,
    },
    Tombstone {
        version: Option<Ver>,
        raw: String,
    },
}

impl Held {
    fn version(&self) -> Option<Ver> {
        match self {
            Held::Absent => None,
            Held::Value { version, .. } | Held::Tombstone { version, .. } => *version,
        }
    }
}

/// A replica's `/_dump`, key by key. Versions are wire strings (`version`);
/// a dump from before versions (`lsn` numbers) yields no versions.
pub fn holdings(dump: &Value) -> BTreeMap<String, Held> {
    let version = |v: &Value| v.as_str().and_then(Ver::parse);
    let mut held = BTreeMap::new();
    for (key, entry) in dump["keys"].as_object().into_iter().flatten() {
        let sha = entry["sha256"].as_str().unwrap_or_default().to_owned();
        let version = version(&entry["version"]);
        held.insert(
            key.clone(),
            Held::Value {
                sha,
                version,
                raw: entry.to_string(),
            },
        );
    }
    for (key, entry) in dump["tombstones"].as_object().into_iter().flatten() {
        let tombstone = Held::Tombstone {
            version: version(entry),
            raw: entry.to_string(),
        };
        held.insert(key.clone(), tombstone);
    }
    held
}

/// Checks the replicas' final state against the history.
pub fn check_replicas(history: &History, dumps: &[Option<Value>], findings: &mut Findings) {
    let mut replicas = Vec::new();
    for (i, dump) in dumps.iter().enumerate() {
        match dump {
            Some(dump) => replicas.push((i, holdings(dump))),
            None => findings.fail(
                "replica did not answer /_dump",
                &format!("r{i}"),
                String::new(),
            ),
        }
    }
    let mut keys: BTreeSet<String> = history.by_key.keys().map(|k| (*k).to_owned()).collect();
    for (_, held) in &replicas {
        keys.extend(held.keys().cloned());
    }
    for key in &keys {
        // Distinct states of the key, and which replicas hold each.
        let mut states: BTreeMap<Held, Vec<usize>> = BTreeMap::new();
        for (i, held) in &replicas {
            let state = held.get(key).cloned().unwrap_or(Held::Absent);
            states.entry(state).or_default().push(*i);
        }
        if states.len() > 1 {
            let views: Vec<String> = states
                .iter()
                .map(|(s, rs)| format!("r{rs:?}: {s:?}"))
                .collect();
            findings.fail("replicas disagree", key, views.join(" | "));
        }
        for (state, holders) in &states {
            check_state(history, key, state, holders, findings);
        }
    }
}

/// One state of `key`, held by `holders`.
fn check_state(
    history: &History,
    key: &str,
    state: &Held,
    holders: &[usize],
    findings: &mut Findings,
) {
    let on = format!("on r{holders:?}");
    // The writes that may have produced this state.
    let sources: Vec<&WriteOp> = match state {
        Held::Absent => Vec::new(),
        Held::Value { sha, version, .. } => match history.by_sha.get(sha.as_str()) {
            Some(write) if write.key == key => {
                check_source(write, *version, &on, findings);
                vec![*write]
            }
            _ => {
                findings.fail(
                    "value never written",
                    key,
                    format!("{on}: sha256 {sha} ({state:?})"),
                );
                return;
            }
        },
        Held::Tombstone { version, .. } => {
            let deletes = history.deletes(key);
            if deletes.is_empty() {
                findings.fail(
                    "tombstone without an applied DELETE",
                    key,
                    format!("{on}: {state:?}; no DELETE of the key was acked or unknown"),
                );
                return;
            }
            match version.and_then(|v| deletes.iter().find(|d| d.version == Some(v))) {
                Some(delete) => {
                    check_source(delete, *version, &on, findings);
                    vec![*delete]
                }
                None => deletes,
            }
        }
    };
    for acked in history.acked(key) {
        if sources.len() == 1 && std::ptr::eq(sources[0], acked) {
            continue;
        }
        if let Some(problem) = lost(acked, state, &sources) {
            findings.fail(
                "acknowledged write lost",
                key,
                format!("{on}: {problem}; acked: {acked}"),
            );
        }
    }
}

/// The source write of a held value: it may have applied, is not a
/// superseded one, and carries the version levee answered with.
fn check_source(write: &WriteOp, held: Option<Ver>, on: &str, findings: &mut Findings) {
    let key = write.key.as_str();
    if !write.outcome.may_have_applied() {
        findings.fail("refused write present", key, format!("{on}: {write}"));
    }
    if write.outcome == Outcome::Superseded {
        findings.fail(
            "write answered superseded is the final value",
            key,
            format!("{on}: {write}"),
        );
    }
    if let (Some(answered), Some(held)) = (write.version, held)
        && answered != held
    {
        findings.fail(
            "held version differs from the answered one",
            key,
            format!("{on}: held {held}, {write}"),
        );
    }
}

/// Why `acked` is not in the final `state` legitimately, if it is not.
fn lost(acked: &WriteOp, state: &Held, sources: &[&WriteOp]) -> Option<String> {
    if *state == Held::Absent {
        return Some("the key is absent".into());
    }
    let held = state.version();
    if acked.is_delete()
        && matches!(state, Held::Tombstone { .. })
        && (held.is_none() || held == acked.version)
    {
        return None; // the tombstone may be this DELETE's
    }
    if let (Some(held), Some(version)) = (held, acked.version) {
        if held < version {
            return Some(format!(
                "held version {held} is older than the acked write's"
            ));
        }
        if held == version {
            return Some(format!(
                "held version {held} equals the acked write's but the content differs: {state:?}"
            ));
        }
    }
    if !sources.is_empty() && sources.iter().all(|s| s.end_us < acked.start_us) {
        let source = sources.last().expect("not empty");
        return Some(format!(
            "held state's write completed before the acked write began: {source}"
        ));
    }
    None
}

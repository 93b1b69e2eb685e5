//! The public contracts and the check that keeps them compatible (docs/api-versioning.md).
//!
//! Three contracts are committed under `docs/`: the OpenAPI document (`openapi.json`), the
//! GraphQL schema (`schema.graphql`) and a JSON Schema per integration event type
//! (`events/<type>.schema.json`). `cleave contracts write` regenerates them from the code;
//! `cleave contracts check` fails when the committed ones are stale, or when the code breaks a
//! client or consumer of any version committed since the check began; `cleave contracts diff`
//! prints what changed, in words. A breaking change ships as a new version instead: a
//! `/api/v2/...` route beside v1, a `…v2` event type beside v1, a new GraphQL field.

pub mod graphql;
pub mod openapi;
pub mod schema;

use anyhow::{Context as _, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const OPENAPI_FILE: &str = "openapi.json";
pub const GRAPHQL_FILE: &str = "schema.graphql";
pub const EVENTS_DIR: &str = "events";
const EVENT_SUFFIX: &str = ".schema.json";

/// One difference between two versions of the contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Whether an existing client or consumer would break.
    pub breaking: bool,
    /// `openapi`, `graphql` or `events`.
    pub contract: &'static str,
    pub text: String,
}

impl Change {
    pub fn breaking(contract: &'static str, text: impl Into<String>) -> Self {
        Self { breaking: true, contract, text: text.into() }
    }

    pub fn compatible(contract: &'static str, text: impl Into<String>) -> Self {
        Self { breaking: false, contract, text: text.into() }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = if self.breaking { "BREAKING " } else { "compatible" };
        write!(f, "{label}  {:<7}  {}", self.contract, self.text)
    }
}

/// The contracts as text, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contracts {
    pub openapi: String,
    pub graphql: String,
    /// Event type → its JSON Schema.
    pub events: BTreeMap<String, String>,
}

impl Contracts {
    /// What the code declares now.
    pub fn generate() -> Self {
        let events = event_schemas()
            .into_iter()
            .map(|(event_type, schema)| {
                let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
                text.push('\n');
                (event_type.to_owned(), text)
            })
            .collect();
        Self { openapi: crate::openapi::document_json(), graphql: crate::graphql::sdl(), events }
    }

    /// The committed contracts in `dir` (`docs/`).
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let read =
            |name: &str| std::fs::read_to_string(dir.join(name)).with_context(|| format!("cannot read {}", dir.join(name).display()));
        let mut events = BTreeMap::new();
        let events_dir = dir.join(EVENTS_DIR);
        if events_dir.is_dir() {
            for entry in std::fs::read_dir(&events_dir)? {
                let path = entry?.path();
                let Some(event_type) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(EVENT_SUFFIX)) else {
                    continue;
                };
                events.insert(event_type.to_owned(), std::fs::read_to_string(&path)?);
            }
        }
        Ok(Self { openapi: read(OPENAPI_FILE)?, graphql: read(GRAPHQL_FILE)?, events })
    }

    /// The contracts committed at `revision` in the git checkout `repo`, with `docs` the
    /// directory's path inside it.
    pub fn at_revision(repo: &Path, revision: &str, docs: &str) -> anyhow::Result<Self> {
        let show = |path: &str| git(repo, &["show", &format!("{revision}:{docs}/{path}")]);
        let listing = git(repo, &["ls-tree", "--name-only", &format!("{revision}:{docs}/{EVENTS_DIR}")]).unwrap_or_default();
        let mut events = BTreeMap::new();
        for name in listing.lines() {
            if let Some(event_type) = name.strip_suffix(EVENT_SUFFIX) {
                events.insert(event_type.to_owned(), show(&format!("{EVENTS_DIR}/{name}"))?);
            }
        }
        Ok(Self { openapi: show(OPENAPI_FILE)?, graphql: show(GRAPHQL_FILE)?, events })
    }

    /// Writes them into `dir`, removing event schemas of types the code no longer has.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join(OPENAPI_FILE), &self.openapi)?;
        std::fs::write(dir.join(GRAPHQL_FILE), &self.graphql)?;
        let events_dir = dir.join(EVENTS_DIR);
        std::fs::create_dir_all(&events_dir)?;
        for entry in std::fs::read_dir(&events_dir)? {
            let path = entry?.path();
            let stale = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(EVENT_SUFFIX))
                .is_some_and(|t| !self.events.contains_key(t));
            if stale {
                std::fs::remove_file(&path)?;
            }
        }
        for (event_type, schema) in &self.events {
            std::fs::write(events_dir.join(format!("{event_type}{EVENT_SUFFIX}")), schema)?;
        }
        Ok(())
    }
}

pub use crate::modules::event_schemas;

/// Every change from `old` to `new`, breaking ones first.
pub fn compare(old: &Contracts, new: &Contracts, today: &str) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    let parse = |text: &str, what: &str| serde_json::from_str::<Value>(text).with_context(|| format!("{what} is not JSON"));
    let (old_openapi, new_openapi) = (parse(&old.openapi, "the old OpenAPI document")?, parse(&new.openapi, "the new OpenAPI document")?);
    openapi::compare(&old_openapi, &new_openapi, today, &mut changes);
    graphql::compare(&old.graphql, &new.graphql, &mut changes).map_err(anyhow::Error::msg)?;
    for (event_type, old_text) in &old.events {
        match new.events.get(event_type) {
            None => changes.push(Change::breaking("events", format!("{event_type}: no longer published (consumers wait for it)"))),
            Some(new_text) => {
                let (old_schema, new_schema) = (parse(old_text, event_type)?, parse(new_text, event_type)?);
                schema::Comparison::new("events", &old_schema, &new_schema, &mut changes).schema(
                    event_type,
                    &old_schema,
                    &new_schema,
                    schema::Flow::Output,
                );
            }
        }
    }
    for event_type in new.events.keys().filter(|t| !old.events.contains_key(*t)) {
        changes.push(Change::compatible("events", format!("{event_type}: a new event type")));
    }
    changes.sort_by_key(|change| !change.breaking);
    Ok(changes)
}

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The committed contracts differ from the generated ones.
    pub stale: Vec<Change>,
    /// Breaking changes against an earlier committed version: (revision, change).
    pub broken: Vec<(String, Change)>,
    /// Revisions compared.
    pub revisions: usize,
    /// Why history was not compared, if it was not.
    pub no_history: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.stale.is_empty() && self.broken.is_empty()
    }
}

/// Compares the generated contracts with those committed in `docs` (freshness), and with every
/// version of them committed since `docs/openapi.json` was first committed (compatibility).
pub fn check(docs: &Path, today: &str) -> anyhow::Result<Report> {
    let generated = Contracts::generate();
    let committed = Contracts::read(docs)?;
    let mut report = Report::default();
    if committed != generated {
        report.stale = compare(&committed, &generated, today)?;
        if report.stale.is_empty() {
            report.stale.push(Change::compatible("docs", "text changed (descriptions, examples or order)"));
        }
    }
    match history(docs) {
        Ok((repo, prefix, revisions)) => {
            for revision in &revisions {
                let old = Contracts::at_revision(&repo, revision, &prefix)?;
                for change in compare(&old, &generated, today)?.into_iter().filter(|c| c.breaking) {
                    report.broken.push((revision[..revision.len().min(12)].to_owned(), change));
                }
            }
            report.revisions = revisions.len();
        }
        Err(reason) => report.no_history = Some(format!("{reason:#}")),
    }
    Ok(report)
}

/// The git checkout holding `docs`, the docs directory's path in it, and the revisions that
/// changed the contracts since `openapi.json` was first committed, newest first.
fn history(docs: &Path) -> anyhow::Result<(PathBuf, String, Vec<String>)> {
    let docs = docs.canonicalize().with_context(|| format!("cannot find {}", docs.display()))?;
    let repo = PathBuf::from(git(&docs, &["rev-parse", "--show-toplevel"])?.trim());
    let prefix = docs.strip_prefix(&repo).context("the docs are outside the checkout")?.to_string_lossy().replace('\\', "/");
    let openapi = format!("{prefix}/{OPENAPI_FILE}");
    let first = git(&repo, &["log", "--diff-filter=A", "--format=%H", "--", &openapi])?;
    let Some(first) = first.lines().last() else { bail!("{openapi} has not been committed yet") };
    let range = format!("{first}^..HEAD");
    let range = if git(&repo, &["rev-parse", "--verify", "--quiet", &format!("{first}^")]).is_ok() { range } else { "HEAD".to_owned() };
    let paths = [openapi, format!("{prefix}/{GRAPHQL_FILE}"), format!("{prefix}/{EVENTS_DIR}")];
    let mut args = vec!["log", "--format=%H", &range, "--"];
    args.extend(paths.iter().map(String::as_str));
    let revisions = git(&repo, &args)?.lines().map(str::to_owned).collect();
    Ok((repo, prefix, revisions))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().context("cannot run git")?;
    if !output.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Today as `YYYY-MM-DD` (UTC), for sunsets.
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
    }

    /// The contract check itself (CI runs it with the other tests): the committed contracts are
    /// what the code generates, and nothing breaks a version committed since the check began.
    #[test]
    fn the_committed_contracts_are_current_and_compatible_with_every_committed_version() {
        let report = check(&docs(), &today()).unwrap();
        let stale: Vec<String> = report.stale.iter().map(ToString::to_string).collect();
        assert!(stale.is_empty(), "the committed contracts are stale: run `cargo run -- contracts write`\n{}", stale.join("\n"));
        let broken: Vec<String> = report.broken.iter().map(|(rev, change)| format!("against {rev}: {change}")).collect();
        assert!(broken.is_empty(), "breaking changes (ship them as a new version instead):\n{}", broken.join("\n"));
        if let Some(reason) = &report.no_history {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "under CI the history must be compared: {reason}");
            eprintln!("the contracts were not compared with earlier versions: {reason}");
        }
    }

    #[test]
    fn every_event_schema_describes_what_its_event_serializes_to() {
        let samples = crate::modules::event_samples();
        let schemas: BTreeMap<&str, Value> = event_schemas().into_iter().collect();
        let sampled: std::collections::BTreeSet<&str> = samples.iter().map(|(t, _)| *t).collect();
        assert_eq!(sampled, schemas.keys().copied().collect(), "every event type has a sample here");
        for (event_type, value) in &samples {
            let schema = &schemas[event_type];
            schema::conforms(schema, schema, value, event_type).unwrap_or_else(|error| panic!("{error}\n{value}\n{schema:#}"));
        }
        // And the check is not vacuous: a field the schema does not know is caught.
        let mut extra = samples[0].1.clone();
        extra["unknown"] = Value::Bool(true);
        assert!(schema::conforms(&schemas[samples[0].0], &schemas[samples[0].0], &extra, "e").is_err());
    }

    #[test]
    fn written_contracts_read_back_the_same_and_stale_event_schemas_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(EVENTS_DIR)).unwrap();
        std::fs::write(dir.path().join(EVENTS_DIR).join(format!("gone.v1{EVENT_SUFFIX}")), "{}").unwrap();
        let generated = Contracts::generate();
        generated.write(dir.path()).unwrap();
        assert_eq!(Contracts::read(dir.path()).unwrap(), generated);
        assert!(compare(&generated, &generated, "2026-12-02").unwrap().is_empty());
    }

    #[test]
    fn a_removed_event_type_or_field_breaks_consumers() {
        let old = Contracts::generate();
        let mut new = old.clone();
        new.events.remove("users.user_deactivated.v1");
        let mut schema: Value = serde_json::from_str(&new.events["users.user_registered.v1"]).unwrap();
        schema["properties"].as_object_mut().unwrap().remove("email");
        new.events.insert("users.user_registered.v1".into(), schema.to_string());
        let breaking: Vec<String> = compare(&old, &new, "2026-12-02").unwrap().into_iter().filter(|c| c.breaking).map(|c| c.text).collect();
        assert_eq!(
            breaking,
            vec!["users.user_deactivated.v1: no longer published (consumers wait for it)", "users.user_registered.v1.email: removed"]
        );
    }
}

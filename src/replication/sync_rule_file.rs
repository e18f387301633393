//! Where a node's synchronous-commit rule came from, and the file that
//! keeps a rule set at run time across restarts.
//!
//! The rule (`synchronous_commit`, `synchronous_standby_names`,
//! `most_available_sync`, `synchronous_commit_timeout_ms`) is a cluster
//! setting: the primary applies it, ships it to its standbys (frame
//! `SyncRule`), and a standby promoted by a switchover or a failover keeps
//! applying it. So a rule that a user set at run time on the old primary
//! still holds after any role change, and a commit acknowledged as
//! synchronous after a failover is as safe as one before it (Patroni keeps
//! its `synchronous_mode` in the DCS for the same reason; PostgreSQL alone
//! would fall back to whatever the promoted node's own file says).
//!
//! Persistence: `DATA_DIR/sync_rule.toml` holds the rule a node last got
//! at run time: from `CONFIG SET` on this node as primary, or from its
//! primary's stream. At start it overrides the config file's four keys,
//! as PostgreSQL's `postgresql.auto.conf` (written by `ALTER SYSTEM`)
//! overrides `postgresql.conf`; the start-up log says which applies and
//! warns when the config file says otherwise. Written durably (temporary
//! file, fsync, rename, fsync of the directory), so a crash leaves the old
//! or the new rule, never a torn one. A file that does not parse stops the
//! node with its path: falling back to a looser rule could acknowledge
//! commits the user asked to be synchronous.
//!
//! Who calls it: `node::run` at start ([`load`]), and `SyncRep::set_rule`
//! for every run-time change ([`store`]). It runs on the thread making the
//! change (a session core for `CONFIG SET`, the WAL receiver for a carried
//! rule): two small fsyncs, rare.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sync_commit::{StandbyNames, SyncLevel, SyncRule};

pub const FILE: &str = "sync_rule.toml";

/// Which kind of source set a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginKind {
    /// The config file (or flags) of `RuleOrigin::node` at its start.
    ConfigFile,
    /// `CONFIG SET` on `RuleOrigin::node` at run time.
    ConfigSet,
}

/// Where a rule came from: which node, how, when. Travels with the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOrigin {
    pub kind: OriginKind,
    /// The name of the node where it was set.
    pub node: String,
    /// Wall-clock time of the setting, ms since the Unix epoch (0 for a
    /// config file: the node's start).
    pub at_ms: u64,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            OriginKind::ConfigFile => write!(f, "config_file node={}", self.node),
            OriginKind::ConfigSet => {
                write!(f, "config_set node={} at_ms={}", self.node, self.at_ms)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({reason}); fix or remove it (the config file's rule then applies)"
    )]
    Damaged { path: PathBuf, reason: String },
}

/// The file's keys: the settings' own names, plus the origin.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    synchronous_commit: String,
    synchronous_standby_names: String,
    most_available_sync: bool,
    synchronous_commit_timeout_ms: u64,
    origin: OriginKind,
    origin_node: String,
    origin_at_ms: u64,
}

const HEADER: &str = "\
# Written by tandem: the synchronous-commit rule this node applies, set at
# run time (CONFIG SET on this node or on its primary, which ships it to its
# standbys). It overrides the config file's four keys; change it with
# CONFIG SET on the primary. Removing this file (node stopped) brings back
# the config file's rule.
";

/// Writes `rule` durably as `dir/sync_rule.toml`.
pub fn store(dir: &Path, rule: &SyncRule, origin: &RuleOrigin) -> Result<(), RuleFileError> {
    let path = dir.join(FILE);
    let body = RuleFile {
        synchronous_commit: rule.level.as_str().to_owned(),
        synchronous_standby_names: rule.names.to_string(),
        most_available_sync: rule.most_available_sync,
        synchronous_commit_timeout_ms: rule.timeout_ms,
        origin: origin.kind,
        origin_node: origin.node.clone(),
        origin_at_ms: origin.at_ms,
    };
    let text = match toml::to_string(&body) {
        Ok(t) => format!("{HEADER}{t}"),
        Err(e) => {
            return Err(RuleFileError::Write {
                path,
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    let err = |source| RuleFileError::Write {
        path: path.clone(),
        source,
    };
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

/// The rule kept in `dir/sync_rule.toml`, if there is one.
pub fn load(dir: &Path) -> Result<Option<(SyncRule, RuleOrigin)>, RuleFileError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RuleFileError::Read { path, source }),
    };
    let damaged = |reason: String| RuleFileError::Damaged {
        path: path.clone(),
        reason,
    };
    let f: RuleFile = toml::from_str(&text).map_err(|e| damaged(e.message().to_owned()))?;
    let rule = SyncRule {
        level: SyncLevel::parse(&f.synchronous_commit).map_err(|e| damaged(e.to_string()))?,
        names: StandbyNames::parse(&f.synchronous_standby_names)
            .map_err(|e| damaged(format!("synchronous_standby_names: {e}")))?,
        most_available_sync: f.most_available_sync,
        timeout_ms: f.synchronous_commit_timeout_ms,
    };
    let origin = RuleOrigin {
        kind: f.origin,
        node: f.origin_node,
        at_ms: f.origin_at_ms,
    };
    Ok(Some((rule, origin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_rule_loads_back_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let rule = SyncRule {
            level: SyncLevel::RemoteApply,
            names: StandbyNames::parse("ANY 2 (a, \"b c\", *)").unwrap(),
            most_available_sync: true,
            timeout_ms: 250,
        };
        let origin = RuleOrigin {
            kind: OriginKind::ConfigSet,
            node: "p".into(),
            at_ms: 17,
        };
        store(dir.path(), &rule, &origin).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some((rule, origin)));
        std::fs::write(
            dir.path().join(FILE),
            "synchronous_commit = \"sometimes\"\n",
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}

//! Commit waits for standbys: the node's synchronous-commit rule, per
//! synchronous level the highest LSN the rule's standbys have confirmed,
//! and the sessions waiting for it.
//!
//! Owns the rule ([`SyncRule`]: level, names, `most_available_sync`,
//! timeout) and where it came from ([`RuleOrigin`]); every change goes
//! through [`SyncRep::set_rule`] (`CONFIG SET` on a primary, a rule carried
//! from the primary on a standby), which stores it durably
//! (`sync_rule_file`), re-evaluates every level, and wakes every waiting
//! commit so that it re-evaluates itself under the new rule: a commit
//! completes only when the rule in force at that moment holds for it
//! (PostgreSQL applies a reload of `synchronous_standby_names` the same
//! way). The rule's generation ([`SyncRep::rule_generation`]) tells the WAL
//! senders to ship it to their standbys (see `sync_rule_file` for why it
//! travels).
//!
//! Horizons: the WAL senders call [`SyncRep::recompute`] after every
//! standby status and every connect or disconnect; it evaluates the rule
//! with [`super::sync_commit::commit_horizon`] per level over the standby
//! table and publishes, per level, the highest LSN every commit up to
//! which has what the rule asks for: `u64::MAX` when the rule asks for no
//! standby (or `most_available_sync` lets commits through while standbys
//! are missing), 0 while too few are connected. A horizon is the rule
//! applied to the standbys' positions *now*, so it can fall: a rule that
//! is tightened, a sync standby that leaves. (Issue 17 was a horizon kept
//! as a running maximum: after `""` had set it to `u64::MAX`, a rule set
//! at run time never lowered it again and commits were acknowledged with
//! no standby.) Recomputations are serialised under the rule lock and each
//! reads the standby table inside it, so a slower, older evaluation never
//! overwrites a newer one.
//!
//! Receipts: a standby answers each `WalData` frame at once only when the
//! frame asks for it (`receipt`), which the senders do while a commit at
//! `remote_receive` or `remote_write` is under way ([`SyncRep::want_receipts`],
//! taken by the session before it executes, so before its WAL can be
//! shipped). Otherwise the standby's status after its flush answers the
//! frame (it carries received and written too). That saves a status frame
//! per batch on both nodes when no commit needs receipts. Measured side by
//! side (2026-11-27, 64 clients, `on`, three pairs each): TPC-B
//! 49.8-51.2k against 46.5-50.0k tps, single-UPDATE 73.9-80.8k against
//! 74.1-77.8k: 2-4 %, inside this machine's noise. The primary's
//! `ack_received` histogram then times only frames that asked.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use super::status::{StandbyEntry, Standbys};
use super::sync_commit::{
    commit_horizon, Horizon, StandbyNames, StandbyPosition, SyncLevel, SyncRule,
};
use super::sync_rule_file::{self, RuleFileError, RuleOrigin};
use crate::ids::Lsn;
use crate::kick::{Changed, Kick};
use crate::wal::waiters::Waiters;

/// The four levels that wait for standbys, in index order.
const REMOTE_LEVELS: [SyncLevel; 4] = [
    SyncLevel::RemoteReceive,
    SyncLevel::RemoteWrite,
    SyncLevel::On,
    SyncLevel::RemoteApply,
];

fn level_index(level: SyncLevel) -> Option<usize> {
    REMOTE_LEVELS.iter().position(|&l| l == level)
}

fn level_code(level: SyncLevel) -> u8 {
    SyncLevel::ALL.iter().position(|&l| l == level).unwrap_or(1) as u8
}

/// The rule and what belongs to it, under one lock.
struct RuleState {
    rule: SyncRule,
    origin: RuleOrigin,
    /// Where run-time changes are stored; `None` in unit tests.
    data_dir: Option<PathBuf>,
}

pub struct SyncRep {
    /// Serialises rule changes (held across the file write, so the file
    /// and the rule in force never disagree); `state` is held only briefly.
    change: Mutex<()>,
    state: Mutex<RuleState>,
    /// Copies of the rule's fields for the commit path (no lock there).
    level: AtomicU8,
    timeout_ms: AtomicU64,
    most_available_sync: AtomicBool,
    /// Per remote level: every commit ending at or before this LSN has
    /// what the rule asks for (see the module doc).
    horizons: [AtomicU64; 4],
    /// Per remote level: too few of the rule's standbys are connected.
    missing: [AtomicBool; 4],
    /// Every level is satisfied through here: set by a demotion (the new
    /// primary's timeline holds our WAL up to it). Only grows.
    confirmed_through: AtomicU64,
    /// Moves on with every rule change.
    rule_changes: Kick,
    waiters: Waiters,
    /// Live [`ReceiptGuard`]s: commits that wait for receipt or write.
    receipts_wanted: AtomicUsize,
}

/// While alive, WAL senders ask standbys for an immediate receipt of every
/// frame (see the module doc).
pub struct ReceiptGuard(Arc<SyncRep>);

impl Drop for ReceiptGuard {
    fn drop(&mut self) {
        let before = self.0.receipts_wanted.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "receipt guard count underflow");
    }
}

/// How a [`SyncWait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    /// The rule in force holds for the commit.
    Confirmed,
    /// The rule changed while the commit waited: the caller re-reads its
    /// level and timeout and waits again under the new rule.
    RuleChanged,
}

impl SyncRep {
    /// A rule applied from the start; `data_dir` is where run-time changes
    /// are stored (`None`: nowhere, for tests).
    pub fn new(rule: SyncRule, origin: RuleOrigin, data_dir: Option<PathBuf>) -> SyncRep {
        let rep = SyncRep {
            change: Mutex::new(()),
            level: AtomicU8::new(level_code(rule.level)),
            timeout_ms: AtomicU64::new(rule.timeout_ms),
            most_available_sync: AtomicBool::new(rule.most_available_sync),
            state: Mutex::new(RuleState {
                rule,
                origin,
                data_dir,
            }),
            horizons: Default::default(),
            missing: Default::default(),
            confirmed_through: AtomicU64::new(0),
            rule_changes: Kick::default(),
            waiters: Waiters::default(),
            receipts_wanted: AtomicUsize::new(0),
        };
        // No standby yet: with no names configured the remote levels act as
        // local; with names, they are missing until standbys report.
        let state = rep.state.lock();
        rep.recompute_locked(&state, &[]);
        drop(state);
        rep
    }

    pub fn rule(&self) -> SyncRule {
        self.state.lock().rule.clone()
    }

    pub fn origin(&self) -> RuleOrigin {
        self.state.lock().origin.clone()
    }

    pub fn names(&self) -> StandbyNames {
        self.state.lock().rule.names.clone()
    }

    /// The node's `synchronous_commit` (a connection may override it).
    pub fn level(&self) -> SyncLevel {
        let i = self.level.load(Ordering::Acquire) as usize;
        SyncLevel::ALL.get(i).copied().unwrap_or(SyncLevel::Local)
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.load(Ordering::Acquire)
    }

    pub fn most_available_sync(&self) -> bool {
        self.most_available_sync.load(Ordering::Acquire)
    }

    /// Moves on with every rule change (WAL senders ship the rule then).
    pub fn rule_generation(&self) -> u64 {
        self.rule_changes.generation()
    }

    /// Ready once the rule changed after generation `since`.
    pub fn rule_changed(&self, since: u64) -> Changed<'_> {
        self.rule_changes.changed(since)
    }

    /// Makes `rule` the node's rule from the next commit on, and
    /// re-evaluates the commits waiting now under it. Stored durably
    /// first: on an error nothing changed. Returns false when `rule` and
    /// `origin` were already in force (nothing stored or woken).
    pub fn set_rule(
        &self,
        rule: SyncRule,
        origin: RuleOrigin,
        standbys: &Standbys,
    ) -> Result<bool, RuleFileError> {
        let _change = self.change.lock();
        let data_dir = {
            let state = self.state.lock();
            if state.rule == rule && state.origin == origin {
                return Ok(false);
            }
            state.data_dir.clone()
        };
        if let Some(dir) = &data_dir {
            sync_rule_file::store(dir, &rule, &origin)?;
        }
        tracing::info!(
            synchronous_commit = %rule.level, synchronous_standby_names = %rule.names,
            most_available_sync = rule.most_available_sync, synchronous_commit_timeout_ms = rule.timeout_ms,
            %origin, "synchronous-commit rule changed"
        );
        let mut state = self.state.lock();
        self.level.store(level_code(rule.level), Ordering::Release);
        self.timeout_ms.store(rule.timeout_ms, Ordering::Release);
        self.most_available_sync
            .store(rule.most_available_sync, Ordering::Release);
        state.rule = rule;
        state.origin = origin;
        self.recompute_locked(&state, &standbys.snapshot());
        drop(state);
        // Every waiting commit re-evaluates itself (`WaitEnd::RuleChanged`).
        self.rule_changes.kick();
        self.waiters.wake_all();
        Ok(true)
    }

    /// Whether commits at `level` currently proceed without the standbys
    /// they should wait for (`most_available_sync` with standbys missing).
    pub fn degraded(&self, level: SyncLevel) -> bool {
        level_index(level).is_some_and(|i| self.missing[i].load(Ordering::Acquire))
            && self.most_available_sync()
    }

    /// The horizon of `level` (`None` for the local levels).
    pub fn horizon(&self, level: SyncLevel) -> Option<Lsn> {
        level_index(level).map(|i| Lsn(self.horizons[i].load(Ordering::Acquire)))
    }

    /// Re-evaluates every level from the standby table and wakes the
    /// sessions whose commits are now confirmed.
    pub fn recompute(&self, standbys: &Standbys) {
        let state = self.state.lock();
        self.recompute_locked(&state, &standbys.snapshot());
    }

    fn recompute_locked(&self, state: &RuleState, standbys: &[StandbyEntry]) {
        let positions: Vec<StandbyPosition> = standbys.iter().map(StandbyEntry::position).collect();
        let rule = &state.rule;
        let mut wake_to: Option<Lsn> = None;
        for (i, &level) in REMOTE_LEVELS.iter().enumerate() {
            let (horizon, missing) = match commit_horizon(&rule.names, level, &positions) {
                Horizon::Lsn(h) => (h, false),
                // No standby names: remote levels act as local.
                Horizon::LocalOnly => (Lsn(u64::MAX), false),
                Horizon::NotEnoughStandbys { .. } if rule.most_available_sync => {
                    (Lsn(u64::MAX), true)
                }
                Horizon::NotEnoughStandbys { .. } => (Lsn::ZERO, true),
            };
            let old = Lsn(self.horizons[i].swap(horizon.0, Ordering::AcqRel));
            if horizon > old {
                wake_to = Some(wake_to.map_or(horizon, |w| w.max(horizon)));
            }
            let was = self.missing[i].swap(missing, Ordering::AcqRel);
            if was != missing {
                if missing {
                    tracing::warn!(level = level.as_str(), "synchronous standbys missing");
                } else {
                    tracing::info!(level = level.as_str(), "synchronous standbys back");
                }
            }
        }
        if let Some(lsn) = wake_to {
            self.waiters.wake_through(lsn);
        }
    }

    /// Every level is satisfied through `lsn`: a demoted primary learned
    /// that the new primary's timeline holds all of its WAL up to `lsn`,
    /// so commits waiting on it are durable in the cluster (their waits
    /// end with success instead of hanging on standbys that left).
    pub fn confirm_through(&self, lsn: Lsn) {
        self.confirmed_through.fetch_max(lsn.0, Ordering::AcqRel);
        self.waiters.wake_through(lsn);
    }

    fn covered(&self, level: SyncLevel, lsn: Lsn) -> bool {
        match level_index(level) {
            None => true,
            Some(i) => {
                self.horizons[i].load(Ordering::Acquire) >= lsn.0
                    || self.confirmed_through.load(Ordering::Acquire) >= lsn.0
            }
        }
    }

    /// Frames shipped from now until the guard drops ask for a receipt.
    /// Take it before the commit's WAL is appended.
    pub fn want_receipts(self: &Arc<Self>) -> ReceiptGuard {
        self.receipts_wanted.fetch_add(1, Ordering::AcqRel);
        ReceiptGuard(self.clone())
    }

    /// Whether the next frame should ask for a receipt.
    pub fn receipts_wanted(&self) -> bool {
        self.receipts_wanted.load(Ordering::Acquire) > 0
    }

    /// Resolves when a commit ending at `lsn` satisfies `level` under the
    /// rule in force, or when the rule changes (see [`WaitEnd`]).
    pub fn wait(self: &Arc<Self>, level: SyncLevel, lsn: Lsn) -> SyncWait {
        SyncWait {
            generation: self.rule_generation(),
            rep: self.clone(),
            level,
            lsn,
            id: None,
        }
    }
}

/// Future of [`SyncRep::wait`].
pub struct SyncWait {
    rep: Arc<SyncRep>,
    level: SyncLevel,
    lsn: Lsn,
    /// The rule generation the wait began under.
    generation: u64,
    id: Option<u64>,
}

impl SyncWait {
    fn end(&self) -> Option<WaitEnd> {
        // The generation first: a wait begun under an older rule must not
        // end by that rule (a tightened level would be passed over).
        if self.rep.rule_generation() != self.generation {
            Some(WaitEnd::RuleChanged)
        } else if self.rep.covered(self.level, self.lsn) {
            Some(WaitEnd::Confirmed)
        } else {
            None
        }
    }
}

impl Future for SyncWait {
    type Output = WaitEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitEnd> {
        let this = self.get_mut();
        if let Some(end) = this.end() {
            return Poll::Ready(end);
        }
        let mut list = this.rep.waiters.lock();
        // A rule change kicks its generation before it wakes all waiters
        // under this lock, and a recompute publishes its horizon before it
        // wakes: checking again under the lock loses no wake-up.
        if let Some(end) = this.end() {
            if let Some(id) = this.id.take() {
                list.deregister(this.lsn, id);
            }
            return Poll::Ready(end);
        }
        list.register(this.lsn, &mut this.id, cx.waker());
        Poll::Pending
    }
}

impl Drop for SyncWait {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.rep.waiters.lock().deregister(self.lsn, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::status::LinkState;
    use crate::replication::sync_commit::NamePattern;
    use crate::replication::sync_rule_file::OriginKind;
    use rand::{Rng, SeedableRng};
    use std::task::{Wake, Waker};
    use std::time::Instant;

    fn origin() -> RuleOrigin {
        RuleOrigin {
            kind: OriginKind::ConfigSet,
            node: "p".into(),
            at_ms: 0,
        }
    }

    fn rule(level: SyncLevel, names: &str) -> SyncRule {
        SyncRule {
            level,
            names: StandbyNames::parse(names).unwrap(),
            ..SyncRule::default()
        }
    }

    fn rep(r: SyncRule) -> Arc<SyncRep> {
        Arc::new(SyncRep::new(r, origin(), None))
    }

    fn entry(id: u64, name: &str, lsn: u64) -> StandbyEntry {
        let now = Instant::now();
        StandbyEntry {
            id,
            name: name.into(),
            addr: String::new(),
            state: LinkState::Streaming,
            sent: Lsn(lsn),
            received: Lsn(lsn),
            written: Lsn(lsn),
            flushed: Lsn(lsn),
            applied: Lsn(lsn),
            last_reply: now,
            connected_at: now,
            estimated_rto_ms: 0,
        }
    }

    /// Polls `f` once with a waker that records whether it was woken.
    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll_once(w: &mut SyncWait, flag: &Arc<Flag>) -> Poll<WaitEnd> {
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        Pin::new(w).poll(&mut cx)
    }

    #[test]
    fn receipts_are_wanted_while_a_guard_lives() {
        let rep = rep(SyncRule::default());
        assert!(!rep.receipts_wanted());
        let a = rep.want_receipts();
        let b = rep.want_receipts();
        assert!(rep.receipts_wanted());
        drop(a);
        assert!(rep.receipts_wanted());
        drop(b);
        assert!(!rep.receipts_wanted());
        assert!(SyncLevel::RemoteReceive.needs_receipts());
        assert!(SyncLevel::RemoteWrite.needs_receipts());
        assert!(!SyncLevel::On.needs_receipts());
        assert!(!SyncLevel::RemoteApply.needs_receipts());
    }

    #[test]
    fn without_names_remote_levels_do_not_wait() {
        let rep = rep(SyncRule::default());
        assert!(rep.covered(SyncLevel::On, Lsn(1 << 40)));
        assert!(rep.covered(SyncLevel::RemoteApply, Lsn(1 << 40)));
    }

    #[test]
    fn with_names_commits_wait_until_standbys_confirm_or_degrade() {
        let rep = rep(rule(SyncLevel::On, "FIRST 1 (s1)"));
        assert!(!rep.covered(SyncLevel::On, Lsn(100)));
        let standbys = Standbys::default();
        let mut loose = rep.rule();
        loose.most_available_sync = true;
        rep.set_rule(loose, origin(), &standbys).unwrap();
        assert!(
            rep.covered(SyncLevel::On, Lsn(100)),
            "most_available_sync lets commits through"
        );
        assert!(rep.degraded(SyncLevel::On));
    }

    /// Issue 17: names set at run time on a node started without any
    /// (or cleared and set again) made every commit pass with no standby.
    #[test]
    fn names_set_at_run_time_after_none_make_commits_wait() {
        let rep = rep(rule(SyncLevel::On, ""));
        let standbys = Standbys::default();
        standbys.add(entry(1, "n2", 595));
        rep.recompute(&standbys);
        assert!(
            rep.covered(SyncLevel::On, Lsn(1240)),
            "no names: local only"
        );
        for _ in 0..2 {
            rep.set_rule(rule(SyncLevel::On, "FIRST 1 (n2)"), origin(), &standbys)
                .unwrap();
            assert!(rep.covered(SyncLevel::On, Lsn(595)));
            assert!(
                !rep.covered(SyncLevel::On, Lsn(1240)),
                "a commit n2 does not hold passed"
            );
            // Cleared, then set again: the same.
            rep.set_rule(rule(SyncLevel::On, ""), origin(), &standbys)
                .unwrap();
            assert!(rep.covered(SyncLevel::On, Lsn(1240)));
        }
    }

    #[test]
    fn a_waiting_commit_ends_with_rule_changed_and_a_repeated_rule_changes_nothing() {
        let rep = rep(rule(SyncLevel::On, "FIRST 1 (a)"));
        let standbys = Standbys::default();
        let flag = Arc::new(Flag(Default::default()));
        let mut w = rep.wait(SyncLevel::On, Lsn(10));
        assert_eq!(poll_once(&mut w, &flag), Poll::Pending);
        let same = rep.rule();
        assert!(!rep.set_rule(same, origin(), &standbys).unwrap());
        assert!(!flag.0.load(Ordering::SeqCst));
        rep.set_rule(rule(SyncLevel::On, "FIRST 1 (b)"), origin(), &standbys)
            .unwrap();
        assert!(flag.0.load(Ordering::SeqCst), "a rule change wakes waiters");
        assert_eq!(poll_once(&mut w, &flag), Poll::Ready(WaitEnd::RuleChanged));
    }

    /// Independent statement of the rule, per commit: does `rule` hold for
    /// a commit ending at `lsn` at `level`, given the standbys now?
    fn model_holds(rule: &SyncRule, level: SyncLevel, standbys: &[StandbyEntry], lsn: Lsn) -> bool {
        if !level.waits_for_standbys() {
            return true;
        }
        let (num, names, quorum) = match &rule.names {
            StandbyNames::Async => return true,
            StandbyNames::First { num, names } => (*num, names, false),
            StandbyNames::Any { num, names } => (*num, names, true),
        };
        let priority = |name: &str| {
            names.iter().position(|p| match p {
                NamePattern::Wildcard => true,
                NamePattern::Name(n) => n.eq_ignore_ascii_case(name),
            })
        };
        let mut voters: Vec<(usize, usize, Lsn)> = standbys
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.state, LinkState::Streaming | LinkState::CatchingUp))
            .filter_map(|(i, s)| {
                let pos = level.position(&s.position())?;
                priority(&s.name).map(|p| (p, i, pos))
            })
            .collect();
        if voters.len() < num {
            return rule.most_available_sync;
        }
        if quorum {
            voters.iter().filter(|v| v.2 >= lsn).count() >= num
        } else {
            voters.sort();
            voters.iter().take(num).all(|v| v.2 >= lsn)
        }
    }

    struct Commit {
        /// `None`: the node default (re-read after a rule change).
        fixed: Option<SyncLevel>,
        lsn: Lsn,
        wait: SyncWait,
        flag: Arc<Flag>,
    }

    const NAMES: [&str; 3] = ["a", "b", "c"];

    fn random_rule(rng: &mut rand::rngs::StdRng) -> SyncRule {
        let names = [
            "",
            "*",
            "a",
            "FIRST 1 (a, b)",
            "FIRST 2 (a, b, c)",
            "ANY 1 (*)",
            "ANY 2 (a, b, c)",
            "ANY 1 (c)",
            "FIRST 1 (*)",
            "b, c",
        ];
        SyncRule {
            level: SyncLevel::ALL[rng.random_range(0..SyncLevel::ALL.len())],
            names: StandbyNames::parse(names[rng.random_range(0..names.len())]).unwrap(),
            most_available_sync: rng.random_bool(0.2),
            timeout_ms: 0,
        }
    }

    /// Seeded simulation against [`model_holds`]: rule changes, standbys
    /// connecting, reporting and leaving, commits at every level (fixed,
    /// as `CLIENT SYNC`, or the node default). A commit may end only when
    /// the rule in force holds for it at that moment; and a commit the rule
    /// holds for is woken (no lost wake-up). Re-run a failing case with
    /// `TANDEM_SEED=<seed>`.
    #[test]
    fn seeded_rule_changes_never_release_a_commit_the_rule_does_not_hold_for() {
        let seeds: Vec<u64> = match std::env::var("TANDEM_SEED") {
            Ok(s) => vec![s.parse().unwrap()],
            Err(_) => (0..200).collect(),
        };
        for seed in seeds {
            simulate(seed);
        }
    }

    fn simulate(seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let rep = rep(random_rule(&mut rng));
        let standbys = Standbys::default();
        let mut end = 0u64;
        let mut next_id = 1u64;
        let mut commits: Vec<Commit> = Vec::new();
        let mut acked = 0usize;
        for step in 0..300 {
            let ctx = format!("seed {seed} step {step}");
            match rng.random_range(0..10) {
                0 => {
                    rep.set_rule(random_rule(&mut rng), origin(), &standbys)
                        .unwrap();
                }
                1 => {
                    // (Re)connect: the sender's entry starts at the standby's
                    // durable end, applied unknown until its first status.
                    let name = NAMES[rng.random_range(0..NAMES.len())];
                    let start = rng.random_range(0..=end);
                    let mut e = entry(next_id, name, start);
                    e.applied = Lsn::ZERO;
                    next_id += 1;
                    standbys.remove_name(name);
                    standbys.add(e);
                }
                2 => {
                    let snap = standbys.snapshot();
                    if let Some(e) = snap.get(rng.random_range(0..snap.len().max(1))) {
                        standbys.update(e.id, |e| e.state = LinkState::Disconnected);
                    }
                }
                3..=5 => {
                    let snap = standbys.snapshot();
                    if let Some(e) = snap.get(rng.random_range(0..snap.len().max(1))) {
                        let received = rng.random_range(e.received.0..=end.max(e.received.0));
                        let written = rng.random_range(e.written.0..=received);
                        let flushed = rng.random_range(e.flushed.0..=written);
                        let applied = rng.random_range(e.applied.0..=flushed);
                        standbys.update(e.id, |e| {
                            e.received = Lsn(received);
                            e.written = Lsn(written);
                            e.flushed = Lsn(flushed);
                            e.applied = Lsn(applied);
                        });
                    }
                }
                _ => {
                    end += rng.random_range(1..200);
                    let fixed = rng
                        .random_bool(0.4)
                        .then(|| SyncLevel::ALL[rng.random_range(0..SyncLevel::ALL.len())]);
                    let level = fixed.unwrap_or_else(|| rep.level());
                    commits.push(Commit {
                        fixed,
                        lsn: Lsn(end),
                        wait: rep.wait(level, Lsn(end)),
                        flag: Arc::new(Flag(std::sync::atomic::AtomicBool::new(true))),
                    });
                }
            }
            rep.recompute(&standbys);
            let rule = rep.rule();
            let snap = standbys.snapshot();
            let mut still = Vec::new();
            for mut c in commits.drain(..) {
                let level = c.fixed.unwrap_or_else(|| rep.level());
                if !c.flag.0.swap(false, Ordering::SeqCst) {
                    assert!(
                        !model_holds(&rule, level, &snap, c.lsn),
                        "{ctx}: commit at {} ({level}) holds under {rule:?} but was not woken",
                        c.lsn
                    );
                    still.push(c);
                    continue;
                }
                loop {
                    match poll_once(&mut c.wait, &c.flag) {
                        Poll::Ready(WaitEnd::Confirmed) => {
                            assert!(
                                model_holds(&rule, level, &snap, c.lsn),
                                "{ctx}: commit at {} ({level}) released under {rule:?} with {snap:?}",
                                c.lsn
                            );
                            acked += 1;
                            break;
                        }
                        Poll::Ready(WaitEnd::RuleChanged) => {
                            // What the session does: wait again under the
                            // level in force now.
                            c.wait = rep.wait(level, c.lsn);
                        }
                        Poll::Pending => {
                            assert!(
                                !model_holds(&rule, level, &snap, c.lsn),
                                "{ctx}: commit at {} ({level}) pending although {rule:?} holds",
                                c.lsn
                            );
                            still.push(c);
                            break;
                        }
                    }
                }
            }
            commits = still;
        }
        assert!(acked > 0, "seed {seed}: no commit was ever acknowledged");
    }
}

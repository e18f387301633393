//! Synchronous-commit rules as pure functions: which standbys a commit
//! waits for, and how far their confirmations cover (DESIGN.md section 3).
//!
//! Owns: [`SyncLevel`] (`synchronous_commit`), [`StandbyNames`]
//! (`synchronous_standby_names`), [`commit_horizon`] and [`sync_states`].
//! Called by the primary's commit-wait path whenever a standby status
//! arrives or a setting changes (`CONFIG SET`), and by INFO / `tandemctl
//! query` for each standby's sync state. No I/O, no clocks.
//!
//! Meaning, as in openGauss / PostgreSQL:
//! - `FIRST n (a, b, c)`: the sync standbys are the `n` connected standbys
//!   of highest priority (earlier in the list = higher; ties between
//!   standbys of the same priority, e.g. two matching `*`, go to the one
//!   earlier in the `standbys` slice, which callers keep in connection
//!   order). A commit waits for all of them.
//! - `ANY n (a, b, c)`: a commit waits for any `n` of the connected listed
//!   standbys (quorum).
//! - `a, b` = `FIRST 1 (a, b)`; `*` = `FIRST 1 (*)`; `n (a, b)` = `FIRST n`;
//!   `""` = no synchronous standbys: commits wait only for the local flush.
//! - Names match ASCII case-insensitively; `*` in a list matches any name.
//!
//! Invariants (property-tested below):
//! - a [`Horizon::Lsn`] never exceeds the level's position of any standby
//!   whose confirmation it counts, and is the largest LSN with that
//!   property;
//! - adding a standby never lowers an ANY horizon.
//!
//! The horizon is remote-only: a commit with end LSN `c` may reply when
//! the local flush is past `c` and the horizon covers `c`
//! ([`Horizon::covers`]). Positions come from `StandbyStatus` frames, whose
//! stage order (`received >= written >= flushed >= applied`) the frame
//! decoder already checked.

use std::fmt;

use crate::ids::Lsn;
use crate::replication::frame::NAME_BYTES_MAX;

/// `synchronous_commit`: what a commit waits for before its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncLevel {
    /// Reply before the WAL is durable locally.
    Off,
    /// Local flush only.
    Local,
    /// Local flush, and the sync standbys received the WAL (in memory).
    RemoteReceive,
    /// ... and wrote it to their WAL files (not yet fsynced).
    RemoteWrite,
    /// ... and flushed it (`remote_flush`). The default of PostgreSQL.
    On,
    /// ... and applied (redone) it, so reads there see the commit.
    RemoteApply,
}

impl SyncLevel {
    pub const ALL: [SyncLevel; 6] = [
        SyncLevel::Off,
        SyncLevel::Local,
        SyncLevel::RemoteReceive,
        SyncLevel::RemoteWrite,
        SyncLevel::On,
        SyncLevel::RemoteApply,
    ];

    /// Parses a setting value (ASCII case-insensitive); `remote_flush` is
    /// another name for `on`.
    pub fn parse(s: &str) -> Result<SyncLevel, SyncConfigError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "off" => SyncLevel::Off,
            "local" => SyncLevel::Local,
            "remote_receive" => SyncLevel::RemoteReceive,
            "remote_write" => SyncLevel::RemoteWrite,
            "on" | "remote_flush" => SyncLevel::On,
            "remote_apply" => SyncLevel::RemoteApply,
            _ => {
                return Err(SyncConfigError::UnknownLevel {
                    value: s.to_owned(),
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SyncLevel::Off => "off",
            SyncLevel::Local => "local",
            SyncLevel::RemoteReceive => "remote_receive",
            SyncLevel::RemoteWrite => "remote_write",
            SyncLevel::On => "on",
            SyncLevel::RemoteApply => "remote_apply",
        }
    }

    /// Whether commits at this level wait for standbys (when sync standbys
    /// are configured).
    pub fn waits_for_standbys(self) -> bool {
        !matches!(self, SyncLevel::Off | SyncLevel::Local)
    }

    /// Whether commits at this level need standbys to acknowledge receipt
    /// of each WAL frame at once (`sync_wait`, "Receipts").
    pub fn needs_receipts(self) -> bool {
        matches!(self, SyncLevel::RemoteReceive | SyncLevel::RemoteWrite)
    }

    /// The standby position this level waits for; `None` for local levels.
    pub fn position(self, s: &StandbyPosition) -> Option<Lsn> {
        match self {
            SyncLevel::Off | SyncLevel::Local => None,
            SyncLevel::RemoteReceive => Some(s.received),
            SyncLevel::RemoteWrite => Some(s.written),
            SyncLevel::On => Some(s.flushed),
            SyncLevel::RemoteApply => Some(s.applied),
        }
    }
}

impl fmt::Display for SyncLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a `synchronous_standby_names` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    /// `*`: any standby.
    Wildcard,
    Name(String),
}

impl NamePattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Wildcard => true,
            NamePattern::Name(n) => n.eq_ignore_ascii_case(name),
        }
    }
}

/// A parsed `synchronous_standby_names`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StandbyNames {
    /// `""`: no synchronous standbys; replication is asynchronous.
    Async,
    /// `FIRST num (names)`: priority order. `1 <= num`, and `num <=
    /// names.len()` unless `names` holds `*`.
    First { num: usize, names: Vec<NamePattern> },
    /// `ANY num (names)`: quorum. Same bounds as `First`.
    Any { num: usize, names: Vec<NamePattern> },
}

/// A bad `synchronous_commit` or `synchronous_standby_names` value. `at`
/// is a byte offset into the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncConfigError {
    #[error(
        "unknown synchronous_commit value {value:?} (off, local, remote_receive, \
         remote_write, on, remote_flush, remote_apply)"
    )]
    UnknownLevel { value: String },
    #[error("unexpected character {found:?} at byte {at}")]
    UnexpectedChar { at: usize, found: char },
    #[error("unterminated double quote starting at byte {at}")]
    UnterminatedQuote { at: usize },
    #[error("empty standby name at byte {at}")]
    EmptyName { at: usize },
    #[error("standby name at byte {at} is {len} bytes, longer than {max}")]
    NameTooLong { at: usize, len: usize, max: usize },
    #[error("expected {expected} at byte {at}")]
    Expected { at: usize, expected: &'static str },
    #[error("number of standbys at byte {at} is not a number this node can count")]
    BadNumber { at: usize },
    #[error("number of synchronous standbys must be at least 1")]
    ZeroStandbys,
    #[error("{num} synchronous standbys required but only {names} names listed")]
    TooFewNames { num: usize, names: usize },
    #[error("standby name {name:?} listed twice")]
    DuplicateName { name: String },
    #[error("the list is {len} bytes in canonical form, longer than {max}")]
    TooLong { len: usize, max: usize },
}

/// Longest `synchronous_standby_names` in canonical form (its `Display`).
pub const NAMES_TEXT_BYTES_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Star,
    Comma,
    LParen,
    RParen,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

fn tokenize(s: &str) -> Result<Vec<(usize, Token)>, SyncConfigError> {
    let mut tokens = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            ',' => Token::Comma,
            '(' => Token::LParen,
            ')' => Token::RParen,
            '*' => Token::Star,
            '"' => {
                // PostgreSQL style: "" inside quotes is one quote.
                let mut name = String::new();
                loop {
                    match chars.next() {
                        None => return Err(SyncConfigError::UnterminatedQuote { at }),
                        Some((_, '"')) if chars.peek().is_some_and(|&(_, c)| c == '"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some((_, '"')) => break,
                        Some((_, c)) => name.push(c),
                    }
                }
                check_name_length(at, &name)?;
                Token::Quoted(name)
            }
            c if c.is_ascii() && is_word_byte(c as u8) => {
                let mut word = String::from(c);
                while let Some(&(_, c)) = chars.peek() {
                    if !(c.is_ascii() && is_word_byte(c as u8)) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                check_name_length(at, &word)?;
                Token::Word(word)
            }
            found => return Err(SyncConfigError::UnexpectedChar { at, found }),
        };
        tokens.push((at, token));
    }
    Ok(tokens)
}

fn check_name_length(at: usize, name: &str) -> Result<(), SyncConfigError> {
    if name.is_empty() {
        return Err(SyncConfigError::EmptyName { at });
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(SyncConfigError::NameTooLong {
            at,
            len: name.len(),
            max: NAME_BYTES_MAX,
        });
    }
    Ok(())
}

/// Recursive-descent parser over the token list.
struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
}

impl Parser {
    fn peek(&self, ahead: usize) -> Option<&Token> {
        self.tokens.get(self.next + ahead).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(at, _)| *at)
    }

    fn expected(&self, expected: &'static str) -> SyncConfigError {
        SyncConfigError::Expected {
            at: self.at(),
            expected,
        }
    }

    fn take(&mut self) -> Option<Token> {
        let token = self.peek(0).cloned();
        self.next += 1;
        token
    }

    fn number(&mut self) -> Result<usize, SyncConfigError> {
        let at = self.at();
        match self.take() {
            Some(Token::Word(w)) if w.bytes().all(|b| b.is_ascii_digit()) => {
                w.parse().map_err(|_| SyncConfigError::BadNumber { at })
            }
            _ => Err(SyncConfigError::Expected {
                at,
                expected: "a number of standbys",
            }),
        }
    }

    fn list(&mut self) -> Result<Vec<NamePattern>, SyncConfigError> {
        let mut names: Vec<NamePattern> = Vec::new();
        loop {
            let pattern = match self.peek(0) {
                Some(Token::Star) => NamePattern::Wildcard,
                Some(Token::Word(w) | Token::Quoted(w)) => NamePattern::Name(w.clone()),
                _ => return Err(self.expected("a standby name or *")),
            };
            self.next += 1;
            if names.iter().any(|n| same_pattern(n, &pattern)) {
                return Err(SyncConfigError::DuplicateName {
                    name: pattern_text(&pattern),
                });
            }
            names.push(pattern);
            if self.peek(0) != Some(&Token::Comma) {
                return Ok(names);
            }
            self.next += 1;
        }
    }

    fn parenthesised_list(&mut self) -> Result<Vec<NamePattern>, SyncConfigError> {
        if self.peek(0) != Some(&Token::LParen) {
            return Err(self.expected("'('"));
        }
        self.next += 1;
        let names = self.list()?;
        if self.peek(0) != Some(&Token::RParen) {
            return Err(self.expected("',' or ')'"));
        }
        self.next += 1;
        Ok(names)
    }

    fn parse(&mut self) -> Result<StandbyNames, SyncConfigError> {
        let keyword = match self.peek(0) {
            Some(Token::Word(w)) if !matches!(self.peek(1), None | Some(Token::Comma)) => {
                if w.eq_ignore_ascii_case("first") {
                    Some(false)
                } else if w.eq_ignore_ascii_case("any") {
                    Some(true)
                } else {
                    None
                }
            }
            _ => None,
        };
        let legacy_count = matches!(
            (self.peek(0), self.peek(1)),
            (Some(Token::Word(w)), Some(Token::LParen)) if w.bytes().all(|b| b.is_ascii_digit())
        );
        let (quorum, num, names) = if let Some(quorum) = keyword {
            self.next += 1;
            let num = self.number()?;
            (quorum, num, self.parenthesised_list()?)
        } else if legacy_count {
            let num = self.number()?;
            (false, num, self.parenthesised_list()?)
        } else {
            let names = self.list()?;
            (false, 1, names)
        };
        if self.next < self.tokens.len() {
            return Err(self.expected("end of value (or ',' between names)"));
        }
        if num == 0 {
            return Err(SyncConfigError::ZeroStandbys);
        }
        if num > names.len() && !names.contains(&NamePattern::Wildcard) {
            return Err(SyncConfigError::TooFewNames {
                num,
                names: names.len(),
            });
        }
        Ok(if quorum {
            StandbyNames::Any { num, names }
        } else {
            StandbyNames::First { num, names }
        })
    }
}

fn same_pattern(a: &NamePattern, b: &NamePattern) -> bool {
    match (a, b) {
        (NamePattern::Wildcard, NamePattern::Wildcard) => true,
        (NamePattern::Name(a), NamePattern::Name(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn pattern_text(p: &NamePattern) -> String {
    match p {
        NamePattern::Wildcard => "*".to_owned(),
        NamePattern::Name(n) => n.clone(),
    }
}

impl StandbyNames {
    /// Parses a `synchronous_standby_names` value.
    pub fn parse(s: &str) -> Result<StandbyNames, SyncConfigError> {
        let tokens = tokenize(s)?;
        if tokens.is_empty() {
            return Ok(StandbyNames::Async);
        }
        let names = Parser {
            tokens,
            next: 0,
            end: s.len(),
        }
        .parse()?;
        // Bounded, so the rule fits one `SyncRule` frame.
        let len = names.to_string().len();
        if len > NAMES_TEXT_BYTES_MAX {
            return Err(SyncConfigError::TooLong {
                len,
                max: NAMES_TEXT_BYTES_MAX,
            });
        }
        Ok(names)
    }

    /// Priority of a standby called `name`: the index of the first list
    /// entry it matches (0 = highest), `None` if it is not listed (async).
    /// In an ANY list every listed standby counts the same; the index is
    /// still returned.
    pub fn priority(&self, name: &str) -> Option<usize> {
        match self {
            StandbyNames::Async => None,
            StandbyNames::First { names, .. } | StandbyNames::Any { names, .. } => {
                names.iter().position(|p| p.matches(name))
            }
        }
    }
}

impl fmt::Display for StandbyNames {
    /// Canonical form: `""`, `FIRST n (a, b)` or `ANY n (a, b)`; names that
    /// are not plain words are double-quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (method, num, names) = match self {
            StandbyNames::Async => return Ok(()),
            StandbyNames::First { num, names } => ("FIRST", num, names),
            StandbyNames::Any { num, names } => ("ANY", num, names),
        };
        write!(f, "{method} {num} (")?;
        for (i, pattern) in names.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match pattern {
                NamePattern::Wildcard => f.write_str("*")?,
                NamePattern::Name(n) if n.bytes().all(is_word_byte) => f.write_str(n)?,
                NamePattern::Name(n) => write!(f, "\"{}\"", n.replace('"', "\"\""))?,
            }
        }
        f.write_str(")")
    }
}

/// The whole synchronous-commit rule of a node: what a commit waits for
/// before its reply. The four settings change together (`CONFIG SET` of
/// several of them is one change) and travel together to standbys, so a
/// promoted node keeps the rule its primary applied (see `sync_wait`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRule {
    /// `synchronous_commit`: the node default; a connection may override
    /// it (`CLIENT SYNC`).
    pub level: SyncLevel,
    /// `synchronous_standby_names`.
    pub names: StandbyNames,
    /// `most_available_sync`: with too few sync standbys connected,
    /// commits proceed on local durability instead of waiting.
    pub most_available_sync: bool,
    /// `synchronous_commit_timeout_ms`: a commit waiting this long for
    /// standbys gets an error instead of its reply; 0 = no limit.
    pub timeout_ms: u64,
}

impl Default for SyncRule {
    /// What a node runs with when nothing is configured: local durability.
    fn default() -> SyncRule {
        SyncRule {
            level: SyncLevel::Local,
            names: StandbyNames::Async,
            most_available_sync: false,
            timeout_ms: 0,
        }
    }
}

/// The settings of a [`SyncRule`], as `CONFIG SET` and the config file
/// name them.
pub const SYNC_RULE_SETTINGS: [&str; 4] = [
    "synchronous_commit",
    "synchronous_standby_names",
    "most_available_sync",
    "synchronous_commit_timeout_ms",
];

/// A bad value for one setting of a [`SyncRule`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncRuleError {
    #[error("{setting}: {source}")]
    Syntax {
        setting: &'static str,
        source: SyncConfigError,
    },
    #[error("{setting}: expected {expected}, got {value:?}")]
    Value {
        setting: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{setting} is not a setting of the synchronous-commit rule")]
    Unknown { setting: String },
}

impl SyncRule {
    /// This rule with one setting changed (`name` in snake_case, as in
    /// the config file and `CONFIG SET`).
    pub fn with(&self, name: &str, value: &str) -> Result<SyncRule, SyncRuleError> {
        let mut rule = self.clone();
        match name {
            "synchronous_commit" => {
                rule.level = SyncLevel::parse(value).map_err(|source| SyncRuleError::Syntax {
                    setting: "synchronous_commit",
                    source,
                })?
            }
            "synchronous_standby_names" => {
                rule.names = StandbyNames::parse(value).map_err(|source| SyncRuleError::Syntax {
                    setting: "synchronous_standby_names",
                    source,
                })?
            }
            "most_available_sync" => {
                rule.most_available_sync = match value.trim().to_ascii_lowercase().as_str() {
                    "on" | "yes" | "true" | "1" => true,
                    "off" | "no" | "false" | "0" => false,
                    _ => {
                        return Err(SyncRuleError::Value {
                            setting: "most_available_sync",
                            expected: "on or off",
                            value: value.to_owned(),
                        })
                    }
                }
            }
            "synchronous_commit_timeout_ms" => {
                rule.timeout_ms = value.trim().parse().map_err(|_| SyncRuleError::Value {
                    setting: "synchronous_commit_timeout_ms",
                    expected: "milliseconds (0 = no limit)",
                    value: value.to_owned(),
                })?
            }
            other => {
                return Err(SyncRuleError::Unknown {
                    setting: other.to_owned(),
                })
            }
        }
        Ok(rule)
    }

    /// The value of one setting as `CONFIG GET` shows it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "synchronous_commit" => self.level.as_str().to_owned(),
            "synchronous_standby_names" => self.names.to_string(),
            "most_available_sync" => if self.most_available_sync {
                "on"
            } else {
                "off"
            }
            .to_owned(),
            "synchronous_commit_timeout_ms" => self.timeout_ms.to_string(),
            _ => return None,
        })
    }
}

/// What the primary knows of one standby: the positions from its last
/// `StandbyStatus` and whether it is streaming now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandbyPosition {
    pub name: String,
    pub received: Lsn,
    pub written: Lsn,
    pub flushed: Lsn,
    pub applied: Lsn,
    pub connected: bool,
}

/// How far commits are covered by the standbys they must wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Horizon {
    /// The level or the names ask for no standby: the local flush decides.
    LocalOnly,
    /// Every commit ending at or before this LSN has the confirmations it
    /// needs.
    Lsn(Lsn),
    /// Fewer required standbys are connected than the rule needs; commits
    /// wait (or, with `most_available_sync`, degrade to local).
    NotEnoughStandbys { needed: usize, connected: usize },
}

impl Horizon {
    /// Whether a commit ending at `commit_end` has its remote
    /// confirmations (the local flush is checked by the caller).
    pub fn covers(self, commit_end: Lsn, most_available_sync: bool) -> bool {
        match self {
            Horizon::LocalOnly => true,
            Horizon::Lsn(horizon) => commit_end <= horizon,
            Horizon::NotEnoughStandbys { .. } => most_available_sync,
        }
    }
}

/// A standby's role in synchronous commit, as INFO reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncState {
    /// Chosen by a FIRST rule: commits wait for it.
    Sync,
    /// Listed, but not (now) needed: takes over when a sync standby goes.
    /// Also every listed standby that is not connected.
    Potential,
    /// Listed under an ANY rule and connected: one of the quorum voters.
    Quorum,
    /// Not listed: commits never wait for it.
    Async,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Sync => "sync",
            SyncState::Potential => "potential",
            SyncState::Quorum => "quorum",
            SyncState::Async => "async",
        }
    }
}

impl fmt::Display for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Indices into `standbys` of the connected listed standbys, highest
/// priority first (ties in slice order).
fn candidates(names: &StandbyNames, standbys: &[StandbyPosition]) -> Vec<usize> {
    let mut ranked: Vec<(usize, usize)> = standbys
        .iter()
        .enumerate()
        .filter(|(_, s)| s.connected)
        .filter_map(|(i, s)| names.priority(&s.name).map(|p| (p, i)))
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// The highest LSN such that every commit ending at or before it has the
/// confirmations `level` and `names` require from `standbys`.
pub fn commit_horizon(
    names: &StandbyNames,
    level: SyncLevel,
    standbys: &[StandbyPosition],
) -> Horizon {
    if !level.waits_for_standbys() {
        return Horizon::LocalOnly;
    }
    let (num, quorum) = match names {
        StandbyNames::Async => return Horizon::LocalOnly,
        StandbyNames::First { num, .. } => (*num, false),
        StandbyNames::Any { num, .. } => (*num, true),
    };
    let ranked = candidates(names, standbys);
    let mut positions: Vec<Lsn> = ranked
        .iter()
        .filter_map(|&i| standbys.get(i))
        .filter_map(|s| level.position(s))
        .collect();
    if positions.len() < num || num == 0 {
        return Horizon::NotEnoughStandbys {
            needed: num,
            connected: positions.len(),
        };
    }
    let horizon = if quorum {
        // The num-th largest: num standbys are at or past it.
        positions.sort_unstable_by(|a, b| b.cmp(a));
        positions.get(num - 1).copied()
    } else {
        // The slowest of the num highest-priority standbys.
        positions.iter().take(num).min().copied()
    };
    match horizon {
        Some(lsn) => Horizon::Lsn(lsn),
        None => Horizon::NotEnoughStandbys {
            needed: num,
            connected: positions.len(),
        },
    }
}

/// Each standby's sync state, in the order of `standbys`.
pub fn sync_states(names: &StandbyNames, standbys: &[StandbyPosition]) -> Vec<SyncState> {
    let listed = |s: &StandbyPosition| names.priority(&s.name).is_some();
    let mut states: Vec<SyncState> = standbys
        .iter()
        .map(|s| match (listed(s), s.connected) {
            (false, _) => SyncState::Async,
            (true, false) => SyncState::Potential,
            (true, true) => match names {
                StandbyNames::Any { .. } => SyncState::Quorum,
                _ => SyncState::Potential,
            },
        })
        .collect();
    if let StandbyNames::First { num, .. } = names {
        for i in candidates(names, standbys).into_iter().take(*num) {
            if let Some(state) = states.get_mut(i) {
                *state = SyncState::Sync;
            }
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn up(name: &str, received: u64, written: u64, flushed: u64, applied: u64) -> StandbyPosition {
        StandbyPosition {
            name: name.to_owned(),
            received: Lsn(received),
            written: Lsn(written),
            flushed: Lsn(flushed),
            applied: Lsn(applied),
            connected: true,
        }
    }

    /// A standby whose every stage is at `lsn`.
    fn at(name: &str, lsn: u64) -> StandbyPosition {
        up(name, lsn, lsn, lsn, lsn)
    }

    fn down(name: &str, lsn: u64) -> StandbyPosition {
        StandbyPosition {
            connected: false,
            ..at(name, lsn)
        }
    }

    fn names(s: &str) -> StandbyNames {
        StandbyNames::parse(s).unwrap()
    }

    fn pattern(s: &str) -> NamePattern {
        match s {
            "*" => NamePattern::Wildcard,
            n => NamePattern::Name(n.to_owned()),
        }
    }

    fn first_of(num: usize, list: &[&str]) -> StandbyNames {
        StandbyNames::First {
            num,
            names: list.iter().map(|s| pattern(s)).collect(),
        }
    }

    fn quorum_of(num: usize, list: &[&str]) -> StandbyNames {
        StandbyNames::Any {
            num,
            names: list.iter().map(|s| pattern(s)).collect(),
        }
    }

    #[test]
    fn parses_every_form() {
        let cases: &[(&str, StandbyNames)] = &[
            ("", StandbyNames::Async),
            ("   ", StandbyNames::Async),
            ("*", first_of(1, &["*"])),
            ("a", first_of(1, &["a"])),
            ("a, b", first_of(1, &["a", "b"])),
            ("FIRST 2 (a, b, c)", first_of(2, &["a", "b", "c"])),
            ("first 1(a,b)", first_of(1, &["a", "b"])),
            ("ANY 2 (a, b, c)", quorum_of(2, &["a", "b", "c"])),
            ("any 1 (*)", quorum_of(1, &["*"])),
            ("2 (a, b)", first_of(2, &["a", "b"])),
            ("FIRST 3 (a, *)", first_of(3, &["a", "*"])),
            ("\"Standby One\", b", first_of(1, &["Standby One", "b"])),
            ("\"say \"\"hi\"\"\"", first_of(1, &["say \"hi\""])),
            ("first", first_of(1, &["first"])),
            ("any, first", first_of(1, &["any", "first"])),
            ("s-1.east_2", first_of(1, &["s-1.east_2"])),
        ];
        for (input, expected) in cases {
            assert_eq!(&names(input), expected, "{input:?}");
        }
    }

    #[test]
    fn parse_errors_are_clear() {
        use SyncConfigError as E;
        let cases: &[(&str, SyncConfigError)] = &[
            ("FIRST 0 (a)", E::ZeroStandbys),
            ("ANY 3 (a, b)", E::TooFewNames { num: 3, names: 2 }),
            ("a, A", E::DuplicateName { name: "A".into() }),
            (
                "FIRST x (a)",
                E::Expected {
                    at: 6,
                    expected: "a number of standbys",
                },
            ),
            (
                "FIRST 1 a",
                E::Expected {
                    at: 8,
                    expected: "'('",
                },
            ),
            (
                "FIRST 1 (a",
                E::Expected {
                    at: 10,
                    expected: "',' or ')'",
                },
            ),
            (
                "FIRST 1 (a,)",
                E::Expected {
                    at: 11,
                    expected: "a standby name or *",
                },
            ),
            (
                "a b",
                E::Expected {
                    at: 2,
                    expected: "end of value (or ',' between names)",
                },
            ),
            (
                "a,",
                E::Expected {
                    at: 2,
                    expected: "a standby name or *",
                },
            ),
            (
                "(a)",
                E::Expected {
                    at: 0,
                    expected: "a standby name or *",
                },
            ),
            ("a; b", E::UnexpectedChar { at: 1, found: ';' }),
            ("\"abc", E::UnterminatedQuote { at: 0 }),
            ("\"\"", E::EmptyName { at: 0 }),
            ("FIRST 99999999999999999999999 (*)", E::BadNumber { at: 6 }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &StandbyNames::parse(input).unwrap_err(),
                expected,
                "{input:?}"
            );
        }
        let long = "x".repeat(65);
        assert!(matches!(
            StandbyNames::parse(&long),
            Err(E::NameTooLong { len: 65, .. })
        ));
    }

    #[test]
    fn levels_parse_and_print() {
        for level in SyncLevel::ALL {
            assert_eq!(SyncLevel::parse(level.as_str()), Ok(level));
        }
        assert_eq!(SyncLevel::parse("remote_flush"), Ok(SyncLevel::On));
        assert_eq!(SyncLevel::parse("Remote_Apply"), Ok(SyncLevel::RemoteApply));
        assert!(matches!(
            SyncLevel::parse("sometimes"),
            Err(SyncConfigError::UnknownLevel { .. })
        ));
    }

    #[test]
    fn each_level_picks_its_field() {
        let s = [up("a", 40, 30, 20, 10)];
        let n = names("a");
        let cases = [
            (SyncLevel::Off, Horizon::LocalOnly),
            (SyncLevel::Local, Horizon::LocalOnly),
            (SyncLevel::RemoteReceive, Horizon::Lsn(Lsn(40))),
            (SyncLevel::RemoteWrite, Horizon::Lsn(Lsn(30))),
            (SyncLevel::On, Horizon::Lsn(Lsn(20))),
            (SyncLevel::RemoteApply, Horizon::Lsn(Lsn(10))),
        ];
        for (level, expected) in cases {
            assert_eq!(commit_horizon(&n, level, &s), expected, "{level}");
        }
    }

    #[test]
    fn horizons_and_states_table() {
        use Horizon::{Lsn as L, NotEnoughStandbys as Short};
        use SyncState::{Async as A, Potential as P, Quorum as Q, Sync as S};
        let cases: &[(&str, Vec<StandbyPosition>, Horizon, &[SyncState])] = &[
            // No names: asynchronous even at `on`.
            ("", vec![at("a", 5)], Horizon::LocalOnly, &[A]),
            // FIRST 1 vs ANY 1, both up: FIRST waits for the first listed,
            // ANY for whichever is furthest.
            (
                "FIRST 1 (a, b)",
                vec![at("a", 50), at("b", 100)],
                L(Lsn(50)),
                &[S, P],
            ),
            (
                "ANY 1 (a, b)",
                vec![at("a", 50), at("b", 100)],
                L(Lsn(100)),
                &[Q, Q],
            ),
            // ... with a down: b takes over in both.
            (
                "FIRST 1 (a, b)",
                vec![down("a", 50), at("b", 100)],
                L(Lsn(100)),
                &[P, S],
            ),
            (
                "ANY 1 (a, b)",
                vec![down("a", 50), at("b", 100)],
                L(Lsn(100)),
                &[P, Q],
            ),
            // Priority is list order, not slice order.
            (
                "b, a",
                vec![at("a", 50), at("b", 100)],
                L(Lsn(100)),
                &[P, S],
            ),
            // FIRST 2 with a slow standby: the slowest of the two chosen.
            (
                "FIRST 2 (a, b, c)",
                vec![at("a", 100), at("b", 10), at("c", 90)],
                L(Lsn(10)),
                &[S, S, P],
            ),
            // ... the slow one gone: c steps in.
            (
                "FIRST 2 (a, b, c)",
                vec![at("a", 100), down("b", 10), at("c", 90)],
                L(Lsn(90)),
                &[S, P, S],
            ),
            // ANY 2 of 3: the second largest.
            (
                "ANY 2 (a, b, c)",
                vec![at("a", 100), at("b", 10), at("c", 90)],
                L(Lsn(90)),
                &[Q, Q, Q],
            ),
            (
                "ANY 2 (a, b, c)",
                vec![at("a", 100), at("b", 10), down("c", 90)],
                L(Lsn(10)),
                &[Q, Q, P],
            ),
            (
                "ANY 2 (a, b, c)",
                vec![at("a", 100), down("b", 10), down("c", 90)],
                Short {
                    needed: 2,
                    connected: 1,
                },
                &[Q, P, P],
            ),
            // `*`: any standby, first in connection order.
            ("*", vec![at("x", 70), at("y", 80)], L(Lsn(70)), &[S, P]),
            (
                "ANY 1 (*)",
                vec![at("x", 70), at("y", 80)],
                L(Lsn(80)),
                &[Q, Q],
            ),
            // `*` in a list ranks after the names before it.
            (
                "FIRST 1 (b, *)",
                vec![at("a", 70), at("b", 80)],
                L(Lsn(80)),
                &[P, S],
            ),
            (
                "FIRST 2 (b, *)",
                vec![at("a", 70), at("b", 80)],
                L(Lsn(70)),
                &[S, S],
            ),
            // Names not in the list never count.
            (
                "FIRST 1 (a)",
                vec![down("a", 10), at("z", 1000)],
                Short {
                    needed: 1,
                    connected: 0,
                },
                &[P, A],
            ),
            (
                "ANY 1 (a)",
                vec![at("a", 10), at("z", 1000)],
                L(Lsn(10)),
                &[Q, A],
            ),
            // Matching ignores ASCII case.
            ("FIRST 1 (Alpha)", vec![at("alpha", 5)], L(Lsn(5)), &[S]),
            // No standbys at all.
            (
                "a",
                vec![],
                Short {
                    needed: 1,
                    connected: 0,
                },
                &[],
            ),
        ];
        for (input, standbys, horizon, states) in cases {
            let n = names(input);
            assert_eq!(
                commit_horizon(&n, SyncLevel::On, standbys),
                *horizon,
                "{input:?} {standbys:?}"
            );
            assert_eq!(sync_states(&n, standbys), *states, "{input:?} {standbys:?}");
        }
    }

    #[test]
    fn covers() {
        assert!(Horizon::LocalOnly.covers(Lsn(9), false));
        assert!(Horizon::Lsn(Lsn(9)).covers(Lsn(9), false));
        assert!(!Horizon::Lsn(Lsn(9)).covers(Lsn(10), true));
        let short = Horizon::NotEnoughStandbys {
            needed: 1,
            connected: 0,
        };
        assert!(!short.covers(Lsn(1), false));
        assert!(short.covers(Lsn(1), true));
    }

    const POOL: [&str; 5] = ["a", "b", "c", "d", "e"];

    fn arb_standby() -> impl Strategy<Value = StandbyPosition> {
        (
            0..POOL.len(),
            proptest::array::uniform4(0u64..50),
            proptest::bool::weighted(0.75),
        )
            .prop_map(|(i, mut l, connected)| {
                l.sort_unstable_by(|a, b| b.cmp(a));
                StandbyPosition {
                    connected,
                    ..up(POOL[i], l[0], l[1], l[2], l[3])
                }
            })
    }

    fn arb_names() -> impl Strategy<Value = StandbyNames> {
        (
            proptest::sample::subsequence(POOL.to_vec(), 1..=4),
            any::<bool>(),
            any::<bool>(),
            1usize..=3,
        )
            .prop_map(|(list, wildcard, quorum, num)| {
                let mut list: Vec<&str> = list;
                if wildcard {
                    list.push("*");
                }
                let num = if wildcard { num } else { num.min(list.len()) };
                if quorum {
                    quorum_of(num, &list)
                } else {
                    first_of(num, &list)
                }
            })
    }

    fn arb_level() -> impl Strategy<Value = SyncLevel> {
        proptest::sample::select(SyncLevel::ALL.to_vec())
    }

    fn arb_remote_level() -> impl Strategy<Value = SyncLevel> {
        proptest::sample::select(SyncLevel::ALL[2..].to_vec())
    }

    /// Orders horizons by how much they allow: waiting < any LSN.
    fn rank(h: Horizon) -> Option<Lsn> {
        match h {
            Horizon::Lsn(l) => Some(l),
            Horizon::NotEnoughStandbys { .. } => None,
            Horizon::LocalOnly => unreachable!(),
        }
    }

    proptest! {
        #[test]
        fn horizon_never_passes_a_counted_standby(
            n in arb_names(),
            level in arb_level(),
            standbys in proptest::collection::vec(arb_standby(), 0..7),
        ) {
            let horizon = commit_horizon(&n, level, &standbys);
            let Horizon::Lsn(h) = horizon else { return Ok(()) };
            let pos = |s: &StandbyPosition| level.position(s).unwrap();
            let states = sync_states(&n, &standbys);
            match &n {
                StandbyNames::First { .. } => {
                    // Every sync standby is at or past it, one exactly at it.
                    let sync: Vec<Lsn> = standbys
                        .iter()
                        .zip(&states)
                        .filter(|(_, st)| **st == SyncState::Sync)
                        .map(|(s, _)| pos(s))
                        .collect();
                    prop_assert!(sync.iter().all(|&p| p >= h));
                    prop_assert!(sync.contains(&h));
                }
                StandbyNames::Any { num, .. } => {
                    // At least num voters at or past it, fewer past it.
                    let voters: Vec<Lsn> = standbys
                        .iter()
                        .zip(&states)
                        .filter(|(_, st)| **st == SyncState::Quorum)
                        .map(|(s, _)| pos(s))
                        .collect();
                    prop_assert!(voters.iter().filter(|&&p| p >= h).count() >= *num);
                    prop_assert!(voters.iter().filter(|&&p| p > h).count() < *num);
                }
                StandbyNames::Async => prop_assert!(false, "async gave an LSN"),
            }
        }

        #[test]
        fn adding_a_standby_never_lowers_an_any_horizon(
            n in arb_names(),
            level in arb_remote_level(),
            standbys in proptest::collection::vec(arb_standby(), 0..7),
            extra in arb_standby(),
        ) {
            let n = match n {
                StandbyNames::First { num, names } | StandbyNames::Any { num, names } => {
                    StandbyNames::Any { num, names }
                }
                StandbyNames::Async => StandbyNames::Async,
            };
            let before = commit_horizon(&n, level, &standbys);
            let mut more = standbys.clone();
            more.push(extra);
            let after = commit_horizon(&n, level, &more);
            prop_assert!(rank(after) >= rank(before), "{before:?} -> {after:?}");
        }

        #[test]
        fn states_follow_the_rules(
            n in arb_names(),
            standbys in proptest::collection::vec(arb_standby(), 0..7),
        ) {
            let states = sync_states(&n, &standbys);
            prop_assert_eq!(states.len(), standbys.len());
            for (s, st) in standbys.iter().zip(&states) {
                let listed = n.priority(&s.name).is_some();
                prop_assert_eq!(*st == SyncState::Async, !listed);
                if matches!(st, SyncState::Sync | SyncState::Quorum) {
                    prop_assert!(s.connected);
                }
            }
            if let StandbyNames::First { num, .. } = &n {
                let sync = states.iter().filter(|s| **s == SyncState::Sync).count();
                let connected = standbys
                    .iter()
                    .filter(|s| s.connected && n.priority(&s.name).is_some())
                    .count();
                prop_assert_eq!(sync, (*num).min(connected));
            }
        }

        #[test]
        fn display_parses_back(n in arb_names()) {
            prop_assert_eq!(StandbyNames::parse(&n.to_string()).unwrap(), n);
        }

        #[test]
        fn parse_never_panics(s in "[ a-zA-Z0-9,()*\"_.;-]{0,40}") {
            let _ = StandbyNames::parse(&s);
        }
    }
}

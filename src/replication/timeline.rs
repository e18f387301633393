//! Timeline history: which timeline wrote which WAL, and whether a standby
//! can follow a timeline switch without a build (DESIGN.md section 4).
//!
//! Each promotion starts a new timeline. The new timeline keeps its
//! parent's WAL up to the switch LSN and writes its own from there; since an
//! LSN is a byte position in one stream that only grows across timelines,
//! a history is a list of switches with non-decreasing switch LSNs:
//!
//! ```text
//!  timeline 1: [0, s1)    timeline 2: [s1, s2)    timeline 3: [s2, ..)
//!  ---------------------|-----------------------|------------------->
//!                       s1 = switch into 2      s2 = switch into 3
//! ```
//!
//! Invariants (asserted by [`TimelineHistory::append`], refused as
//! [`HistoryError::NotLinear`] by [`TimelineHistory::decode`]): the history
//! is linear (each switch's parent is the previous switch's timeline, the
//! first's is timeline 1), timelines strictly increase, switch LSNs never
//! decrease, and a reason is at most [`REASON_BYTES_MAX`] bytes without
//! control characters.
//!
//! Pure logic ([`TimelineHistory::timeline_at`], [`switch_lsn_of`],
//! [`can_follow`], [`divergence`], encode/decode) plus a small file layer
//! ([`write`], [`load`]) called at promotion and at start-up; it runs on
//! whichever thread calls it (promotion, WAL sender/receiver handshake).
//!
//! On disk, as PostgreSQL: `<data-dir>/wal/{tli:08X}.history`, one file per
//! timeline (never for timeline 1, whose history is empty) holding the
//! whole history up to that timeline. Text, UTF-8, `\n`-terminated lines:
//!
//! ```text
//!  per switch, oldest first (decimal, no sign, no leading zeros):
//!    timeline \t parent \t switch_lsn \t time_us \t reason \n
//!  then exactly one trailer line, 16 bytes:
//!    "crc32c" \t xxxxxxxx \n
//!  xxxxxxxx = CRC32C of every byte before the trailer, 8 lower-case hex
//!  digits. Example (two promotions):
//!    2\t1\t16384\t1700000000000000\tpromote\n
//!    3\t2\t40960\t1700000100000000\tswitchover\n
//!    crc32c\tae43ccfe\n
//! ```
//!
//! The file has no version line (the format is fixed by the brief of
//! issue 5); [`FORMAT_VERSION`] names this layout, and a new layout would
//! get a new file suffix. Decoding is strict (one canonical encoding per
//! history), so `encode(decode(b)) == b` for every accepted `b`.
//!
//! [`switch_lsn_of`]: TimelineHistory::switch_lsn_of
//! [`can_follow`]: TimelineHistory::can_follow
//! [`divergence`]: TimelineHistory::divergence

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::ids::{Lsn, TimelineId};

/// Version of the layout drawn in the module doc.
pub const FORMAT_VERSION: u32 = 1;
/// Longest reason kept with a switch ("promote", "failover", "switchover").
pub const REASON_BYTES_MAX: usize = 200;
/// Largest history file read or decoded. A line is at most about 265 bytes
/// (two u32, two u64, a 200-byte reason), so this holds more than 15 000
/// switches; it only bounds what a damaged file can make us allocate.
pub const HISTORY_BYTES_MAX: u64 = 4 << 20;

const TRAILER_TAG: &[u8] = b"crc32c\t";
/// `crc32c\t` + 8 hex digits + `\n`.
const TRAILER_BYTES: usize = TRAILER_TAG.len() + 8 + 1;

/// One promotion: `timeline` starts at `switch_lsn`, keeping `parent`'s WAL
/// before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The new timeline.
    pub timeline: TimelineId,
    /// The timeline it branched from.
    pub parent: TimelineId,
    /// First LSN of `timeline` = end of the parent's WAL that it keeps.
    pub switch_lsn: Lsn,
    /// Why: "promote", "failover", "switchover" (<= 200 bytes, no control
    /// characters).
    pub reason: String,
    /// Wall clock of the promotion, microseconds since the Unix epoch.
    pub time_us: u64,
}

/// What a standby on `standby_tli` with WAL up to `standby_end` must do to
/// follow a node whose history this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Same timeline: stream on.
    Same,
    /// Its timeline ended at `at`, at or after the end of its WAL: stream
    /// on from its end and adopt timeline `to` (our current one).
    Switch { to: TimelineId, at: Lsn },
    /// Its WAL may differ from ours from `at` on: it needs a build.
    Diverged { at: Lsn },
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("timeline history {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("timeline history of {bytes} bytes, more than the {max} allowed")]
    TooLarge { bytes: u64, max: u64 },
    #[error("timeline history checksum: trailer says {expected:08x}, contents give {actual:08x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("timeline history line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error(
        "timeline history line {line}: switch to timeline {timeline} from {parent} at LSN \
         {switch_lsn} breaks the history: {rule}"
    )]
    NotLinear {
        line: usize,
        timeline: TimelineId,
        parent: TimelineId,
        switch_lsn: Lsn,
        rule: &'static str,
    },
    #[error("timeline history file of timeline {expected} holds the history of timeline {found}")]
    WrongTimeline {
        expected: TimelineId,
        found: TimelineId,
    },
}

/// The switches that led to the current timeline, oldest first. Empty:
/// timeline 1, never switched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineHistory {
    switches: Vec<Switch>,
}

impl TimelineHistory {
    /// The history of timeline 1.
    pub fn new() -> TimelineHistory {
        TimelineHistory::default()
    }

    /// A history from its switches, oldest first. Panics if they break an
    /// invariant (a bug of the caller; input from disk goes through
    /// [`TimelineHistory::decode`]).
    pub fn from_switches(switches: Vec<Switch>) -> TimelineHistory {
        let mut history = TimelineHistory::new();
        for switch in switches {
            history.append(switch);
        }
        history
    }

    /// Records a promotion. Panics if it does not continue the history.
    pub fn append(&mut self, switch: Switch) {
        if let Err(rule) = self.check_next(&switch) {
            panic!(
                "timeline history: {switch:?} after {:?}: {rule}",
                self.switches.last()
            );
        }
        self.switches.push(switch);
    }

    pub fn switches(&self) -> &[Switch] {
        &self.switches
    }

    /// The timeline this history leads to.
    pub fn current(&self) -> TimelineId {
        self.switches
            .last()
            .map_or(TimelineId::FIRST, |s| s.timeline)
    }

    /// Whether `tli` is on this history's line.
    pub fn contains(&self, tli: TimelineId) -> bool {
        tli == TimelineId::FIRST || self.switches.iter().any(|s| s.timeline == tli)
    }

    /// First LSN of `tli`; `None` if `tli` is not on this line.
    pub fn start_lsn_of(&self, tli: TimelineId) -> Option<Lsn> {
        if tli == TimelineId::FIRST {
            return Some(Lsn::ZERO);
        }
        self.switches
            .iter()
            .find(|s| s.timeline == tli)
            .map(|s| s.switch_lsn)
    }

    /// Where `tli` ended: the switch out of it (into the next timeline of
    /// this history). `None` if `tli` is the current timeline, or is not on
    /// this line.
    pub fn switch_lsn_of(&self, tli: TimelineId) -> Option<Lsn> {
        self.switches
            .iter()
            .find(|s| s.parent == tli)
            .map(|s| s.switch_lsn)
    }

    /// The timeline that wrote the WAL at `lsn`: the newest one that
    /// started at or before it. (A timeline whose successor started at the
    /// same LSN wrote nothing and is never the answer.)
    pub fn timeline_at(&self, lsn: Lsn) -> TimelineId {
        self.switches
            .iter()
            .rev()
            .find(|s| s.switch_lsn <= lsn)
            .map_or(TimelineId::FIRST, |s| s.timeline)
    }

    /// Whether a standby on `standby_tli` whose WAL ends at `standby_end`
    /// can stream from a node with this history.
    ///
    /// On a timeline of this line that has ended, with its WAL ending at or
    /// before that end, it can: it stays on the line and switches straight
    /// to our current timeline, also across several switches. That is safe
    /// because switch LSNs never decrease and each timeline keeps all of
    /// its parent's WAL before its switch point: every later timeline
    /// shares the WAL `[0, end of standby_tli)`, which holds the standby's.
    ///
    /// Past that end, its WAL holds bytes we never had: diverged at the
    /// switch point. On a timeline not on this line (newer than ours, or a
    /// sibling branch), we cannot tell where it branched off without its
    /// history: diverged at `Lsn::ZERO`, the only safe bound (compare the
    /// histories with [`TimelineHistory::divergence`] when both are at
    /// hand).
    pub fn can_follow(&self, standby_tli: TimelineId, standby_end: Lsn) -> Follow {
        if standby_tli == self.current() {
            return Follow::Same;
        }
        // Not current: it has an end exactly when it is on our line.
        match self.switch_lsn_of(standby_tli) {
            Some(end) if standby_end <= end => Follow::Switch {
                to: self.current(),
                at: end,
            },
            Some(end) => Follow::Diverged { at: end },
            None => Follow::Diverged { at: Lsn::ZERO },
        }
    }

    /// First LSN at which the WAL of this history and `other`'s may differ:
    /// the end of the last timeline both lines share (same switches from
    /// timeline 1 on). `None` if one line continues the other (a standby on
    /// either can follow the longer one).
    pub fn divergence(&self, other: &TimelineHistory) -> Option<Lsn> {
        let common = self
            .switches
            .iter()
            .zip(&other.switches)
            .take_while(|(a, b)| {
                (a.timeline, a.parent, a.switch_lsn) == (b.timeline, b.parent, b.switch_lsn)
            })
            .count();
        let ours = self.switches.get(common).map(|s| s.switch_lsn);
        let theirs = other.switches.get(common).map(|s| s.switch_lsn);
        match (ours, theirs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        }
    }

    /// The file's bytes (module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for s in &self.switches {
            let line = format!(
                "{}\t{}\t{}\t{}\t{}\n",
                s.timeline.0, s.parent.0, s.switch_lsn.0, s.time_us, s.reason
            );
            out.extend_from_slice(line.as_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(TRAILER_TAG);
        out.extend_from_slice(format!("{crc:08x}\n").as_bytes());
        debug_assert!(out.ends_with(b"\n") && out.len() >= TRAILER_BYTES);
        out
    }

    /// Parses and checks a file's bytes. Never panics; refuses anything
    /// [`TimelineHistory::encode`] would not have written.
    pub fn decode(bytes: &[u8]) -> Result<TimelineHistory, HistoryError> {
        if bytes.len() as u64 > HISTORY_BYTES_MAX {
            return Err(HistoryError::TooLarge {
                bytes: bytes.len() as u64,
                max: HISTORY_BYTES_MAX,
            });
        }
        let body_len = bytes.len().saturating_sub(TRAILER_BYTES);
        let (body, trailer) = bytes.split_at(body_len);
        let lines = body.iter().filter(|&&b| b == b'\n').count();
        let expected = parse_trailer(trailer).ok_or(HistoryError::Malformed {
            line: lines + 1,
            reason: "last line is not `crc32c<TAB>` and 8 lower-case hex digits",
        })?;
        let actual = crc32c::crc32c(body);
        if expected != actual {
            return Err(HistoryError::Checksum { expected, actual });
        }
        let malformed = |line, reason| HistoryError::Malformed { line, reason };
        if !body.is_empty() && !body.ends_with(b"\n") {
            return Err(malformed(lines + 1, "trailer does not start a line"));
        }
        let text = std::str::from_utf8(body).map_err(|_| malformed(1, "not UTF-8"))?;
        let mut history = TimelineHistory::new();
        for (i, text_line) in text.split_terminator('\n').enumerate() {
            let line = i + 1;
            let switch = parse_line(text_line).map_err(|reason| malformed(line, reason))?;
            history
                .check_next(&switch)
                .map_err(|rule| HistoryError::NotLinear {
                    line,
                    timeline: switch.timeline,
                    parent: switch.parent,
                    switch_lsn: switch.switch_lsn,
                    rule,
                })?;
            history.switches.push(switch);
        }
        Ok(history)
    }

    /// Whether `next` may follow the switches so far; the broken rule if
    /// not.
    fn check_next(&self, next: &Switch) -> Result<(), &'static str> {
        check_reason(&next.reason)?;
        if next.parent != self.current() {
            return Err("its parent is not the current timeline");
        }
        if next.timeline <= next.parent {
            return Err("timelines must increase");
        }
        if self
            .switches
            .last()
            .is_some_and(|last| next.switch_lsn < last.switch_lsn)
        {
            return Err("switch LSNs must not decrease");
        }
        Ok(())
    }
}

fn check_reason(reason: &str) -> Result<(), &'static str> {
    if reason.len() > REASON_BYTES_MAX {
        return Err("reason longer than 200 bytes");
    }
    if reason.chars().any(char::is_control) {
        return Err("reason holds a control character");
    }
    Ok(())
}

/// `crc32c\t` + 8 lower-case hex digits + `\n`, strictly.
fn parse_trailer(trailer: &[u8]) -> Option<u32> {
    let hex = trailer.strip_prefix(TRAILER_TAG)?.strip_suffix(b"\n")?;
    if hex.len() != 8 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

fn parse_line(line: &str) -> Result<Switch, &'static str> {
    let mut fields = line.splitn(5, '\t');
    let mut next = |what| fields.next().ok_or(what);
    let timeline = next("missing timeline")?;
    let parent = next("missing parent")?;
    let switch_lsn = next("missing switch_lsn")?;
    let time_us = next("missing time_us")?;
    let reason = next("missing reason")?;
    check_reason(reason)?;
    Ok(Switch {
        timeline: TimelineId(parse_decimal(timeline).ok_or("bad timeline")?),
        parent: TimelineId(parse_decimal(parent).ok_or("bad parent")?),
        switch_lsn: Lsn(parse_decimal(switch_lsn).ok_or("bad switch_lsn")?),
        time_us: parse_decimal(time_us).ok_or("bad time_us")?,
        reason: reason.to_string(),
    })
}

/// Canonical decimal only: digits, no sign, no leading zeros, in range.
fn parse_decimal<T: std::str::FromStr>(field: &str) -> Option<T> {
    let canonical = !field.is_empty()
        && field.bytes().all(|b| b.is_ascii_digit())
        && (field == "0" || !field.starts_with('0'));
    if !canonical {
        return None;
    }
    field.parse().ok()
}

/// `{tli:08X}.history`, beside the segments of `<data-dir>/wal`.
pub fn file_name(tli: TimelineId) -> String {
    format!("{:08X}.history", tli.0)
}

/// Makes `history` durable as the file of its current timeline in `dir`:
/// written to `<name>.tmp`, fsynced, renamed into place, directory fsynced.
/// A crash leaves the old file (if any) or the new one, never a torn one.
pub fn write(dir: &Path, history: &TimelineHistory) -> io::Result<PathBuf> {
    let name = file_name(history.current());
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&history.encode())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// The history of timeline `tli` from `dir`. Timeline 1 without a file has
/// the empty history; any other timeline without one is an I/O error
/// (`NotFound`).
pub fn load(dir: &Path, tli: TimelineId) -> Result<TimelineHistory, HistoryError> {
    let path = dir.join(file_name(tli));
    let io_err = |source| HistoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = match File::open(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && tli == TimelineId::FIRST => {
            return Ok(TimelineHistory::new());
        }
        other => other.map_err(io_err)?,
    };
    let mut bytes = Vec::new();
    file.take(HISTORY_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    let history = TimelineHistory::decode(&bytes)?;
    if history.current() != tli {
        return Err(HistoryError::WrongTimeline {
            expected: tli,
            found: history.current(),
        });
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn switch(timeline: u32, parent: u32, lsn: u64, reason: &str) -> Switch {
        Switch {
            timeline: TimelineId(timeline),
            parent: TimelineId(parent),
            switch_lsn: Lsn(lsn),
            reason: reason.to_string(),
            time_us: 1_700_000_000_000_000 + u64::from(timeline),
        }
    }

    /// 1 -> 2 at 1000 -> 3 at 5000.
    fn three() -> TimelineHistory {
        TimelineHistory::from_switches(vec![
            switch(2, 1, 1000, "failover"),
            switch(3, 2, 5000, "switchover"),
        ])
    }

    /// A file with a valid checksum over `body`.
    fn sealed(body: &str) -> Vec<u8> {
        let mut out = body.as_bytes().to_vec();
        out.extend_from_slice(
            format!("crc32c\t{:08x}\n", crc32c::crc32c(body.as_bytes())).as_bytes(),
        );
        out
    }

    #[test]
    fn round_trip_and_exact_bytes() {
        let h = three();
        let bytes = h.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(
            "2\t1\t1000\t1700000000000002\tfailover\n3\t2\t5000\t1700000000000003\tswitchover\n"
        ));
        assert_eq!(bytes, sealed(text.rsplit_once("crc32c").unwrap().0));
        assert_eq!(TimelineHistory::decode(&bytes).unwrap(), h);
        let doc = TimelineHistory::from_switches(vec![
            Switch {
                time_us: 1_700_000_000_000_000,
                ..switch(2, 1, 16384, "promote")
            },
            Switch {
                time_us: 1_700_000_100_000_000,
                ..switch(3, 2, 40960, "switchover")
            },
        ]);
        assert!(
            doc.encode().ends_with(b"\ncrc32c\tae43ccfe\n"),
            "module doc example"
        );
        let empty = TimelineHistory::new();
        assert_eq!(empty.encode(), b"crc32c\t00000000\n");
        assert_eq!(TimelineHistory::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        for h in [TimelineHistory::new(), three()] {
            let bytes = h.encode();
            for len in 0..bytes.len() {
                assert!(
                    TimelineHistory::decode(&bytes[..len]).is_err(),
                    "truncated to {len}"
                );
            }
            for at in 0..bytes.len() {
                for bit in 0..8 {
                    let mut bad = bytes.clone();
                    bad[at] ^= 1 << bit;
                    assert!(TimelineHistory::decode(&bad).is_err(), "flip {at}.{bit}");
                }
            }
        }
    }

    #[test]
    fn checksummed_nonsense_is_typed() {
        let not_linear = |body: &str| match TimelineHistory::decode(&sealed(body)) {
            Err(HistoryError::NotLinear { line, .. }) => line,
            other => panic!("{body:?}: {other:?}"),
        };
        assert_eq!(not_linear("2\t3\t10\t0\tpromote\n"), 1); // parent not 1
        assert_eq!(not_linear("2\t1\t10\t0\t\n2\t2\t10\t0\t\n"), 2); // not increasing
        assert_eq!(not_linear("2\t1\t10\t0\t\n3\t1\t20\t0\t\n"), 2); // parent skips 2
        assert_eq!(not_linear("2\t1\t10\t0\t\n3\t2\t9\t0\t\n"), 2); // LSN goes back
        let malformed = |body: &str| match TimelineHistory::decode(&sealed(body)) {
            Err(HistoryError::Malformed { line, .. }) => line,
            other => panic!("{body:?}: {other:?}"),
        };
        assert_eq!(malformed("2\t1\t10\t0\n"), 1); // no reason field
        assert_eq!(malformed("2\t1\t010\t0\tx\n"), 1); // leading zero
        assert_eq!(malformed("2\t1\t+10\t0\tx\n"), 1);
        assert_eq!(malformed("2\t1\t10\t0\ta\tb\n"), 1); // tab in reason
        assert_eq!(malformed("4294967296\t1\t10\t0\tx\n"), 1); // timeline > u32
        assert_eq!(malformed(&format!("2\t1\t10\t0\t{}\n", "r".repeat(201))), 1);
        assert_eq!(malformed("2\t1\t10\t0\tx"), 1); // trailer glued to a line
        assert!(matches!(
            TimelineHistory::decode(b"crc32c\t0000000A\n"),
            Err(HistoryError::Malformed { line: 1, .. })
        ));
        let ok = format!("2\t1\t10\t0\t{}\n", "r".repeat(200));
        assert!(TimelineHistory::decode(&sealed(&ok)).is_ok());
    }

    #[test]
    fn lookups_on_a_multi_step_history() {
        let h = three();
        assert_eq!(h.current(), TimelineId(3));
        assert_eq!(h.switch_lsn_of(TimelineId(1)), Some(Lsn(1000)));
        assert_eq!(h.switch_lsn_of(TimelineId(2)), Some(Lsn(5000)));
        assert_eq!(h.switch_lsn_of(TimelineId(3)), None);
        assert_eq!(h.switch_lsn_of(TimelineId(9)), None);
        assert_eq!(h.timeline_at(Lsn(0)), TimelineId(1));
        assert_eq!(h.timeline_at(Lsn(999)), TimelineId(1));
        assert_eq!(h.timeline_at(Lsn(1000)), TimelineId(2));
        assert_eq!(h.timeline_at(Lsn(4999)), TimelineId(2));
        assert_eq!(h.timeline_at(Lsn(5000)), TimelineId(3));
        assert_eq!(h.timeline_at(Lsn(u64::MAX)), TimelineId(3));
        assert_eq!(
            TimelineHistory::new().timeline_at(Lsn(7)),
            TimelineId::FIRST
        );
    }

    #[test]
    fn can_follow_table() {
        let two = TimelineHistory::from_switches(vec![switch(2, 1, 1000, "promote")]);
        let h3 = three();
        let t = TimelineId;
        let cases = [
            (&two, 2, 50_000, Follow::Same),
            (
                &two,
                1,
                999,
                Follow::Switch {
                    to: t(2),
                    at: Lsn(1000),
                },
            ),
            (
                &two,
                1,
                1000,
                Follow::Switch {
                    to: t(2),
                    at: Lsn(1000),
                },
            ),
            (&two, 1, 1001, Follow::Diverged { at: Lsn(1000) }),
            (&two, 3, 10, Follow::Diverged { at: Lsn::ZERO }),
            // 1 -> 2 -> 3: every later timeline shares the WAL before 1000.
            (
                &h3,
                1,
                500,
                Follow::Switch {
                    to: t(3),
                    at: Lsn(1000),
                },
            ),
            (&h3, 1, 1001, Follow::Diverged { at: Lsn(1000) }),
            (
                &h3,
                2,
                5000,
                Follow::Switch {
                    to: t(3),
                    at: Lsn(5000),
                },
            ),
            (&h3, 2, 5001, Follow::Diverged { at: Lsn(5000) }),
            (&h3, 3, 0, Follow::Same),
            (&h3, 4, 6000, Follow::Diverged { at: Lsn::ZERO }),
        ];
        for (h, tli, end, want) in cases {
            assert_eq!(
                h.can_follow(TimelineId(tli), Lsn(end)),
                want,
                "tli {tli} end {end}"
            );
        }
        let one = TimelineHistory::new();
        assert_eq!(one.can_follow(TimelineId(1), Lsn(9)), Follow::Same);
        assert_eq!(
            one.can_follow(TimelineId(2), Lsn(9)),
            Follow::Diverged { at: Lsn::ZERO }
        );
    }

    #[test]
    fn divergence_of_two_histories() {
        let h = three();
        let sibling = TimelineHistory::from_switches(vec![
            switch(2, 1, 1000, "failover"),
            switch(3, 2, 4000, "failover"), // another node promoted earlier
        ]);
        assert_eq!(h.divergence(&sibling), Some(Lsn(4000)));
        assert_eq!(h.divergence(&TimelineHistory::new()), None);
        assert_eq!(h.divergence(&h), None);
        let other_branch = TimelineHistory::from_switches(vec![switch(2, 1, 700, "failover")]);
        assert_eq!(h.divergence(&other_branch), Some(Lsn(700)));
    }

    #[test]
    #[should_panic(expected = "switch LSNs must not decrease")]
    fn append_asserts_linearity() {
        let mut h = three();
        h.append(switch(4, 3, 4999, "promote"));
    }

    #[test]
    fn write_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let h = three();
        let path = write(dir.path(), &h).unwrap();
        assert_eq!(path, dir.path().join("00000003.history"));
        assert_eq!(load(dir.path(), TimelineId(3)).unwrap(), h);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["00000003.history"]);
        assert_eq!(
            load(dir.path(), TimelineId::FIRST).unwrap(),
            TimelineHistory::new()
        );
        match load(dir.path(), TimelineId(2)) {
            Err(HistoryError::Io { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
        fs::copy(&path, dir.path().join("00000004.history")).unwrap();
        assert!(matches!(
            load(dir.path(), TimelineId(4)),
            Err(HistoryError::WrongTimeline { .. })
        ));
        fs::write(&path, b"garbage").unwrap();
        assert!(load(dir.path(), TimelineId(3)).is_err());
    }

    /// Random linear histories: timeline gaps of 1-3, LSN steps of 0-999
    /// (0: two promotions without WAL between them).
    fn history() -> impl Strategy<Value = TimelineHistory> {
        let step = (1u32..4, 0u64..1000, "[a-z ]{0,12}|\\PC{0,8}", any::<u64>());
        proptest::collection::vec(step, 0..8).prop_map(|steps| {
            let mut h = TimelineHistory::new();
            let mut lsn = 0;
            for (gap, lsn_step, reason, time_us) in steps {
                lsn += lsn_step;
                let parent = h.current();
                h.append(Switch {
                    timeline: TimelineId(parent.0 + gap),
                    parent,
                    switch_lsn: Lsn(lsn),
                    reason,
                    time_us,
                });
            }
            h
        })
    }

    proptest! {
        #[test]
        fn random_histories_round_trip(h in history()) {
            let bytes = h.encode();
            prop_assert_eq!(TimelineHistory::decode(&bytes).unwrap(), h);
        }

        #[test]
        fn timeline_at_agrees_with_switch_lsn_of(h in history(), extra in any::<u64>()) {
            let mut probes = vec![0, extra, u64::MAX];
            for s in h.switches() {
                probes.extend([s.switch_lsn.0.saturating_sub(1), s.switch_lsn.0, s.switch_lsn.0 + 1]);
            }
            for lsn in probes.into_iter().map(Lsn) {
                let tli = h.timeline_at(lsn);
                prop_assert!(h.contains(tli));
                prop_assert!(h.start_lsn_of(tli).unwrap() <= lsn);
                prop_assert!(h.switch_lsn_of(tli).is_none_or(|end| lsn < end));
            }
            // Each ended timeline follows on to the current one up to its end.
            for s in h.switches() {
                let end = h.switch_lsn_of(s.parent).unwrap();
                prop_assert_eq!(end, s.switch_lsn);
                let to = h.current();
                prop_assert_eq!(h.can_follow(s.parent, end), Follow::Switch { to, at: end });
                prop_assert_eq!(h.can_follow(s.parent, end.add(1)), Follow::Diverged { at: end });
            }
            prop_assert_eq!(h.switch_lsn_of(h.current()), None);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = TimelineHistory::decode(&bytes);
        }
    }
}

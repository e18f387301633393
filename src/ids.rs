//! Newtypes for the numbers that name things: LSNs, pages, timelines,
//! segments, systems.
//!
//! One LSN vocabulary for the whole crate (STYLE.md habit 2):
//! - primary: `reserved >= flushed` (bytes handed out to transactions vs
//!   bytes made durable by the flusher);
//! - standby: `received >= written >= flushed >= applied`.
//!
//! An [`Lsn`] is a byte position in the single WAL stream. It only grows,
//! also across timelines.

use std::fmt;

/// Byte position in the WAL stream. `Lsn::ZERO` is "nothing written yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    /// The position `bytes` further on.
    #[allow(clippy::should_implement_trait)] // Lsn + u64 is not an Lsn op we want as `+`
    pub fn add(self, bytes: u64) -> Lsn {
        Lsn(self
            .0
            .checked_add(bytes)
            .expect("LSN overflow: 2^64 bytes of WAL"))
    }

    /// Bytes from `earlier` to `self`; zero if `earlier` is not earlier.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Lsn {
    /// Decimal, as INFO and the ctl tool print LSNs (DESIGN.md section 5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Number of an 8 KiB page in the data file; page `n` lives at byte `n * 8192`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(pub u32);

impl PageNo {
    /// Page 0 holds the tree's meta data (root, page count, free list).
    pub const META: PageNo = PageNo(0);
    /// "No page" in on-disk links (sibling, free list, overflow chain).
    pub const NONE: PageNo = PageNo(u32::MAX);

    pub fn is_none(self) -> bool {
        self == PageNo::NONE
    }
}

impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// History line of the cluster; each promotion starts a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimelineId(pub u32);

impl TimelineId {
    pub const FIRST: TimelineId = TimelineId(1);
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of a fixed-size WAL segment file: `lsn / segment_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentNo(pub u64);

impl SegmentNo {
    pub fn of(lsn: Lsn, segment_bytes: u64) -> SegmentNo {
        debug_assert!(segment_bytes.is_power_of_two());
        SegmentNo(lsn.0 / segment_bytes)
    }

    pub fn start(self, segment_bytes: u64) -> Lsn {
        Lsn(self.0 * segment_bytes)
    }
}

/// Random identity chosen when a cluster is initialised; every node of the
/// cluster carries it, and replication refuses peers with another one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SystemId(pub u64);

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

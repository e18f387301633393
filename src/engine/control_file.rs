//! The control file: what recovery needs to start, kept crash-safe.
//!
//! ```text
//! <data-dir>/control: two 512-byte slots, written alternately, each:
//!  0      4        8          16         24     28     32          40          48
//!  +------+--------+----------+----------+------+------+-----------+-----------+
//!  |magic |version |sequence  |system_id |tli   |state |redo_lsn   |redo_prev  |
//!  +------+--------+----------+----------+------+------+-----------+-----------+
//!  48          56         60          64         72 ...         508      512
//!  +-----------+----------+-----------+----------+------+--------+--------+
//!  |ckpt_end   |seg_shift |page_bytes |created_us| role | zero   | crc    |
//!  +-----------+----------+-----------+----------+------+--------+--------+
//!  72: role u32: 1 primary, 2 standby (a standby's upstream is in
//!  <data-dir>/upstream, written by `tandem build`)
//!  magic "TNDC"; sequence grows by one per write; the valid slot with the
//!  higher sequence wins; crc = CRC32C of bytes [0, 508).
//!  state: 1 running, 2 shut down cleanly
//!  redo_lsn/redo_prev: where recovery starts reading, and the LSN of the
//!  record before it (the first record's expected prev link)
//!  ckpt_end: WAL insert position when the checkpoint finished
//! ```
//!
//! A torn write can only damage the slot being written; the other slot
//! still holds the previous checkpoint.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::ids::{Lsn, SystemId, TimelineId};

pub const FORMAT_VERSION: u32 = 1;
pub const SLOT_BYTES: usize = 512;
const MAGIC: u32 = u32::from_le_bytes(*b"TNDC");
const CRC_AT: usize = SLOT_BYTES - 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NodeState {
    Running = 1,
    ShutDown = 2,
}

/// What a node is when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Role {
    Primary = 1,
    Standby = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlData {
    pub role: Role,
    pub system_id: SystemId,
    pub timeline: TimelineId,
    pub state: NodeState,
    pub redo_lsn: Lsn,
    pub redo_prev: Lsn,
    pub checkpoint_end: Lsn,
    pub segment_bytes: u64,
    pub created_us: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("control file {path}: neither slot is valid (both checksums fail); the data directory is damaged")]
    NoValidSlot { path: String },
    #[error("control file {path}: format version {found}, this build reads {FORMAT_VERSION}")]
    Version { path: String, found: u32 },
    #[error("control file {path}: page size {found}, this build uses {expected}")]
    PageSize {
        path: String,
        found: u32,
        expected: u32,
    },
}

pub struct ControlFile {
    file: File,
    path: String,
    sequence: u64,
    data: ControlData,
}

fn encode(d: &ControlData, sequence: u64) -> [u8; SLOT_BYTES] {
    let mut b = [0u8; SLOT_BYTES];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&sequence.to_le_bytes());
    b[16..24].copy_from_slice(&d.system_id.0.to_le_bytes());
    b[24..28].copy_from_slice(&d.timeline.0.to_le_bytes());
    b[28..32].copy_from_slice(&(d.state as u32).to_le_bytes());
    b[32..40].copy_from_slice(&d.redo_lsn.0.to_le_bytes());
    b[40..48].copy_from_slice(&d.redo_prev.0.to_le_bytes());
    b[48..56].copy_from_slice(&d.checkpoint_end.0.to_le_bytes());
    b[56..60].copy_from_slice(&(d.segment_bytes.trailing_zeros()).to_le_bytes());
    b[60..64].copy_from_slice(&(crate::page::PAGE_BYTES as u32).to_le_bytes());
    b[64..72].copy_from_slice(&d.created_us.to_le_bytes());
    b[72..76].copy_from_slice(&(d.role as u32).to_le_bytes());
    let crc = crc32c::crc32c(&b[..CRC_AT]);
    b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    b
}

struct Slot {
    sequence: u64,
    version: u32,
    page_bytes: u32,
    data: ControlData,
}

fn decode(b: &[u8]) -> Option<Slot> {
    let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let u64_at = |at: usize| {
        let mut r = [0u8; 8];
        r.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(r)
    };
    if b.len() != SLOT_BYTES || u32_at(0) != MAGIC || crc32c::crc32c(&b[..CRC_AT]) != u32_at(CRC_AT)
    {
        return None;
    }
    let state = match u32_at(28) {
        1 => NodeState::Running,
        2 => NodeState::ShutDown,
        _ => return None,
    };
    let role = match u32_at(72) {
        1 => Role::Primary,
        2 => Role::Standby,
        _ => return None,
    };
    Some(Slot {
        sequence: u64_at(8),
        version: u32_at(4),
        page_bytes: u32_at(60),
        data: ControlData {
            role,
            system_id: SystemId(u64_at(16)),
            timeline: TimelineId(u32_at(24)),
            state,
            redo_lsn: Lsn(u64_at(32)),
            redo_prev: Lsn(u64_at(40)),
            checkpoint_end: Lsn(u64_at(48)),
            segment_bytes: 1u64.checked_shl(u32_at(56)).unwrap_or(0),
            created_us: u64_at(64),
        },
    })
}

impl ControlFile {
    /// Creates a new control file (both slots written, fsynced).
    pub fn create(path: &Path, data: ControlData) -> Result<ControlFile, ControlError> {
        let err = |source| ControlError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(err)?;
        let mut cf = ControlFile {
            file,
            path: path.display().to_string(),
            sequence: 0,
            data,
        };
        cf.write(data)?;
        cf.write(data)?;
        Ok(cf)
    }

    pub fn open(path: &Path) -> Result<ControlFile, ControlError> {
        let p = path.display().to_string();
        let err = |source| ControlError::Io {
            path: p.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
        let mut buf = vec![0u8; 2 * SLOT_BYTES];
        let n = file.read_at(&mut buf, 0).map_err(err)?;
        buf.truncate(n);
        let best = buf
            .chunks(SLOT_BYTES)
            .filter_map(decode)
            .max_by_key(|s| s.sequence)
            .ok_or(ControlError::NoValidSlot { path: p.clone() })?;
        if best.version != FORMAT_VERSION {
            return Err(ControlError::Version {
                path: p,
                found: best.version,
            });
        }
        if best.page_bytes != crate::page::PAGE_BYTES as u32 {
            return Err(ControlError::PageSize {
                path: p,
                found: best.page_bytes,
                expected: crate::page::PAGE_BYTES as u32,
            });
        }
        Ok(ControlFile {
            file,
            path: p,
            sequence: best.sequence,
            data: best.data,
        })
    }

    pub fn data(&self) -> ControlData {
        self.data
    }

    /// Writes `data` into the slot not holding the current version and
    /// makes it durable. On error the previous version stays valid.
    pub fn write(&mut self, data: ControlData) -> Result<(), ControlError> {
        let sequence = self.sequence + 1;
        let slot = sequence % 2;
        let bytes = encode(&data, sequence);
        let err = |source| ControlError::Io {
            path: self.path.clone(),
            source,
        };
        self.file
            .write_all_at(&bytes, slot * SLOT_BYTES as u64)
            .map_err(err)?;
        self.file.sync_data().map_err(err)?;
        self.sequence = sequence;
        self.data = data;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlData {
        ControlData {
            role: Role::Primary,
            system_id: SystemId(42),
            timeline: TimelineId(1),
            state: NodeState::Running,
            redo_lsn: Lsn(16),
            redo_prev: Lsn(0),
            checkpoint_end: Lsn(16),
            segment_bytes: 1 << 24,
            created_us: 5,
        }
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let mut cf = ControlFile::create(&path, sample()).unwrap();
        let newer = ControlData {
            redo_lsn: Lsn(1000),
            ..sample()
        };
        cf.write(newer).unwrap();
        assert_eq!(ControlFile::open(&path).unwrap().data(), newer);
        // Tear the newest slot: the older one must be used.
        let slot = (cf.sequence % 2) * SLOT_BYTES as u64;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 16], slot + 30).unwrap();
        assert_eq!(ControlFile::open(&path).unwrap().data(), sample());
    }
}

//! Redo: applying WAL records to pages. The primary runs the same
//! [`apply`] on its own changes, so a standby or a recovered node that
//! applies the same records holds byte-identical pages (DESIGN.md section 3).
pub mod apply;

pub use apply::{apply, needs_redo, ApplyError};

//! Slotted leaf and internal page operations.

//! Data commands executed inside one engine transaction.
//!
//! Each function writes its reply into `out`. Command-level errors (a
//! non-integer INCR) are replies and do not abort the transaction, as in
//! Redis; engine errors (disk full, a corrupt page) abort the whole
//! transaction and the session replies with one error instead.

use super::command::{checked_incr, Command, SetCondition};
use super::resp::{
    write_array_header, write_bulk, write_error, write_integer, write_null, write_simple, Protocol,
};
use crate::engine::btree;
use crate::engine::tx::Tx;
use crate::engine::EngineError;
use crate::ids::PageNo;

/// Whether the command runs inside an engine transaction.
pub fn is_data_command(cmd: &Command<'_>) -> bool {
    matches!(
        cmd,
        Command::Get { .. }
            | Command::Set { .. }
            | Command::Del { .. }
            | Command::Exists { .. }
            | Command::IncrBy { .. }
            | Command::MGet { .. }
            | Command::MSet { .. }
            | Command::DbSize
    )
}

/// Runs one data command in `tx`, appending its reply to `out`.
pub fn run(
    tx: &mut Tx<'_, '_>,
    cmd: &Command<'_>,
    out: &mut Vec<u8>,
    proto: Protocol,
) -> Result<(), EngineError> {
    match *cmd {
        Command::Get { key } => match btree::get(tx, key)? {
            Some(v) => write_bulk(out, &v),
            None => write_null(out, proto),
        },
        Command::Set {
            key,
            value,
            condition,
            get,
        } => {
            let old = if get || condition != SetCondition::Always {
                btree::get(tx, key)?
            } else {
                None
            };
            let exists = old.is_some();
            let allowed = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !exists,
                SetCondition::IfPresent => exists,
            };
            if allowed {
                btree::put(tx, key, value)?;
            }
            match (get, allowed, old) {
                (true, _, Some(v)) => write_bulk(out, &v),
                (true, _, None) => write_null(out, proto),
                (false, true, _) => write_simple(out, "OK"),
                (false, false, _) => write_null(out, proto),
            }
        }
        Command::Del { keys } => {
            let mut n = 0;
            for key in keys.iter() {
                n += btree::delete(tx, key)? as i64;
            }
            write_integer(out, n);
        }
        Command::Exists { keys } => {
            let mut n = 0;
            for key in keys.iter() {
                n += btree::get(tx, key)?.is_some() as i64;
            }
            write_integer(out, n);
        }
        Command::IncrBy { key, delta } => {
            let current = btree::get(tx, key)?;
            match checked_incr(current.as_deref().unwrap_or(b"0"), delta) {
                Ok(v) => {
                    btree::put(tx, key, v.to_string().as_bytes())?;
                    write_integer(out, v);
                }
                Err(e) => write_error(out, &e.to_string()),
            }
        }
        Command::MGet { keys } => {
            write_array_header(out, keys.len());
            for key in keys.iter() {
                match btree::get(tx, key)? {
                    Some(v) => write_bulk(out, &v),
                    None => write_null(out, proto),
                }
            }
        }
        Command::MSet { pairs } => {
            for (k, v) in pairs.pairs() {
                btree::put(tx, k, v)?;
            }
            write_simple(out, "OK");
        }
        Command::DbSize => {
            // Reading the meta page makes DBSIZE wait for the commits it counts.
            tx.page(PageNo::META)?;
            write_integer(out, tx.meta().key_count as i64);
        }
        _ => return Err(EngineError::Bug("not a data command")),
    }
    Ok(())
}

/// Validates sizes before any work so an oversized SET is refused whole.
pub fn check_limits(cmd: &Command<'_>) -> Result<(), EngineError> {
    let value_max = btree::VALUE_BYTES_MAX;
    let check_value = |v: &[u8]| {
        if v.len() > value_max {
            Err(EngineError::ValueTooLarge {
                len: v.len(),
                max: value_max,
            })
        } else {
            Ok(())
        }
    };
    match *cmd {
        Command::Set { key, value, .. } => {
            btree::check_key(key)?;
            check_value(value)
        }
        Command::MSet { pairs } => {
            for (k, v) in pairs.pairs() {
                btree::check_key(k)?;
                check_value(v)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

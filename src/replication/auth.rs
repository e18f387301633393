//! Challenge-response authentication of a standby with the shared
//! `cluster_secret`. Pure logic, no I/O.
//!
//! Exchange (frames in `frame.rs`):
//! 1. standby -> primary `Hello { system_id, name, .. }`
//! 2. primary -> standby `Challenge { nonce, .. }`, `nonce` fresh from
//!    [`new_nonce`] for every connection
//! 3. standby -> primary `AuthResponse { mac: respond(secret, nonce,
//!    system_id, name) }`
//! 4. primary: [`verify`], then `AuthOk` or `Refuse { AuthFailed }`.
//!
//! `mac = HMAC-SHA256(key = cluster_secret, nonce[32] || system_id u64 LE
//! || name bytes)`. The nonce and system id are fixed width, so the input
//! is unambiguous; binding system id and name means a response cannot be
//! replayed for another cluster or under another standby's name, and the
//! fresh nonce means it cannot be replayed at all.
//!
//! Invariants: the secret never goes on the wire and is never logged;
//! [`verify`] compares in constant time. Called by the WAL sender
//! (primary) and the WAL receiver / build client (standby) during the
//! handshake.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::SystemId;

pub const NONCE_BYTES: usize = 32;
pub const MAC_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// A fresh random challenge nonce (thread-local CSPRNG from `rand`).
pub fn new_nonce() -> [u8; NONCE_BYTES] {
    rand::random::<[u8; NONCE_BYTES]>()
}

fn mac_over(
    secret: &[u8],
    nonce: &[u8; NONCE_BYTES],
    system_id: SystemId,
    name: &str,
) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(nonce);
    mac.update(&system_id.0.to_le_bytes());
    mac.update(name.as_bytes());
    mac
}

/// The standby's answer to a challenge.
pub fn respond(
    secret: &[u8],
    nonce: &[u8; NONCE_BYTES],
    system_id: SystemId,
    name: &str,
) -> [u8; MAC_BYTES] {
    mac_over(secret, nonce, system_id, name)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `mac` is the answer to `nonce` from a holder of `secret`
/// claiming `system_id` and `name`. Constant time in `mac`.
pub fn verify(
    secret: &[u8],
    nonce: &[u8; NONCE_BYTES],
    system_id: SystemId,
    name: &str,
    mac: &[u8; MAC_BYTES],
) -> bool {
    mac_over(secret, nonce, system_id, name)
        .verify_slice(mac)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";
    const SYS: SystemId = SystemId(0x1234_5678_9abc_def0);

    #[test]
    fn right_secret_verifies() {
        let nonce = new_nonce();
        let mac = respond(SECRET, &nonce, SYS, "s1");
        assert!(verify(SECRET, &nonce, SYS, "s1", &mac));
    }

    #[test]
    fn anything_else_does_not() {
        let nonce = [7u8; 32];
        let mac = respond(SECRET, &nonce, SYS, "s1");
        assert!(!verify(b"wrong secret", &nonce, SYS, "s1", &mac));
        assert!(!verify(b"", &nonce, SYS, "s1", &mac));
        assert!(!verify(SECRET, &[8u8; 32], SYS, "s1", &mac));
        assert!(!verify(SECRET, &nonce, SYS, "s2", &mac));
        assert!(!verify(SECRET, &nonce, SystemId(SYS.0 ^ 1), "s1", &mac));
        let mut flipped = mac;
        flipped[31] ^= 1;
        assert!(!verify(SECRET, &nonce, SYS, "s1", &flipped));
    }

    #[test]
    fn input_layout_is_nonce_system_id_name() {
        // Pins the layout: changing it is a protocol version bump.
        let mac = respond(b"Jefe", &[9u8; 32], SystemId(1), "s1");
        let mut input = vec![9u8; 32];
        input.extend_from_slice(&1u64.to_le_bytes());
        input.extend_from_slice(b"s1");
        let mut manual = HmacSha256::new_from_slice(b"Jefe").unwrap();
        manual.update(&input);
        assert_eq!(mac, <[u8; 32]>::from(manual.finalize().into_bytes()));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(new_nonce(), new_nonce());
    }
}

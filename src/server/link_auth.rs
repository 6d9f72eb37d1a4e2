//! Who may speak on an RM link: a challenge and an HMAC-SHA-256 answer.
//!
//! The RM that accepts a link sends 32 random bytes; the dialler answers
//! with its id and `HMAC-SHA-256(secret, "wooter-rm-link" | nonce | id)`.
//! The secret never crosses the wire, a recorded answer is useless for
//! another nonce, and until the answer checks out nothing from the link is
//! believed (no raft message is stepped). The secret file may hold several
//! secrets, one per line: the first signs, any verifies, which is how a
//! secret is rotated without stopping the cluster (`docs/security.md`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// The cluster secrets this RM knows (empty: links are not authenticated).
#[derive(Clone, Default)]
pub struct LinkAuth {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for LinkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret.
        write!(f, "LinkAuth({} secret(s))", self.secrets.len())
    }
}

fn mac_of(secret: &[u8], nonce: &[u8], rm_id: u64) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return Vec::new();
    };
    mac.update(b"wooter-rm-link");
    mac.update(nonce);
    mac.update(&rm_id.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}

impl LinkAuth {
    /// Secrets from a file's text: one per non-empty line, surrounding
    /// white space ignored.
    pub fn from_text(text: &str) -> LinkAuth {
        LinkAuth {
            secrets: text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Whether links are authenticated.
    pub fn enabled(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The answer this RM gives to `nonce`.
    pub fn answer(&self, nonce: &[u8], rm_id: u64) -> Vec<u8> {
        self.secrets.first().map_or_else(Vec::new, |s| mac_of(s, nonce, rm_id))
    }

    /// Whether `mac` is a right answer to `nonce` from `rm_id`.
    pub fn verify(&self, nonce: &[u8], rm_id: u64, mac: &[u8]) -> bool {
        if !self.enabled() {
            return true;
        }
        self.secrets.iter().any(|s| {
            let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(s) else {
                return false;
            };
            m.update(b"wooter-rm-link");
            m.update(nonce);
            m.update(&rm_id.to_be_bytes());
            // Constant-time comparison.
            m.verify_slice(mac).is_ok()
        })
    }
}

/// A fresh random nonce from the kernel.
pub fn nonce() -> Vec<u8> {
    let mut buf = vec![0u8; NONCE_LEN];
    let mut filled = 0;
    while filled < NONCE_LEN {
        // SAFETY: getrandom writes at most the given length into the buffer.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), NONCE_LEN - filled, 0) };
        if n <= 0 {
            break;
        }
        filled += n as usize;
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_verify_only_with_the_secret_and_nonce() {
        let a = LinkAuth::from_text("first-secret\nold-secret\n");
        let n = nonce();
        assert_eq!(n.len(), NONCE_LEN);
        let mac = a.answer(&n, 2);
        assert!(a.verify(&n, 2, &mac));
        assert!(!a.verify(&n, 3, &mac), "another id");
        assert!(!a.verify(&nonce(), 2, &mac), "another nonce");
        assert!(!a.verify(&n, 2, &[]), "no answer");
        let old = LinkAuth::from_text("old-secret");
        assert!(
            a.verify(&n, 2, &old.answer(&n, 2)),
            "a second line still verifies (rotation)"
        );
        assert!(!old.verify(&n, 2, &LinkAuth::from_text("other").answer(&n, 2)));
        assert_eq!(format!("{a:?}"), "LinkAuth(2 secret(s))");
    }
}

//! Secrets at rest: a delegated sign-in's tokens are sealed with AES-256-GCM
//! (ring's AEAD) under `security.encryption_key` before they reach the
//! database, and opened only in memory. Each sealed value is bound to what
//! it belongs to (the associated data names the organizer and the kind of
//! token), so a sealed value copied to another row does not open.

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

/// Sealing failed, or a sealed value does not open.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key is not 32 bytes of base64.
    #[error("security.encryption_key must be 32 bytes, base64-encoded")]
    Key,
    /// The value was sealed under another key, for another row, or was
    /// altered.
    #[error(
        "a sealed sign-in does not open with security.encryption_key: the key changed, or the row was altered; \
         the organizer must sign in again with `regsync login`"
    )]
    Open,
    /// The system's random source failed.
    #[error("cannot seal: the system's random source failed")]
    Random,
}

/// Seals and opens with one key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer for the base64 `key` (32 bytes once decoded).
    ///
    /// # Errors
    /// [`Error::Key`] for any other key.
    pub fn new(key: &SecretString) -> Result<Self, Error> {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(key.expose_secret().trim()).map_err(|_| Error::Key)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| Error::Key)?;
        Ok(Self { key: LessSafeKey::new(key), random: SystemRandom::new() })
    }

    /// `secret`, sealed for `context`: a fresh random nonce, then the
    /// ciphertext and its tag.
    ///
    /// # Errors
    /// [`Error::Random`] when no nonce can be drawn.
    pub fn seal(&self, secret: &SecretString, context: &str) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| Error::Random)?;
        let mut sealed = secret.expose_secret().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| Error::Random)?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    /// The secret sealed for `context`.
    ///
    /// # Errors
    /// [`Error::Open`] when it was sealed under another key or context, or
    /// altered.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<SecretString, Error> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Open)?;
        let mut buffer = ciphertext.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer).map_err(|_| Error::Open)?;
        String::from_utf8(plain.to_vec()).map(SecretString::from).map_err(|_| Error::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&SecretString::from(base64::engine::general_purpose::STANDARD.encode([byte; 32]))).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let secret = SecretString::from("refresh-token-value");
        let sealed = sealer(1).seal(&secret, "org-1/refresh").unwrap();

        assert_eq!(sealer(1).open(&sealed, "org-1/refresh").unwrap().expose_secret(), "refresh-token-value");
        assert!(!sealed.windows(7).any(|w| w == b"refresh"), "the secret is not in the sealed bytes");
        assert!(sealer(2).open(&sealed, "org-1/refresh").is_err(), "another key");
        assert!(sealer(1).open(&sealed, "org-2/refresh").is_err(), "another organizer");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(sealer(1).open(&altered, "org-1/refresh").is_err(), "altered");
        assert_ne!(sealer(1).seal(&secret, "c").unwrap(), sealer(1).seal(&secret, "c").unwrap(), "fresh nonces");
    }

    #[test]
    fn only_a_32_byte_key_is_accepted() {
        assert!(Sealer::new(&SecretString::from("c2hvcnQ=")).is_err());
        assert!(Sealer::new(&SecretString::from("not base64!")).is_err());
    }
}

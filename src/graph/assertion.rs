//! Client assertions: how an app proves itself without a secret. A
//! certificate credential is a short JWT signed with the app's private key
//! (PS256, the certificate's SHA-256 thumbprint in `x5t#S256`, `aud` the
//! token endpoint, a fresh `jti`); a federated credential is a token another
//! identity provider issued, read from its file for every request because
//! the file is rotated under us.
//! <https://learn.microsoft.com/entra/identity-platform/certificate-credentials>
//! <https://learn.microsoft.com/entra/workload-id/workload-identity-federation>

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secrecy::SecretString;
use serde::Serialize;

use super::Error;

/// `client_assertion_type` for both kinds.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a signed assertion is valid: Microsoft asks for at most 5–10
/// minutes; each token request signs a fresh one.
const LIFETIME: Duration = Duration::from_secs(300);

/// The app's certificate key, loaded once at start.
pub struct CertificateKey {
    key: EncodingKey,
    /// base64url SHA-256 of the certificate's DER.
    thumbprint: String,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey").field("x5t#S256", &self.thumbprint).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

impl CertificateKey {
    /// Reads the PEM certificate and its RSA private key (PKCS#8 or PKCS#1).
    ///
    /// # Errors
    /// [`Error::Setup`] naming the setting whose file is unreadable or wrong.
    pub fn load(certificate: &Path, private_key: &Path) -> Result<Self, Error> {
        let der = CertificateDer::from_pem_file(certificate).map_err(|e| {
            Error::Setup(format!("graph.certificate_path: {} is not a PEM certificate: {e}", certificate.display()))
        })?;
        let pem = std::fs::read(private_key)
            .map_err(|e| Error::Setup(format!("graph.private_key_path: cannot read {}: {e}", private_key.display())))?;
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| {
            Error::Setup(format!(
                "graph.private_key_path: {} is not an RSA private key in PEM: {e}",
                private_key.display()
            ))
        })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        Ok(Self { key, thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) })
    }

    /// A fresh assertion for `client_id` at the token endpoint `audience`.
    ///
    /// # Errors
    /// [`Error::Setup`] when the key cannot sign (a key that is not RSA).
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<SecretString, Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + LIFETIME.as_secs(),
        };
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| Error::Setup(format!("graph.private_key_path: cannot sign the client assertion: {e}")))
    }
}

/// Reads the federated assertion from `file`, as it is now.
///
/// # Errors
/// [`Error::Token`] when the file is missing or empty: no token can be
/// asked for, and the operator must fix the projection.
pub fn federated(file: &PathBuf) -> Result<SecretString, Error> {
    let failed = |detail: String| Error::Token {
        status: None,
        error: "federated_token_file".into(),
        detail,
        hint: "check graph.federated_token_file (or AZURE_FEDERATED_TOKEN_FILE): the workload identity must \
               project a token there",
        retry_after: None,
    };
    let text = std::fs::read_to_string(file).map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(failed(format!("{} is empty", file.display())));
    }
    Ok(SecretString::from(token.to_owned()))
}

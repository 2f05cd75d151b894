//! Client assertions the token endpoint checks: certificates (RS256/PS256
//! with their thumbprints) and federated tokens.

use super::*;

pub(super) type Refusal = (u16, &'static str, String);

/// A certificate assertion (it names a certificate thumbprint) or a
/// federated one (it does not).
pub(super) fn check_assertion(identity: &mut Identity, assertion: &str, audience: &str) -> Result<(), Refusal> {
    let malformed =
        |why: String| (400, "invalid_client", format!("AADSTS50027: JWT token is invalid or malformed: {why}."));
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| malformed(e.to_string()))?;
    let Some(thumbprint) = header.x5t_s256.as_deref() else { return check_federated(identity, assertion) };
    let Some(pem) = identity.certificate.as_deref() else {
        return Err((
            401,
            "invalid_client",
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found.]".into(),
        ));
    };
    if thumbprint != thumbprint_of(pem) {
        return Err((401, "invalid_client", format!("AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}']")));
    }
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
        return Err(malformed(format!("alg {:?} is not supported", header.alg)));
    }
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| malformed(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.into());
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub", "nbf"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
            (401, "invalid_client", "AADSTS700027: Client assertion contains an invalid signature.".into())
        }
        jsonwebtoken::errors::ErrorKind::ExpiredSignature | jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
            (400, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range.".into())
        }
        jsonwebtoken::errors::ErrorKind::InvalidAudience => (
            400,
            "invalid_client",
            format!("AADSTS700212: The audience claim of the client assertion is not {audience}."),
        ),
        other => malformed(format!("{other:?}")),
    })?;
    let lifetime =
        claims.claims["exp"].as_u64().unwrap_or(0).saturating_sub(claims.claims["nbf"].as_u64().unwrap_or(0));
    if lifetime > 600 || claims.claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err(malformed("the assertion must carry a jti and last at most 10 minutes".into()));
    }
    Ok(())
}

pub(super) fn check_federated(identity: &mut Identity, assertion: &str) -> Result<(), Refusal> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[FEDERATED_AUDIENCE]);
    validation.set_issuer(&[FEDERATED_ISSUER]);
    validation.sub = Some(FEDERATED_SUBJECT.into());
    let no_match = || {
        (
            400,
            "invalid_client",
            "AADSTS700213: No matching federated identity record found for presented assertion subject.".to_owned(),
        )
    };
    let claims = jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_secret(&identity.key), &validation)
        .map_err(|_| no_match())?
        .claims;
    match claims["jti"].as_str().and_then(|jti| identity.federated.get(jti)) {
        Some(true) => Ok(()),
        Some(false) => {
            Err((400, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range.".into()))
        }
        None => Err(no_match()),
    }
}

/// base64url SHA-256 of the certificate's DER.
pub(super) fn thumbprint_of(pem: &str) -> String {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

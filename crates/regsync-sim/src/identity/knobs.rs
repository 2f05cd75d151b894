//! What a test can do to the simulated identity platform, and read back.

use super::*;
use crate::{Sim, TokenFault};

impl Sim {
    /// Queues a fault for the next token request.
    pub fn fail_next_token(&self, fault: TokenFault) {
        self.lock().token_faults.push_back(fault);
    }

    /// Sends `Retry-After: {secs}` with the token faults from now on.
    pub fn token_retry_after(&self, secs: &str) {
        self.lock().token_retry_after = Some(secs.to_owned());
    }

    /// Makes the token endpoint answer only after `delay`.
    pub fn delay_tokens(&self, delay: Duration) {
        self.lock().token_delay = delay;
    }

    /// Makes issued tokens carry this `expires_in` (seconds).
    pub fn token_lifetime(&self, secs: u64) {
        self.lock().token_lifetime = Some(secs);
    }

    /// Registers `pem` as the app's certificate: assertions signed with its
    /// key are accepted.
    pub fn trust_certificate(&self, pem: &str) {
        self.lock().identity.certificate = Some(pem.to_owned());
    }

    /// A fresh assertion of the simulated external issuer that the app's
    /// federated credential trusts (what a workload identity projects).
    pub fn federated_assertion(&self) -> String {
        self.lock().identity.federated_assertion()
    }

    /// Every federated assertion handed out so far expires.
    pub fn expire_federated_assertions(&self) {
        self.lock().identity.expire_federated();
    }

    /// The app's application permissions in its tokens' `roles`.
    pub fn grant_roles(&self, roles: &[&str]) {
        self.lock().identity.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// What the next device-code polls answer, in order (then pending).
    pub fn script_device_code(&self, answers: Vec<DeviceAnswer>) {
        self.lock().identity.device_script = answers.into();
    }

    /// Every device-code sign-in that has no scripted answer left signs in
    /// as `oid` at its first poll (for the standalone simulator).
    pub fn sign_in_every_device_code_as(&self, oid: &str) {
        self.lock().identity.default_user = Some(oid.to_owned());
    }

    /// The `interval` (seconds) device-code answers ask for; polls sooner
    /// than it are answered `slow_down`.
    pub fn device_code_interval(&self, secs: u64) {
        self.lock().identity.device_interval = secs;
    }

    /// `expires_in` of signed-in users' access tokens.
    pub fn delegated_token_lifetime(&self, secs: u64) {
        self.lock().identity.delegated_lifetime = secs;
    }

    /// The next refresh grant is redeemed (its refresh token spent) but its
    /// answer is lost: the client sees 504.
    pub fn lose_next_refresh_answer(&self) {
        self.lock().identity.lose_refresh_answers += 1;
    }

    /// Revokes every sign-in of the user `oid` (their refresh tokens then
    /// answer `invalid_grant`).
    pub fn revoke_sign_in(&self, oid: &str) {
        self.lock().identity.revoke_user(oid);
    }

    /// Access tokens are issued for this Graph root (`aud`), as another
    /// cloud's identity platform would.
    pub fn token_audience(&self, audience: &str) {
        self.lock().identity.audience = audience.to_owned();
    }

    /// Every secret the identity platform and the platform's token endpoint
    /// have issued or received: access, id and refresh tokens, assertions
    /// (for tests that look for leaks).
    pub fn issued_secrets(&self) -> Vec<String> {
        let s = self.lock();
        let platform = s.platform.oauth.iter().flat_map(|o| o.tokens.keys().cloned());
        s.tokens.keys().cloned().chain(s.identity.issued_secrets()).chain(platform).collect()
    }

    /// Graph answers 401 to every access token of the signed-in user `oid`,
    /// even a freshly refreshed one.
    pub fn refuse_user_tokens(&self, oid: &str) {
        self.lock().refused_users.insert(oid.to_owned());
    }

    /// Graph accepts the user's tokens again.
    pub fn accept_user_tokens(&self, oid: &str) {
        self.lock().refused_users.remove(oid);
    }

    /// Revokes every issued token (Graph then answers 401 to them).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }
}

//! Delegated sign-in: the device-code poll, refresh grants (a reused refresh
//! token revokes its chain) and the user's tokens.

use super::*;

pub(super) fn device_poll(s: &mut State, device_code: &str) -> Response {
    let Some((last, interval)) = s.identity.device_codes.get_mut(device_code) else {
        return token_error(400, "bad_verification_code", "AADSTS70019: Verification code expired.");
    };
    let now = Instant::now();
    // A little slack for timers; a client that ignores the interval is
    // told to slow down, and its interval grows.
    let too_soon = last.is_some_and(|at| now + Duration::from_millis(100) < at + *interval);
    *last = Some(now);
    if too_soon {
        *interval += Duration::from_secs(5);
        s.identity.polls_too_soon += 1;
        return token_error(400, "slow_down", "AADSTS70016: Polling too fast: slow down.");
    }
    let unscripted = match &s.identity.default_user {
        Some(oid) => DeviceAnswer::SignedIn { oid: oid.clone(), upn: crate::upn_of(oid) },
        None => DeviceAnswer::Pending,
    };
    match s.identity.device_script.pop_front().unwrap_or(unscripted) {
        DeviceAnswer::Pending => token_error(
            400,
            "authorization_pending",
            "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ),
        DeviceAnswer::SlowDown => {
            if let Some((_, interval)) = s.identity.device_codes.get_mut(device_code) {
                *interval += Duration::from_secs(5);
            }
            token_error(400, "slow_down", "AADSTS70016: Polling too fast: slow down.")
        }
        DeviceAnswer::Expired => {
            s.identity.device_codes.remove(device_code);
            token_error(400, "expired_token", "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.")
        }
        DeviceAnswer::Declined => {
            s.identity.device_codes.remove(device_code);
            token_error(400, "authorization_declined", "AADSTS70000: The user declined to sign in.")
        }
        DeviceAnswer::SignedIn { oid, upn } => {
            s.identity.device_codes.remove(device_code);
            let chain = s.identity.next_chain;
            s.identity.next_chain += 1;
            user_tokens(s, chain, &oid, &upn)
        }
    }
}

pub(super) fn refresh(s: &mut State, presented: &str) -> Response {
    let Some(token) = s.identity.refresh_tokens.get(presented).cloned() else {
        return token_error(400, "invalid_grant", "AADSTS9002313: Invalid request. Request is malformed or invalid.");
    };
    if token.redeemed {
        // Reuse: the whole chain is revoked.
        s.identity.refresh_reuses += 1;
        s.identity.revoked_chains.push(token.chain);
    }
    if s.identity.revoked_chains.contains(&token.chain) {
        return token_error(
            400,
            "invalid_grant",
            "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed.",
        );
    }
    if let Some(t) = s.identity.refresh_tokens.get_mut(presented) {
        t.redeemed = true;
    }
    s.identity.refreshes += 1;
    let answer = user_tokens(s, token.chain, &token.oid, &token.upn);
    if s.identity.lose_refresh_answers > 0 {
        s.identity.lose_refresh_answers -= 1;
        return token_error(504, "server_error", "AADSTS90033: A transient error has occurred. Please try again.");
    }
    answer
}

/// A signed-in user's access, id and (new) refresh token.
pub(super) fn user_tokens(s: &mut State, chain: u64, oid: &str, upn: &str) -> Response {
    let lifetime = s.identity.delegated_lifetime;
    let scope = "OnlineMeetings.ReadWrite User.Read openid profile";
    let now = now_secs();
    let access_token = s.identity.sign(&json!({"aud": s.identity.audience, "tid": TENANT, "appid": CLIENT_ID,
        "scp": scope, "oid": oid, "upn": upn, "jti": uuid::Uuid::new_v4(), "iat": now, "exp": now.saturating_add(lifetime)}));
    let id_token = s.identity.sign(&json!({"aud": CLIENT_ID, "tid": TENANT, "oid": oid, "preferred_username": upn,
        "iat": now, "exp": now + 3600}));
    s.identity.issued.push(id_token.clone());
    let refresh_token = format!("simrt-{}", uuid::Uuid::new_v4().simple());
    s.identity
        .refresh_tokens
        .insert(refresh_token.clone(), RefreshToken { chain, oid: oid.into(), upn: upn.into(), redeemed: false });
    s.tokens.insert(access_token.clone(), Some(oid.to_owned()));
    s.tokens_issued += 1;
    Json(json!({"token_type": "Bearer", "scope": scope, "expires_in": lifetime, "ext_expires_in": lifetime,
        "access_token": access_token, "refresh_token": refresh_token, "id_token": id_token}))
    .into_response()
}

//! Conventions the HTTP clients of `source` and `graph` share: the user
//! agent and error text an operator can act on. No requests are made here.

/// Sent on every request.
pub const USER_AGENT: &str = concat!("regsync/", env!("CARGO_PKG_VERSION"));

/// Follows a redirect only within the same origin (scheme, host and port):
/// the request carries credentials, and none may reach another host.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt.previous().last().is_some_and(|from| from.origin() == attempt.url().origin());
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// reqwest's Display hides the cause; operators need "timed out" or
/// "connection refused". `timeout_key` names the setting that timed out.
pub fn error_text(e: &reqwest::Error, timeout_key: &str) -> String {
    if e.is_timeout() {
        return format!("timed out ({timeout_key})");
    }
    let mut text = if e.is_connect() { "could not connect".to_owned() } else { e.to_string() };
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

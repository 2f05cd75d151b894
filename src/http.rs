//! Conventions the HTTP clients of `source` and `graph` share: the user
//! agent, redirects, `Retry-After`, and error text an operator can act on.
//! No requests are made here.

use std::time::{Duration, SystemTime};

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

/// Whether `url`'s host is this machine (`localhost` or a loopback address).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request to `url` may carry credentials: over https, or plain
/// http only to a loopback host (a simulator on this machine).
///
/// # Errors
/// Why not, for the operator: the sentence follows the setting's key.
pub fn credentials_may_go_to(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(format!(
            "must be https: credentials are sent to it, and plain http is accepted only for a loopback host, got {url:?}"
        )),
    }
}

/// Parses `Retry-After`: seconds (possibly fractional, as Graph sends; platforms send whole ones) or an
/// HTTP-date. Garbage, negative and non-finite values give `None`, so the
/// caller falls back to its own backoff; values are capped at one hour.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(3_600);
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(CAP.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_fractional_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("10", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("2.128", now), Some(Duration::from_secs_f64(2.128)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("1e12", now), Some(Duration::from_secs(3_600)));
    }
}

/// The longest lifetime regsync believes a remote service gives anything
/// (a token, a device code): one day. Longer is absurd, not trusted.
pub const MAX_REMOTE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Seconds as remote services write them: a JSON number, integer or not
/// (`1e300` is valid JSON), or a numeric string. Negative or not a number
/// is 0; more than [`MAX_REMOTE_LIFETIME`] is capped there, so no clock
/// arithmetic on it can overflow.
///
/// # Errors
/// Neither a number nor a numeric string.
pub fn lenient_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Number(f64),
        Text(String),
    }
    let secs = match Lenient::deserialize(d)? {
        Lenient::Number(n) => n,
        Lenient::Text(s) => s.trim().parse::<f64>().map_err(serde::de::Error::custom)?,
    };
    Ok(clamp_secs(secs))
}

/// [`lenient_secs`] for a field that may be absent.
///
/// # Errors
/// As [`lenient_secs`].
pub fn lenient_secs_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    lenient_secs(d).map(Some)
}

/// `secs` as a duration within 0 ..= [`MAX_REMOTE_LIFETIME`].
pub fn clamp_secs(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(secs.min(MAX_REMOTE_LIFETIME.as_secs_f64()))
}

/// `text` with the credentials a URL or a query may carry removed: the
/// user-info of every `scheme://user:password@host` and the values of
/// query parameters that hold secrets. Every error text that can reach a
/// column or a log passes through here.
pub fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    const SECRET_PARAMS: [&str; 6] =
        ["access_token=", "client_secret=", "password=", "refresh_token=", "code=", "sig="];
    let has_userinfo = text.match_indices("://").any(|(at, _)| authority_userinfo(&text[at + 3..]).is_some());
    let has_param = SECRET_PARAMS.iter().any(|p| text.contains(p));
    if !has_userinfo && !has_param {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        out.push_str(&rest[..at + 3]);
        rest = &rest[at + 3..];
        if let Some(userinfo) = authority_userinfo(rest) {
            rest = &rest[userinfo..];
        }
    }
    out.push_str(rest);
    for param in SECRET_PARAMS {
        let mut from = 0;
        while let Some(found) = out[from..].find(param) {
            let start = from + found + param.len();
            // Only a query parameter: at the start, or after `?`, `&` or space.
            let before = out[..from + found].chars().next_back();
            let end = out[start..].find(['&', ' ', '"', '\'', '#']).map_or(out.len(), |e| start + e);
            if before.is_none_or(|c| matches!(c, '?' | '&' | ' ' | '"')) && end > start {
                out.replace_range(start..end, "***");
            }
            from = start;
        }
    }
    out.into()
}

/// The length of `user[:password]@` at the start of a URL's authority
/// (what follows `://`), if it has one.
fn authority_userinfo(after_scheme: &str) -> Option<usize> {
    let authority_end = after_scheme.find(['/', '?', '#', ' ', '"', '\'']).unwrap_or(after_scheme.len());
    after_scheme[..authority_end].rfind('@').map(|at| at + 1)
}

#[cfg(test)]
mod lifetime_tests {
    use std::time::Duration;

    use super::MAX_REMOTE_LIFETIME;

    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(deserialize_with = "super::lenient_secs")]
        expires_in: Duration,
    }

    fn read(json: &str) -> Result<Duration, serde_json::Error> {
        serde_json::from_str::<Answer>(&format!(r#"{{"expires_in": {json}}}"#)).map(|a| a.expires_in)
    }

    proptest::proptest! {
        /// Any number or text a remote service sends as seconds (a token's
        /// lifetime, `Retry-After`) is read without a panic, and what is
        /// taken stays within a day (an hour for `Retry-After`).
        #[test]
        fn any_remote_seconds_are_read_without_a_panic(secs in proptest::num::f64::ANY, text in ".*") {
            proptest::prop_assert!(super::clamp_secs(secs) <= MAX_REMOTE_LIFETIME);
            let _ = read(&format!("{secs:e}"));
            let _ = read(&serde_json::to_string(&text).unwrap_or_default());
            let now = std::time::SystemTime::now();
            let waited = super::parse_retry_after(&text, now).unwrap_or_default();
            proptest::prop_assert!(waited <= Duration::from_secs(3_600));
            let _ = super::parse_retry_after(&format!("{secs}"), now);
        }
    }

    #[test]
    fn every_valid_json_number_is_read_and_absurd_ones_capped() {
        assert_eq!(read("3599").unwrap(), Duration::from_secs(3599));
        assert_eq!(read(r#""3599""#).unwrap(), Duration::from_secs(3599));
        assert_eq!(read("18446744073709551615").unwrap(), MAX_REMOTE_LIFETIME);
        assert_eq!(read("1e300").unwrap(), MAX_REMOTE_LIFETIME);
        assert_eq!(read("-5").unwrap(), Duration::ZERO);
        assert_eq!(read("59.5").unwrap(), Duration::from_millis(59_500));
        assert!(read(r#""soon""#).is_err());
        let later = std::time::Instant::now() + read("1e308").unwrap();
        assert!(later > std::time::Instant::now(), "no overflow");
    }
}

#[cfg(test)]
mod scrub_tests {
    use super::scrub;

    #[test]
    fn credentials_in_urls_and_queries_are_removed_and_the_rest_kept() {
        let text = "PUT https://sync:hunter2@events.example/api/x?a=1 failed; \
                    see http://u@h/p?access_token=abc&x=2 and mailto:a@b.example";
        assert_eq!(
            scrub(text),
            "PUT https://events.example/api/x?a=1 failed; see http://h/p?access_token=***&x=2 and mailto:a@b.example"
        );
        assert_eq!(
            scrub("nothing secret at https://graph.example/v1.0"),
            "nothing secret at https://graph.example/v1.0"
        );
        assert_eq!(scrub("grant_type=x&client_secret=s3cr3t"), "grant_type=x&client_secret=***");
    }
}

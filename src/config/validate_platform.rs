//! Validation of the platform's side of the settings: the meeting listing
//! and the registrants with their write-back.

use super::{Settings, SourceAuth};

impl Settings {
    /// The platform connector: credentials, page shape, pointers.
    pub(super) fn check_source(&self, bad: &mut Vec<String>) {
        match self.source.auth {
            SourceAuth::Bearer | SourceAuth::ApiKey if self.source.token.is_none() => {
                bad.push("source.token (or source.token_file) is required when source.auth is bearer or api_key".into())
            }
            SourceAuth::Basic if self.source.username.is_none() || self.source.password.is_none() => bad.push(
                "source.username and source.password (or source.password_file) are required when source.auth is basic"
                    .into(),
            ),
            SourceAuth::Oauth2 => {
                let o = &self.source.oauth2;
                if o.token_url.is_none() || o.client_id.is_none() || o.client_secret.is_none() {
                    bad.push(
                        "source.oauth2.token_url, client_id and client_secret (or client_secret_file) are required \
                         when source.auth is oauth2"
                            .into(),
                    );
                }
            }
            _ => {}
        }
        // Credentials travel only over https, except to this machine.
        if self.source.auth != SourceAuth::None || !self.source.headers.is_empty() {
            let urls = [
                ("source.base_url", &self.source.base_url),
                ("source.oauth2.token_url", &self.source.oauth2.token_url),
            ];
            for (key, url) in urls.into_iter().filter_map(|(key, url)| Some((key, url.as_deref()?))) {
                if let Err(why) = crate::http::credentials_may_go_to(url) {
                    bad.push(format!("{key} {why}"));
                }
            }
        }
        for name in self.source.headers.keys().chain(self.source.header_files.keys()) {
            if reqwest::header::HeaderName::try_from(name.as_str()).is_err() {
                bad.push(format!("source.headers.{name} is not a valid HTTP header name"));
            }
        }
        if self.source.page_size == 0 {
            bad.push("source.page_size must be at least 1".into());
        }
        if self.source.max_pages == 0 {
            bad.push("source.max_pages must be at least 1".into());
        }
        let s = &self.source;
        for (key, ptr) in [
            ("source.items_pointer", &s.items_pointer),
            ("source.cursor_pointer", &s.cursor_pointer),
            ("source.next_url_pointer", &s.next_url_pointer),
            ("source.has_more_pointer", &s.has_more_pointer),
            ("source.total_pointer", &s.total_pointer),
            ("source.complete_pointer", &s.complete_pointer),
        ] {
            if !ptr.is_empty() && !ptr.starts_with('/') {
                bad.push(format!("{key} must be a JSON pointer starting with '/', got {ptr:?}"));
            }
        }
        let f = &s.fields;
        for (key, selector) in [
            ("source.fields.id", &f.id),
            ("source.fields.organizer_id", &f.organizer_id),
            ("source.fields.online_meeting_id", &f.online_meeting_id),
            ("source.fields.allowed_registrant", &f.allowed_registrant),
            ("source.fields.status", &f.status),
            ("source.fields.updated_at", &f.updated_at),
            ("source.fields.starts_at", &f.starts_at),
            ("source.fields.ends_at", &f.ends_at),
            ("source.fields.organizer_upn", &f.organizer_upn),
            ("source.fields.join_url", &f.join_url),
            ("source.fields.webinar_id", &f.webinar_id),
            ("source.fields.townhall_id", &f.townhall_id),
        ] {
            if let Err(e) = crate::domain::Selector::parse(selector) {
                bad.push(format!("{key}: {e}"));
            }
        }
        for (value, meaning) in &s.status_map {
            if !matches!(meaning.as_str(), "active" | "cancelled" | "ignore") {
                bad.push(format!(
                    "source.status_map.{value} is {meaning:?}; expected \"active\", \"cancelled\" or \"ignore\""
                ));
            }
        }
    }

    /// `[registrants]` and `[writeback]`.
    /// `[attendance]`: an end to wait for, and a write-back safe to repeat.
    pub(super) fn check_attendance(&self, bad: &mut Vec<String>) {
        let a = &self.attendance;
        if !a.enabled {
            return;
        }
        if self.source.fields.ends_at.is_empty() {
            bad.push(
                "attendance.enabled needs each event's end: map source.fields.ends_at (attendance is read \
                 attendance.delay_secs after it)"
                    .into(),
            );
        }
        if !self.registrants.enabled {
            bad.push("attendance.enabled needs registrants.enabled: attendance is written back per registrant".into());
        }
        if a.give_up_after_secs <= a.delay_secs {
            bad.push(format!(
                "attendance.give_up_after_secs ({}) must be more than attendance.delay_secs ({})",
                a.give_up_after_secs, a.delay_secs
            ));
        }
        let w = &a.writeback;
        if w.url.is_empty() {
            return;
        }
        if !matches!(w.method.to_ascii_uppercase().as_str(), "PUT" | "PATCH") {
            bad.push(format!(
                "attendance.writeback.method {:?} is not PUT or PATCH: a write-back may be sent again after a lost \
                 answer, so it must be a method whose repeat changes nothing",
                w.method
            ));
        }
        if !w.url.starts_with('/') {
            if let Err(why) = crate::http::credentials_may_go_to(&w.url) {
                bad.push(format!("attendance.writeback.url {why}"));
            }
        }
        // Figures may stand outside quotes; the rest inside JSON strings.
        let sample = [("{attended}", "true"), ("{total_seconds}", "0")]
            .into_iter()
            .chain(["{email}", "{first_join}", "{last_leave}", "{registrant_id}"].map(|p| (p, "x")))
            .fold(w.body.clone(), |body, (placeholder, value)| body.replace(placeholder, value));
        if serde_json::from_str::<serde_json::Value>(&sample).is_err() {
            bad.push(
                "attendance.writeback.body is not a JSON template ({attended} and {total_seconds} may stand alone; \
                 the other placeholders go inside JSON strings)"
                    .into(),
            );
        }
    }

    pub(super) fn check_registrants(&self, bad: &mut Vec<String>) {
        let r = &self.registrants;
        if !r.enabled {
            return;
        }
        let f = &r.fields;
        for (key, selector) in [
            ("registrants.fields.id", &f.id),
            ("registrants.fields.meeting_id", &f.meeting_id),
            ("registrants.fields.email", &f.email),
            ("registrants.fields.first_name", &f.first_name),
            ("registrants.fields.last_name", &f.last_name),
            ("registrants.fields.status", &f.status),
            ("registrants.fields.tenant_id", &f.tenant_id),
            ("registrants.fields.user_id", &f.user_id),
            ("registrants.fields.preferred_timezone", &f.preferred_timezone),
            ("registrants.fields.preferred_language", &f.preferred_language),
            ("registrants.fields.updated_at", &f.updated_at),
        ] {
            if let Err(e) = crate::domain::Selector::parse(selector) {
                bad.push(format!("{key}: {e}"));
            }
        }
        for (name, selector) in &r.answers {
            if let Err(e) = crate::domain::Selector::parse(selector) {
                bad.push(format!("registrants.answers.{name}: {e}"));
            }
        }
        if r.status_readback_secs > 0 && self.graph.target.event_kind().is_none() {
            bad.push(
                "registrants.status_readback_secs is set, but a meeting registration's registrants have no status \
                 in Teams to read back: graph.target is \"meeting_registration\""
                    .into(),
            );
        }
        if !r.answers.is_empty() && self.graph.target.event_kind().is_none() {
            bad.push(
                "registrants.answers is set, but only a webinar or town hall asks registration questions: \
                 graph.target is \"meeting_registration\""
                    .into(),
            );
        }
        if f.id.is_empty() {
            bad.push("registrants.fields.id is required when registrants.enabled is true".into());
        }
        if !r.path.contains("{meeting_id}") && f.meeting_id.is_empty() {
            bad.push(
                "registrants.fields.meeting_id is required when registrants.path lists every meeting's registrants \
                 at once (it has no {meeting_id})"
                    .into(),
            );
        }
        if !r.items_pointer.is_empty() && !r.items_pointer.starts_with('/') {
            bad.push(format!(
                "registrants.items_pointer must be a JSON pointer starting with '/', got {:?}",
                r.items_pointer
            ));
        }
        for (value, meaning) in &r.status_map {
            if !matches!(meaning.as_str(), "registered" | "cancelled" | "ignore") {
                bad.push(format!(
                    "registrants.status_map.{value} is {meaning:?}; expected \"registered\", \"cancelled\" or \"ignore\""
                ));
            }
        }
        for (key, w) in [("writeback.", self.writeback.clone()), ("writeback.status_", self.writeback.for_status())] {
            if w.url.is_empty() {
                continue;
            }
            // A write-back may be sent again (a lost answer, a crash before
            // it is recorded): only an idempotent method is safe to repeat.
            if !matches!(w.method.to_ascii_uppercase().as_str(), "PUT" | "PATCH") {
                bad.push(format!(
                    "{key}method {:?} is not PUT or PATCH: a write-back may be sent again after a lost answer, \
                     so it must be a method whose repeat changes nothing",
                    w.method
                ));
            }
            if !w.url.starts_with('/') {
                if let Err(why) = crate::http::credentials_may_go_to(&w.url) {
                    bad.push(format!("{key}url {why}"));
                }
            }
            let sample = ["{join_web_url}", "{registration_id}", "{registrant_id}", "{status}"]
                .iter()
                .fold(w.body.clone(), |body, placeholder| body.replace(placeholder, "x"));
            if !w.body.is_empty() && serde_json::from_str::<serde_json::Value>(&sample).is_err() {
                bad.push(format!("{key}body is not a JSON template (placeholders go inside JSON strings)"));
            }
        }
    }
}

//! What a test can do to the simulated platform, and read back.

use super::*;
use crate::Sim;

impl Sim {
    /// Adds or replaces a meeting in the platform's list; Graph learns of its
    /// online meeting.
    pub fn upsert_meeting(&self, meeting: SimMeeting) {
        let id = meeting.id.clone();
        self.lock().upsert_meeting(meeting);
        self.announce(None, &id);
    }

    /// Adds `n` generated meetings: every 7th for `organization`, every 10th
    /// cancelled.
    pub fn seed(&self, n: usize) {
        for i in 1..=n {
            self.upsert_meeting(SimMeeting::generated(i));
        }
    }

    /// Changes a meeting in the list; false if it is not there.
    pub fn update_meeting(&self, id: &str, change: impl FnOnce(&mut SimMeeting)) -> bool {
        let mut s = self.lock();
        let Some(meeting) = s.platform.get_mut(id) else { return false };
        change(meeting);
        let key = (meeting.organizer_id.clone(), meeting.online_meeting_id.clone());
        s.online_meetings.insert(key);
        drop(s);
        self.announce(None, id);
        true
    }

    /// Each list request filtered by modification time, in order: what it
    /// listed (`meetings` or `registrants`) and its `changed_since`.
    pub fn changed_since_asked(&self) -> Vec<(&'static str, chrono::DateTime<chrono::Utc>)> {
        self.lock().platform.changed_since_asked.clone()
    }

    /// Drops a meeting from the list (it "vanishes").
    pub fn remove_meeting(&self, id: &str) {
        self.lock().platform.remove(id);
        self.announce(None, id);
    }

    /// Appends a raw JSON item (for bad-input tests).
    pub fn push_raw_item(&self, item: Value) {
        self.lock().platform.push_raw(item);
    }

    /// Appends an item as raw JSON text, served as it is (for input that a
    /// JSON value cannot hold, such as an unpaired UTF-16 surrogate).
    pub fn push_raw_text(&self, item: &str) {
        self.lock().platform.push_text(item.to_owned());
    }

    /// Fails the platform's page `index` (0-based) on every request.
    pub fn fail_page(&self, index: usize, fault: PageFault) {
        self.lock().platform.page_faults.insert(index, fault);
    }

    /// Clears page faults.
    pub fn heal_pages(&self) {
        self.lock().platform.page_faults.clear();
    }

    /// From now on the platform answers 401 to a list request that lacks
    /// any of these headers with exactly this value (`Authorization:
    /// Basic …`, a second key header, …).
    pub fn require_platform_headers(&self, headers: &[(&str, &str)]) {
        self.lock().platform.required_headers =
            headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned())).collect();
    }

    /// When each platform list request arrived, and its status.
    pub fn platform_requests(&self) -> Vec<(tokio::time::Instant, u16)> {
        self.lock().platform.requests.clone()
    }

    /// Asks every listing request for a token from the platform's OAuth
    /// endpoint (`POST /platform/oauth2/token`), each living `lifetime_secs`.
    pub fn require_platform_oauth(&self, lifetime_secs: u64) {
        self.lock().platform.oauth = Some(PlatformOAuth { lifetime_secs, ..Default::default() });
    }

    /// The platform's OAuth endpoint writes `expires_in` as this JSON value
    /// (`1e300`, `18446744073709551615`: valid JSON, absurd lifetimes).
    pub fn platform_token_expires_in(&self, value: serde_json::Value) {
        if let Some(oauth) = self.lock().platform.oauth.as_mut() {
            oauth.expires_in_as = Some(value);
        }
    }

    /// Tokens the platform's OAuth endpoint issued.
    pub fn platform_tokens_issued(&self) -> u64 {
        self.lock().platform.oauth.as_ref().map_or(0, |o| o.issued)
    }

    /// Lists meetings by organizer e-mail (`organizer_email`) and Teams join
    /// link (`join_url`) instead of Graph's ids.
    pub fn list_by_reference(&self, by_reference: bool) {
        self.lock().platform.by_reference = by_reference;
    }
}

//! Judged from both books: each Graph call in regsync's (`graph_calls`:
//! when it left, how long its sender waited, the lease it was sent under,
//! the row it was for) against when the simulator saw it arrive.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use regsync_sim::Sim;

/// Each Graph call in regsync's books (when it left, how long its sender
/// waited, the lease it was sent under, the row it was for) against when
/// the simulator saw it arrive.
#[derive(Default)]
pub struct Timeliness {
    /// Calls found in both books.
    pub judged: usize,
    /// Of those, calls given up on without an answer.
    abandoned: usize,
    /// Of those, how many the network still delivered after they were given
    /// up (bytes already on the path: the wait before the lookup covers them).
    delivered_after_giving_up: usize,
    /// Requests given up on that arrived after a later request for the same
    /// row had: regsync acted on that request's answer while the first was
    /// still on its way.
    pub late: Vec<String>,
    /// Writes that arrived after the lease they were sent under.
    pub after_lease: Vec<String>,
    /// Requests that arrived with no record in regsync's books (their
    /// sender died, or lost its database path, before writing it).
    unrecorded: usize,
}

impl Timeliness {
    pub fn summary(&self) -> String {
        format!(
            "{} calls in both books, {} given up on ({} still delivered after), {} late, {} after their lease, \
             {} arrived unrecorded",
            self.judged,
            self.abandoned,
            self.delivered_after_giving_up,
            self.late.len(),
            self.after_lease.len(),
            self.unrecorded
        )
    }
}

struct Call {
    id: String,
    method: String,
    sent_at: DateTime<Utc>,
    gave_up: Option<DateTime<Utc>>,
    lease_until: Option<DateTime<Utc>>,
    arrived: DateTime<Utc>,
}

pub async fn timeliness(pool: &sqlx::PgPool, sim: &Sim) -> Timeliness {
    type Row = (uuid::Uuid, String, DateTime<Utc>, i32, Option<i32>, Option<DateTime<Utc>>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT client_request_id, method, sent_at, duration_ms, http_status, lease_until,
                coalesce('meeting ' || meeting_id, 'registrant ' || registrant_id, 'other')
         FROM graph_calls WHERE sent_at IS NOT NULL ORDER BY sent_at",
    )
    .fetch_all(pool)
    .await
    .expect("the calls");
    let mut arrivals: HashMap<String, DateTime<Utc>> =
        sim.arrivals().into_iter().filter_map(|a| Some((a.client_request_id?, DateTime::<Utc>::from(a.at)))).collect();
    let mut by_row: HashMap<String, Vec<Call>> = HashMap::new();
    for (id, method, sent_at, duration_ms, status, lease_until, row) in rows {
        let Some(arrived) = arrivals.remove(&id.to_string()) else { continue };
        let gave_up = status.is_none().then(|| sent_at + chrono::Duration::milliseconds(duration_ms.into()));
        by_row.entry(row).or_default().push(Call {
            id: id.to_string(),
            method,
            sent_at,
            gave_up,
            lease_until,
            arrived,
        });
    }
    let mut books = Timeliness { unrecorded: arrivals.len(), ..Timeliness::default() };
    for calls in by_row.values() {
        for (n, call) in calls.iter().enumerate() {
            books.judged += 1;
            if let Some(lease) = call.lease_until.filter(|lease| call.arrived > *lease) {
                let by = (call.arrived - lease).num_milliseconds();
                books.after_lease.push(format!("{} {}: arrived {by} ms after its lease", call.method, call.id));
            }
            let Some(gave_up) = call.gave_up else { continue };
            books.abandoned += 1;
            books.delivered_after_giving_up += usize::from(call.arrived > gave_up);
            if let Some(later) = calls[n + 1..].iter().find(|l| l.sent_at >= gave_up && l.arrived < call.arrived) {
                books.late.push(format!(
                    "{} {} arrived after {} {}, sent once it was given up",
                    call.method, call.id, later.method, later.id
                ));
            }
        }
    }
    books
}

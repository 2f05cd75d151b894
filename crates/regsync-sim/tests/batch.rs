//! The simulated Graph's JSON batching, as Graph documents it: each request
//! inside is served and throttled on its own, a throttled one is a 429 inside
//! the batch's 200, and a batch of more than 20 or with a repeated id is a 400.

use regsync_sim::{Fault, Sim, SimMeeting};
use serde_json::{json, Value};

fn registration_url(i: usize) -> String {
    let m = SimMeeting::generated(i);
    format!("/users/{}/onlineMeetings/{}/registration", m.organizer_id, m.online_meeting_id)
}

#[tokio::test]
async fn each_request_in_a_batch_is_served_and_throttled_on_its_own_and_a_bad_batch_is_refused_whole() {
    // Arrange
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("the simulator starts");
    sim.seed(3);
    let base = format!("http://{}", sim.addr());
    let http = reqwest::Client::new();
    let token = regsync_sim::app_token(&http, &base).await.expect("a token");
    let create =
        json!({"@odata.type": "#microsoft.graph.externalMeetingRegistration", "allowedRegistrant": "everyone"});
    let batch = json!({"requests": [
        {"id": "a", "method": "GET", "url": registration_url(1)},
        {"id": "b", "method": "POST", "url": registration_url(2), "headers": {"content-type": "application/json"}, "body": create},
    ]});
    let too_many: Vec<Value> =
        (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": registration_url(1)})).collect();
    let repeated = json!({"requests": [
        {"id": "x", "method": "GET", "url": registration_url(1)},
        {"id": "x", "method": "GET", "url": registration_url(2)},
    ]});
    let send = |body: Value| http.post(format!("{base}/graph/beta/$batch")).bearer_auth(&token).json(&body).send();

    // Act
    let answer = send(batch).await.expect("the batch answers");
    let status = answer.status();
    let answer: Value = answer.json().await.expect("JSON");
    sim.fail_next(Some("GET"), Fault::Status { status: 429, retry_after: Some("3".into()) });
    let throttled = send(json!({"requests": [{"id": "t", "method": "GET", "url": registration_url(2)}]}))
        .await
        .expect("the batch answers");
    let throttled_status = throttled.status();
    let throttled: Value = throttled.json().await.expect("JSON");
    let logged = sim.log().len();
    let too_many = send(json!({"requests": too_many})).await.expect("answers").status();
    let repeated = send(repeated).await.expect("answers").status();

    // Assert
    assert_eq!(status, 200, "{answer}");
    let by_id = |id: &str| answer["responses"].as_array().and_then(|r| r.iter().find(|r| r["id"] == id)).cloned();
    let missing = by_id("a").expect("the GET's answer");
    assert_eq!(missing["status"], 404, "{answer}");
    let created = by_id("b").expect("the POST's answer");
    assert_eq!(created["status"], 201, "{answer}");
    assert!(created["body"]["id"].is_string(), "{answer}");
    assert_eq!(throttled_status, 200, "a throttled request is a 429 inside a 200: {throttled}");
    assert_eq!(throttled["responses"][0]["status"], 429, "{throttled}");
    assert_eq!(throttled["responses"][0]["headers"]["retry-after"], "3", "{throttled}");
    assert_eq!(logged, 3, "each request inside a batch is a request of its own");
    assert_eq!(too_many, 400, "more than 20 requests");
    assert_eq!(repeated, 400, "a repeated id");
    assert_eq!(sim.log().len(), 3, "a refused batch serves none of its requests");
}

//! `regsync demo` end to end: a throw-away or given server, the simulator
//! with faults, a full sync and its summary.

use regsync::app::demo::{demo, DemoOptions};

use crate::helpers::server_url;

#[tokio::test]
async fn the_demo_syncs_every_valid_meeting_and_its_registrants_and_reports_the_one_it_cannot() {
    let options = DemoOptions {
        meetings: 200,
        registrants: 40,
        keep_running: false,
        database_url: Some(server_url().await),
        progress: false,
    };

    let summary = demo(options).await.expect("the demo ran");
    let (figures, duplicate_posts) = (summary.figures, summary.duplicate_posts);

    // 199 generated meetings (19 cancelled) plus one without an access policy.
    assert_eq!(figures.registered, 180);
    assert_eq!(figures.deregistered, 19);
    assert_eq!(figures.rejected, 2);
    assert_eq!(duplicate_posts, 0);
    assert_eq!(figures.failed.len(), 1);
    assert_eq!(figures.failed[0].0, "evt-no-policy");
    assert!(figures.failed[0].1.contains("application access policy"));
    let posts_201: i64 = figures.graph_calls.iter().filter(|(c, _)| c == "POST 201").map(|(_, n)| n).sum();
    assert!(posts_201 <= 180, "never more creates than meetings: {:?}", figures.graph_calls);
    // The people, through the same faults: each enrolled, each link written back.
    assert_eq!((figures.registrants, figures.enrolled, figures.written_back), (40, 40, 40));
    // The second act: 3 webinars of 4 people; in Teams one cancels, and of
    // the approval-gated webinar's 4 one is approved.
    let v1 = summary.successor.expect("with registrants, the successor's act runs");
    assert_eq!(v1.registered, 12);
    assert_eq!((v1.cancelled_in_teams, v1.awaiting_approval), (1, 3));
    // Told: the cancellation, the approval, and three awaiting approval.
    assert_eq!(v1.statuses_told, 5);
    // Every registrant's attendance, 9 of them attended; a walk-in each.
    assert_eq!((v1.attendance_written_back, v1.attended, v1.unmatched), (12, 9, 3));
}

//! `regsync-sim` as a real process: it prints where it listens, serves the
//! seeded platform listing and the token endpoint, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_simulator_binary_serves_its_seeded_platform_and_token_endpoint_and_stops_on_sigterm() {
    // Arrange
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsync-sim"))
        .args(["--listen", "127.0.0.1:0", "--meetings", "12"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("regsync-sim starts");
    let first = BufReader::new(child.stdout.take().expect("stdout")).lines().next().expect("a line").expect("text");
    let base = first.rsplit(' ').next().expect("the address").to_owned();
    let http = reqwest::Client::new();

    // Act
    let listing: serde_json::Value = http
        .get(format!("{base}/platform/meetings?limit=100"))
        .send()
        .await
        .expect("the listing answers")
        .json()
        .await
        .expect("JSON");
    let token = regsync_sim::app_token(&http, &base).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let until = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    // Assert
    assert_eq!(listing["meetings"].as_array().map(Vec::len), Some(12), "{listing}");
    assert!(token.is_ok_and(|t| !t.is_empty()), "the token endpoint issues an app token");
    assert!(exit.is_some_and(|s| s.success()), "regsync-sim did not stop cleanly on SIGTERM: {exit:?}");
}

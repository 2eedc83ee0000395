//! The Socket.IO Admin UI against `tidings serve --admin-ui`: the real web app of npm
//! `@socket.io/admin-ui` in Chromium (tests/clients/js/admin-ui.mjs), and the protocol's
//! refusals. Needs `chromium` (scripts/test installs it with apt-get and sets
//! `TIDINGS_CHROMIUM`) and the npm packages of tests/clients/js. Screenshots go to
//! `target/test-artifacts/admin-ui/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Scenario, free_port, repo_root, serve};

const USER: &str = "admin";
const PASSWORD: &str = "correct horse battery staple";

fn chromium() -> String {
    std::env::var("TIDINGS_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_logs_in_lists_a_client_and_makes_it_join_a_room() {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let ui_port = free_port().to_string();
    let origin = format!("http://127.0.0.1:{ui_port}");
    let server = serve(
        "",
        &[
            "--admin-ui",
            "--admin-username",
            USER,
            "--admin-password-hash",
            &hash,
            "--cors-origin",
            &origin,
            "--cors-credentials",
        ],
        &[],
    )
    .await;
    let screenshots = repo_root().join("target/test-artifacts/admin-ui");
    Scenario::start(
        "js/admin-ui.mjs",
        &server.url,
        &[
            ("UI_PORT", ui_port.as_str()),
            ("ADMIN_USER", USER),
            ("ADMIN_PASSWORD", PASSWORD),
            ("TIDINGS_CHROMIUM", chromium().as_str()),
            ("SCREENSHOTS", screenshots.to_str().unwrap()),
        ],
    )
    .passes(120)
    .await;
    assert!(screenshots.join("5-joined.png").exists());
}

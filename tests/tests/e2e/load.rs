//! Many threads at once against two worker processes.

use std::time::Duration;

use agentyard_e2e::{TestApp, TestOptions};
use futures::future::join_all;
use serde_json::json;

#[tokio::test]
async fn fifty_threads_of_three_messages_on_two_workers_complete_exactly_once_in_order() {
    let app = TestApp::spawn_with(TestOptions { workers: 2, ..Default::default() }).await;
    let threads = join_all((0..50).map(|t| {
        let app = &app;
        async move {
            let (_, thread) = app.post("/v1/threads", json!({})).await;
            let tid = thread["id"].as_str().unwrap().to_owned();
            // The three messages of a thread are posted back to back (enqueue is the default).
            let mut runs = Vec::new();
            for m in 0..3 {
                let input = format!("thread {t} message {m}");
                let (status, run) =
                    app.post(&format!("/v1/threads/{tid}/runs"), json!({"input": input})).await;
                assert_eq!(status, 202, "{run}");
                runs.push(run["id"].as_str().unwrap().to_owned());
            }
            (t, tid, runs)
        }
    }))
    .await;

    for (_, _, runs) in &threads {
        for r in runs {
            let run = app.wait_terminal(r, Duration::from_secs(120)).await;
            assert_eq!(run["status"], "completed", "{run}");
        }
    }
    for (t, tid, runs) in &threads {
        let (_, page) = app.get(&format!("/v1/threads/{tid}/messages?limit=100")).await;
        let msgs = page["data"].as_array().unwrap();
        assert_eq!(msgs.len(), 6, "thread {t}: {page}");
        for m in 0..3 {
            let user = &msgs[2 * m];
            let reply = &msgs[2 * m + 1];
            assert_eq!(user["role"], "user");
            assert_eq!(user["content"], format!("thread {t} message {m}"));
            assert_eq!(reply["role"], "assistant");
            assert_eq!(reply["run_id"].as_str().unwrap(), runs[m]);
            let quoted = format!("\"thread {t} message {m}\"");
            assert!(reply["content"].as_str().unwrap().contains(&quoted), "{reply}");
        }
    }
    let assistants = app.count("SELECT count(*) FROM messages WHERE role = 'assistant'").await;
    assert_eq!(assistants, 150);
    let completed = app.count("SELECT count(*) FROM runs WHERE status = 'completed'").await;
    assert_eq!(completed, 150);
}

//! Backups (issue 17): `peergate backup` under load, then `peergate restore`
//! into a fresh data dir, and a server on it that verifies and signs people in.

use std::time::Duration;

use crate::child::run_cli;
use crate::helpers::*;

#[tokio::test]
async fn a_backup_taken_under_load_restores_and_serves() {
    let app = spawn_app().await;
    app.add_user("rita", "Rita Reviewer", EXEMPT_REVIEWER).await;
    for i in 0..30 {
        app.add_user(&format!("u{i}"), &format!("User {i}"), PLAIN)
            .await;
    }
    let rita = reviewer(&app, "rita").await;

    // Decisions flow while the backup runs.
    let load = {
        let (base, rita) = (app.base.clone(), rita.clone());
        let app = TestAppRef::of(&app);
        tokio::spawn(async move {
            for i in 0..30 {
                let (_, id) = app.waiting(&format!("u{i}")).await;
                let r = rita
                    .post(format!("{base}/api/v1/inbox/{id}/decision"))
                    .header("Origin", &base)
                    .json(&approve())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let scratch = tempfile::tempdir().unwrap();
    let backup = scratch.path().join("backup");
    let data = app.data_dir.to_str().unwrap().to_string();
    let env = [("PEERGATE__STORAGE__DATA_DIR", data.as_str())];
    let (code, out, err) = run_cli(&["backup", backup.to_str().unwrap()], &env, None).await;
    assert_eq!(code, 0, "{out}{err}");
    load.await.unwrap();

    // The manifest names both files and the head at the moment of the copy.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();
    // Both databases and the transparency log's key.
    assert_eq!(manifest["files"].as_array().unwrap().len(), 3);
    let head = manifest["ledger_head"].as_str().unwrap().to_string();

    // A second backup into the same dir is refused; so is a restore over data.
    let (code, _, err) = run_cli(&["backup", backup.to_str().unwrap()], &env, None).await;
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
    let (code, _, err) = run_cli(
        &["restore", backup.to_str().unwrap(), "--data-dir", &data],
        &[],
        None,
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
    app.stop().await;

    let restored = scratch.path().join("restored");
    let (code, out, err) = run_cli(
        &[
            "restore",
            backup.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&head), "{out}");
    // The transparency log's key comes back too, still private.
    let key = restored.join("transparency.key");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(backup.join("transparency.key")).unwrap()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let again = spawn_app_in(&restored, "", None).await;
    let verdict = peergate::ledger::verify_file(
        &restored.join("ledger.sqlite"),
        Some(peergate::ledger::Head::parse_arg(&head).unwrap()),
    )
    .await;
    assert!(
        matches!(verdict, peergate::ledger::Verdict::Valid { .. }),
        "{verdict:?}"
    );
    again
        .sign_in(&again.client(), "rita", "authenticated")
        .await;
    again
        .sign_in(&again.client(), "u29", "half_authenticated")
        .await;
    again.stop().await;
}

/// What the load task needs of the app, without borrowing it.
struct TestAppRef {
    base: String,
}

impl TestAppRef {
    fn of(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
        }
    }

    async fn waiting(&self, username: &str) -> (reqwest::Client, String) {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let r = client
            .post(format!("{}/api/v1/login", self.base))
            .header("Origin", &self.base)
            .json(&serde_json::json!({"username": username, "password": password_of(username)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let pending: serde_json::Value = client
            .get(format!("{}/api/v1/pending", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (client, pending["session_id"].as_str().unwrap().to_string())
    }
}

//! Configuration layering: embedded defaults, then a file, then the environment.

// figment::Jail fixes the closure's error type; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use peergate::config::Settings;

use crate::child::run_cli;

#[test]
fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "peergate.toml",
            r#"
                [peer_review]
                session_ttl = "20m"
                max_code_rotations = 5
                [server]
                bind = "127.0.0.1:9000"
            "#,
        )?;
        let path = jail.directory().join("peergate.toml");

        let defaults = Settings::load(None).expect("defaults load");
        assert_eq!(defaults.peer_review.session_ttl, Duration::from_mins(15));
        assert_eq!(defaults.server.bind.port(), 8080);

        let from_file = Settings::load(Some(&path)).expect("file loads");
        assert_eq!(from_file.peer_review.session_ttl, Duration::from_mins(20));
        assert_eq!(from_file.peer_review.max_code_rotations, 5);
        assert_eq!(from_file.server.bind.port(), 9000);
        // Untouched keys keep their defaults.
        assert_eq!(from_file.peer_review.aging_after, Duration::from_mins(3));

        jail.set_env("PEERGATE__PEER_REVIEW__SESSION_TTL", "30m");
        jail.set_env("PEERGATE__SERVER__BIND", "127.0.0.1:9100");
        let from_env = Settings::load(Some(&path)).expect("env loads");
        assert_eq!(from_env.peer_review.session_ttl, Duration::from_mins(30));
        assert_eq!(from_env.server.bind.port(), 9100);
        assert_eq!(
            from_env.peer_review.max_code_rotations, 5,
            "the file still counts"
        );
        Ok(())
    });
}

#[test]
fn bad_values_fail_with_a_message_naming_the_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PEERGATE__PEER_REVIEW__AGING_AFTER", "soon");
        let error = format!("{:#}", Settings::load(None).unwrap_err());
        assert!(error.contains("peer_review.aging_after"), "{error}");
        assert!(error.contains("soon"), "{error}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("PEERGATE__SERVER__BIND", "not-an-address");
        let error = format!("{:#}", Settings::load(None).unwrap_err());
        assert!(error.contains("server.bind"), "{error}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("PEERGATE__PEER_REVIEW__OVERDUE_AFTER", "1m");
        let error = format!("{:#}", Settings::load(None).unwrap_err());
        assert!(error.contains("peer_review.overdue_after"), "{error}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("PEERGATE__SERVER__PUBLIC_URL", "peergate.example");
        let error = format!("{:#}", Settings::load(None).unwrap_err());
        assert!(error.contains("server.public_url"), "{error}");
        Ok(())
    });
}

#[tokio::test]
async fn the_binary_refuses_to_start_on_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_cli(
        &["serve"],
        &[
            ("PEERGATE__STORAGE__DATA_DIR", dir.path().to_str().unwrap()),
            ("PEERGATE__PEER_REVIEW__SESSION_TTL", "forever"),
        ],
        None,
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("peer_review.session_ttl"), "{err}");
    assert!(err.contains("forever"), "{err}");
    // A missing config file is named too.
    let (code, _, err) = run_cli(
        &["serve", "--config", "/nonexistent/peergate.toml"],
        &[],
        None,
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/peergate.toml"), "{err}");
}

//! Running the real `peergate` binary as a child process: for logs, the
//! command line, and crash tests that kill it with SIGKILL.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Origin the child accepts (its `public_url`).
pub const CHILD_ORIGIN: &str = "http://peergate.test";

pub fn peergate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_peergate")
}

/// A `peergate` command with a clean environment: other tests change this
/// process's environment (figment's Jail), and a child must not inherit that.
pub fn peergate_command() -> Command {
    let mut command = Command::new(peergate_bin());
    command.env_clear();
    for key in ["PATH", "HOME", "TMPDIR", "LANG"] {
        if let Ok(value) = std::env::var(key) {
            command.env(key, value);
        }
    }
    command
}

pub struct ChildServer {
    pub child: Child,
    pub base: String,
    /// Everything the child wrote to stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

/// Starts `peergate serve` on port 0 with `data_dir`, and waits for its
/// "listening" line.
pub async fn spawn_child(data_dir: &Path, envs: &[(&str, &str)]) -> ChildServer {
    spawn_child_with_args(data_dir, &[], envs).await
}

/// [`spawn_child`] with arguments before `serve` (e.g. `--config FILE`).
pub async fn spawn_child_with_args(
    data_dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> ChildServer {
    let mut command = peergate_command();
    command
        .args(args)
        .arg("serve")
        .env("PEERGATE__SERVER__BIND", "127.0.0.1:0")
        .env("PEERGATE__SERVER__PUBLIC_URL", CHILD_ORIGIN)
        .env("PEERGATE__STORAGE__DATA_DIR", data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn peergate");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let sink = stderr.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            let mut s = sink.lock().expect("stderr buffer");
            s.push_str(&line);
            s.push('\n');
        }
    });
    let mut out_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = out_lines.next_line().await {
            if let Some(url) = line.strip_prefix("peergate listening on ") {
                return url.trim().to_string();
            }
        }
        String::new()
    })
    .await
    .unwrap_or_default();
    if base.is_empty() {
        let _ = child.kill().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        panic!(
            "peergate did not start; stderr:\n{}",
            stderr.lock().expect("stderr buffer")
        );
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
    ChildServer {
        child,
        base,
        stderr,
    }
}

impl ChildServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn post(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client.post(self.url(path)).header("Origin", CHILD_ORIGIN)
    }

    /// SIGKILL, no goodbye.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait; returns the stderr collected.
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stderr.lock().expect("stderr buffer").clone()
    }
}

/// Runs `peergate` with arguments and optional stdin; returns (exit code, stdout, stderr).
pub async fn run_cli(
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut command = peergate_command();
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn peergate");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().await.expect("peergate ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

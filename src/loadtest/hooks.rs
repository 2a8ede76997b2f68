//! Webhook receivers for `loadtest decide --webhooks`: one answers 200 at
//! once, the other takes each request and never answers. The benchmark then
//! shows that a hanging endpoint slows no decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;

/// A signing secret for the load test's endpoints only.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The two receivers, running until dropped.
pub struct Receivers {
    /// `PEERGATE__ALERTS__WEBHOOK` for the server under test.
    pub env: Vec<(String, String)>,
    /// Requests the healthy receiver answered.
    pub delivered: Arc<AtomicUsize>,
    /// Requests the hanging receiver took (and never answered).
    pub hung: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(
    hang: bool,
    count: Arc<AtomicUsize>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new().fallback(move || {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            if hang {
                std::future::pending::<()>().await;
            }
            StatusCode::OK
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, task))
}

/// Starts both receivers; `env` configures every event to both.
pub async fn start() -> anyhow::Result<Receivers> {
    let (delivered, hung) = (Arc::default(), Arc::default());
    let (hanging_url, hanging) = serve(true, Arc::clone(&hung)).await?;
    let (healthy_url, healthy) = serve(false, Arc::clone(&delivered)).await?;
    let table = |url: &str| format!("{{url=\"{url}\",format=\"standard\",secret=\"{SECRET}\"}}");
    let value = format!("[{},{}]", table(&hanging_url), table(&healthy_url));
    Ok(Receivers {
        env: vec![("PEERGATE__ALERTS__WEBHOOK".into(), value)],
        delivered,
        hung,
        tasks: vec![hanging, healthy],
    })
}

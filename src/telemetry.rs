//! Structured logs to stderr. `RUST_LOG` picks the levels (default `info`).
//! Nothing secret is logged: codes and tokens have redacting `Debug` impls and
//! are never passed to a log macro.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written (`log.format` in the configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers (journald, Loki, Vector):
    /// `timestamp`, `level`, `target`, `fields` (with `message`) and spans.
    Json,
}

/// Starts logging to stderr in `format`. ANSI colours are used only when
/// stderr is a terminal and `NO_COLOR` is unset: a log file or a journal
/// should not fill with escape codes. A second call (tests) keeps the first
/// subscriber.
pub fn init(format: LogFormat) {
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // `try_init` (not `set_global_default`) also forwards the `log` crate's
    // records, as the builder's own `try_init` did before.
    let _ = subscriber(format, ansi, std::io::stderr).try_init();
}

/// The subscriber `init` installs, writing to `writer`; separate so that
/// tests can read what it writes.
fn subscriber<W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // JSON never carries colour codes, whatever the terminal.
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_one(format: LogFormat, ansi: bool) -> String {
        let out = Captured::default();
        let subscriber = subscriber(format, ansi, out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(user = "ölaf", "sign-in refused");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_without_a_terminal_has_no_escape_codes() {
        let line = log_one(LogFormat::Text, false);
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("sign-in refused"), "{line}");
        assert!(line.contains("user=\"ölaf\""), "{line}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }

    #[test]
    fn text_on_a_terminal_is_coloured() {
        let line = log_one(LogFormat::Text, true);
        assert!(line.contains('\u{1b}'), "{line:?}");
    }

    #[test]
    fn json_is_one_object_per_line_without_colour() {
        let out = log_one(LogFormat::Json, true);
        assert!(!out.contains('\u{1b}'), "{out:?}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["fields"]["message"], "sign-in refused");
        assert_eq!(v["fields"]["user"], "ölaf");
        assert!(v["timestamp"].is_string(), "{v}");
    }

    #[test]
    fn the_format_reads_from_configuration() {
        #[derive(serde::Deserialize)]
        struct Log {
            format: LogFormat,
        }
        let parse = |s: &str| serde_json::from_str::<Log>(s).map(|l| l.format);
        assert_eq!(parse(r#"{"format":"json"}"#).unwrap(), LogFormat::Json);
        assert_eq!(parse(r#"{"format":"text"}"#).unwrap(), LogFormat::Text);
        assert!(parse(r#"{"format":"xml"}"#).is_err());
        assert_eq!(LogFormat::default(), LogFormat::Text);
    }
}

//! Typed configuration: the embedded `config/default.toml`, then an optional file,
//! then `PEERGATE__SECTION__KEY` environment variables. Every value is checked
//! once here, so a bad value stops start-up with a message naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer};

pub use crate::alerts::EventKind;
pub use crate::domain::TrustedProxies;
use crate::domain::{AccessRule, AllowedHosts, HostPattern, PublicUrl};
pub use crate::telemetry::LogFormat;

/// The defaults compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "PEERGATE__";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub peer_review: PeerReviewSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub forward_auth: ForwardAuthSettings,
    /// Webhooks to chat and incident tools (DESIGN.md §12); none by default.
    #[serde(default)]
    pub alerts: AlertSettings,
    pub transparency: TransparencySettings,
}

/// `[forward_auth]` (DESIGN.md §10): answering reverse proxies that protect
/// other apps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthSettings {
    /// Off, the two authz endpoints refuse everything (403).
    pub enabled: bool,
    /// The session and device cookies' `Domain`, so that the apps' hosts
    /// receive them too (the proxy passes them on to peergate).
    #[serde(deserialize_with = "cookie_domain")]
    pub cookie_domain: Option<String>,
    /// The hosts peergate answers for and may send a browser back to.
    pub allowed_hosts: AllowedHosts,
    /// `[[forward_auth.rule]]`, first match wins; a host with no rule admits
    /// any fully signed-in user.
    #[serde(default)]
    pub rule: Vec<AccessRule>,
}

/// `""` is no domain; otherwise a DNS name (a leading `.` is dropped, as
/// browsers drop it).
fn cookie_domain<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(de)?;
    let name = text.strip_prefix('.').unwrap_or(&text);
    if name.is_empty() {
        return Ok(None);
    }
    match HostPattern::parse(name) {
        Ok(HostPattern::Exact(domain)) if domain.parse::<std::net::Ipv4Addr>().is_err() => {
            Ok(Some(domain))
        }
        _ => Err(serde::de::Error::custom(format!(
            "`{text}` is not a domain like example.com"
        ))),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertSettings {
    /// `[[alerts.webhook]]`: each endpoint gets its own sender task.
    #[serde(default)]
    pub webhook: Vec<WebhookSettings>,
}

/// One `[[alerts.webhook]]` endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Where events are POSTed. It may carry a secret (Slack's do), so it is
    /// never logged or shown whole.
    #[serde(deserialize_with = "webhook_url")]
    pub url: url::Url,
    /// `standard` (Standard Webhooks, signed) or `slack` (`{"text": ...}`).
    #[serde(default)]
    pub format: WebhookFormat,
    /// `whsec_` and base64: the HMAC key for `standard`.
    #[serde(default)]
    pub secret: String,
    /// The events this endpoint gets; all six when left out.
    #[serde(default = "EventKind::all")]
    pub events: Vec<EventKind>,
}

/// How a webhook body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// standardwebhooks.com: JSON, signed with HMAC-SHA256.
    #[default]
    Standard,
    /// `{"text": ...}`, which Slack, Mattermost and Rocket.Chat accept.
    Slack,
}

/// The ledger as a transparency log (DESIGN.md §11).
#[derive(Debug, Clone, Deserialize)]
pub struct TransparencySettings {
    /// The log's Ed25519 key (a signed-note private key); empty means
    /// `<data_dir>/transparency.key`, made on first start.
    pub signing_key_file: PathBuf,
    /// The log's name on its checkpoints; empty means
    /// `<public_url host[:port]>/peergate/<ledger_id>`.
    pub origin: String,
    /// A new checkpoint is signed after commits at most this often.
    #[serde(deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
    /// Checkpoint, key and tiles readable by anyone (they hold only counts
    /// and hashes); otherwise by admins and the read token's bearer.
    pub public: bool,
    /// `Authorization: Bearer <read_token>` reads the log; empty means no token.
    pub read_token: String,
    /// Witnesses each new checkpoint is sent to.
    #[serde(default)]
    pub witness: Vec<WitnessSettings>,
}

/// One `[[transparency.witness]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct WitnessSettings {
    /// The witness's prefix (http or https); `/add-checkpoint` is appended.
    pub url: String,
    /// The witness's verifier key (a tlog-cosignature key, type 0x04, or a
    /// plain Ed25519 signed-note key, type 0x01).
    pub vkey: String,
}

impl TransparencySettings {
    /// The key file: the configured one, or `transparency.key` in `data_dir`.
    pub fn key_file(&self, data_dir: &Path) -> PathBuf {
        if self.signing_key_file.as_os_str().is_empty() {
            data_dir.join(crate::transparency::KEY_FILE_NAME)
        } else {
            self.signing_key_file.clone()
        }
    }

    /// The log's origin line, for the ledger `ledger_id`.
    pub fn origin_for(&self, public_url: &PublicUrl, ledger_id: &str) -> String {
        if self.origin.is_empty() {
            format!("{}/peergate/{ledger_id}", public_url.host_port())
        } else {
            self.origin.clone()
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !self.origin.is_empty() && !crate::transparency::is_valid_origin(&self.origin) {
            bail!(
                "invalid configuration: transparency.origin `{}` must be one line with no spaces and no `+`",
                self.origin
            );
        }
        if self.checkpoint_interval.is_zero() {
            bail!("invalid configuration: transparency.checkpoint_interval must be more than zero");
        }
        if !self.read_token.is_empty() && self.read_token.len() < 16 {
            bail!(
                "invalid configuration: transparency.read_token must be at least 16 characters when set"
            );
        }
        for (i, witness) in self.witness.iter().enumerate() {
            let scheme = url::Url::parse(&witness.url).map(|u| u.scheme().to_string());
            if !matches!(scheme.as_deref(), Ok("http" | "https")) {
                bail!("invalid configuration: transparency.witness[{i}].url must be http or https");
            }
            if let Err(e) = crate::transparency::WitnessKey::parse(&witness.vkey) {
                bail!("invalid configuration: transparency.witness[{i}].vkey: {e}");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Where the HTTP server listens.
    pub bind: SocketAddr,
    /// The URL people open; its origin is the only one accepted on unsafe requests.
    pub public_url: PublicUrl,
    /// Bearer token for `/metrics`; empty means open.
    pub metrics_token: String,
    /// Open TCP connections at most; beyond it new ones wait in the backlog.
    pub max_connections: usize,
    /// A client that sends no complete request head in this time is dropped.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Proxies whose `X-Forwarded-*` (and `X-Original-URL`) are believed.
    pub trusted_proxies: TrustedProxies,
    /// How long open requests and sockets get to finish at shutdown.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// Text for people, or JSON for log shippers.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// Folder holding `app.sqlite` and `ledger.sqlite`.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PeerReviewSettings {
    /// A pending session expires this long after sign-in.
    #[serde(deserialize_with = "duration")]
    pub session_ttl: Duration,
    /// Age from which a pending session is shown as `aging`.
    #[serde(deserialize_with = "duration")]
    pub aging_after: Duration,
    /// Age from which a pending session is shown as `overdue`.
    #[serde(deserialize_with = "duration")]
    pub overdue_after: Duration,
    /// How many new codes a requester may ask for, per pending session.
    pub max_code_rotations: u32,
    /// How long after the TTL an approval recorded before it may still be
    /// completed (the requester's page may need a moment to move on).
    #[serde(deserialize_with = "duration")]
    pub complete_grace: Duration,
    /// Whether a mismatch locks the requester's account until `user unlock`.
    pub lock_on_mismatch: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// A trusted-device cookie skips peer review for this many days.
    pub trusted_device_days: u32,
    /// Failed sign-ins allowed per minute, per username and per client IP.
    pub failed_logins_per_minute: u32,
    /// Sign-ins that start a peer review, per user, per 15 minutes.
    pub review_starts_per_user: u32,
    /// Sign-ins that start a peer review, per client IP, per 15 minutes.
    pub review_starts_per_ip: u32,
    /// argon2 checks at once; 0 = the number of CPU cores.
    pub password_checks_in_parallel: usize,
    /// Sign-ins that may wait for a check; beyond it, 503 with Retry-After.
    pub password_check_queue: usize,
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration like \"15m\" or \"30s\" ({e})"
        ))
    })
}

fn webhook_url<'de, D: Deserializer<'de>>(de: D) -> Result<url::Url, D::Error> {
    let text = String::deserialize(de)?;
    // The error names no part of the URL: it may hold a secret.
    url::Url::parse(text.trim()).map_err(|e| serde::de::Error::custom(format!("not a URL ({e})")))
}

impl Settings {
    /// Loads the layered configuration: defaults, then `file`, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::from_figment(&figment)
    }

    /// Extracts and validates settings from an already layered figment.
    pub fn from_figment(figment: &Figment) -> anyhow::Result<Self> {
        let settings: Settings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {}", describe(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.server.max_connections == 0 {
            bail!("invalid configuration: server.max_connections must be at least 1");
        }
        if self.server.header_read_timeout.is_zero() {
            bail!("invalid configuration: server.header_read_timeout must be more than zero");
        }
        let p = &self.peer_review;
        if p.aging_after.is_zero() {
            bail!("invalid configuration: peer_review.aging_after must be more than zero");
        }
        if p.overdue_after <= p.aging_after {
            bail!(
                "invalid configuration: peer_review.overdue_after ({}) must be longer than peer_review.aging_after ({})",
                humantime::format_duration(p.overdue_after),
                humantime::format_duration(p.aging_after)
            );
        }
        if p.session_ttl <= p.overdue_after {
            bail!(
                "invalid configuration: peer_review.session_ttl ({}) must be longer than peer_review.overdue_after ({})",
                humantime::format_duration(p.session_ttl),
                humantime::format_duration(p.overdue_after)
            );
        }
        if self.auth.failed_logins_per_minute == 0 {
            bail!("invalid configuration: auth.failed_logins_per_minute must be at least 1");
        }
        if self.auth.review_starts_per_user == 0 || self.auth.review_starts_per_ip == 0 {
            bail!(
                "invalid configuration: auth.review_starts_per_user and auth.review_starts_per_ip must be at least 1"
            );
        }
        if self.auth.trusted_device_days > 3650 {
            bail!("invalid configuration: auth.trusted_device_days must be at most 3650");
        }
        self.validate_forward_auth()?;
        self.validate_webhooks()?;
        self.transparency.validate()
    }

    fn validate_forward_auth(&self) -> anyhow::Result<()> {
        let f = &self.forward_auth;
        if f.enabled && f.allowed_hosts.is_empty() {
            bail!(
                "invalid configuration: forward_auth.enabled is true but forward_auth.allowed_hosts is empty; list the hosts peergate answers for, e.g. [\"app.example.com\"]"
            );
        }
        if let Some(domain) = &f.cookie_domain {
            let host = self.server.public_url.host();
            let inside = host == domain || host.ends_with(&format!(".{domain}"));
            if !inside {
                bail!(
                    "invalid configuration: forward_auth.cookie_domain `{domain}` does not contain server.public_url's host `{host}`, so browsers would refuse the cookie"
                );
            }
        }
        Ok(())
    }

    fn validate_webhooks(&self) -> anyhow::Result<()> {
        let hooks = &self.alerts.webhook;
        for (i, hook) in hooks.iter().enumerate() {
            let name = format!("alerts.webhook[{i}]");
            if !matches!(hook.url.scheme(), "http" | "https") || hook.url.host_str().is_none() {
                bail!("invalid configuration: {name}.url must be an http(s) URL");
            }
            if hook.url.scheme() == "https" && !crate::alerts::HTTPS_SUPPORTED {
                bail!(
                    "invalid configuration: {name}.url is https, but this build of peergate sends webhooks over plain http only; point it at a local relay (see README, Alerts)"
                );
            }
            if hook.format == WebhookFormat::Standard
                && !crate::alerts::secret_is_valid(&hook.secret)
            {
                bail!(
                    "invalid configuration: {name}.secret must be \"whsec_\" followed by base64 (at least 24 bytes) for format = \"standard\""
                );
            }
            if hook.events.is_empty() {
                bail!("invalid configuration: {name}.events is empty; leave it out for all events");
            }
            if hooks[..i].iter().any(|h| h.url == hook.url) {
                bail!("invalid configuration: {name}.url is listed twice");
            }
        }
        Ok(())
    }

    /// The origin (`scheme://host[:port]`) that unsafe requests must come from.
    pub fn origin(&self) -> String {
        self.server.public_url.origin().to_string()
    }

    /// Whether cookies must be `Secure` and prefixed (`__Host-`, or
    /// `__Secure-` with a cookie domain).
    pub fn is_https(&self) -> bool {
        self.server.public_url.is_https()
    }
}

/// Figment's errors name the key as a path; say it the way the file writes it.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let kind = e.kind.to_string();
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{kind}{source}")
            } else {
                format!("{key}: {kind}{source}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let s = Settings::from_figment(&Figment::from(Toml::string(DEFAULT_TOML))).unwrap();
        assert_eq!(s.peer_review.session_ttl, Duration::from_mins(15));
        assert_eq!(s.origin(), "http://127.0.0.1:8080");
        assert!(!s.is_https());
    }

    #[test]
    fn an_upper_case_https_url_still_makes_secure_cookies() {
        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(
            "[server]\npublic_url = \"HTTPS://Login.Example.com:443\"",
        ));
        let s = Settings::from_figment(&figment).unwrap();
        assert!(s.is_https());
        assert_eq!(s.origin(), "https://login.example.com");
    }

    fn with(toml: &str) -> anyhow::Result<Settings> {
        Settings::from_figment(&Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
    }

    #[test]
    fn forward_auth_is_checked_at_load() {
        let e = with("[forward_auth]\nenabled = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward_auth.allowed_hosts"), "{e}");
        let e = with("[forward_auth]\nallowed_hosts = [\"http://app.example.com\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("forward_auth.allowed_hosts") && e.contains("http://app"),
            "{e}"
        );
        let e = with("[forward_auth]\ncookie_domain = \"example.com\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward_auth.cookie_domain"), "{e}");
        let e = with("[[forward_auth.rule]]\nhost = \"a.example.com\"\nroles = [\"root\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward_auth.rule"), "{e}");
        let ok = with(
            "[server]\npublic_url = \"https://auth.example.com\"\n[forward_auth]\nenabled = true\ncookie_domain = \".Example.com\"\nallowed_hosts = [\"*.example.com\"]\n[[forward_auth.rule]]\nhost = \"grafana.example.com\"\nroles = [\"admin\"]",
        )
        .unwrap();
        assert_eq!(
            ok.forward_auth.cookie_domain.as_deref(),
            Some("example.com")
        );
        assert_eq!(ok.forward_auth.rule.len(), 1);
    }

    #[test]
    fn webhooks_are_checked_at_start_up() {
        let with = |table: &str| {
            Settings::from_figment(
                &Figment::from(Toml::string(DEFAULT_TOML))
                    .merge(Toml::string(&format!("[[alerts.webhook]]\n{table}"))),
            )
        };
        let ok = with(
            "url = \"http://127.0.0.1:9/h\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
        )
        .unwrap();
        assert_eq!(ok.alerts.webhook[0].events, EventKind::all());
        assert_eq!(ok.alerts.webhook[0].format, WebhookFormat::Standard);
        let slack = with(
            "url = \"http://127.0.0.1:9/h\"\nformat = \"slack\"\nevents = [\"review.mismatch\"]",
        )
        .unwrap();
        assert_eq!(slack.alerts.webhook[0].events, [EventKind::Mismatch]);
        for (table, says) in [
            (
                "url = \"http://127.0.0.1:9/h\"\nsecret = \"whsec_c2hvcnQ=\"",
                "secret",
            ),
            ("url = \"http://127.0.0.1:9/h\"", "secret"),
            (
                "url = \"https://hooks.example.com/x\"\nformat = \"slack\"",
                "https",
            ),
            ("url = \"ftp://x/\"\nformat = \"slack\"", "http(s)"),
            (
                "url = \"http://x/\"\nformat = \"slack\"\nevents = [\"review.nope\"]",
                "events",
            ),
        ] {
            let e = with(table).unwrap_err().to_string();
            assert!(e.contains(says), "{table}: {e}");
        }
        assert!(
            Settings::from_figment(&Figment::from(Toml::string(DEFAULT_TOML)))
                .unwrap()
                .peer_review
                .lock_on_mismatch
        );
    }

    #[test]
    fn trusted_proxies_must_be_cidrs() {
        let bad = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::string("[server]\ntrusted_proxies = [\"localhost\"]"));
        let e = Settings::from_figment(&bad).unwrap_err().to_string();
        assert!(e.contains("server.trusted_proxies"), "{e}");
    }
}

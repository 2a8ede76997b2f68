//! `PublicUrl`: the configured `server.public_url`, parsed once into the
//! pieces the service compares against (the `Origin` browsers send, the host,
//! whether cookies must be `Secure`).
//!
//! The string used to be re-read in several places with ad-hoc checks, and
//! `HTTPS://…` passed validation while the cookie code's `starts_with("https")`
//! said no, so cookies lost `Secure`. Parsing is done by the `url` crate (the
//! WHATWG URL standard, as browsers do it), so scheme and host case, default
//! ports and internationalised host names come out the way a browser writes
//! them in `Origin`.

use std::fmt;
use std::str::FromStr;

use url::Url;

/// The public address of this peergate, as users' browsers reach it: an
/// `http` or `https` origin, with no path, credentials, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `scheme://host[:port]`, lowercase, without a default port: byte for
    /// byte what a browser sends in `Origin`, so the origin check is a plain
    /// string comparison.
    origin: String,
    /// `host[:port]`: what a browser sends in `Host` (and a proxy in
    /// `X-Forwarded-Host`) for this origin.
    host_port: String,
    /// The host alone: a lowercase DNS name (IDNA-encoded), an IPv4 address,
    /// or an IPv6 address in brackets.
    host: String,
    /// Decides `Secure` and the `__Host-` prefix on cookies (DESIGN §4).
    https: bool,
}

/// What is wrong with a configured `public_url`. The text is shown at
/// start-up, so each variant says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicUrlError {
    #[error("public_url {0:?} contains whitespace or a control character")]
    Whitespace(String),
    #[error("public_url {input:?} is not a URL: {reason}")]
    NotAUrl { input: String, reason: String },
    #[error("public_url must start with http:// or https:// (found scheme {0:?})")]
    Scheme(String),
    #[error("public_url {0:?} has no host")]
    NoHost(String),
    #[error(
        "public_url must not contain a user name or password (found {0:?}); \
         browsers never send them in Origin"
    )]
    UserInfo(String),
    #[error(
        "public_url must be an origin with no path (found path {0:?}); peergate is served \
         from the root of its host"
    )]
    Path(String),
    #[error("public_url must not have a query string (found ?{0})")]
    Query(String),
    #[error("public_url must not have a fragment (found #{0})")]
    Fragment(String),
}

impl PublicUrl {
    /// Parses and checks a configured `public_url`. Scheme and host are
    /// case-insensitive (`HTTPS://Example.COM` is `https://example.com`); a
    /// default port (`:443` on https, `:80` on http) is dropped, as browsers
    /// drop it from `Origin`; one trailing `/` is allowed.
    pub fn parse(input: &str) -> Result<Self, PublicUrlError> {
        // The URL parser silently strips surrounding spaces and removes tabs
        // and newlines inside; a config value with those is more likely a
        // mistake than intended, so say so instead.
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PublicUrlError::Whitespace(input.to_string()));
        }
        let url = Url::parse(input).map_err(|e| PublicUrlError::NotAUrl {
            input: input.to_string(),
            reason: e.to_string(),
        })?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(PublicUrlError::Scheme(other.to_string())),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(PublicUrlError::UserInfo(input.to_string()));
        }
        if url.path() != "/" {
            return Err(PublicUrlError::Path(url.path().to_string()));
        }
        if let Some(query) = url.query() {
            return Err(PublicUrlError::Query(query.to_string()));
        }
        if let Some(fragment) = url.fragment() {
            return Err(PublicUrlError::Fragment(fragment.to_string()));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
            _ => return Err(PublicUrlError::NoHost(input.to_string())),
        };
        // `Url::port` is `None` for the scheme's default port.
        let host_port = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let origin = format!("{}://{host_port}", url.scheme());
        Ok(Self {
            origin,
            host_port,
            host,
            https,
        })
    }

    /// `scheme://host[:port]`, exactly as a browser sends it in `Origin`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the public URL is https: cookies then get `Secure` and the
    /// `__Host-` prefix.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `host[:port]`, the port only when it is not the scheme's default.
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// The host alone, lowercase; IPv6 addresses keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// Shows the origin, which is the whole of a valid public URL.
impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)
    }
}

impl FromStr for PublicUrl {
    type Err = PublicUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PublicUrl {
    type Error = PublicUrlError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

/// Lets the typed configuration hold a `PublicUrl` directly, so a bad value
/// fails when the configuration is loaded.
impl<'de> serde::Deserialize<'de> for PublicUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PublicUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> PublicUrl {
        PublicUrl::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> PublicUrlError {
        match PublicUrl::parse(s) {
            Ok(u) => panic!("{s:?} should be refused, got {u:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn scheme_and_host_are_case_insensitive() {
        let u = ok("HTTPS://Example.COM");
        assert!(u.is_https());
        assert_eq!(u.origin(), "https://example.com");
        assert_eq!(u.host(), "example.com");
        assert_eq!(u.host_port(), "example.com");
        let u = ok("Http://PeerGate.Example.org:8080/");
        assert!(!u.is_https());
        assert_eq!(u.origin(), "http://peergate.example.org:8080");
        assert_eq!(u.host_port(), "peergate.example.org:8080");
        assert_eq!(u.host(), "peergate.example.org");
    }

    #[test]
    fn the_default_config_value() {
        let u = ok("http://127.0.0.1:8080");
        assert_eq!(u.origin(), "http://127.0.0.1:8080");
        assert_eq!(u.host_port(), "127.0.0.1:8080");
        assert_eq!(u.host(), "127.0.0.1");
        assert!(!u.is_https());
    }

    #[test]
    fn a_default_port_is_dropped_as_browsers_drop_it() {
        assert_eq!(
            ok("https://example.com:443").origin(),
            "https://example.com"
        );
        assert_eq!(ok("http://example.com:80/").origin(), "http://example.com");
        assert_eq!(ok("https://example.com:443").host_port(), "example.com");
        // Not the default for its scheme: kept.
        assert_eq!(
            ok("https://example.com:80").origin(),
            "https://example.com:80"
        );
        assert_eq!(ok("http://example.com:443").host_port(), "example.com:443");
    }

    #[test]
    fn ipv6_and_international_hosts_match_what_browsers_send() {
        let u = ok("http://[::1]:8080");
        assert_eq!(u.origin(), "http://[::1]:8080");
        assert_eq!(u.host(), "[::1]");
        assert_eq!(u.host_port(), "[::1]:8080");
        let u = ok("https://Bücher.example");
        assert_eq!(u.origin(), "https://xn--bcher-kva.example");
    }

    #[test]
    fn origin_and_display_agree() {
        let u = ok("HTTPS://Example.com/");
        assert_eq!(u.to_string(), u.origin());
        assert_eq!("https://example.com".parse::<PublicUrl>().unwrap(), u);
        assert_eq!(
            PublicUrl::try_from(String::from("https://EXAMPLE.com")).unwrap(),
            u
        );
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        assert_eq!(
            err("ftp://example.com"),
            PublicUrlError::Scheme("ftp".into())
        );
        assert_eq!(err("ws://example.com"), PublicUrlError::Scheme("ws".into()));
        assert!(
            err("ftp://example.com")
                .to_string()
                .contains("http:// or https://")
        );
    }

    #[test]
    fn not_a_url_says_why() {
        assert!(matches!(err("example.com"), PublicUrlError::NotAUrl { .. }));
        assert!(matches!(err(""), PublicUrlError::NotAUrl { .. }));
        assert!(matches!(err("https://"), PublicUrlError::NotAUrl { .. }));
        assert!(matches!(
            err("http://exa mple.com"),
            PublicUrlError::Whitespace(_)
        ));
        assert!(matches!(
            err(" https://example.com"),
            PublicUrlError::Whitespace(_)
        ));
        assert!(matches!(
            err("https://example.com\n"),
            PublicUrlError::Whitespace(_)
        ));
        let msg = err("example.com").to_string();
        assert!(msg.contains("not a URL"), "{msg}");
    }

    #[test]
    fn userinfo_path_query_and_fragment_are_refused() {
        assert!(matches!(
            err("https://bob@example.com"),
            PublicUrlError::UserInfo(_)
        ));
        assert!(matches!(
            err("https://bob:pw@example.com"),
            PublicUrlError::UserInfo(_)
        ));
        assert!(matches!(
            err("https://:pw@example.com"),
            PublicUrlError::UserInfo(_)
        ));
        assert_eq!(
            err("https://example.com/peergate"),
            PublicUrlError::Path("/peergate".into())
        );
        assert_eq!(
            err("https://example.com//"),
            PublicUrlError::Path("//".into())
        );
        assert_eq!(
            err("https://example.com/?a=1"),
            PublicUrlError::Query("a=1".into())
        );
        assert_eq!(
            err("https://example.com?"),
            PublicUrlError::Query(String::new())
        );
        assert_eq!(
            err("https://example.com#top"),
            PublicUrlError::Fragment("top".into())
        );
        assert!(
            err("https://example.com/peergate")
                .to_string()
                .contains("no path")
        );
    }

    #[test]
    fn deserialises_from_config_and_serialises_as_the_origin() {
        #[derive(serde::Deserialize)]
        struct Server {
            public_url: PublicUrl,
        }
        let s: Server =
            serde_json::from_str(r#"{"public_url":"HTTPS://Example.com:443/"}"#).unwrap();
        assert_eq!(s.public_url.origin(), "https://example.com");
        assert_eq!(
            serde_json::to_string(&s.public_url).unwrap(),
            "\"https://example.com\""
        );
        let bad = serde_json::from_str::<Server>(r#"{"public_url":"ftp://x"}"#);
        assert!(bad.is_err_and(|e| e.to_string().contains("http:// or https://")));
    }
}

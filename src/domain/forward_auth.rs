//! Forward auth's pure rules (DESIGN.md §10): the hosts peergate answers for,
//! the roles a host needs, the original request a proxy describes, and which
//! `rd` (return-to) addresses are safe to send a browser back to.
//!
//! Every address is parsed by the `url` crate (the WHATWG URL standard, as
//! browsers parse it), and what is checked is the parsed host, so the host
//! that passed a check is the host a browser would go to.

use serde::{Deserialize, Deserializer};
use url::Url;

use super::{PublicUrl, Roles};

/// A host name pattern from the configuration: `app.example.com`, or
/// `*.example.com` for every subdomain of `example.com` (at any depth, not
/// `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    SubdomainsOf(String),
}

impl HostPattern {
    /// Parses a pattern; host names are lowercased and IDNA-encoded as a
    /// browser would write them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a host name like app.example.com or *.example.com");
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.is_empty() || name.contains(['*', ':', '/', '@', '?', '#', '\\', ' ']) {
            return Err(bad());
        }
        let host = url::Host::parse(name).map_err(|_| bad())?;
        let normal = match host {
            url::Host::Domain(d) => d,
            url::Host::Ipv4(ip) if !wildcard => ip.to_string(),
            _ => return Err(bad()),
        };
        let valid = normal
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(is_label_byte));
        if !valid {
            return Err(bad());
        }
        Ok(if wildcard {
            Self::SubdomainsOf(normal)
        } else {
            Self::Exact(normal)
        })
    }

    /// Whether `host` (lowercase, without a port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::SubdomainsOf(parent) => host
                .strip_suffix(parent.as_str())
                .and_then(|sub| sub.strip_suffix('.'))
                .is_some_and(|sub| !sub.is_empty()),
        }
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `forward_auth.allowed_hosts`: the hosts peergate answers for and may send
/// a browser back to. Empty allows none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    pub fn new(patterns: Vec<HostPattern>) -> Self {
        Self(patterns)
    }

    pub fn allows(&self, host: &str) -> bool {
        self.0.iter().any(|p| p.matches(host))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn patterns(&self) -> &[HostPattern] {
        &self.0
    }
}

/// A role a `[[forward_auth.rule]]` may ask for, and `/api/v1/me` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reviewer,
    Admin,
}

impl Role {
    fn held_by(self, roles: Roles) -> bool {
        match self {
            Role::Reviewer => roles.reviewer,
            Role::Admin => roles.admin,
        }
    }
}

/// One `[[forward_auth.rule]]`: a host and the roles that may reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub host: HostPattern,
    /// One of these is needed; empty admits any fully signed-in user.
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// Whether a fully signed-in user holding `held` may reach `host`: the first
/// rule whose host matches decides; a host with no rule admits everyone.
pub fn admits(rules: &[AccessRule], host: &str, held: Roles) -> bool {
    match rules.iter().find(|r| r.host.matches(host)) {
        None => true,
        Some(rule) => rule.roles.is_empty() || rule.roles.iter().any(|r| r.held_by(held)),
    }
}

/// An absolute `http(s)` URL with a host and no user name or password: the
/// original request a proxy describes, or an `rd`.
fn web_url(text: &str) -> Option<Url> {
    // The URL parser quietly drops tabs and newlines and trims spaces; an
    // address with them was not written by a browser or a proxy.
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let url = Url::parse(text).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none();
    plain.then_some(url)
}

/// The lowercase host of a parsed URL (IPv6 in brackets), without the port.
fn host_of(url: &Url) -> &str {
    url.host_str().unwrap_or_default()
}

/// The request a proxy asks about: its method and its full URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: String,
    pub url: Url,
}

impl OriginalRequest {
    /// From an `X-Original-URL` header (nginx).
    pub fn from_url(method: &str, text: &str) -> Option<Self> {
        let url = web_url(text)?;
        Some(Self {
            method: method.to_ascii_uppercase(),
            url,
        })
    }

    /// From `X-Forwarded-Proto`, `-Host` and `-Uri` (Caddy, Traefik). The
    /// host may carry a port; the URI is a path with an optional query.
    pub fn from_parts(method: &str, proto: &str, host: &str, uri: &str) -> Option<Self> {
        let proto = proto.trim().to_ascii_lowercase();
        if !matches!(proto.as_str(), "http" | "https")
            || host.is_empty()
            || host.contains(['/', '\\', '@', '?', '#'])
            || !uri.starts_with('/')
        {
            return None;
        }
        Self::from_url(method, &format!("{proto}://{host}{uri}"))
    }

    /// The host, lowercase, without the port.
    pub fn host(&self) -> &str {
        host_of(&self.url)
    }

    /// Whether a browser would be sent to sign in (rather than told 401): a
    /// GET or HEAD that accepts HTML.
    pub fn wants_a_page(&self, accept: &str) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD")
            && accept
                .split(',')
                .any(|part| part.trim().to_ascii_lowercase().starts_with("text/html"))
    }
}

/// An `rd` (return-to) address that is safe to redirect to: an absolute
/// `http(s)` URL whose host is in `allowed_hosts` or is peergate's own
/// origin. Anything else is dropped silently, so peergate is never an open
/// redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnTo(Url);

impl ReturnTo {
    /// `None` unless `text` is safe to send a browser to.
    pub fn parse(text: &str, allowed: &AllowedHosts, own: &PublicUrl) -> Option<Self> {
        let url = web_url(text)?;
        let own_origin = url.origin().ascii_serialization() == own.origin();
        (own_origin || allowed.allows(host_of(&url))).then_some(Self(url))
    }

    /// The URL as the parser wrote it (percent-encoded, no raw spaces or
    /// newlines), fit for a `Location` header.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host, as the pages name it ("to continue to grafana.example.com").
    pub fn host(&self) -> &str {
        host_of(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedHosts {
        AllowedHosts::new(
            patterns
                .iter()
                .map(|p| HostPattern::parse(p).unwrap())
                .collect(),
        )
    }

    fn own() -> PublicUrl {
        PublicUrl::parse("http://auth.peergate.test:8080").unwrap()
    }

    #[test]
    fn patterns_match_exact_hosts_and_subdomains_only() {
        let exact = HostPattern::parse("App.Example.com").unwrap();
        assert!(exact.matches("app.example.com"));
        assert!(!exact.matches("xapp.example.com"));
        let wild = HostPattern::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com") && wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("evilexample.com"));
        assert!(!wild.matches("a.example.com.evil.example"));
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "http://a.com",
            "a.com:80",
            "a b",
            "a/b",
            "*.1.2.3.4",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn only_allowed_or_own_return_addresses_survive() {
        let hosts = allowed(&["app.peergate.test", "*.apps.example"]);
        let ok = |rd: &str| ReturnTo::parse(rd, &hosts, &own()).map(|r| r.as_str().to_string());
        assert_eq!(
            ok("http://app.peergate.test:8443/dash?a=1&b=2").as_deref(),
            Some("http://app.peergate.test:8443/dash?a=1&b=2")
        );
        assert!(ok("https://grafana.apps.example/").is_some());
        assert!(ok("http://auth.peergate.test:8080/inbox").is_some());
        for bad in [
            "http://evil.example/",
            "//evil.example",
            "/relative",
            "javascript:alert(1)",
            "javascript:",
            "data:text/html,hi",
            "http://app.peergate.test.evil.example/",
            "http://app.peergate.test@evil.example/",
            "http://user:pw@app.peergate.test/",
            "http://unlisted.peergate.test/",
            "http://auth.peergate.test:9999/",
            "https://auth.peergate.test:8080/",
            "http:\\\\evil.example",
            "http://app.peergate.test/\nLocation: x",
            " http://app.peergate.test/",
            "ftp://app.peergate.test/",
            "",
        ] {
            assert_eq!(ok(bad), None, "{bad:?} must be dropped");
        }
    }

    #[test]
    fn original_requests_are_read_from_either_form() {
        let r =
            OriginalRequest::from_parts("get", "https", "App.Example.com:8443", "/a?b=c").unwrap();
        assert_eq!(r.url.as_str(), "https://app.example.com:8443/a?b=c");
        assert_eq!(r.host(), "app.example.com");
        assert!(r.wants_a_page("text/html,application/xhtml+xml"));
        assert!(!r.wants_a_page("application/json"));
        for (proto, host, uri) in [
            ("ftp", "a.com", "/"),
            ("http", "", "/"),
            ("http", "evil.com/x", "/"),
            ("http", "a.com@evil.com", "/"),
            ("http", "a.com", "x"),
        ] {
            assert!(OriginalRequest::from_parts("GET", proto, host, uri).is_none());
        }
        let post = OriginalRequest::from_url("POST", "http://a.com/x").unwrap();
        assert!(!post.wants_a_page("text/html"));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = vec![
            AccessRule {
                host: HostPattern::parse("admin.example.com").unwrap(),
                roles: vec![Role::Admin],
            },
            AccessRule {
                host: HostPattern::parse("*.example.com").unwrap(),
                roles: vec![Role::Reviewer],
            },
        ];
        let plain = Roles::default();
        let admin = Roles {
            admin: true,
            ..Roles::default()
        };
        let reviewer = Roles {
            reviewer: true,
            ..Roles::default()
        };
        assert!(admits(&rules, "admin.example.com", admin));
        assert!(!admits(&rules, "admin.example.com", reviewer));
        assert!(admits(&rules, "wiki.example.com", reviewer));
        assert!(!admits(&rules, "wiki.example.com", plain));
        assert!(admits(&rules, "other.test", plain));
    }
}

//! How a pending session ends, how the reviewer reached the requester, and the
//! attestation note: the parts of a decision that go into the ledger.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The outcome written to the ledger for a pending session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Approved,
    Denied,
    /// The code the caller read back was not the one on the screen: someone
    /// else most likely holds the password (DESIGN.md §12). Recorded like a
    /// denial, with `code_confirmed` 0.
    Mismatch,
    Expired,
    Withdrawn,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Approved,
        Outcome::Denied,
        Outcome::Mismatch,
        Outcome::Expired,
        Outcome::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::Mismatch => "mismatch",
            Outcome::Expired => "expired",
            Outcome::Withdrawn => "withdrawn",
        }
    }

    /// Whether a reviewer made this decision (and so the reviewer columns are filled).
    pub fn is_decision(self) -> bool {
        matches!(
            self,
            Outcome::Approved | Outcome::Denied | Outcome::Mismatch
        )
    }

    /// What the requester is told: a mismatch reads as a plain denial, so
    /// whoever holds the password learns nothing from it.
    #[must_use]
    pub fn as_told_to_requester(self) -> Outcome {
        match self {
            Outcome::Mismatch => Outcome::Denied,
            other => other,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome `{s}`"))
    }
}

/// The channel over which the reviewer confirmed the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Call,
    Chat,
    Video,
    InPerson,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Call,
        Channel::Chat,
        Channel::Video,
        Channel::InPerson,
        Channel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Call => "call",
            Channel::Chat => "chat",
            Channel::Video => "video",
            Channel::InPerson => "in_person",
            Channel::Other => "other",
        }
    }

    /// How the form labels it.
    pub fn label(self) -> &'static str {
        match self {
            Channel::Call => "Phone call",
            Channel::Chat => "Chat",
            Channel::Video => "Video call",
            Channel::InPerson => "In person",
            Channel::Other => "Other",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown channel `{s}`"))
    }
}

/// An attestation note: at most [`Note::MAX_CHARS`] characters of printable
/// text. Newlines are allowed; other control characters and the bidirectional
/// overrides that could make a ledger row read differently from what it holds
/// are refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Note(String);

impl Note {
    pub const MAX_CHARS: usize = 1000;

    /// Validates a note; browsers send `\r\n`, which is stored as `\n`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.replace("\r\n", "\n");
        let chars = text.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(format!(
                "the note is {chars} characters long; at most {} are allowed",
                Self::MAX_CHARS
            ));
        }
        if let Some(bad) = text.chars().find(|&c| !is_printable(c)) {
            return Err(format!(
                "the note contains the control character U+{:04X}; only printable text and newlines are allowed",
                bad as u32
            ));
        }
        Ok(Self(text))
    }

    /// An empty note, as expiry and withdrawal carry.
    pub fn empty() -> Self {
        Self(String::new())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

fn is_printable(c: char) -> bool {
    if c == '\n' {
        return true;
    }
    let bidi_control = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    !c.is_control() && !bidi_control
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_allow_text_and_newlines_only() {
        assert_eq!(
            Note::parse("line one\r\nline two").unwrap().as_str(),
            "line one\nline two"
        );
        assert!(Note::parse("Zoë 🚩 <script>").is_ok());
        assert!(Note::parse("bell\u{7}").is_err());
        assert!(Note::parse("tab\there").is_err());
        assert!(Note::parse("rtl\u{202E}txt").is_err());
        assert!(Note::parse(&"x".repeat(1000)).is_ok());
        assert!(Note::parse(&"x".repeat(1001)).is_err());
        assert!(Note::parse(&"é".repeat(1000)).is_ok());
        assert!(Note::parse("  \n ").unwrap().is_blank());
    }

    #[test]
    fn names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
        }
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert!("maybe".parse::<Outcome>().is_err());
        assert_eq!(Outcome::Mismatch.as_told_to_requester(), Outcome::Denied);
        assert!(Outcome::Mismatch.is_decision());
    }
}

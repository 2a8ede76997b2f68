//! The pure rules of a review: how old a session may grow before it is
//! highlighted, and what a reviewer may decide.

use std::time::Duration;

use serde::Serialize;

use super::Outcome;

/// The ageing level shown in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    New,
    Aging,
    Overdue,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::New => "new",
            Level::Aging => "aging",
            Level::Overdue => "overdue",
        }
    }
}

/// The ages at which a session becomes `aging` and `overdue`.
#[derive(Debug, Clone, Copy)]
pub struct Ages {
    pub aging_after: Duration,
    pub overdue_after: Duration,
}

impl Ages {
    pub fn level(&self, age: chrono::Duration) -> Level {
        let age = age.to_std().unwrap_or_default();
        if age >= self.overdue_after {
            Level::Overdue
        } else if age >= self.aging_after {
            Level::Aging
        } else {
            Level::New
        }
    }
}

/// What a reviewer decided. The API takes it as a word ([`Verdict::parse`]);
/// the schema lists the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
    /// The code read back did not match (DESIGN.md §12).
    Mismatch,
}

impl Verdict {
    /// The form and API words, `approve`, `deny` and `mismatch`.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "approve" => Some(Verdict::Approve),
            "deny" => Some(Verdict::Deny),
            "mismatch" => Some(Verdict::Mismatch),
            _ => None,
        }
    }

    /// The outcome the ledger records for it.
    pub fn outcome(self) -> Outcome {
        match self {
            Verdict::Approve => Outcome::Approved,
            Verdict::Deny => Outcome::Denied,
            Verdict::Mismatch => Outcome::Mismatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_configured_ages() {
        let ages = Ages {
            aging_after: Duration::from_mins(3),
            overdue_after: Duration::from_mins(8),
        };
        assert_eq!(ages.level(chrono::Duration::seconds(-5)), Level::New);
        assert_eq!(ages.level(chrono::Duration::seconds(179)), Level::New);
        assert_eq!(ages.level(chrono::Duration::seconds(180)), Level::Aging);
        assert_eq!(ages.level(chrono::Duration::seconds(480)), Level::Overdue);
    }

    #[test]
    fn verdicts_parse_their_words_only() {
        assert_eq!(Verdict::parse("approve"), Some(Verdict::Approve));
        assert_eq!(Verdict::parse("deny"), Some(Verdict::Deny));
        assert_eq!(Verdict::parse("Approve"), None);
        assert_eq!(Verdict::Deny.outcome(), Outcome::Denied);
        assert_eq!(Verdict::parse("mismatch"), Some(Verdict::Mismatch));
        assert_eq!(Verdict::Mismatch.outcome(), Outcome::Mismatch);
    }
}

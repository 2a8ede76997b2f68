//! The people in a review and where a sign-in came from, as everyone else
//! (reviewers, requesters, the ledger) sees them.

use serde::Serialize;

/// Who asked for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Requester {
    /// The user's stable id (the ledger records this, not the username).
    pub id: String,
    pub username: String,
    pub display_name: String,
}

/// A reviewer, by stable id and display name at the time. Only the display
/// name is ever shown to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Reviewer {
    #[serde(skip)]
    pub id: String,
    pub display_name: String,
}

/// Where a sign-in came from, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Client {
    /// The client's address (behind a trusted proxy, the forwarded one).
    pub ip: String,
    /// The `User-Agent` the browser sent, possibly empty.
    pub user_agent: String,
}

/// What an account may do: the `reviewer` and `admin` roles (independent of
/// each other), and whether it skips peer review always (`exempt`, for
/// bootstrap admins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    pub reviewer: bool,
    pub admin: bool,
    pub exempt: bool,
}

impl Roles {
    /// Role names as `/api/v1/me` lists them (`exempt` is not a role).
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.reviewer {
            names.push("reviewer");
        }
        if self.admin {
            names.push("admin");
        }
        names
    }
}

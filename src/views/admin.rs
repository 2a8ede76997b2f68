//! The admin pages: the dashboard with the ledger's download and KPIs, and
//! the ledger browser.

// A template reads top to bottom; the 60-line rule is for code.
#![allow(clippy::too_many_lines)]

use maud::{Markup, html};

use super::{Viewer, page};
use crate::domain::Outcome;
use crate::ledger::read::{DECIDED_WITHIN_10M_GOAL, Kpis};
use crate::ledger::{Head, Snapshot};

/// A ledger entry as the admin pages show it: every column, typed.
pub struct EntryRow<'a> {
    pub seq: i64,
    pub entry_id: &'a str,
    pub outcome: Outcome,
    pub requester_id: &'a str,
    pub requester_name: &'a str,
    pub requester_ip: &'a str,
    pub requester_user_agent: &'a str,
    pub reviewer_id: &'a str,
    pub reviewer_name: &'a str,
    pub channel: &'a str,
    pub code_confirmed: bool,
    pub note: &'a str,
    pub session_created_at: &'a str,
    pub decided_at: &'a str,
    pub prev_hash: &'a str,
    pub entry_hash: &'a str,
}

/// One download of the ledger: who, when, which file at which head.
pub struct DownloadRow<'a> {
    pub username: &'a str,
    pub downloaded_at: &'a str,
    pub filename: &'a str,
    pub head_seq: i64,
    pub head_hash: &'a str,
}

/// A value with a copy button.
fn copyable(id: &str, value: &str) -> Markup {
    html! {
        span.copyable {
            code #(id) { (value) }
            " "
            button.copy type="button" data-copy-from=(id) aria-label={ "Copy " (id) } { "Copy" }
        }
    }
}

fn duration(secs: Option<f64>) -> String {
    match secs {
        None => "—".into(),
        Some(s) if s < 60.0 => format!("{s:.0} s"),
        Some(s) => format!("{}m {:02}s", (s / 60.0).floor(), (s % 60.0).round()),
    }
}

/// The transparency log as the dashboard shows it.
pub struct LogView<'a> {
    /// The signed checkpoint of the snapshot's size (with any cosignatures).
    pub checkpoint: &'a str,
    /// The log's verifier key.
    pub vkey: &'a str,
    /// How many witnesses are configured.
    pub witnesses: usize,
}

pub struct AdminView<'a> {
    pub user: Viewer<'a>,
    pub head: Head,
    pub snapshot: &'a Snapshot,
    pub kpis: &'a Kpis,
    pub pending_now: usize,
    pub reviewers_online: usize,
    pub downloads: &'a [DownloadRow<'a>],
    /// The newest entries, for a glance at what happened last.
    pub latest: &'a [EntryRow<'a>],
    pub log: LogView<'a>,
}

pub fn dashboard(v: &AdminView<'_>) -> Markup {
    let s = v.snapshot;
    let head_arg = v.head.to_arg();
    let snapshot_head = s.head.to_arg();
    page(
        "Admin",
        Some(v.user),
        &html! {
            h1 { "Admin" }
            section.card {
                h2 { "Peer review" }
                div.kpis {
                    div.kpi { span.value #kpi-pending { (v.pending_now) } span.label { "pending now" } }
                    div.kpi { span.value { (v.reviewers_online) } span.label { "reviewers online" } }
                    div.kpi { span.value #kpi-decisions-24h { (v.kpis.decisions_24h) } span.label { "decisions, 24 h" } }
                    div.kpi { span.value { (v.kpis.decisions_7d) } span.label { "decisions, 7 days" } }
                    div.kpi { span.value { (v.kpis.expired_24h) } span.label { "expired, 24 h" } }
                    div.kpi { span.value { (v.kpis.expired_7d) } span.label { "expired, 7 days" } }
                    div.kpi { span.value #kpi-median { (duration(v.kpis.median_decision_secs)) } span.label { "median time to decision" } }
                    div.kpi { span.value #kpi-p90 { (duration(v.kpis.p90_decision_secs)) } span.label { "p90 time to decision" } }
                    @let share = v.kpis.decided_within_10m;
                    @let met = share.is_some_and(|x| x >= DECIDED_WITHIN_10M_GOAL);
                    div.kpi class=[share.map(|_| if met { "goal-met" } else { "goal-missed" })] {
                        span.value #kpi-within-10m { (share.map_or_else(|| "—".into(), |x| format!("{:.0}%", x * 100.0))) }
                        span.label { "decided within 10 min (goal 90%)" }
                    }
                }
                p.hint { "Seven-day figures. Times run from sign-in to the reviewer's decision; the share counts approved, denied and expired sessions (withdrawn ones are the requester's own choice)." }
            }
            section.card {
                h2 { "Ledger" }
                p { "Head: " (copyable("ledger-head", &head_arg)) }
                h3 { "Download" }
                p {
                    a.button href="/admin/exports/ledger.sqlite" download=(s.filename) id="download-ledger" { "Download " (s.filename) }
                    " (" (s.bytes) " bytes) · "
                    a href="/admin/exports/ledger.sqlite.sha256" download={ (s.filename) ".sha256" } { "SHA-256 file" }
                    " · "
                    a href="/admin/exports/ledger.sqlite.b3" download={ (s.filename) ".b3" } { "BLAKE3 file" }
                    " · "
                    a href="/admin/exports/ledger.sqlite.checkpoint" download={ (s.filename) ".checkpoint" } id="download-checkpoint" { "Signed checkpoint" }
                }
                dl.facts {
                    dt { "SHA-256" } dd { (copyable("snapshot-sha256", &s.sha256)) }
                    dt { "BLAKE3" } dd { (copyable("snapshot-blake3", &s.blake3)) }
                    dt { "Snapshot head" } dd { code { (snapshot_head) } }
                    dt { "Verifier key" } dd { (copyable("log-vkey", v.log.vkey)) }
                }
                h3 { "Signed checkpoint" }
                pre.commands #snapshot-checkpoint { (v.log.checkpoint) }
                p.hint {
                    "The log's signature on the Merkle root of the first " (s.head.seq) " entries"
                    @if v.log.witnesses > 0 { ", with the cosignatures of its witnesses when they have signed it" }
                    ". Publish the verifier key where auditors can find it: with both, anyone can check a copy without trusting this page."
                }
                h3 { "Check it" }
                pre.commands {
                    "sha256sum -c " (s.filename) ".sha256\n"
                    "b3sum -c " (s.filename) ".b3\n"
                    "peergate ledger verify " (s.filename) " --expect-head " (snapshot_head) "\n"
                    "peergate ledger verify " (s.filename) " --checkpoint " (s.filename) ".checkpoint --key '" (v.log.vkey) "'"
                }
                p.hint { "Keep the head somewhere else too: a later download that does not contain it has lost or rewritten history." }
                h3 { "Latest entries" }
                @if v.latest.is_empty() {
                    p.muted { "The ledger is empty." }
                } @else {
                    (entries_table(v.latest))
                }
                p { a href="/admin/ledger" { "Browse the whole ledger" } }
            }
            section.card {
                h2 { "Recent downloads" }
                @if v.downloads.is_empty() {
                    p.muted { "Nobody has downloaded the ledger yet." }
                } @else {
                    table.entries {
                        thead { tr { th { "Who" } th { "When" } th { "File" } th { "Head" } } }
                        tbody {
                            @for d in v.downloads {
                                tr {
                                    td { (d.username) }
                                    td { time datetime=(d.downloaded_at) { (d.downloaded_at) } }
                                    td { (d.filename) }
                                    td.mono title=(d.head_hash) { (d.head_seq) ":" (&d.head_hash[..12.min(d.head_hash.len())]) "…" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The query a ledger page was asked with, to build links.
pub struct LedgerQuery<'a> {
    pub outcome: Option<&'a str>,
    pub user: Option<&'a str>,
}

fn short(hash: &str) -> Markup {
    html! { code title=(hash) { (&hash[..12.min(hash.len())]) "…" } }
}

pub fn ledger_page(
    user: Viewer<'_>,
    entries: &[EntryRow<'_>],
    query: &LedgerQuery<'_>,
    next_before: Option<i64>,
    notice: Option<&str>,
) -> Markup {
    page(
        "Ledger",
        Some(user),
        &html! {
            h1 { "Ledger" }
            form.filters method="get" action="/admin/ledger" {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    option value="" { "any" }
                    @for o in ["approved", "denied", "expired", "withdrawn"] {
                        option value=(o) selected[query.outcome == Some(o)] { (o) }
                    }
                }
                label for="user" { "Requester or reviewer (username)" }
                input #user name="user" type="text" value=(query.user.unwrap_or(""));
                button type="submit" { "Filter" }
            }
            @if let Some(notice) = notice { p.notice { (notice) } }
            (entries_table(entries))
            @if entries.is_empty() { p.muted { "No entries match." } }
            @if let Some(before) = next_before {
                p {
                    a href={
                        "/admin/ledger?before=" (before)
                        @if let Some(o) = query.outcome { "&outcome=" (o) }
                        @if let Some(u) = query.user { "&user=" (urlencode(u)) }
                    } { "Older entries →" }
                }
            }
        },
    )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every column of the given entries; hashes shortened with the full value on hover.
pub fn entries_table(entries: &[EntryRow<'_>]) -> Markup {
    html! {
            div.table-wrap {
                table.entries {
                    thead {
                        tr {
                            th { "Seq" } th { "Outcome" } th { "Requester" } th { "Client" } th { "Reviewer" }
                            th { "Channel" } th { "Code read back" } th { "Note" } th { "Signed in" } th { "Decided" }
                            th { "Entry" } th { "Prev hash" } th { "Hash" }
                        }
                    }
                    tbody {
                        @for f in entries {
                            tr class={ "outcome-" (f.outcome) } {
                                td { (f.seq) }
                                td { span class={ "badge outcome-" (f.outcome) } { (f.outcome) } }
                                td { (f.requester_name) br; span.muted.mono { (f.requester_id) } }
                                td { span.mono { (f.requester_ip) } br; span.muted.ua { (f.requester_user_agent) } }
                                td { (f.reviewer_name) br; span.muted.mono { (f.reviewer_id) } }
                                td { (f.channel) }
                                td { (if f.code_confirmed { "yes" } else { "no" }) }
                                td.note { (f.note) }
                                td { time datetime=(f.session_created_at) { (f.session_created_at) } }
                                td { time datetime=(f.decided_at) { (f.decided_at) } }
                                td.mono { (f.entry_id) }
                                td { (short(f.prev_hash)) }
                                td { (short(f.entry_hash)) }
                            }
                        }
                    }
                }
            }
    }
}

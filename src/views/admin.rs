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

/// A code mismatch nobody has acknowledged yet.
pub struct MismatchRow<'a> {
    pub session_id: &'a str,
    pub username: &'a str,
    pub requester_name: &'a str,
    pub requester_ip: &'a str,
    pub reviewer_name: &'a str,
    pub seq: i64,
    pub entry_hash: &'a str,
    pub recorded_at: &'a str,
    /// Whether the mismatch locked the account, and whether it still is.
    pub account_locked: bool,
    pub locked_now: bool,
}

/// A configured webhook endpoint, without its URL (it may hold a secret).
pub struct EndpointRow<'a> {
    pub label: &'a str,
    pub format: &'static str,
    pub events: usize,
    pub queued: i64,
}

/// One webhook delivery, as the history lists it.
pub struct DeliveryRow<'a> {
    /// The webhook-id receivers see.
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub endpoint: String,
    pub created_at: &'a str,
    pub status: &'a str,
    pub attempts: i64,
    pub last_status: Option<i64>,
    /// Why the last failed try failed (kept after a later success).
    pub last_error: &'a str,
    pub settled_at: Option<&'a str>,
}

/// The webhooks section: endpoints, recent deliveries, recent failures.
pub struct WebhooksView<'a> {
    pub endpoints: &'a [EndpointRow<'a>],
    pub recent: &'a [DeliveryRow<'a>],
    pub failures: &'a [DeliveryRow<'a>],
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
    /// Open code mismatches, shown first until acknowledged.
    pub mismatches: &'a [MismatchRow<'a>],
    pub webhooks: WebhooksView<'a>,
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
            @if !v.mismatches.is_empty() { (mismatch_alarm(v.mismatches)) }
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
                p.hint { "Seven-day figures. Times run from sign-in to the reviewer's decision; the share counts approved, denied, mismatched and expired sessions (withdrawn ones are the requester's own choice)." }
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
                p {
                    "For a SIEM or a spreadsheet, the same entries as "
                    a href="/admin/exports/ledger.jsonl" id="export-jsonl" { "JSON Lines" }
                    " or "
                    a href="/admin/exports/ledger.csv" id="export-csv" { "CSV" }
                    " (every column and the chain fields; the SQLite file is what auditors verify)."
                }
                dl.facts {
                    dt { "SHA-256" } dd { (copyable("snapshot-sha256", &s.sha256)) }
                    dt { "BLAKE3" } dd { (copyable("snapshot-blake3", &s.blake3)) }
                    dt { "Snapshot head" } dd { code { (snapshot_head) } }
                    dt { "Verifier key" } dd { (copyable("log-vkey", v.log.vkey)) }
                }
                h3 { "Signed checkpoint" }
                // Scrollable on a narrow screen: reachable by keyboard too.
                pre.commands #snapshot-checkpoint tabindex="0" aria-label="Signed checkpoint" { (v.log.checkpoint) }
                p.hint {
                    "The log's signature on the Merkle root of the first " (s.head.seq) " entries"
                    @if v.log.witnesses > 0 { ", with the cosignatures of its witnesses when they have signed it" }
                    ". Publish the verifier key where auditors can find it: with both, anyone can check a copy without trusting this page."
                }
                h3 { "Check it" }
                pre.commands tabindex="0" aria-label="Commands to check the download" {
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
            (webhooks_card(&v.webhooks))
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

/// The alarm at the top of the dashboard: each open mismatch, with a button
/// that records who acknowledged it and when.
fn mismatch_alarm(rows: &[MismatchRow<'_>]) -> Markup {
    html! {
        section.card.alarm #mismatches role="alert" aria-labelledby="mismatches-title" {
            h2 #mismatches-title { "Code mismatch: someone else may hold a password" }
            p {
                "A reviewer reported that the code read back to them was not the one on their screen. "
                "The person on the other end could not see the sign-in, so whoever typed the password is most likely someone else. "
                "Reach the account's owner on a channel you trust, have the password changed, then unlock the account with "
                code { "peergate user unlock USERNAME" } "."
            }
            ul.mismatches {
                @for m in rows {
                    li id={ "mismatch-" (m.session_id) } {
                        strong { (m.requester_name) } " (" code { (m.username) } ") "
                        "— reported by " (m.reviewer_name) " at " time datetime=(m.recorded_at) { (m.recorded_at) }
                        ", sign-in from " span.mono { (m.requester_ip) }
                        ", ledger entry " a href={ "/admin/ledger?before=" (m.seq + 1) } { "#" (m.seq) } " " (short(m.entry_hash)) ". "
                        @if m.locked_now {
                            span.badge.outcome-mismatch { "account locked" }
                        } @else if m.account_locked {
                            span.badge.outcome-approved { "unlocked since" }
                        } @else {
                            span.badge.outcome-denied { "not locked (lock_on_mismatch is off)" }
                        }
                        form.inline method="post" action={ "/admin/mismatches/" (m.session_id) "/acknowledge" } {
                            button.primary type="submit" { "Acknowledge" }
                        }
                    }
                }
            }
        }
    }
}

fn delivery_table(rows: &[DeliveryRow<'_>]) -> Markup {
    html! {
        div.table-wrap {
            table.entries.deliveries {
                thead { tr { th { "Event" } th { "webhook-id" } th { "Endpoint" } th { "Created" } th { "Status" } th { "Tries" } th { "Last answer" } th { "Last failure" } th { "Settled" } } }
                tbody {
                    @for d in rows {
                        tr class={ "delivery-" (d.status) } {
                            td { code { (d.event_type) } }
                            td.mono { (d.event_id) }
                            td { (d.endpoint) }
                            td { time datetime=(d.created_at) { (d.created_at) } }
                            td { span class={ "badge delivery-" (d.status) } { (d.status) } }
                            td { (d.attempts) }
                            td { @if let Some(status) = d.last_status { "HTTP " (status) } }
                            td { (d.last_error) }
                            td { @if let Some(at) = d.settled_at { time datetime=(at) { (at) } } }
                        }
                    }
                }
            }
        }
    }
}

fn webhooks_card(w: &WebhooksView<'_>) -> Markup {
    html! {
        section.card #webhooks {
            h2 { "Webhooks" }
            @if w.endpoints.is_empty() {
                p.muted { "No webhook endpoints are configured (" code { "[[alerts.webhook]]" } "; see the README, Alerts)." }
            } @else {
                table.entries {
                    thead { tr { th { "Endpoint" } th { "Format" } th { "Events" } th { "Waiting to be delivered" } } }
                    tbody {
                        @for e in w.endpoints {
                            tr { td { (e.label) } td { (e.format) } td { (e.events) } td { (e.queued) } }
                        }
                    }
                }
            }
            h3 { "Recent failures" }
            @if w.failures.is_empty() {
                p.muted { "No failed attempts." }
            } @else {
                (delivery_table(w.failures))
            }
            h3 { "Recent deliveries" }
            @if w.recent.is_empty() {
                p.muted { "Nothing sent yet." }
            } @else {
                (delivery_table(w.recent))
            }
            p.hint { "Each event is tried up to 8 times (waiting 1 s, 2 s, 4 s, … between tries, 10 s per try), also across restarts; the webhook-id stays the same on every try." }
        }
    }
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
                    @for o in ["approved", "denied", "mismatch", "expired", "withdrawn"] {
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
///
/// The table scrolls sideways inside its box; the box takes focus (and is a
/// named region) so keyboard users can scroll it with the arrow keys.
pub fn entries_table(entries: &[EntryRow<'_>]) -> Markup {
    html! {
            div.table-wrap tabindex="0" role="region" aria-label="Ledger entries" {
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

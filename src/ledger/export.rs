//! `peergate ledger export`: every entry, every column and the chain fields,
//! as JSON Lines (for SIEMs) or CSV (for spreadsheets), from a ledger file.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::chain::EntryFields;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// A header row, then one row per entry; formula-like cells are guarded.
    Csv,
}

/// One entry: every column (the hashed fields, then the chain fields).
#[derive(Debug, Serialize)]
pub struct ExportedEntry {
    #[serde(flatten)]
    pub fields: EntryFields,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// The columns, as CSV's header row.
const COLUMNS: [&str; 17] = [
    "seq",
    "entry_id",
    "session_id",
    "outcome",
    "requester_id",
    "requester_name",
    "requester_ip",
    "requester_user_agent",
    "reviewer_id",
    "reviewer_name",
    "channel",
    "code_confirmed",
    "note",
    "session_created_at",
    "decided_at",
    "prev_hash",
    "entry_hash",
];

/// Writes every entry of the ledger at `path` to `out`; returns the count.
/// Reads one row at a time, so a large ledger is not held in memory.
pub fn export(path: &Path, format: ExportFormat, out: impl Write) -> anyhow::Result<usize> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", path.display()))?;
    let sql = format!(
        "SELECT {} FROM ledger_entries ORDER BY seq",
        COLUMNS.join(", ")
    );
    let mut statement = conn.prepare(&sql).context("reading ledger_entries")?;
    let mut rows = statement.query([])?;
    let mut sink = Sink::new(format, out)?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        sink.write(&entry(row)?)?;
        count += 1;
    }
    sink.finish()?;
    Ok(count)
}

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<ExportedEntry> {
    Ok(ExportedEntry {
        fields: EntryFields {
            seq: row.get(0)?,
            entry_id: row.get(1)?,
            session_id: row.get(2)?,
            outcome: row.get(3)?,
            requester_id: row.get(4)?,
            requester_name: row.get(5)?,
            requester_ip: row.get(6)?,
            requester_user_agent: row.get(7)?,
            reviewer_id: row.get(8)?,
            reviewer_name: row.get(9)?,
            channel: row.get(10)?,
            code_confirmed: row.get(11)?,
            note: row.get(12)?,
            session_created_at: row.get(13)?,
            decided_at: row.get(14)?,
        },
        prev_hash: row.get(15)?,
        entry_hash: row.get(16)?,
    })
}

/// Where entries go, in their format. The CSV writer is boxed: it carries its
/// own buffer, and the two variants would otherwise differ greatly in size.
enum Sink<W: Write> {
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Sink<W> {
    fn new(format: ExportFormat, out: W) -> anyhow::Result<Self> {
        Ok(match format {
            ExportFormat::Jsonl => Sink::Jsonl(out),
            ExportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record(COLUMNS)?;
                Sink::Csv(Box::new(writer))
            }
        })
    }

    fn write(&mut self, entry: &ExportedEntry) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, entry)?;
                out.write_all(b"\n")?;
            }
            Sink::Csv(writer) => {
                let f = &entry.fields;
                let (seq, confirmed) = (f.seq.to_string(), f.code_confirmed.to_string());
                let cells = [
                    &seq,
                    &f.entry_id,
                    &f.session_id,
                    &f.outcome,
                    &f.requester_id,
                    &f.requester_name,
                    &f.requester_ip,
                    &f.requester_user_agent,
                    &f.reviewer_id,
                    &f.reviewer_name,
                    &f.channel,
                    &confirmed,
                    &f.note,
                    &f.session_created_at,
                    &f.decided_at,
                    &entry.prev_hash,
                    &entry.entry_hash,
                ];
                writer.write_record(cells.iter().map(|c| guard_formula(c).into_owned()))?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(mut out) => out.flush()?,
            Sink::Csv(mut writer) => writer.flush()?,
        }
        Ok(())
    }
}

/// A cell a spreadsheet would run as a formula (OWASP "CSV injection"):
/// one that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
/// leading `'`, so it is shown as text. Everything else is left as it is.
fn guard_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_shown_as_text() {
        for cell in ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(guard_formula(cell), format!("'{cell}"));
        }
        for cell in ["plain", "a=b", "", "1", "ps_abc"] {
            assert_eq!(guard_formula(cell), cell);
        }
    }
}

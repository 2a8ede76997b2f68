//! The command line (DESIGN.md §8): serve, demo, user administration, ledger
//! verification and proofs, the transparency witness.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::LogFormat;
use crate::domain::Username;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::clock::{SystemClock, rfc3339};
use crate::config::Settings;
use crate::ledger::{Expected, Head, Verdict, verify_file_with};
use crate::passwords::{self, Cost};
use crate::startup::{Application, shutdown_signal};
use crate::store::{self, users};

#[derive(Debug, Parser)]
#[command(
    name = "peergate",
    version,
    about = "Peer review for stalled sign-ins, with a hash-chained ledger"
)]
pub struct Cli {
    /// A configuration file layered over the embedded defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve,
    /// Run the service on a fresh demo data dir, with demo accounts printed.
    Demo,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Work with ledger files.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Measure peergate against the targets in BENCHMARKS.md.
    #[command(subcommand)]
    Loadtest(LoadtestCommand),
    /// Copy both databases of the configured data dir into DIR (created; must
    /// be empty), consistently while the server runs, with a manifest of
    /// checksums and the ledger head.
    Backup {
        /// Where the backup goes.
        dir: PathBuf,
    },
    /// Restore a backup made by `peergate backup` into an empty data dir,
    /// checking every checksum and the ledger before anything is put in place.
    Restore {
        /// The backup to restore.
        dir: PathBuf,
        /// The data dir to restore into (created; must be empty).
        #[arg(long, value_name = "D")]
        data_dir: PathBuf,
    },
    /// Run a transparency-log witness (c2sp.org/tlog-witness) for peergate logs.
    Witness(crate::transparency::witness::WitnessArgs),
}

#[derive(Debug, Subcommand)]
pub enum LoadtestCommand {
    /// Durable appends per second, group commit against one transaction per entry.
    Ledger {
        /// Entries to append.
        #[arg(long, default_value_t = 50_000)]
        entries: usize,
        /// How often the transparency log's signer may sign a checkpoint
        /// meanwhile (the service's default is 1s).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        checkpoint_interval: std::time::Duration,
        /// Print one JSON object on the last line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Build a ledger of N entries, start `peergate serve` on it (start-up
    /// time, memory), then fetch tiles and entry bundles from it.
    Tlog(crate::loadtest::tlog::TlogArgs),
    /// Open and hold N reviewer sockets; report the server's memory per socket.
    Sockets {
        /// Reviewer sockets to open.
        #[arg(long, default_value_t = 1000)]
        reviewers: usize,
        #[command(flatten)]
        target: crate::loadtest::server::TargetArgs,
        /// Print one JSON object on the last line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// With N reviewers connected, time each sign-in until the last reviewer has it.
    Broadcast {
        /// Reviewer sockets to open.
        #[arg(long, default_value_t = 1000)]
        reviewers: usize,
        /// Sign-ins to time.
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[command(flatten)]
        target: crate::loadtest::server::TargetArgs,
        /// Print one JSON object on the last line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// With N reviewers connected, time each decision until the requester's socket has it.
    Decide {
        /// Reviewer sockets to open.
        #[arg(long, default_value_t = 1000)]
        reviewers: usize,
        /// Decisions to time.
        #[arg(long, default_value_t = 100)]
        decisions: usize,
        /// Configure two webhook endpoints (started here), one of them hanging.
        #[arg(long)]
        webhooks: bool,
        #[command(flatten)]
        target: crate::loadtest::server::TargetArgs,
        /// Print one JSON object on the last line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// N concurrent failing sign-ins from many loopback addresses: memory, /healthz, a real sign-in after.
    Flood {
        #[command(flatten)]
        flood: crate::loadtest::flood::FloodArgs,
        /// Print one JSON object on the last line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Forward auth's answers per second with a valid cookie, and p99, at N clients.
    AuthRequest(crate::loadtest::authz::AuthRequestArgs),
    /// Build a ledger of N entries, then time a snapshot and `ledger verify`.
    Snapshot {
        /// Entries in the ledger to build.
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
        /// Print one JSON object on the last line, for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password comes from stdin or a file, never from argv.
    Add(AddUser),
    /// List accounts and their roles.
    List,
    /// Set an account's roles (the flags given are the new roles; absent ones are removed).
    SetRoles(SetRoles),
    /// Disable an account and end its sessions.
    Disable {
        /// The account to disable.
        username: Username,
    },
    /// Lift the lock a code mismatch left on an account (DESIGN.md §12).
    Unlock {
        /// The locked account.
        username: Username,
    },
}

#[derive(Debug, Args)]
pub struct AddUser {
    /// Letters, digits, `.`, `-`, `_` or `@`, in one script; kept in lower case.
    pub username: Username,
    /// The name people see (reviewers, the ledger).
    #[arg(long)]
    pub display_name: String,
    #[command(flatten)]
    pub roles: RoleFlags,
    /// Read the password from standard input (one line).
    #[arg(
        long,
        conflicts_with = "password_file",
        required_unless_present = "password_file"
    )]
    pub password_stdin: bool,
    /// Read the password from the first line of a file.
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SetRoles {
    /// The account whose roles change.
    pub username: Username,
    #[command(flatten)]
    pub roles: RoleFlags,
}

/// The role switches of `user add` and `user set-roles`.
#[derive(Debug, Args)]
pub struct RoleFlags {
    /// May review other people's sign-ins (sees the inbox).
    #[arg(long)]
    pub reviewer: bool,
    /// May see the admin pages and download the ledger.
    #[arg(long)]
    pub admin: bool,
    /// Skip peer review always (bootstrap admins).
    #[arg(long)]
    pub exempt: bool,
}

impl From<&RoleFlags> for crate::domain::Roles {
    fn from(flags: &RoleFlags) -> Self {
        Self {
            reviewer: flags.reviewer,
            admin: flags.admin,
            exempt: flags.exempt,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Verify a ledger file offline. Exit 0 valid; 1 invalid, naming the first
    /// bad seq; 2 not a ledger.
    Verify {
        /// The ledger file (a download, a backup, or the live file).
        file: PathBuf,
        /// A head remembered elsewhere, as SEQ:HASH: the ledger must contain it.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
        /// A signed checkpoint: the Merkle root of the file's first N entries
        /// must be its root. Needs --key.
        #[arg(long, value_name = "CKPT", requires = "key")]
        checkpoint: Option<PathBuf>,
        /// The log's verifier key (the string itself), for --checkpoint.
        #[arg(long, value_name = "VKEY", requires = "checkpoint")]
        key: Option<String>,
    },
    /// Print the transparency log's verifier key.
    Key,
    /// Print the inclusion proof of one entry in the tree of the first N
    /// entries: base64 hashes, one a line.
    Prove {
        /// The ledger file holding the entry.
        file: PathBuf,
        /// The entry to prove (its seq).
        #[arg(long, value_name = "S")]
        seq: u64,
        /// The size of the checkpoint to prove it in (at least S).
        #[arg(long, value_name = "N")]
        size: u64,
    },
    /// Write every entry of a ledger file, every column and the chain fields,
    /// as JSON Lines or CSV (for SIEMs and spreadsheets).
    Export {
        /// The ledger file (a download, a backup, or the live file).
        file: PathBuf,
        /// `jsonl`: one JSON object a line; `csv`: a header row, then one row
        /// an entry, with formula-like cells guarded for spreadsheets.
        #[arg(long, value_enum)]
        format: crate::ledger::export::ExportFormat,
        /// Write here instead of standard output.
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
    },
    /// Crash drill for tests (only in builds with the `test-hooks` feature):
    /// append synthetic entries to DATA_DIR/ledger.sqlite
    /// and log each acknowledged one to --acks, until killed or a bound is hit.
    /// Refuses a data dir that holds an app.sqlite (a real service's).
    #[cfg(feature = "test-hooks")]
    #[command(hide = true)]
    Drill {
        /// The scratch data dir.
        data_dir: PathBuf,
        /// Where each acknowledged entry is logged.
        #[arg(long)]
        acks: PathBuf,
        /// Stop after this many entries.
        #[arg(long, default_value_t = 100_000)]
        max_entries: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 60)]
        max_seconds: u64,
    },
}

/// Runs a parsed command line; the exit code is the process's.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ledger(LedgerCommand::Verify {
            file,
            expect_head,
            checkpoint,
            key,
        }) => {
            crate::telemetry::init(LogFormat::Text);
            let checkpoint = checkpoint.as_deref().zip(key.as_deref());
            verify(&file, expect_head.as_deref(), checkpoint).await
        }
        Command::Ledger(LedgerCommand::Prove { file, seq, size }) => {
            crate::telemetry::init(LogFormat::Text);
            crate::transparency::offline::prove(&file, seq, size).await
        }
        Command::Witness(args) => {
            crate::telemetry::init(LogFormat::Text);
            crate::transparency::witness::run(args)
                .await
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Ledger(LedgerCommand::Export { file, format, out }) => {
            crate::telemetry::init(LogFormat::Text);
            export(&file, format, out.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        #[cfg(feature = "test-hooks")]
        Command::Ledger(LedgerCommand::Drill {
            data_dir,
            acks,
            max_entries,
            max_seconds,
        }) => drill(&data_dir, &acks, max_entries, max_seconds)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Loadtest(command) => {
            crate::telemetry::init(LogFormat::Text);
            loadtest(command).await.map(|()| ExitCode::SUCCESS)
        }
        command => {
            let settings = Settings::load(cli.config.as_deref())?;
            crate::telemetry::init(settings.log.format);
            match command {
                Command::Serve => serve(settings).await,
                Command::Demo => demo(settings).await,
                Command::User(user) => user_command(settings, user).await,
                Command::Backup { dir } => backup(&settings, &dir).await,
                Command::Restore { dir, data_dir } => restore(&dir, &data_dir).await,
                Command::Ledger(LedgerCommand::Key) => {
                    crate::transparency::offline::print_key(&settings)
                }
                Command::Ledger(_) | Command::Loadtest(_) | Command::Witness(_) => {
                    unreachable!("handled above")
                }
            }
            .map(|()| ExitCode::SUCCESS)
        }
    }
}

/// Prints a scenario's report: a table, then (with `json`) one JSON line.
fn show<R: serde::Serialize>(report: &R, rows: fn(&R) -> Vec<(&'static str, String)>, json: bool) {
    crate::loadtest::print_report(&rows(report), report, json);
}

async fn loadtest(command: LoadtestCommand) -> anyhow::Result<()> {
    use crate::loadtest::{flood, ledger, live, snapshot};
    match command {
        LoadtestCommand::Ledger {
            entries,
            checkpoint_interval,
            json,
        } => {
            show(
                &ledger::run(entries, checkpoint_interval).await?,
                ledger::rows,
                json,
            );
        }
        LoadtestCommand::Tlog(args) => {
            let report = crate::loadtest::tlog::run(&args).await?;
            show(&report, crate::loadtest::tlog::rows, args.json);
        }
        LoadtestCommand::Sockets {
            reviewers,
            target,
            json,
        } => show(
            &live::sockets(&target, reviewers).await?,
            live::socket_rows,
            json,
        ),
        LoadtestCommand::Broadcast {
            reviewers,
            sessions,
            target,
            json,
        } => show(
            &live::broadcast(&target, reviewers, sessions).await?,
            live::latency_rows,
            json,
        ),
        LoadtestCommand::Decide {
            reviewers,
            decisions,
            webhooks,
            target,
            json,
        } => show(
            &live::decide(&target, reviewers, decisions, webhooks).await?,
            live::latency_rows,
            json,
        ),
        LoadtestCommand::Flood { flood, json } => {
            show(&flood::run(&flood).await?, flood::rows, json);
        }
        LoadtestCommand::Snapshot { entries, json } => {
            show(&snapshot::run(entries).await?, snapshot::rows, json);
        }
        LoadtestCommand::AuthRequest(args) => {
            crate::loadtest::authz::main(&args).await?;
        }
    }
    Ok(())
}

fn export(
    file: &Path,
    format: crate::ledger::export::ExportFormat,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let count = match out {
        Some(path) => {
            let written = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            crate::ledger::export::export(file, format, std::io::BufWriter::new(written))?
        }
        None => crate::ledger::export::export(file, format, std::io::stdout().lock())?,
    };
    eprintln!("exported {count} entries");
    Ok(())
}

async fn backup(settings: &Settings, dir: &Path) -> anyhow::Result<()> {
    let manifest = crate::backup::backup(&settings.storage.data_dir, dir).await?;
    println!(
        "backed up {} to {} (ledger head {})",
        settings.storage.data_dir.display(),
        dir.display(),
        manifest.ledger_head
    );
    Ok(())
}

async fn restore(dir: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let manifest = crate::backup::restore(dir, data_dir).await?;
    println!(
        "restored {} into {} (ledger verified to head {})",
        dir.display(),
        data_dir.display(),
        manifest.ledger_head
    );
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    let addr = app.local_addr();
    // Scripts and tests read this line to find the port when binding port 0.
    println!("peergate listening on http://{addr}");
    tracing::info!(%addr, "listening");
    app.run_until_stopped(shutdown_signal()).await
}

/// The demo accounts: (username, display name, reviewer, admin, exempt).
const DEMO_ACCOUNTS: &[(&str, &str, bool, bool, bool)] = &[
    ("ada", "Ada Admin", true, true, true),
    ("rita", "Rita Reviewer", true, false, false),
    ("rob", "Rob Reviewer", true, false, false),
    ("uma", "Uma User", false, false, false),
    ("ulf", "Ulf User", false, false, false),
];

async fn demo(mut settings: Settings) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join("peergate-demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("clearing the old demo data dir {}", dir.display()))?;
    }
    settings.storage.data_dir = dir.clone();
    let pool = store::open(&dir).await?;
    let now = rfc3339(chrono::Utc::now());
    let mut lines = Vec::new();
    for (username, display_name, reviewer, admin, exempt) in DEMO_ACCOUNTS {
        let password = demo_password();
        users::insert_user(
            &pool,
            &users::NewUser {
                username: (*username).into(),
                display_name: (*display_name).into(),
                password_hash: passwords::hash(password.clone(), Cost::Strong).await?,
                is_reviewer: *reviewer,
                is_admin: *admin,
                is_exempt: *exempt,
            },
            &now,
        )
        .await?;
        let roles = [
            (*reviewer, "reviewer"),
            (*admin, "admin"),
            (*exempt, "exempt"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, r)| *r)
        .collect::<Vec<_>>()
        .join(", ");
        lines.push(format!(
            "  {username:<6} {password:<14} {display_name:<15} {roles}"
        ));
    }
    pool.close().await;
    let app = Application::build(settings.clone(), Arc::new(SystemClock)).await?;
    println!("peergate demo — data in {}", dir.display());
    println!("Accounts (username, password, name, roles):");
    for line in lines {
        println!("{line}");
    }
    println!(
        "Open {} — sign in as ada (exempt reviewer) in one window and as uma in a private window; ada approves uma.",
        settings.server.public_url
    );
    println!("peergate listening on http://{}", app.local_addr());
    app.run_until_stopped(shutdown_signal()).await
}

/// A readable random password for the demo accounts.
fn demo_password() -> String {
    let id = crate::domain::ids::new_pending_id();
    format!("demo-{}", &id[3..13])
}

fn read_password(add: &AddUser) -> anyhow::Result<String> {
    let mut text = String::new();
    match &add.password_file {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the password file {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the password from stdin")?;
        }
    }
    let password = text.lines().next().unwrap_or("").to_string();
    if password.chars().count() < 8 {
        bail!("the password must be at least 8 characters long");
    }
    Ok(password)
}

async fn user_command(settings: Settings, command: UserCommand) -> anyhow::Result<()> {
    let pool = store::open(&settings.storage.data_dir).await?;
    let done = match command {
        UserCommand::Add(add) => add_user(&pool, &add).await,
        UserCommand::List => list_users(&pool).await,
        UserCommand::SetRoles(set) => set_roles(&pool, &set).await,
        UserCommand::Disable { username } => disable_user(&pool, &username).await,
        UserCommand::Unlock { username } => unlock_user(&pool, &username).await,
    };
    pool.close().await;
    done
}

async fn add_user(pool: &store::Db, add: &AddUser) -> anyhow::Result<()> {
    let password = read_password(add)?;
    let user = users::insert_user(
        pool,
        &users::NewUser {
            username: add.username.to_string(),
            display_name: add.display_name.clone(),
            password_hash: passwords::hash(password, Cost::Strong).await?,
            is_reviewer: add.roles.reviewer,
            is_admin: add.roles.admin,
            is_exempt: add.roles.exempt,
        },
        &rfc3339(chrono::Utc::now()),
    )
    .await?;
    println!(
        "added {} ({}) as {}",
        user.username, user.display_name, user.id
    );
    Ok(())
}

async fn list_users(pool: &store::Db) -> anyhow::Result<()> {
    println!("{:<20} {:<24} {:<24} ROLES", "USERNAME", "NAME", "ID");
    for user in users::list_users(pool).await? {
        let mut roles = user.roles().names();
        if user.is_exempt {
            roles.push("exempt");
        }
        if user.disabled {
            roles.push("DISABLED");
        }
        println!(
            "{:<20} {:<24} {:<24} {}",
            user.username,
            user.display_name,
            user.id,
            roles.join(",")
        );
    }
    Ok(())
}

async fn set_roles(pool: &store::Db, set: &SetRoles) -> anyhow::Result<()> {
    if !users::set_roles(pool, &set.username, (&set.roles).into()).await? {
        bail!("there is no user named `{}`", set.username);
    }
    println!("roles of {} updated", set.username);
    Ok(())
}

async fn disable_user(pool: &store::Db, username: &Username) -> anyhow::Result<()> {
    if !users::disable(pool, username).await? {
        bail!("there is no user named `{username}`");
    }
    println!("{username} is disabled and signed out");
    Ok(())
}

/// `user unlock`: the account may sign in again (and go through peer review).
async fn unlock_user(pool: &store::Db, username: &Username) -> anyhow::Result<()> {
    if !users::unlock(pool, username).await? {
        bail!("there is no user named `{username}`");
    }
    println!("{username} is unlocked and may sign in again");
    Ok(())
}

async fn verify(
    file: &Path,
    expect_head: Option<&str>,
    checkpoint: Option<(&Path, &str)>,
) -> anyhow::Result<ExitCode> {
    let head = match expect_head.map(Head::parse_arg).transpose() {
        Ok(e) => e,
        Err(message) => {
            eprintln!("--expect-head: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let tree = match checkpoint
        .map(|(path, vkey)| crate::transparency::offline::read_checkpoint(path, vkey))
        .transpose()
    {
        Ok(tree) => tree,
        Err(refused) => {
            eprintln!("{}: {}", file.display(), refused.message);
            return Ok(ExitCode::from(refused.exit));
        }
    };
    let verdict = verify_file_with(file, Expected { head, tree }).await;
    match &verdict {
        Verdict::Valid { .. } => println!("{}", verdict.summary()),
        _ => eprintln!("{}: {}", file.display(), verdict.summary()),
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

#[cfg(feature = "test-hooks")]
async fn drill(
    data_dir: &Path,
    acks: &Path,
    max_entries: usize,
    max_seconds: u64,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    if data_dir.join("app.sqlite").exists() {
        bail!(
            "{} holds an app.sqlite: the drill only runs on a scratch dir",
            data_dir.display()
        );
    }
    let (ledger, _tasks) = crate::ledger::Ledger::open(data_dir, Arc::new(SystemClock)).await?;
    let log = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(acks)
            .with_context(|| format!("opening {}", acks.display()))?,
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(max_seconds);
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (writer, log, next) = (ledger.writer.clone(), log.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max_entries || std::time::Instant::now() > deadline {
                    return anyhow::Ok(());
                }
                let draft = crate::loadtest::synthetic_draft(n);
                let session = draft.session().session_id.clone();
                let receipt = writer.append(draft).await?;
                // Written after the reply: every line is an acknowledged entry.
                // One write per line, so a kill leaves at most a partial last line.
                let line = format!("{} {} {}\n", receipt.seq, receipt.entry_hash, session);
                let mut file = log
                    .lock()
                    .map_err(|_| anyhow::anyhow!("ack log poisoned"))?;
                file.write_all(line.as_bytes())?;
                file.flush()?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand says what it does, and every flag and argument says
    /// what it is for, in `--help`.
    fn undescribed(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        if command.get_about().is_none() {
            missing.push(format!("{path}: no description"));
        }
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                missing.push(format!("{path}: {id}"));
            }
        }
        for sub in command.get_subcommands() {
            undescribed(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_command_flag_and_argument_is_described() {
        let mut missing = Vec::new();
        undescribed(&super::Cli::command(), "peergate", &mut missing);
        assert!(missing.is_empty(), "undescribed in --help: {missing:#?}");
    }
}

//! The command line (DESIGN.md §8): serve, demo, user administration, ledger
//! verification.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::domain::Username;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::clock::{SystemClock, rfc3339};
use crate::config::Settings;
use crate::ledger::{Head, Verdict, verify_file};
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
}

#[derive(Debug, Subcommand)]
pub enum LoadtestCommand {
    /// Durable appends per second, group commit against one transaction per entry.
    Ledger {
        #[arg(long, default_value_t = 50_000)]
        entries: usize,
        /// Print one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Open and hold N reviewer sockets; report the server's memory per socket.
    Sockets {
        #[arg(long, default_value_t = 1000)]
        reviewers: usize,
        #[command(flatten)]
        target: crate::loadtest::server::TargetArgs,
        #[arg(long)]
        json: bool,
    },
    /// With N reviewers connected, time each sign-in until the last reviewer has it.
    Broadcast {
        #[arg(long, default_value_t = 1000)]
        reviewers: usize,
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[command(flatten)]
        target: crate::loadtest::server::TargetArgs,
        #[arg(long)]
        json: bool,
    },
    /// With N reviewers connected, time each decision until the requester's socket has it.
    Decide {
        #[arg(long, default_value_t = 1000)]
        reviewers: usize,
        #[arg(long, default_value_t = 100)]
        decisions: usize,
        /// Configure two webhook endpoints (started here), one of them hanging.
        #[arg(long)]
        webhooks: bool,
        #[command(flatten)]
        target: crate::loadtest::server::TargetArgs,
        #[arg(long)]
        json: bool,
    },
    /// N concurrent failing sign-ins from many loopback addresses: memory, /healthz, a real sign-in after.
    Flood {
        #[command(flatten)]
        flood: crate::loadtest::flood::FloodArgs,
        #[arg(long)]
        json: bool,
    },
    /// Build a ledger of N entries, then time a snapshot and `ledger verify`.
    Snapshot {
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
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
    Disable { username: Username },
    /// Lift the lock a code mismatch left on an account (DESIGN.md §12).
    Unlock { username: Username },
}

#[derive(Debug, Args)]
pub struct AddUser {
    /// Letters, digits, `.`, `-`, `_` or `@`, in one script; kept in lower case.
    pub username: Username,
    #[arg(long)]
    pub display_name: String,
    #[arg(long)]
    pub reviewer: bool,
    #[arg(long)]
    pub admin: bool,
    /// Skip peer review always (bootstrap admins).
    #[arg(long)]
    pub exempt: bool,
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
    pub username: Username,
    #[arg(long)]
    pub reviewer: bool,
    #[arg(long)]
    pub admin: bool,
    #[arg(long)]
    pub exempt: bool,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Verify a ledger file offline. Exit 0 valid; 1 invalid, naming the first
    /// bad seq; 2 not a ledger.
    Verify {
        file: PathBuf,
        /// A head remembered elsewhere, as SEQ:HASH: the ledger must contain it.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_head: Option<String>,
    },
    /// Crash drill for tests: append synthetic entries to DATA_DIR/ledger.sqlite
    /// and log each acknowledged one to --acks, until killed or a bound is hit.
    /// Refuses a data dir that holds an app.sqlite (a real service's).
    #[command(hide = true)]
    Drill {
        data_dir: PathBuf,
        #[arg(long)]
        acks: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        max_entries: usize,
        #[arg(long, default_value_t = 60)]
        max_seconds: u64,
    },
}

/// Runs a parsed command line; the exit code is the process's.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ledger(LedgerCommand::Verify { file, expect_head }) => {
            verify(&file, expect_head.as_deref()).await
        }
        Command::Ledger(LedgerCommand::Drill {
            data_dir,
            acks,
            max_entries,
            max_seconds,
        }) => drill(&data_dir, &acks, max_entries, max_seconds)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Loadtest(LoadtestCommand::Ledger { entries, json }) => {
            let report = crate::loadtest::ledger::run(entries).await?;
            crate::loadtest::print_report(&crate::loadtest::ledger::rows(&report), &report, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadtest(LoadtestCommand::Sockets {
            reviewers,
            target,
            json,
        }) => {
            let report = crate::loadtest::live::sockets(&target, reviewers).await?;
            crate::loadtest::print_report(
                &crate::loadtest::live::socket_rows(&report),
                &report,
                json,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadtest(LoadtestCommand::Broadcast {
            reviewers,
            sessions,
            target,
            json,
        }) => {
            let report = crate::loadtest::live::broadcast(&target, reviewers, sessions).await?;
            crate::loadtest::print_report(
                &crate::loadtest::live::latency_rows(&report),
                &report,
                json,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadtest(LoadtestCommand::Decide {
            reviewers,
            decisions,
            webhooks,
            target,
            json,
        }) => {
            let report =
                crate::loadtest::live::decide(&target, reviewers, decisions, webhooks).await?;
            crate::loadtest::print_report(
                &crate::loadtest::live::latency_rows(&report),
                &report,
                json,
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadtest(LoadtestCommand::Flood { flood, json }) => {
            let report = crate::loadtest::flood::run(&flood).await?;
            crate::loadtest::print_report(&crate::loadtest::flood::rows(&report), &report, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadtest(LoadtestCommand::Snapshot { entries, json }) => {
            let report = crate::loadtest::snapshot::run(entries).await?;
            crate::loadtest::print_report(&crate::loadtest::snapshot::rows(&report), &report, json);
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let settings = Settings::load(cli.config.as_deref())?;
            match command {
                Command::Serve => serve(settings).await,
                Command::Demo => demo(settings).await,
                Command::User(user) => user_command(settings, user).await,
                Command::Ledger(_) | Command::Loadtest(_) => unreachable!("handled above"),
            }
            .map(|()| ExitCode::SUCCESS)
        }
    }
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
    match command {
        UserCommand::Add(add) => {
            let password = read_password(&add)?;
            let user = users::insert_user(
                &pool,
                &users::NewUser {
                    username: add.username.to_string(),
                    display_name: add.display_name.clone(),
                    password_hash: passwords::hash(password, Cost::Strong).await?,
                    is_reviewer: add.reviewer,
                    is_admin: add.admin,
                    is_exempt: add.exempt,
                },
                &rfc3339(chrono::Utc::now()),
            )
            .await?;
            println!(
                "added {} ({}) as {}",
                user.username, user.display_name, user.id
            );
        }
        UserCommand::List => {
            println!("{:<20} {:<24} {:<24} ROLES", "USERNAME", "NAME", "ID");
            for user in users::list_users(&pool).await? {
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
        }
        UserCommand::SetRoles(set) => {
            if !users::set_roles(
                &pool,
                &set.username,
                crate::domain::Roles {
                    reviewer: set.reviewer,
                    admin: set.admin,
                    exempt: set.exempt,
                },
            )
            .await?
            {
                bail!("there is no user named `{}`", set.username);
            }
            println!("roles of {} updated", set.username);
        }
        UserCommand::Disable { username } => {
            if !users::disable(&pool, &username).await? {
                bail!("there is no user named `{username}`");
            }
            println!("{username} is disabled and signed out");
        }
        UserCommand::Unlock { username } => unlock_user(&pool, &username).await?,
    }
    pool.close().await;
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

async fn verify(file: &Path, expect_head: Option<&str>) -> anyhow::Result<ExitCode> {
    let expect = match expect_head.map(Head::parse_arg).transpose() {
        Ok(e) => e,
        Err(message) => {
            eprintln!("--expect-head: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let verdict = verify_file(file, expect).await;
    match &verdict {
        Verdict::Valid { .. } => println!("{}", verdict.summary()),
        _ => eprintln!("{}: {}", file.display(), verdict.summary()),
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

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

//! `PasswordChecks`: the bounded pool every sign-in's argon2 check runs on, so
//! that a flood of sign-ins costs a fixed amount of memory and CPU (DESIGN §13).
//!
//! # Why a pool of dedicated threads with reused memory
//!
//! argon2id with the crate defaults needs 19 MiB per check. `verify_password`
//! allocates that afresh each time, and unbounded `spawn_blocking` checks ran
//! hundreds at once: measured, 300 concurrent failing sign-ins left the server
//! at 5.7 GB RSS, never returned, because glibc keeps freed memory in
//! per-thread arenas (and after the first large free it stops using `mmap`
//! for blocks of that size).
//!
//! Here `in_parallel` OS threads are started once. Each owns one `Vec<Block>`
//! that grows to the largest hash it has checked and is then reused for every
//! check: a worker never frees or reallocates it, so the memory for argon2 is
//! at most `in_parallel` × 19 MiB for the life of the process, whatever
//! arrives. Admission is a tokio `Semaphore` with one permit per worker, plus
//! a counter of callers waiting for one; past `queue` waiters the answer is
//! [`CheckError::Busy`] at once, which the web layer turns into
//! `503 unavailable` with `Retry-After`.
//!
//! The check itself is argon2's `verify_password` done by hand so that it can
//! use the worker's memory: parse the PHC string, rebuild `Argon2` from its
//! algorithm, version and parameters, hash into the reused blocks with
//! `hash_password_into_with_memory`, and compare with the stored output in
//! constant time (`phc::Output`'s `PartialEq` is constant-time). Reusing the
//! blocks without zeroing them is sound: argon2 overwrites every block in its
//! first pass before it reads any.
//!
//! Measured here (2 cores, debug build with argon2 at opt-level 3, one
//! process per run, `VmHWM` from `/proc/self/status`): 300 concurrent failing
//! `Cost::Strong` checks through this pool with 2 workers peaked at 47 MB
//! RSS (25 MB before), done in 10.3 s; 150 through `passwords::verify`
//! (`spawn_blocking`) peaked at, and kept, 2.9 GB.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Instant;

use anyhow::Context;
use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::passwords::{Cost, hash_blocking};

/// The most memory one stored hash may ask for, in KiB (1 KiB per block).
/// peergate's own hashes ask for 19 MiB (`Cost::Strong`) or 64 KiB
/// (`Cost::Fast`); a row edited to ask for gigabytes would otherwise make a
/// worker keep that much for good.
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// What the first check is assumed to take before any has been measured, in
/// microseconds: about one `Cost::Strong` check on one core.
const INITIAL_CHECK_MICROS: u64 = 100_000;

/// Why a password could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `queue` callers are already waiting for a worker. Returned at once,
    /// without waiting or hashing; the caller answers `503` with
    /// `Retry-After: retry_after_secs`.
    #[error("too many password checks are waiting; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// The stored hash is malformed, or a worker failed: a server fault, not a
    /// wrong password.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// A cheap `Clone` handle to the pool. The worker threads stop when the last
/// handle is dropped (their job channel closes).
#[derive(Clone)]
pub struct PasswordChecks {
    shared: Arc<Shared>,
}

struct Shared {
    /// One permit per worker. A permit travels with its job to the worker and
    /// is released only when the check is done, so a permit held means a
    /// worker busy, even if the caller has gone away.
    permits: Arc<Semaphore>,
    /// Callers waiting for a permit. An atomic rather than the semaphore's own
    /// queue length because tokio does not expose that, and because the
    /// "is the queue full?" test and the increment must be one step.
    waiting: AtomicUsize,
    /// The most callers that may wait (`auth.password_check_queue`).
    queue: usize,
    /// The number of worker threads (`auth.password_checks_in_parallel`,
    /// with 0 resolved to the core count).
    workers: usize,
    /// Hands jobs to the workers. A `std` channel because the receivers are
    /// plain threads; it never holds more than `workers` jobs, since each job
    /// carries a permit.
    jobs: mpsc::Sender<Job>,
    /// Checks running right now, and the most ever seen at once: the second
    /// lets tests prove the bound.
    running: AtomicUsize,
    peak_running: AtomicUsize,
    /// A moving average of how long a check takes, in microseconds, to
    /// estimate `Retry-After` from the real cost on this machine.
    average_micros: AtomicU64,
}

/// One check, with the permit it holds and where to send the answer.
struct Job {
    password: String,
    stored: Option<String>,
    reply: oneshot::Sender<anyhow::Result<bool>>,
    permit: OwnedSemaphorePermit,
}

/// Frees a queue slot when dropped, so a caller whose future is dropped while
/// it waits (the client hung up) gives its slot back.
struct WaitingSlot<'a>(&'a AtomicUsize);

impl Drop for WaitingSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordChecks {
    /// Starts `in_parallel` worker threads (0 = the number of CPU cores) and
    /// allows `queue` callers to wait for one.
    pub fn start(in_parallel: usize, queue: usize) -> anyhow::Result<Self> {
        let workers = if in_parallel == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            in_parallel
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            queue,
            workers,
            jobs: tx,
            running: AtomicUsize::new(0),
            peak_running: AtomicUsize::new(0),
            average_micros: AtomicU64::new(INITIAL_CHECK_MICROS),
        });
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            // Workers hold a `Weak` so that they do not keep the pool alive:
            // dropping the last handle closes the channel and they exit.
            let shared = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || work(&rx, &shared))
                .context("starting a password-check thread")?;
        }
        Ok(Self { shared })
    }

    /// Checks `password` against `stored` (a PHC string from
    /// `passwords::hash_blocking`). With no stored hash (an unknown user) it
    /// checks against a dummy `Cost::Strong` hash, so the answer takes as long
    /// and costs as much as for a real account.
    ///
    /// Takes a free worker at once, or waits for one if fewer than `queue`
    /// callers are waiting, or answers [`CheckError::Busy`] at once.
    /// Cancel-safe: dropping the future while it waits frees its place in the
    /// queue; dropping it after the check started lets the check finish (its
    /// worker stays busy until then) and discards the answer.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, CheckError> {
        let shared = &self.shared;
        let permit = if let Ok(permit) = Arc::clone(&shared.permits).try_acquire_owned() {
            permit
        } else {
            let _slot = self.take_waiting_slot()?;
            Arc::clone(&shared.permits)
                .acquire_owned()
                .await
                .context("the password-check pool is closed")?
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            password,
            stored,
            reply,
            permit,
        };
        shared
            .jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password-check threads have stopped"))?;
        Ok(answer
            .await
            .context("a password-check thread dropped a check")??)
    }

    /// Takes a place in the queue, or says how long to wait if it is full.
    fn take_waiting_slot(&self) -> Result<WaitingSlot<'_>, CheckError> {
        let shared = &self.shared;
        let taken = shared
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared.queue).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(WaitingSlot(&shared.waiting)),
            Err(_) => Err(CheckError::Busy {
                retry_after_secs: self.retry_after_secs(),
            }),
        }
    }

    /// About how long a full queue takes to drain: `queue / workers + 1`
    /// rounds of the average check, rounded up to whole seconds, at least 1.
    fn retry_after_secs(&self) -> u64 {
        let shared = &self.shared;
        let rounds = (shared.queue / shared.workers + 1) as u64;
        let micros = rounds.saturating_mul(shared.average_micros.load(Ordering::Relaxed));
        micros.div_ceil(1_000_000).max(1)
    }

    /// The number of worker threads.
    #[cfg(test)]
    pub fn in_parallel(&self) -> usize {
        self.shared.workers
    }

    /// Callers waiting for a worker now (for a metrics gauge).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// Checks running now (for a metrics gauge).
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }
}

/// A worker: takes jobs until the channel closes, checking each with its own
/// reusable argon2 memory.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>, shared: &std::sync::Weak<Shared>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for the next job; a poisoned
        // lock cannot happen (nothing panics while holding it), but if it
        // did, this worker would stop rather than spin.
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = shared.running.fetch_add(1, Ordering::AcqRel) + 1;
        shared.peak_running.fetch_max(now, Ordering::AcqRel);
        let started = Instant::now();
        // A panic in argon2 must not take a worker away for good: the pool
        // would keep its permit count but lose a thread to run them.
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
            check(&mut memory, &job.password, job.stored.as_deref())
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("a password check panicked")));
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let old = shared.average_micros.load(Ordering::Relaxed);
        shared.average_micros.store(
            (old.saturating_mul(7) / 8).saturating_add(micros / 8),
            Ordering::Relaxed,
        );
        shared.running.fetch_sub(1, Ordering::AcqRel);
        // The permit goes back after `running` went down (a new check starts
        // only once this one is counted out) and before the answer, so a
        // caller that has its answer finds its worker free again.
        drop(job.permit);
        // The caller may have gone away (client hung up); its answer is
        // simply not needed.
        let _ = job.reply.send(answer);
    }
}

/// One check, in `memory`. With no stored hash, checks against the dummy.
fn check(memory: &mut Vec<Block>, password: &str, stored: Option<&str>) -> anyhow::Result<bool> {
    match stored {
        Some(stored) => verify_phc(memory, password.as_bytes(), stored),
        None => verify_phc(memory, password.as_bytes(), dummy_hash()?),
    }
}

/// argon2's `PasswordVerifier::verify_password`, computed in `memory`.
fn verify_phc(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> anyhow::Result<bool> {
    let hash = PasswordHash::new(phc)
        .map_err(|e| anyhow::anyhow!("a stored password hash is malformed: {e}"))?;
    // As in argon2: a hash with no salt or output matches nothing.
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(hash.algorithm.as_str())
        .map_err(|e| anyhow::anyhow!("a stored password hash names an unknown algorithm: {e}"))?;
    let version = hash
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("a stored password hash has an unknown version: {e}"))?
        .unwrap_or_default();
    let params = Params::try_from(&hash)
        .map_err(|e| anyhow::anyhow!("a stored password hash has bad parameters: {e}"))?;
    if params.m_cost() > MAX_MEMORY_KIB {
        anyhow::bail!(
            "a stored password hash asks for {} KiB, more than the {MAX_MEMORY_KIB} KiB allowed",
            params.m_cost()
        );
    }
    let argon2 = Argon2::new(algorithm, version, params);
    let blocks = argon2.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let out = buffer
        .get_mut(..expected.len())
        .context("a stored password hash has an over-long output")?;
    argon2
        .hash_password_into_with_memory(password, salt, &mut *out, &mut memory[..blocks])
        .map_err(|e| anyhow::anyhow!("checking a password: {e}"))?;
    let computed = Output::new(out).map_err(|e| anyhow::anyhow!("checking a password: {e}"))?;
    // `Output`'s `PartialEq` compares in constant time.
    Ok(computed == *expected)
}

/// The hash unknown usernames are checked against: a real `Cost::Strong`
/// hash, so that an unknown name costs the same time and memory as a known
/// one and timing does not reveal which names exist. Made once, on first use.
fn dummy_hash() -> anyhow::Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_blocking("peergate-dummy-password", Cost::Strong)?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fast(password: &str) -> String {
        hash_blocking(password, Cost::Fast).unwrap()
    }

    /// Waits (briefly) until `cond` holds; the pool's counters move on other
    /// threads.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Takes every worker's permit, as if all were busy, until dropped.
    async fn occupy_all(pool: &PasswordChecks) -> OwnedSemaphorePermit {
        let n = u32::try_from(pool.in_parallel()).unwrap();
        Arc::clone(&pool.shared.permits)
            .acquire_many_owned(n)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let pool = PasswordChecks::start(2, 8).unwrap();
        let strong = hash_blocking("correct horse", Cost::Strong).unwrap();
        let quick = fast("battery staple");
        for (password, stored, right) in [
            ("correct horse", &strong, true),
            ("correct hors", &strong, false),
            ("battery staple", &quick, true),
            ("battery", &quick, false),
        ] {
            let checked = pool.verify(password.into(), Some(stored.clone())).await;
            assert_eq!(checked.unwrap(), right, "{password}");
        }
        assert!(!pool.verify("anything".into(), None).await.unwrap());
        assert!(!pool.verify(String::new(), None).await.unwrap());
        // After a large and a small hash in the same worker memory, the large
        // one still checks right: stale blocks do not leak into the result.
        for _ in 0..3 {
            assert!(
                pool.verify("correct horse".into(), Some(strong.clone()))
                    .await
                    .unwrap()
            );
            assert!(
                pool.verify("battery staple".into(), Some(quick.clone()))
                    .await
                    .unwrap()
            );
        }
    }

    #[test]
    fn agrees_with_argon2s_own_verifier() {
        let mut memory = Vec::new();
        for (i, cost) in [Cost::Fast, Cost::Strong, Cost::Fast]
            .into_iter()
            .enumerate()
        {
            let password = format!("pässwörd {i}");
            let stored = hash_blocking(&password, cost).unwrap();
            for attempt in [password.as_str(), "wrong", ""] {
                let parsed = argon2::PasswordHash::new(&stored).unwrap();
                let theirs = argon2::password_hash::PasswordVerifier::verify_password(
                    &argon2::Argon2::default(),
                    attempt.as_bytes(),
                    &parsed,
                )
                .is_ok();
                let ours = verify_phc(&mut memory, attempt.as_bytes(), &stored).unwrap();
                assert_eq!(ours, theirs, "{cost:?} {attempt:?}");
                assert_eq!(ours, attempt == password);
            }
        }
        // The memory grew to the largest hash (19 MiB) and stayed.
        assert_eq!(memory.len(), Params::DEFAULT_M_COST as usize);
    }

    #[test]
    fn malformed_hashes_are_errors_not_wrong_passwords() {
        let mut memory = Vec::new();
        assert!(verify_phc(&mut memory, b"x", "not a hash").is_err());
        assert!(
            verify_phc(
                &mut memory,
                b"x",
                "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaA"
            )
            .is_err()
        );
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$\
                      YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY";
        let e = verify_phc(&mut memory, b"x", greedy).unwrap_err();
        assert!(e.to_string().contains("KiB"), "{e}");
        assert!(memory.is_empty(), "refused before allocating");
    }

    #[tokio::test]
    async fn zero_means_one_worker_per_core() {
        let pool = PasswordChecks::start(0, 1).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(pool.in_parallel(), cores);
        assert!(pool.verify("pw".into(), Some(fast("pw"))).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let pool = PasswordChecks::start(1, 2).unwrap();
        let stored = fast("pw");
        let busy = occupy_all(&pool).await;
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (pool, stored) = (pool.clone(), stored.clone());
                tokio::spawn(async move { pool.verify("pw".into(), Some(stored)).await })
            })
            .collect();
        eventually("two callers wait", || pool.waiting() == 2).await;
        let started = Instant::now();
        let third = pool.verify("pw".into(), Some(stored.clone())).await;
        assert!(
            matches!(third, Err(CheckError::Busy { retry_after_secs }) if retry_after_secs >= 1),
            "{third:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "answered at once"
        );
        assert_eq!(pool.waiting(), 2, "a refusal takes no slot");
        drop(busy);
        for w in waiters {
            assert!(w.await.unwrap().unwrap());
        }
        assert_eq!(pool.waiting(), 0);
    }

    #[tokio::test]
    async fn a_zero_queue_only_takes_free_workers() {
        let pool = PasswordChecks::start(1, 0).unwrap();
        let stored = fast("pw");
        assert!(
            pool.verify("pw".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        let busy = occupy_all(&pool).await;
        assert!(matches!(
            pool.verify("pw".into(), Some(stored.clone())).await,
            Err(CheckError::Busy { .. })
        ));
        drop(busy);
        assert!(pool.verify("pw".into(), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn dropping_a_waiter_frees_its_slot() {
        let pool = PasswordChecks::start(1, 1).unwrap();
        let stored = fast("pw");
        let busy = occupy_all(&pool).await;

        // A caller that gives up while waiting (timeout, client gone).
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            pool.verify("pw".into(), Some(stored.clone())),
        )
        .await;
        assert!(gave_up.is_err(), "it was waiting, not refused");
        assert_eq!(pool.waiting(), 0);

        // An aborted task frees its slot too.
        let task = {
            let (pool, stored) = (pool.clone(), stored.clone());
            tokio::spawn(async move { pool.verify("pw".into(), Some(stored)).await })
        };
        eventually("the task waits", || pool.waiting() == 1).await;
        assert!(matches!(
            pool.verify("pw".into(), Some(stored.clone())).await,
            Err(CheckError::Busy { .. })
        ));
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(pool.waiting(), 0);

        // The freed slot is usable: this caller waits instead of being refused.
        let next = {
            let (pool, stored) = (pool.clone(), stored.clone());
            tokio::spawn(async move { pool.verify("pw".into(), Some(stored)).await })
        };
        eventually("the next caller waits", || pool.waiting() == 1).await;
        drop(busy);
        assert!(next.await.unwrap().unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_in_parallel_checks_run_at_once() {
        let pool = PasswordChecks::start(2, 64).unwrap();
        let strong = hash_blocking("pw", Cost::Strong).unwrap();
        let quick = fast("pw");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let pool = pool.clone();
                let (password, stored) = match i % 4 {
                    0 => ("pw", Some(strong.clone())),
                    1 => ("nope", Some(strong.clone())),
                    2 => ("pw", Some(quick.clone())),
                    _ => ("pw", None),
                };
                tokio::spawn(
                    async move { (i, pool.verify(password.into(), stored).await.unwrap()) },
                )
            })
            .collect();
        for t in tasks {
            let (i, ok) = t.await.unwrap();
            assert_eq!(ok, i % 4 == 0 || i % 4 == 2, "task {i}");
        }
        let peak = pool.shared.peak_running.load(Ordering::Acquire);
        assert!((1..=2).contains(&peak), "peak {peak}");
        assert_eq!(pool.running(), 0);
        assert_eq!(pool.waiting(), 0);
        assert_eq!(pool.shared.permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_check_whose_caller_left_still_holds_its_worker() {
        let pool = PasswordChecks::start(1, 4).unwrap();
        let strong = hash_blocking("pw", Cost::Strong).unwrap();
        // Start a check, then drop the caller as soon as the worker has it.
        let task = {
            let (pool, strong) = (pool.clone(), strong.clone());
            tokio::spawn(async move { pool.verify("pw".into(), Some(strong)).await })
        };
        eventually("the check runs", || pool.running() == 1).await;
        task.abort();
        // The abandoned check neither loses its permit nor its worker: the
        // pool keeps working afterwards.
        assert!(pool.verify("pw".into(), Some(strong)).await.unwrap());
        eventually("the permit returns", || {
            pool.shared.permits.available_permits() == 1
        })
        .await;
    }

    #[tokio::test]
    async fn retry_after_follows_the_measured_check_time() {
        let pool = PasswordChecks::start(2, 64).unwrap();
        pool.shared.average_micros.store(50_000, Ordering::Relaxed);
        // 64 / 2 + 1 = 33 rounds of 50 ms: 1.65 s, rounded up.
        assert_eq!(pool.retry_after_secs(), 2);
        pool.shared.average_micros.store(10, Ordering::Relaxed);
        assert_eq!(pool.retry_after_secs(), 1);
    }
}

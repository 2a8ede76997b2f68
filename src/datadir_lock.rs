//! `DataDirLock`: one `peergate serve` per data dir, through an exclusive lock
//! on `DATA_DIR/peergate.lock` (DESIGN §13).
//!
//! Two servers on one data dir both used to start; the second's ledger writer
//! then failed every append. The lock is the operating system's advisory file
//! lock (`File::try_lock`, `flock` on Linux): it is released when the process
//! exits however it exits, so a crash never leaves a stale lock behind, and a
//! lock file left on disk means nothing by itself. The holder writes its pid
//! into the file so that the refusal can name it.
//!
//! The lock belongs to the open file description, not the process: a second
//! `acquire` in the same process is refused too, and a child forked while the
//! lock is held shares it until it execs (std opens files close-on-exec).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The lock file's name inside the data dir.
pub const LOCK_FILE: &str = "peergate.lock";

/// Holds the data dir for this process until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    /// The open, locked file. The lock lives as long as this descriptor:
    /// dropping it (or the process ending) releases the lock.
    file: File,
    /// Where the lock file is, for messages.
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the data dir's lock without waiting, creating the dir and the
    /// lock file if needed, and writes this process's pid into the file.
    ///
    /// When another process holds it, the error reads "another peergate
    /// (pid N) is serving this data dir (PATH)", with N read from the file.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data dir {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        // Not `truncate(true)`: opening must not erase the holder's pid
        // before we know whether we are the holder.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = match read_pid(&mut file) {
                    Some(pid) => format!("pid {pid}"),
                    // The holder has locked but not yet written its pid.
                    None => "pid not yet recorded".to_string(),
                };
                anyhow::bail!(
                    "another peergate ({holder}) is serving this data dir ({})",
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        write_pid(&mut file).with_context(|| format!("writing our pid to {}", path.display()))?;
        Ok(Self { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Clear the pid while still holding the lock, so the file never names
        // a process that no longer holds it. Best effort: the lock itself is
        // released when `file` closes, whatever happens here.
        let _ = self.file.set_len(0);
    }
}

/// Replaces the file's contents with `PID\n`.
fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_data()
}

/// The pid the holder wrote, if it has written one yet.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use super::*;

    /// These tests run one at a time: the one that spawns `flock(1)` forks,
    /// and a forked child shares every open file description of the test
    /// process until it execs, locks of the other tests included, so a lock
    /// dropped in that instant would not be released yet.
    fn one_at_a_time() -> MutexGuard<'static, ()> {
        static SERIAL: Mutex<()> = Mutex::new(());
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn a_second_acquire_is_refused_naming_the_holder() {
        let _serial = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{pid}\n")
        );
        // flock locks belong to the open file description, so a second
        // open in the same process conflicts, just as another process would.
        let e = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "another peergate (pid {pid}) is serving this data dir ({})",
                dir.path().join(LOCK_FILE).display()
            )
        );
        // The refusal did not erase the holder's pid.
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{pid}\n")
        );
    }

    #[test]
    fn dropping_the_lock_releases_it() {
        let _serial = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        drop(first);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap(),
            "",
            "the pid is cleared on release"
        );
        let again = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn a_stale_lock_file_does_not_block() {
        let _serial = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        // Left by a process that died: a longer pid than ours, no lock.
        std::fs::write(dir.path().join(LOCK_FILE), "4294967295\nrest\n").unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock.path()).unwrap(),
            format!("{}\n", std::process::id()),
            "the old contents are replaced, not appended to"
        );
    }

    #[test]
    fn a_holder_that_has_not_written_its_pid_yet() {
        let _serial = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let raw = File::create(&path).unwrap();
        raw.try_lock().unwrap();
        let e = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("pid not yet recorded"), "{e}");
    }

    /// Another process: `flock(1)` holds the file the way std does on Linux
    /// (`flock(2)`), after writing a pid as peergate would.
    #[test]
    fn another_process_holding_it_is_named() {
        let _serial = one_at_a_time();
        if std::process::Command::new("flock")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("skipped: flock(1) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, "").unwrap();
        let mut child = std::process::Command::new("flock")
            // -o: only flock itself holds the lock, so killing it frees it.
            .arg("-o")
            .arg(&path)
            .args(["sh", "-c", "echo $$ > \"$0\"; exec sleep 30"])
            .arg(&path)
            .spawn()
            .unwrap();
        let child_pid = child.id();
        // Wait until the child holds the lock and has written its pid.
        let mut last = String::new();
        for _ in 0..500 {
            match DataDirLock::acquire(dir.path()) {
                Ok(lock) => drop(lock),
                Err(e) => {
                    last = e.to_string();
                    if !last.contains("not yet") {
                        break;
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // `flock CMD` forks the shell, so the writer is flock's child.
        assert!(
            last.starts_with("another peergate (pid ")
                && !last.contains(&format!("pid {}", std::process::id())),
            "{last}"
        );
        let named: u32 = last["another peergate (pid ".len()..]
            .split(')')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(named, child_pid, "the shell flock started, not flock");
        // The shell became `sleep`; stop it, then flock.
        let _ = std::process::Command::new("kill")
            .arg(named.to_string())
            .status();
        let _ = child.kill();
        let _ = child.wait();
        // Once the holder exits, the lock is free.
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn creates_the_data_dir() {
        let _serial = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let lock = DataDirLock::acquire(&nested).unwrap();
        assert!(lock.path().starts_with(&nested));
    }
}

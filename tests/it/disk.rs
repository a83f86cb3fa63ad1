//! A small disk that can be filled up: a tmpfs mounted over a test's folder, for the full-disk
//! tests (intake recovery, shutdown). Mounting needs root, as in CI; where it is not permitted
//! the tests say so and return.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted over a folder for as long as it lives; unmounted when dropped, also when the
/// test fails.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with a message) where mounting is not permitted.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("the folder to mount over");
        let done = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match done {
            Ok(out) if out.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({}): the full-disk test needs root",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("SKIPPED: cannot run mount ({error}): the full-disk test needs root");
                None
            }
        }
    }

    /// Fills the file system with one ballast file, until it refuses a byte more; the bytes
    /// written.
    pub fn fill(&self) -> u64 {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.ballast()).expect("ballast file");
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = file.sync_all();
        written
    }

    /// Gives the room back.
    pub fn empty(&self) {
        std::fs::remove_file(self.ballast()).expect("ballast removed");
    }

    fn ballast(&self) -> PathBuf {
        self.0.join("ballast")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: detached at once even if the store still has files open.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

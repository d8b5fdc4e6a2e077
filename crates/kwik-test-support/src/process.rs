//! A child process that a test starts and must not leave behind.

use std::process::{Child, ExitStatus};

/// Owns a child process: [`terminate`](Self::terminate) stops it the way an operator would
/// (SIGTERM, then waits for its exit status), and dropping it unterminated (a failed assertion)
/// kills and reaps it, so no test leaves a server running.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
}

impl ChildProcess {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> Self {
        Self { child }
    }

    /// Sends SIGTERM and waits for the exit status.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent or the wait fails (the test cannot go on).
    pub fn terminate(mut self) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits in pid_t");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        self.child.wait().expect("wait for the child")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

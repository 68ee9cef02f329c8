//! The bridge's binaries as child processes, and waiting for what they do.
//!
//! End-to-end tests run the workers as separate processes, as they run in production, so that a
//! SIGKILL is a real crash and a SIGTERM a real shutdown. [`Process`] owns one child: its output
//! goes to a log file the test can print when it fails, and dropping it kills the child so a failed
//! test leaves nothing running. [`eventually`] is how a test waits for an outcome: it polls with a
//! deadline and says what it waited for, instead of sleeping and hoping.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Finds a binary of this workspace in the target directory the running test was built into.
///
/// `cargo test --workspace` and `cargo nextest run --workspace` build every binary before any
/// test runs, so the file is as fresh as the test itself.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    // Test binaries live in target/<profile>/deps; the workspace's binaries one level up.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "binary {} not found; build the workspace first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A child process that is killed when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Process {
    /// Starts the workspace binary `name` with `args` and extra environment `envs`; stdout and
    /// stderr go to a log file.
    pub fn spawn<I, S>(name: &str, args: I, envs: &[(&str, String)]) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Process::spawn_path(&binary(name), name, args, envs)
    }

    /// Like [`Process::spawn`] for any executable.
    pub fn spawn_path<I, S>(path: &Path, name: &str, args: I, envs: &[(&str, String)]) -> Process
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log_dir = tempfile::Builder::new()
            .prefix("proc-log-")
            .tempdir()
            .expect("log dir");
        let log_path = log_dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create the process log");
        let err_log = log.try_clone().expect("clone the process log handle");
        let mut command = Command::new(path);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", path.display()));
        Process {
            name: name.to_owned(),
            child: Some(child),
            log_path,
            _log_dir: log_dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM, the signal an orchestrator sends to stop a worker.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit, panicking with its log if it takes longer than `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("the process was already reaped");
        loop {
            if let Some(status) = child.try_wait().expect("poll the child") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
            let _ = kill(pid, signal);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, and panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminate_reaches_the_child_and_its_output_is_logged() {
        let sh = Path::new("/bin/sh");
        let script =
            "trap 'echo got-term; exit 3' TERM; echo started; while :; do sleep 0.05; done";
        let mut process = Process::spawn_path(sh, "sh", ["-c", script], &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process.log().contains("started") {
            assert!(Instant::now() < deadline, "the child did not start");
            std::thread::sleep(Duration::from_millis(10));
        }

        process.terminate();

        let status = process.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(3));
        assert!(process.log().contains("got-term"));
    }

    #[tokio::test]
    async fn eventually_returns_the_first_value_found() {
        let mut calls = 0;
        let found = eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            let value = (calls == 3).then_some(calls);
            async move { value }
        })
        .await;
        assert_eq!(found, 3);
    }
}

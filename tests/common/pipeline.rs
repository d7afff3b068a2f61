//! Harness for pipeline end-to-end tests: runs `brook pipeline run FILE` in a directory with an
//! embedded broker whose Kafka listener is opened on an ephemeral port (so tests can read the
//! pipeline's topics), waits for its start line, and kills it when dropped.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{wait_with_deadline, EXIT_DEADLINE, STARTUP_DEADLINE};

/// A running `brook pipeline run`.
pub struct PipelineRun {
    child: Option<Child>,
    /// The embedded broker's Kafka address.
    pub kafka_addr: String,
    /// The HTTP ingest address, when started with `--http-listen`.
    pub http_addr: String,
    /// Where its stderr (logs) goes.
    pub log_path: PathBuf,
}

impl PipelineRun {
    /// Starts `brook pipeline run FILE` in `dir` with its data in `dir/brook-data`.
    pub fn start(dir: &Path, file: &str, run: usize) -> PipelineRun {
        PipelineRun::start_with(dir, file, run, &[])
    }

    /// Starts it with extra arguments (e.g. `--http-listen 127.0.0.1:0`).
    pub fn start_with(dir: &Path, file: &str, run: usize, extra: &[&str]) -> PipelineRun {
        let log_path = dir.join(format!("pipeline-{run}.log"));
        let log = File::create(&log_path).expect("create pipeline log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_brook"))
            .current_dir(dir)
            .args([
                "pipeline",
                "run",
                file,
                "--kafka-listen",
                "127.0.0.1:0",
                "--progress-interval-secs",
                "0",
            ])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn brook pipeline run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut run = PipelineRun {
            child: Some(child),
            kafka_addr: String::new(),
            http_addr: String::new(),
            log_path,
        };
        let end = Instant::now() + STARTUP_DEADLINE;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening kafka=") {
                        run.kafka_addr = addr.trim().to_string();
                    } else if let Some(addr) = line.strip_prefix("listening http=") {
                        run.http_addr = addr.trim().to_string();
                    } else if line.starts_with("pipeline ") && line.contains(" running") {
                        assert!(!run.kafka_addr.is_empty(), "no listening line before the running line");
                        return run;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("brook pipeline run exited before it was running:\n{}", run.log_tail(60))
                }
            }
            assert!(
                Instant::now() < end,
                "brook pipeline run did not start within {STARTUP_DEADLINE:?}:\n{}",
                run.log_tail(60)
            );
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self, when: &str) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
            panic!("brook pipeline run exited ({status}) {when}:\n{}", self.log_tail(80));
        }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            wait_with_deadline(&mut c, EXIT_DEADLINE, "brook pipeline run after SIGKILL");
        }
    }

    /// Stops it with SIGTERM and returns how it exited.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        super::signal(c.id(), libc::SIGTERM);
        wait_with_deadline(&mut c, EXIT_DEADLINE, "brook pipeline run after SIGTERM")
    }
}

impl Drop for PipelineRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `condition` until it holds, panicking with `what` and the pipeline's log after
/// `deadline` (a hang guard, not a performance threshold).
pub fn wait_until(run: &mut PipelineRun, deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return;
        }
        run.assert_running(&format!("while waiting for {what}"));
        assert!(
            Instant::now() < end,
            "{what}: not within {deadline:?}:\n{}",
            run.log_tail(80)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

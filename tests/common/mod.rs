//! Shared harness for the end-to-end tests: starts `brook serve` on an ephemeral port in a
//! temporary data directory, finds the external clients (kcat, Python with its Kafka libraries),
//! runs them with a deadline, and cleans up every process it started when dropped.
//!
//! Rules every test here follows: no fixed ports, no shared directories, no sleeps used as
//! synchronisation (we poll a condition against a deadline), no timing thresholds. Deadlines only
//! turn a hang into a readable failure; they are generous on purpose.

#![allow(dead_code)]

pub mod pipeline;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long a broker may take to print its listening line (a hang guard, not a threshold).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(120);
/// How long one external client run may take before it is killed and the test fails.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(900);
/// How long a broker may take to exit after SIGTERM or SIGKILL.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(60);

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The root of the repository (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether we run in CI, where a missing prerequisite is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Reports a missing prerequisite: panics in CI, otherwise prints a skip line.
/// Returns false so callers can write `if !prerequisite(..) { return; }`.
fn missing(what: &str) -> bool {
    if in_ci() {
        panic!("prerequisite missing in CI (CI=true): {what}; `bash .ci/run` installs it");
    }
    // Written to the process's stderr directly so that it shows even when libtest captures output.
    let line = format!("skipping: {what} (run `bash .ci/run` once to install the test prerequisites)\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// The Python interpreter: $BROOK_TEST_PYTHON, else .venv/bin/python in the repo, else python3.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BROOK_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// True when the Python interpreter exists and imports every module in `modules`;
/// otherwise fails (CI) or prints "skipping: ..." and returns false.
pub fn require_python(modules: &[&str]) -> bool {
    let py = python();
    let code = format!("import {}", modules.join(", "));
    match Command::new(&py).arg("-c").arg(&code).stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => missing(&format!(
            "python {} cannot import {}: {}",
            py.display(),
            modules.join(", "),
            String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("")
        )),
        Err(e) => missing(&format!("python interpreter {} not runnable: {e}", py.display())),
    }
}

/// The kcat binary ($KCAT or `kcat` on PATH) when present; otherwise fails (CI) or skips.
pub fn require_kcat() -> Option<PathBuf> {
    let kcat = std::env::var_os("KCAT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kcat"));
    match Command::new(&kcat).arg("-V").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Some(kcat),
        Ok(out) => {
            missing(&format!(
                "kcat -V failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            None
        }
        Err(e) => {
            missing(&format!("kcat not found ({e}); install Debian's kcat package"));
            None
        }
    }
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned ourselves; errors (already gone) are ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Waits for a child to exit, polling against a deadline; kills it when the deadline passes.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {deadline:?}; killed it");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `brook serve`, killed (SIGKILL) when dropped.
pub struct Broker {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as printed on the listening line.
    pub addr: String,
    /// The HTTP API's `127.0.0.1:PORT`, as printed on the `listening http=...` line.
    pub http_addr: String,
    /// The data directory (owned by the test's [`TestDir`]).
    pub data_dir: PathBuf,
    log_path: PathBuf,
}

/// A temporary directory holding a test's data dir, broker logs and scratch files.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh temporary directory.
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("brook-e2e-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The broker data directory inside it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch file path inside it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a broker on this directory's data dir with `--config k=v` for each pair.
    pub fn start_broker(&self, configs: &[(&str, &str)]) -> Broker {
        Broker::start(&self.data_dir(), self.dir.path(), configs)
    }
}

impl Broker {
    /// Starts `brook serve` and waits for its `listening kafka=...` line.
    pub fn start(data_dir: &Path, log_dir: &Path, configs: &[(&str, &str)]) -> Broker {
        Broker::start_with(data_dir, log_dir, configs, &[])
    }

    /// Starts `brook serve` with extra command-line arguments (e.g. `--pipelines DIR`).
    pub fn start_with(data_dir: &Path, log_dir: &Path, configs: &[(&str, &str)], extra: &[&str]) -> Broker {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let log_path = log_dir.join(format!("broker-{id}.log"));
        let log = File::create(&log_path).expect("create broker log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--kafka-listen")
            .arg("127.0.0.1:0")
            .arg("--http-listen")
            .arg("127.0.0.1:0");
        for (k, v) in configs {
            cmd.arg("--config").arg(format!("{k}={v}"));
        }
        cmd.args(extra);
        cmd.env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn brook serve");
        let stdout = child.stdout.take().expect("broker stdout");
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            // Keep draining stdout for the broker's whole life so it never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        let _ = tx.send(l);
                    }
                    Err(_) => break,
                }
            }
        });
        let mut broker = Broker {
            child: Some(child),
            addr: String::new(),
            http_addr: String::new(),
            data_dir: data_dir.to_path_buf(),
            log_path,
        };
        let end = Instant::now() + STARTUP_DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    // The Kafka line comes first, the HTTP line right after it.
                    if let Some(addr) = line.strip_prefix("listening kafka=") {
                        broker.addr = addr.trim().to_string();
                        assert!(
                            broker.addr.starts_with("127.0.0.1:") && !broker.addr.ends_with(":0"),
                            "unexpected listening address {:?}",
                            broker.addr
                        );
                    } else if let Some(addr) = line.strip_prefix("listening http=") {
                        assert!(!broker.addr.is_empty(), "the http line came before the kafka line");
                        broker.http_addr = addr.trim().to_string();
                        assert!(
                            broker.http_addr.starts_with("127.0.0.1:") && !broker.http_addr.ends_with(":0"),
                            "unexpected http listening address {:?}",
                            broker.http_addr
                        );
                        return broker;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = broker.child.as_mut().unwrap().wait().expect("wait broker");
                    panic!("brook serve exited ({status}) before printing `listening kafka=...` (its log follows)");
                }
            }
            if let Some(status) = broker.child.as_mut().unwrap().try_wait().expect("try_wait") {
                panic!("brook serve exited ({status}) before printing its listening line (its log follows)");
            }
            if Instant::now() >= end {
                panic!("brook serve printed no listening line within {STARTUP_DEADLINE:?} (its log follows)");
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Asserts the broker process is still alive (did not crash on what we sent it).
    pub fn assert_running(&mut self, after: &str) {
        if !self.is_running() {
            panic!("brook serve is no longer running after {after} (its log follows)");
        }
    }

    /// Crashes the broker (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            wait_with_deadline(&mut child, EXIT_DEADLINE, "brook serve after SIGKILL");
        }
    }

    /// Stops the broker cleanly (SIGTERM) and returns its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker running");
        signal(child.id(), libc::SIGTERM);
        wait_with_deadline(&mut child, EXIT_DEADLINE, "brook serve after SIGTERM")
    }

    /// Stops the broker with SIGTERM and asserts it exited successfully (clean shutdown).
    pub fn stop_clean(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "brook serve exited with {status} after SIGTERM, expected a clean exit 0 (its log follows)"
        );
    }

    /// A `brook ARGS... --bootstrap-server ADDR` command against this broker.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
        cmd.args(args).args(["--bootstrap-server", &self.addr]);
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Runs `brook ARGS...` against this broker to completion.
    pub fn run_cli(&self, args: &[&str]) -> Output {
        run(self.cli(args), &format!("brook {}", args.join(" ")))
    }

    /// Runs `brook ARGS...` against this broker and asserts it exited 0.
    pub fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.run_cli(args);
        assert!(
            out.status.success(),
            "brook {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        out
    }

    /// The last `n` lines of this broker's stderr log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Creates a topic with `brook topics create`.
    pub fn create_topic(&self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
        cmd.args([
            "topics",
            "create",
            name,
            "--partitions",
            &partitions.to_string(),
            "--bootstrap-server",
            &self.addr,
        ]);
        for (k, v) in configs {
            cmd.arg("--config").arg(format!("{k}={v}"));
        }
        let out = run(cmd, "brook topics create");
        assert!(
            out.status.success(),
            "brook topics create {name} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            out.stdout,
            out.stderr
        );
    }

    /// The partition directory `DATA/TOPIC-P`.
    pub fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- brook serve log (last 60 lines of {}) ----\n{}",
                self.log_path.display(),
                self.log_tail(60)
            );
        }
    }
}

/// A finished process's output.
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

/// Kills the process group leader it holds when dropped (for clients a failing test leaves behind).
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a pipe to the end on a thread.
fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a command to completion with stdin closed, capturing its output, within [`CLIENT_DEADLINE`].
pub fn run(cmd: Command, what: &str) -> Output {
    run_with_stdin(cmd, None, what)
}

/// Runs a command with stdin read from `stdin_file` (or closed), capturing its output.
pub fn run_with_stdin(mut cmd: Command, stdin_file: Option<&Path>, what: &str) -> Output {
    match stdin_file {
        Some(p) => cmd.stdin(File::open(p).expect("open stdin file")),
        None => cmd.stdin(Stdio::null()),
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let mut guard = ChildGuard(Some(child));
    let status = wait_with_deadline(guard.0.as_mut().unwrap(), CLIENT_DEADLINE, what);
    guard.0 = None;
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Every record of `topic` on the cluster at `addr`, from the beginning to the current end, as
/// the JSON objects `brook consume --format json` prints (read_uncommitted).
pub fn consume_json(addr: &str, topic: &str) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook"));
    cmd.args([
        "consume",
        "--bootstrap-server",
        addr,
        "--topic",
        topic,
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "json",
    ]);
    let out = run(cmd, "brook consume");
    assert!(out.status.success(), "brook consume failed: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("consume line {l:?}: {e}")))
        .collect()
}

/// The path of a client script in tests/clients/.
pub fn client_script(name: &str) -> PathBuf {
    repo_root().join("tests/clients").join(name)
}

/// A `python tests/clients/SCRIPT` command with `args`.
pub fn python_cmd(script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(client_script(script)).args(args);
    cmd.env("PYTHONUNBUFFERED", "1");
    cmd
}

/// Runs a Python client script; asserts it succeeded and returns its JSON summary (last stdout line).
pub fn run_python(broker: &Broker, script: &str, args: &[&str]) -> serde_json::Value {
    let out = run(python_cmd(script, args), script);
    if !out.status.success() {
        panic!(
            "{script} {} failed ({}) against the broker at {}:\nstderr:\n{}\nstdout:\n{}",
            args.join(" "),
            out.status,
            broker.addr,
            tail(&out.stderr, 40),
            tail(&out.stdout, 10)
        );
    }
    parse_summary(&out.stdout, script)
}

/// Parses the last non-empty stdout line as JSON.
pub fn parse_summary(stdout: &str, what: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{what} printed no summary"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{what} summary is not JSON ({e}): {line}"))
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process whose stderr lines are streamed to a channel as they arrive.
pub struct Streaming {
    /// The child, killed on drop.
    pub guard: ChildGuard,
    /// stderr lines, in order.
    pub lines: Receiver<String>,
    stdout: Option<thread::JoinHandle<String>>,
    stderr_seen: Vec<String>,
}

impl Streaming {
    /// Spawns `cmd` with a stdin pipe kept open, stdout captured, stderr streamed line by line.
    pub fn spawn(mut cmd: Command, what: &str) -> Streaming {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Streaming {
            guard: ChildGuard(Some(child)),
            lines: rx,
            stdout: Some(stdout),
            stderr_seen: Vec::new(),
        }
    }

    /// Waits until `pred` holds for a stderr line; panics if the process ends or the deadline passes.
    pub fn wait_for_line(&mut self, deadline: Duration, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "no stderr line matching {what} within {deadline:?}; stderr so far:\n{}",
                    tail(&self.stderr_seen.join("\n"), 40)
                );
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    self.stderr_seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.guard.0.as_mut().map(|c| c.wait());
                    panic!(
                        "process ended ({status:?}) before a stderr line matching {what}; stderr:\n{}",
                        tail(&self.stderr_seen.join("\n"), 40)
                    );
                }
            }
        }
    }

    /// Closes the child's stdin (the scripts read it as "stop now").
    pub fn close_stdin(&mut self) {
        if let Some(c) = self.guard.0.as_mut() {
            drop(c.stdin.take());
        }
    }

    /// Writes a line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let c = self.guard.0.as_mut().expect("child");
        let stdin = c.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write child stdin");
        stdin.flush().expect("flush child stdin");
    }

    /// Waits for the child to exit; returns its status, stdout, and all stderr.
    pub fn finish(mut self, what: &str) -> Output {
        let mut child = self.guard.0.take().expect("child");
        let status = wait_with_deadline(&mut child, CLIENT_DEADLINE, what);
        let stdout = self.stdout.take().unwrap().join().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.stderr_seen.push(l);
        }
        Output {
            status,
            stdout,
            stderr: self.stderr_seen.join("\n"),
        }
    }
}

/// The record batches of a v2 log segment file: (file position, base offset, total length in bytes,
/// last offset). Stops at the first incomplete batch.
pub fn scan_batches(segment: &Path) -> Vec<(u64, i64, u64, i64)> {
    let bytes = std::fs::read(segment).unwrap_or_else(|e| panic!("read {}: {e}", segment.display()));
    let mut out = Vec::new();
    let mut pos = 0usize;
    // baseOffset i64, batchLength i32, partitionLeaderEpoch i32, magic i8, crc u32,
    // attributes i16, lastOffsetDelta i32 at byte 23.
    while pos + 27 <= bytes.len() {
        let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
        assert!(
            len > 0,
            "bad batch length {len} at position {pos} of {}",
            segment.display()
        );
        let total = 12 + len as usize;
        if pos + total > bytes.len() {
            break;
        }
        assert_eq!(
            bytes[pos + 16],
            2,
            "batch at position {pos} of {} is not magic v2",
            segment.display()
        );
        let delta = i32::from_be_bytes(bytes[pos + 23..pos + 27].try_into().unwrap());
        out.push((pos as u64, base, total as u64, base + delta as i64));
        pos += total;
    }
    out
}

/// The `.log` segment files of a partition directory, in offset order.
pub fn segments(partition_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", partition_dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|x| x == "log").unwrap_or(false))
        .collect();
    v.sort();
    v
}

/// The codecs every client test runs with.
pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// The compression codec id Kafka stores in a batch's attributes (low 3 bits).
pub fn codec_id(codec: &str) -> u16 {
    match codec {
        "none" => 0,
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        other => panic!("unknown codec {other}"),
    }
}

/// Asserts that the topic's stored batches carry `codec` in their attributes: the client really
/// compressed, and the broker stored the batches as sent. librdkafka sends a batch uncompressed
/// when compressing would not shrink it, so with a codec some batches may say "none", but at least
/// one must carry the codec and none may carry another.
pub fn assert_stored_codec(broker: &Broker, topic: &str, partitions: u32, codec: &str) {
    let want = codec_id(codec);
    let mut batches = 0;
    let mut with_codec = 0;
    for p in 0..partitions {
        for seg in segments(&broker.partition_dir(topic, p)) {
            let bytes = std::fs::read(&seg).unwrap();
            for (pos, _, _, _) in scan_batches(&seg) {
                let attrs = u16::from_be_bytes(bytes[pos as usize + 21..pos as usize + 23].try_into().unwrap());
                let got = attrs & 7;
                assert!(
                    got == want || got == 0,
                    "batch at position {pos} of {} has codec {got}, expected {codec} ({want})",
                    seg.display()
                );
                batches += 1;
                with_codec += usize::from(got == want);
            }
        }
    }
    assert!(batches > 0, "no batches stored for {topic}");
    assert!(
        with_codec > 0,
        "none of the {batches} stored batches of {topic} uses {codec}"
    );
}

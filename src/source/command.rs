//! Frames from a program lookout starts: `rpicam-vid` for the Raspberry Pi camera module
//! (libcamera), or any command that writes raw frames to its stdout (ffmpeg reading a video
//! file or an RTSP camera, GStreamer). lookout owns the process: it starts it in a process
//! group of its own, cuts its stdout into frames ([`super::pipe::FrameReader`]), keeps the
//! last lines of its stderr for error messages, starts it again with back-off when it exits
//! or stalls (one log line per outage, however many attempts), and kills and reaps it when
//! the source is dropped, so no zombie or orphan is left behind.

use super::camera::{CameraKind, CameraSection};
use super::pipe::{frame_timeout, FrameReader, PipeRead};
use super::{FrameSource, RawFrame, SourceError};
use std::collections::VecDeque;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A program that stops sending for this long is taken as hung and restarted. Before its
/// first frame it may wait as long as it likes (an RTSP listener waits for a push; its own
/// connection errors make it exit).
const STALL: Duration = Duration::from_secs(10);
/// A run shorter than this does not reset the back-off: a program that dies right after
/// its first frame is not restarted ten times a second.
const STABLE_RUN: Duration = Duration::from_secs(5);
/// Lines of the program's stderr quoted when it exits.
const STDERR_LINES: usize = 4;

/// The `rpicam-vid` command line for a `[camera]` section with `source = "rpicam"`:
/// endless, no preview, raw YUV420 at the configured size and rate on stdout, flushed per
/// frame. Falls back to `libcamera-vid` (Bullseye's name) when `rpicam-vid` is absent.
pub fn rpicam_argv(camera: &CameraSection) -> Result<Vec<String>, SourceError> {
    rpicam_argv_on(camera, &std::env::var_os("PATH").unwrap_or_default())
}

/// [`rpicam_argv`] with `path` as the program search path.
fn rpicam_argv_on(
    camera: &CameraSection,
    path: &std::ffi::OsStr,
) -> Result<Vec<String>, SourceError> {
    let program = ["rpicam-vid", "libcamera-vid"]
        .into_iter()
        .find(|p| on_path(p, path))
        .ok_or_else(|| SourceError::CommandFailed {
            program: "rpicam-vid".into(),
            reason: "is not installed (neither rpicam-vid nor libcamera-vid is on PATH): install it with `sudo apt install rpicam-apps`, or use source = \"v4l2\" for a USB camera".into(),
        })?;
    let mut argv: Vec<String> = [program, "-t", "0", "-n", "--codec", "yuv420", "--flush"]
        .map(String::from)
        .into();
    for (flag, value) in [
        ("--width", camera.width),
        ("--height", camera.height),
        ("--framerate", camera.fps),
    ] {
        argv.extend([flag.to_string(), value.to_string()]);
    }
    argv.extend(camera.rpicam_args.iter().flatten().cloned());
    argv.extend(["-o".to_string(), "-".to_string()]);
    Ok(argv)
}

/// Whether `program` is an executable file in one of `path`'s directories.
fn on_path(program: &str, path: &std::ffi::OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether `program` names an executable file: a path as given, a bare name on PATH.
fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return std::fs::metadata(program)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    }
    on_path(program, &std::env::var_os("PATH").unwrap_or_default())
}

/// A running program: its stdout, and the tail of its stderr gathered by a thread.
struct Running {
    child: Child,
    stdout: ChildStdout,
    stderr_tail: Arc<StderrTail>,
}

/// The last lines of a program's stderr, and whether it has been closed (all read).
#[derive(Default)]
struct StderrTail {
    state: Mutex<(VecDeque<String>, bool)>,
    closed: Condvar,
}

impl StderrTail {
    /// The lines so far, after waiting at most `wait` for the stream to close: a program that
    /// exits writes its last words just before, and they are what explains the exit.
    fn lines(&self, wait: Duration) -> Vec<String> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let state = match self.closed.wait_timeout_while(state, wait, |s| !s.1) {
            Ok((state, _)) => state,
            Err(e) => e.into_inner().0,
        };
        state.0.iter().cloned().collect()
    }
}

/// While the program is away: why, since when, and when to try again.
struct Away {
    since: Instant,
    /// Why the program went, kept for every attempt's error so the outage is logged once.
    reason: String,
    attempts: u32,
    next_attempt: Instant,
}

/// A program's stdout as a [`FrameSource`].
pub struct CommandSource {
    argv: Vec<String>,
    /// Program name for messages.
    program: String,
    restart: bool,
    reader: FrameReader,
    timeout: Duration,
    running: Option<Running>,
    away: Option<Away>,
    backoff: Duration,
    next_frame_id: u64,
    frames_this_run: u64,
    /// Time without a frame since the last one, in timeouts.
    silent_for: Duration,
    /// When the current (or last) run of the program started.
    run_started: Instant,
}

impl CommandSource {
    /// Starts the program a `[camera]` section with `source = "rpicam"` or `"command"` names.
    /// A program that cannot be started at all (not found, not executable) is an error here,
    /// not a retry: that is a configuration mistake.
    pub fn open(camera: &CameraSection) -> Result<CommandSource, SourceError> {
        let argv = match camera.source {
            CameraKind::Rpicam => rpicam_argv(camera)?,
            _ => camera.command.clone().unwrap_or_default(),
        };
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(SourceError::CommandFailed {
                program: String::new(),
                reason: "is empty: set camera.command to the program and its arguments".into(),
            });
        }
        let format = camera
            .pixel_format()
            .map_err(|problem| SourceError::CommandFailed {
                program: argv.first().cloned().unwrap_or_default(),
                reason: format!("camera.format {problem}"),
            })?;
        let program = argv
            .first()
            .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
            .unwrap_or_default();
        let mut source = CommandSource {
            program,
            restart: camera.restarts(),
            reader: FrameReader::new(format, camera.width, camera.height),
            timeout: frame_timeout(camera.fps),
            running: None,
            away: None,
            backoff: BACKOFF_FIRST,
            next_frame_id: 0,
            frames_this_run: 0,
            silent_for: Duration::ZERO,
            run_started: Instant::now(),
            argv,
        };
        let fix = match camera.source {
            CameraKind::Rpicam => {
                "check that rpicam-apps is installed (`sudo apt install rpicam-apps`)"
            }
            _ => "check camera.command: the program must exist and be executable",
        };
        // Checked before spawning: where exec failures are not reported back to the parent
        // (qemu's user-mode emulation, some container runtimes) a missing program would
        // otherwise look like one that started and died.
        if !program_exists(&source.argv[0]) {
            return Err(SourceError::CommandFailed {
                program: source.program.clone(),
                reason: format!("cannot be started (not found or not executable); {fix}"),
            });
        }
        source.running = Some(source.spawn().map_err(|e| SourceError::CommandFailed {
            program: source.program.clone(),
            reason: format!("cannot be started ({e}); {fix}"),
        })?);
        log::info!(
            "camera command `{}`: raw {format} {}x{} ({} bytes a frame)",
            source.argv.join(" "),
            camera.width,
            camera.height,
            source.reader.frame_bytes()
        );
        Ok(source)
    }

    fn spawn(&self) -> std::io::Result<Running> {
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the terminal reaches lookout only, which then
            // stops the program itself, and a wrapper script's children are stopped with it.
            .process_group(0)
            .spawn()?;
        let stdout = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let stderr_tail = Arc::new(StderrTail::default());
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            let program = self.program.clone();
            // Detached: it ends when the program's stderr closes.
            std::thread::Builder::new()
                .name("camera-stderr".into())
                .spawn(move || keep_stderr_tail(stderr, &program, &tail))?;
        }
        Ok(Running {
            child,
            stdout,
            stderr_tail,
        })
    }

    /// Stops the program (if running) and starts an outage: the error to return.
    fn lose(&mut self, reason: String) -> SourceError {
        if let Some(running) = self.running.take() {
            stop(running);
        }
        self.reader.reset();
        self.silent_for = Duration::ZERO;
        if self.away.is_none() {
            if self.run_started.elapsed() >= STABLE_RUN {
                self.backoff = BACKOFF_FIRST;
            }
            self.away = Some(Away {
                since: Instant::now(),
                reason: format!("after {} frames: {reason}", self.frames_this_run),
                attempts: 0,
                next_attempt: Instant::now() + self.backoff,
            });
        } else {
            log::debug!("{}: {reason}", self.program);
        }
        self.frames_this_run = 0;
        self.outage_error()
    }

    fn outage_error(&self) -> SourceError {
        SourceError::Restarting {
            program: self.program.clone(),
            reason: self
                .away
                .as_ref()
                .map(|a| a.reason.clone())
                .unwrap_or_default(),
        }
    }

    /// One restart attempt after waiting out the back-off.
    fn restart(&mut self) -> Result<(), SourceError> {
        let Some(away) = self.away.as_mut() else {
            return Err(SourceError::Stopped);
        };
        let now = Instant::now();
        if away.next_attempt > now {
            std::thread::sleep(away.next_attempt - now);
        }
        away.attempts += 1;
        away.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        match self.spawn() {
            Ok(running) => {
                self.running = Some(running);
                self.run_started = Instant::now();
                Ok(())
            }
            Err(e) => {
                log::debug!("{}: cannot be started: {e}", self.program);
                Err(self.outage_error())
            }
        }
    }

    /// Why the program's stdout ended: its exit status and the last lines it wrote.
    fn ended(&mut self, partial: usize) -> (Option<ExitStatus>, String) {
        let Some(running) = self.running.take() else {
            return (None, "it is not running".into());
        };
        let tail = running.stderr_tail.clone();
        let status = reap(running);
        let mut reason = match status {
            Some(s) => format!("it exited ({s})"),
            None => "it closed its output".to_string(),
        };
        if partial > 0 {
            reason += &format!(
                "; {partial} bytes of an unfinished {}-byte frame were discarded",
                self.reader.frame_bytes()
            );
        }
        let lines = tail.lines(Duration::from_millis(500));
        if !lines.is_empty() {
            reason += &format!("; its last output: {}", lines.join(" | "));
        }
        (status, reason)
    }
}

impl FrameSource for CommandSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame>, SourceError> {
        if self.running.is_none() {
            self.restart()?;
        }
        let Some(running) = self.running.as_mut() else {
            return Err(SourceError::Stopped);
        };
        let read = self
            .reader
            .read_frame(&mut running.stdout, self.next_frame_id, self.timeout);
        match read {
            Ok(PipeRead::Frame(frame)) => {
                if let Some(away) = self.away.take() {
                    log::warn!(
                        "camera command `{}` is back after {:.1} s ({} restarts): resuming at frame {}",
                        self.program,
                        away.since.elapsed().as_secs_f64(),
                        away.attempts,
                        self.next_frame_id
                    );
                }
                self.next_frame_id += 1;
                self.frames_this_run += 1;
                self.silent_for = Duration::ZERO;
                Ok(Some(frame))
            }
            Ok(PipeRead::Eof { partial }) => {
                let (status, reason) = self.ended(partial);
                if self.restart {
                    return Err(self.lose(reason));
                }
                if status.is_some_and(|s| s.success()) {
                    if partial > 0 {
                        log::warn!("camera command `{}`: {reason}", self.program);
                    }
                    return Ok(None);
                }
                Err(SourceError::CommandFailed {
                    program: self.program.clone(),
                    reason,
                })
            }
            Ok(PipeRead::Timeout) => {
                self.silent_for += self.timeout;
                if self.away.is_some() {
                    return Err(self.outage_error());
                }
                if self.restart && self.frames_this_run > 0 && self.silent_for >= STALL {
                    let reason = format!("it sent no frame for {} s", self.silent_for.as_secs());
                    return Err(self.lose(reason));
                }
                Err(SourceError::Timeout {
                    device: format!("`{}`", self.program),
                    waited_ms: self.timeout.as_millis() as u64,
                })
            }
            Err(e) => Err(self.lose(format!("reading its output failed: {e}"))),
        }
    }

    fn describe(&self) -> String {
        format!("`{}`", self.argv.join(" "))
    }
}

impl Drop for CommandSource {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            stop(running);
        }
    }
}

/// Keeps the last [`STDERR_LINES`] non-empty lines of a program's stderr; each is logged at
/// debug level as it comes.
fn keep_stderr_tail(stderr: std::process::ChildStderr, program: &str, tail: &StderrTail) {
    let mut reader = std::io::BufReader::new(stderr);
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        let text = String::from_utf8_lossy(&line).trim().to_string();
        line.clear();
        if text.is_empty() {
            continue;
        }
        log::debug!("{program}: {text}");
        if let Ok(mut state) = tail.state.lock() {
            if state.0.len() == STDERR_LINES {
                state.0.pop_front();
            }
            state.0.push_back(text);
        }
    }
    if let Ok(mut state) = tail.state.lock() {
        state.1 = true;
    }
    tail.closed.notify_all();
}

/// Waits briefly for a program whose output ended to exit, then stops it; its status if it
/// exited by itself.
fn reap(mut running: Running) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match running.child.try_wait() {
            Ok(Some(status)) => {
                // Its group may still hold children (a wrapper script's); they go too.
                signal_group(&running.child, libc::SIGKILL);
                return Some(status);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    stop(running);
    None
}

/// SIGTERM to the program's group (rpicam-vid releases the camera cleanly on it), SIGKILL
/// after a second, then reaps it.
fn stop(mut running: Running) {
    signal_group(&running.child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if !matches!(running.child.try_wait(), Ok(None)) {
            signal_group(&running.child, libc::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signal_group(&running.child, libc::SIGKILL);
    let _ = running.child.wait();
}

fn signal_group(child: &Child, signal: libc::c_int) {
    // The group id is the child's pid (process_group(0)); a negative pid signals the group.
    // SAFETY: kill has no memory effects; a group that is gone gives ESRCH, ignored.
    unsafe { libc::kill(-(child.id() as libc::pid_t), signal) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rpicam_argv_falls_back_to_libcamera_vid_and_says_what_to_install() {
        let dir = std::env::temp_dir().join(format!("lookout-rpicam-argv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let camera: CameraSection =
            toml::from_str("source = \"rpicam\"\nwidth = 1280\nheight = 720\nfps = 15\nrpicam_args = [\"--hflip\"]").unwrap();
        let err = rpicam_argv_on(&camera, dir.as_os_str())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sudo apt install rpicam-apps"), "{err}");
        // Present but not executable does not count.
        let old = dir.join("libcamera-vid");
        std::fs::write(&old, "#!/bin/sh\n").unwrap();
        assert!(rpicam_argv_on(&camera, dir.as_os_str()).is_err());
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = rpicam_argv_on(&camera, dir.as_os_str()).unwrap().join(" ");
        assert_eq!(
            argv,
            "libcamera-vid -t 0 -n --codec yuv420 --flush --width 1280 --height 720 --framerate 15 --hflip -o -"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

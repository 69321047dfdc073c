//! Camera sources that are programs or pipes, with real processes and real ffmpeg: the
//! command source's lifecycle (frames, exit, restart, kill on drop) on small shell commands,
//! then `lookout run` detecting from a video file, from an RTSP stream pushed over loopback,
//! from a fake `rpicam-vid` that dies mid-run, and from stdin. Each detection test compares
//! with `lookout detect` on the photo the frames were made from.

mod common;

use lookout::source::camera::CameraSection;
use lookout::source::command::CommandSource;
use lookout::source::{FrameSource, PixelFormat, SourceError};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `command` section running `script` under sh, for 4x2 I420 frames (12 bytes).
fn shell_camera(script: &str, restart: bool) -> CameraSection {
    let mut camera = CameraSection::command(
        vec!["sh".into(), "-c".into(), script.into()],
        PixelFormat::I420,
        16,
        2,
    );
    camera.restart = Some(restart);
    camera
}

/// 16x2 I420 is 48 bytes a frame.
const FRAME: usize = 48;

fn frames_until_end(source: &mut CommandSource) -> Result<Vec<u64>, SourceError> {
    let mut ids = Vec::new();
    while let Some(frame) = source.next_frame()? {
        assert_eq!(frame.data.len(), FRAME);
        ids.push(frame.frame_id);
    }
    Ok(ids)
}

#[test]
fn a_command_that_ends_well_ends_the_stream_and_a_short_tail_is_not_a_frame() {
    let script = format!("head -c {} /dev/zero", 3 * FRAME + 10);
    let mut source = CommandSource::open(&shell_camera(&script, false)).unwrap();
    assert_eq!(frames_until_end(&mut source).unwrap(), vec![0, 1, 2]);
}

#[test]
fn a_command_that_fails_quotes_its_exit_status_and_last_output() {
    let script = format!("head -c {FRAME} /dev/zero; echo 'no such stream' >&2; exit 3");
    let mut source = CommandSource::open(&shell_camera(&script, false)).unwrap();
    assert!(source.next_frame().unwrap().is_some());
    let err = source.next_frame().unwrap_err();
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("exit status: 3") && text.contains("no such stream"),
        "{text}"
    );
}

#[test]
fn a_missing_program_is_a_start_up_error_naming_it() {
    let mut camera = shell_camera("", false);
    camera.command = Some(vec!["/nonexistent/lookout-camera".into()]);
    let err = CommandSource::open(&camera).err().unwrap().to_string();
    assert!(
        err.contains("lookout-camera") && err.contains("camera.command"),
        "{err}"
    );
}

#[test]
fn a_command_that_dies_is_restarted_once_per_outage_and_frame_ids_carry_on() {
    let dir = common::scratch("command-restart");
    let runs = dir.join("runs");
    // Each run appends a line to `runs`: the first sends two frames and dies, the second dies
    // at once, the third keeps sending.
    let script = format!(
        "echo run >> {runs}; n=$(wc -l < {runs}); \
         if [ $n -eq 1 ]; then head -c {two} /dev/zero; fi; \
         if [ $n -le 2 ]; then echo \"lost $n\" >&2; exit 1; fi; \
         while true; do head -c {FRAME} /dev/zero; sleep 0.01; done",
        runs = runs.display(),
        two = 2 * FRAME,
    );
    let mut source = CommandSource::open(&shell_camera(&script, true)).unwrap();
    let mut ids = Vec::new();
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < 8 {
        assert!(Instant::now() < deadline, "{ids:?} {errors:?}");
        match source.next_frame() {
            Ok(Some(frame)) => ids.push(frame.frame_id),
            Ok(None) => panic!("a restarting source does not end"),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                errors.push(e.to_string());
            }
        }
    }
    assert_eq!(ids, (0..8).collect::<Vec<u64>>());
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 3);
    // Both deaths fall in one outage (no frame between them): one message, from the first.
    errors.dedup();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("after 2 frames") && errors[0].contains("lost 1"),
        "{errors:?}"
    );
}

/// Pids of live processes whose command line mentions `marker`.
fn processes_mentioning(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A zombie still has an entry; it counts as left behind too.
            String::from_utf8_lossy(&cmdline).contains(marker) || state.contains(marker)
        })
        .collect()
}

#[test]
fn dropping_the_source_kills_the_program_and_its_children_without_zombies() {
    let marker = format!("lookout-marker-{}", std::process::id());
    // A wrapper shell whose child (the sleep loop in a subshell) would outlive a plain kill.
    let script =
        format!("( while true; do head -c {FRAME} /dev/zero; sleep 0.05; done ) & wait # {marker}");
    let mut source = CommandSource::open(&shell_camera(&script, true)).unwrap();
    assert!(source.next_frame().unwrap().is_some());
    assert!(!processes_mentioning(&marker).is_empty());
    drop(source);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_mentioning(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running: {:?}",
            processes_mentioning(&marker)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- `lookout run` with YOLO11n on frames made by ffmpeg from a sample photo ----

const PHOTO: &str = "astronaut.png";

/// The detector's square input side: 640, or 320 under qemu, where a 640x640 inference takes
/// 10-20 s and these tests are about the sources, not the arithmetic (the aarch64 reference
/// tests hold that).
fn input_side() -> u32 {
    if common::emulated() {
        320
    } else {
        640
    }
}

/// Classes `lookout detect` finds on the photo: (all of them, those scoring at least 0.5).
fn detect_classes() -> (BTreeSet<u64>, BTreeSet<u64>) {
    let out = common::lookout_command()
        .args(["detect", "--input-size", &format!("{0}x{0}", input_side())])
        .arg(common::sample_images().join(PHOTO))
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    class_sets(&[line])
}

fn class_sets(reports: &[serde_json::Value]) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (mut all, mut sure) = (BTreeSet::new(), BTreeSet::new());
    for r in reports {
        for d in r["detections"].as_array().unwrap() {
            let class = d["class_id"].as_u64().unwrap();
            all.insert(class);
            if d["score"].as_f64().unwrap() >= 0.5 {
                sure.insert(class);
            }
        }
    }
    (all, sure)
}

/// The photo's confident classes are found in the run, and the run finds nothing confident
/// that detect did not (video compression moves scores a little, hence the 0.5 margin).
fn assert_same_objects(reports: &[serde_json::Value]) {
    let (photo_all, photo_sure) = detect_classes();
    let (run_all, run_sure) = class_sets(reports);
    assert!(!photo_sure.is_empty());
    assert!(
        photo_sure.is_subset(&run_all) && run_sure.is_subset(&photo_all),
        "detect: {photo_all:?} (sure {photo_sure:?}); run: {run_all:?} (sure {run_sure:?})"
    );
}

fn board_config(dir: &Path, camera: &str) -> PathBuf {
    let path = dir.join("board.toml");
    std::fs::write(
        &path,
        format!(
            "[detector]\ninput_size = [{0}, {0}]\nthreads = 2\n{camera}",
            input_side()
        ),
    )
    .unwrap();
    path
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(args)
        .output()
        .expect("ffmpeg is needed for these tests (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 2 s, 10 fps H.264 MP4 of the photo.
fn photo_video(dir: &Path) -> PathBuf {
    let video = dir.join("photo.mp4");
    let photo = common::sample_images().join(PHOTO);
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        photo.to_str().unwrap(),
        "-t",
        "2",
        "-r",
        "10",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        video.to_str().unwrap(),
    ]);
    video
}

/// Runs lookout to its end: (the detections documents, one per frame; summary, stderr).
fn finish(child: std::process::Child) -> (Vec<serde_json::Value>, serde_json::Value, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let reports = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "detections")
        .collect();
    let summary = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    (reports, summary, stderr)
}

fn lookout_run(config: &Path, args: &[&str]) -> Command {
    let mut command = common::lookout_command();
    command
        .args(["run", "--config"])
        .arg(config)
        .args(args)
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[test]
fn run_detects_the_photos_objects_in_a_video_file_made_from_it() {
    common::yolo11n();
    let dir = common::scratch("video-source");
    let video = photo_video(&dir);
    let config = board_config(&dir, "");
    let child = lookout_run(&config, &["--video", video.to_str().unwrap()])
        .spawn()
        .unwrap();
    let (reports, summary, stderr) = finish(child);
    assert!(!reports.is_empty(), "{stderr}");
    assert_eq!(summary["stop_reason"], "the source ended", "{summary}");
    // Played at its own 10 fps: all 20 frames captured, the ones inference was too slow for
    // dropped, and the size is the video's own (ffprobe).
    assert_eq!(summary["captured"], 20, "{summary}");
    assert_eq!(
        (reports[0]["width"].as_u64(), reports[0]["height"].as_u64()),
        (Some(512), Some(512))
    );
    assert!(
        summary["latency_ms"]["age_at_start"]["p50"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert_same_objects(&reports);
}

#[test]
fn run_detects_the_photos_objects_in_an_rtsp_stream_pushed_over_loopback() {
    common::yolo11n();
    let dir = common::scratch("rtsp-source");
    let video = photo_video(&dir);
    let config = board_config(&dir, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let child = lookout_run(
        &config,
        &["--rtsp-listen", &url, "--size", "320x320", "--frames", "3"],
    )
    .spawn()
    .unwrap();
    // The camera side: ffmpeg pushing the video over RTSP (TCP), looping, started again
    // until lookout is done (the first tries may come before lookout's listener is up).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publishing = done.clone();
    let publisher = std::thread::spawn(move || {
        while !publishing.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = Command::new("ffmpeg")
                .args(["-nostdin", "-hide_banner", "-loglevel", "quiet", "-re"])
                .args(["-stream_loop", "-1", "-i"])
                .arg(&video)
                .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", &url])
                .status();
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let (reports, summary, stderr) = finish(child);
    // lookout's listener is gone, so the pushing ffmpeg fails and is not started again.
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.join().unwrap();
    assert_eq!(reports.len(), 3, "{stderr}");
    assert_eq!(reports[0]["width"], 320, "scaled to --size");
    assert_eq!(summary["frames"], 3);
    assert_same_objects(&reports);
}

#[test]
fn fake_rpicam_vid_dying_mid_run_is_restarted_and_detection_goes_on() {
    common::yolo11n();
    let dir = common::scratch("rpicam-source");
    let frame = dir.join("frame.yuv");
    let photo = common::sample_images().join(PHOTO);
    ffmpeg(&[
        "-i",
        photo.to_str().unwrap(),
        "-vf",
        "scale=640:480",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "rawvideo",
        frame.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::metadata(&frame).unwrap().len(), 640 * 480 * 3 / 2);
    // rpicam-vid as lookout must call it; the first run sends 5 frames and half of a sixth,
    // complains like libcamera and dies; later runs stream until stopped.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("rpicam-vid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$*\" >> {dir}/argv\n\
             case \"$*\" in *'-t 0 -n --codec yuv420 --flush --width 640 --height 480 --framerate 10 --vflip -o -'*) ;; *) echo \"unexpected arguments: $*\" >&2; exit 2;; esac\n\
             if [ $(wc -l < {dir}/argv) -eq 1 ]; then\n\
               for i in 1 2 3 4 5; do cat {frame}; sleep 0.1; done\n\
               head -c 1000 {frame}; echo 'ERROR: *** camera lost ***' >&2; exit 1\n\
             fi\n\
             while true; do cat {frame}; sleep 0.1; done\n",
            dir = dir.display(),
            frame = frame.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = board_config(
        &dir,
        "\n[camera]\nsource = \"rpicam\"\nwidth = 640\nheight = 480\nfps = 10\nrpicam_args = [\"--vflip\"]\n",
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = lookout_run(&config, &["--duration", "4"])
        .env("PATH", path)
        .spawn()
        .unwrap();
    let (reports, summary, stderr) = finish(child);
    let runs = std::fs::read_to_string(dir.join("argv")).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}\n{stderr}");
    // One line for the outage, quoting the program's last words, and one for its return.
    assert_eq!(
        stderr.matches("restarting it with back-off").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("after 5 frames") && stderr.contains("camera lost"),
        "{stderr}"
    );
    assert!(stderr.contains("is back after"), "{stderr}");
    // Frames of the second run were processed: ids go on from where the first run stopped.
    let last = reports.last().unwrap()["frame_id"].as_u64().unwrap();
    assert!(last >= 6, "{stderr}");
    assert!(summary["captured"].as_u64().unwrap() > 6, "{summary}");
    assert_same_objects(&reports);
    // lookout stopped the second run when it finished: nothing of it is left.
    let left = processes_mentioning(&dir.display().to_string());
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn run_reads_raw_frames_from_stdin_until_the_writer_closes() {
    common::yolo11n();
    let dir = common::scratch("stdin-source");
    let config = board_config(&dir, "");
    let photo = image::open(common::sample_images().join(PHOTO))
        .unwrap()
        .to_rgb8();
    let (w, h) = photo.dimensions();
    let mut child = lookout_run(
        &config,
        &[
            "--stdin",
            "--size",
            &format!("{w}x{h}"),
            "--pixel-format",
            "rgb24",
        ],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Three frames and a short tail, which is not a frame.
    for _ in 0..3 {
        stdin.write_all(photo.as_raw()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    stdin.write_all(&photo.as_raw()[..100]).unwrap();
    drop(stdin);
    let (reports, summary, stderr) = finish(child);
    assert_eq!(summary["captured"], 3, "{summary}");
    assert_eq!(summary["stop_reason"], "the source ended");
    assert!(stderr.contains("100 of"), "{stderr}");
    assert_same_objects(&reports);
}

#[test]
fn stdin_without_a_size_is_refused_naming_the_flag() {
    let dir = common::scratch("stdin-nosize");
    let config = board_config(&dir, "");
    let out = lookout_run(&config, &["--stdin"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--size"), "{stderr}");
    let bad = board_config(&dir, "\n[camera]\nsource = \"rpicam\"\nwidth = 1000\n");
    let out = common::lookout_command()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("camera.width"),
        "{stderr}"
    );
}

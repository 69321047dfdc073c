//! `lookout run`: the main job on a robot. Reads a board config, opens its frame source
//! (`[camera]`, `[replay]`, or a flag: `--replay`, `--video`, `--rtsp`, `--stdin`), loads the detector, and runs the live
//! pipeline (capture → infer → track → publish) until the source ends, a limit is reached or
//! SIGINT/SIGTERM arrives; then flushes the sinks, says `offline`, and prints a summary.

use super::classes::resolve_classes;
use super::sinks::{open_sinks, SinkArgs};
use anyhow::{bail, Context};
use lookout::branch::lidar::LidarBranch;
use lookout::branch::segment::SegmenterBranch;
use lookout::clock::MonotonicClock;
use lookout::config::{BoardConfig, PayloadFormat};
use lookout::decode::yolo::DecodeParams;
use lookout::infer::detector::YoloFrames;
use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier};
use lookout::infer::sam::{SamModelPaths, SamSegmenter, SegmentBudget};
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::EngineOptions;
use lookout::pipeline::{self, Branches, FrameInput, NamedSink, Pipeline, PipelineOptions, Report};
use lookout::sink::json::StdoutPublisher;
use lookout::source::latest::LatestFrame;
use lookout::track::Tracker;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Board config (board-configs/*.toml): source, detector, tracker, sinks, GPIO.
    #[arg(long)]
    pub config: PathBuf,
    /// Replay these images / this .lkraw recording instead of the config's source.
    #[arg(long, conflicts_with_all = ["video", "rtsp", "rtsp_listen", "stdin"])]
    pub replay: Option<PathBuf>,
    /// Read a video file through ffmpeg at its own frame rate, instead of the config's source.
    #[arg(long, conflicts_with_all = ["rtsp", "rtsp_listen", "stdin"])]
    pub video: Option<PathBuf>,
    /// Read an RTSP camera or server through ffmpeg (over TCP; reopened when it drops).
    #[arg(long, conflicts_with_all = ["rtsp_listen", "stdin"])]
    pub rtsp: Option<String>,
    /// Be the RTSP server a camera or encoder pushes to, e.g. rtsp://0.0.0.0:8554/cam
    /// (ffmpeg's listen mode; needs --size).
    #[arg(long, conflicts_with = "stdin")]
    pub rtsp_listen: Option<String>,
    /// Read raw frames from standard input (--size, and --pixel-format unless I420).
    #[arg(long)]
    pub stdin: bool,
    /// With --stdin: the frames' WIDTHxHEIGHT; with --video/--rtsp/--rtsp-listen: scale to it (default: the
    /// stream's own size, from ffprobe).
    #[arg(long, value_parser = super::parse_size)]
    pub size: Option<(u32, u32)>,
    /// With --stdin: I420 (default), NV12, YUYV or RGB24.
    #[arg(long)]
    pub pixel_format: Option<String>,
    /// With --replay: frames per second (default: as fast as possible).
    #[arg(long, value_parser = lookout::limits::parse_fps)]
    pub fps: Option<f64>,
    /// With --replay or --video: start over at the end.
    #[arg(long)]
    pub r#loop: bool,
    /// Stop after this many processed frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = lookout::limits::parse_run_seconds)]
    pub duration: Option<f64>,
    /// Publish on this serial device too.
    #[arg(long)]
    pub serial: Option<String>,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Publish to this MQTT broker (overrides the config's mqtt.url).
    #[arg(long)]
    pub mqtt: Option<String>,
    /// Seconds between status messages (0.1 to 86400).
    #[arg(long, default_value_t = 5.0, value_parser = lookout::limits::parse_interval_seconds)]
    pub status_interval: f64,
    /// MQTT payload format: json (documents, the default) or postcard (compact binary).
    #[arg(long, value_parser = clap::value_parser!(PayloadFormat))]
    pub payload: Option<PayloadFormat>,
    /// Do not print the JSON documents on stdout.
    #[arg(long)]
    pub quiet: bool,
}

/// Set by SIGINT/SIGTERM: the pipeline finishes the frame in hand, then shuts down cleanly.
pub(super) fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handlers")?;
    }
    Ok(stop)
}

pub fn run(args: RunArgs) -> anyhow::Result<bool> {
    // The same resolution `lookout check` prints: defaults filled in, thread counts bounded.
    let resolved = BoardConfig::load(&args.config)?.resolved();
    for note in &resolved.notes {
        log::warn!("{}: {note}", args.config.display());
    }
    let board = resolved.config;
    if board.segmenter.enabled == Some(true) {
        // MobileSAM's large activations, freed once a second, would otherwise stay resident;
        // set before loading, whose graph copies are large too.
        lookout::heap::return_large_buffers();
    }
    let stop = stop_flag()?;
    // Live and paced sources run behind latest-frame-wins; an unpaced replay hands over
    // every frame in order (offline processing: nothing is gained by dropping).
    let (source, paced) = super::run_source::open_source(&args, &board)?;
    let d = &board.detector;
    // Resolved: every `unwrap_or_default` below only satisfies the type.
    let model = d.model.as_deref().unwrap_or_default();
    let mut detector = YoloDetector::load(
        ModelChoice::resolve(model),
        d.input_size.map(|[w, h]| (w, h)),
        &EngineOptions {
            threads: d.threads.unwrap_or_default(),
            precision: d.precision.unwrap_or_default(),
            ..EngineOptions::default()
        },
    )?;
    super::classes::apply_names_file(
        &mut detector,
        d.names.as_deref(),
        &format!("detector.names of {}", args.config.display()),
    )?;
    let origin = format!("detector.classes of {}", args.config.display());
    let params = DecodeParams {
        conf_threshold: d.conf.unwrap_or_default(),
        iou_threshold: d.iou.unwrap_or_default(),
        max_det: d.max_det.unwrap_or_default(),
        agnostic: d.agnostic.unwrap_or_default(),
        classes: resolve_classes(
            d.classes.as_deref().unwrap_or_default(),
            detector.class_names(),
            &origin,
        )?,
    };
    let branches = Branches {
        segmenter: segmenter_branch(&board, detector.class_names(), &args)?,
        lidar: lidar_branch(&board, &args)?,
    };
    // Loading and optimising the models left freed graph copies in the heap.
    lookout::heap::release_free_memory();
    let hooks = open_gpio(&board, detector.class_names(), &args)?;
    let device_id = board.board.device_id.unwrap_or(0);
    let sink_args = SinkArgs {
        serial: args.serial.as_deref(),
        baud: args.baud,
        mqtt: args.mqtt.as_deref(),
        // A service waits for its adapter, as for its camera.
        wait_for_serial: true,
        payload: args.payload,
        model,
    };
    let mut sinks: Vec<NamedSink> = open_sinks(&sink_args, &board, device_id)?
        .into_iter()
        .map(|s| NamedSink {
            name: s.name.to_string(),
            publisher: s.publisher,
            drain_timeout: Duration::from_secs(5),
        })
        .collect();
    if !args.quiet {
        // stdout carries the same documents as the JSON MQTT payload, one per line.
        sinks.push(NamedSink {
            name: "stdout".into(),
            publisher: Box::new(StdoutPublisher::default()),
            drain_timeout: Duration::ZERO,
        });
    }
    let options = PipelineOptions {
        device_id,
        model_name: model.to_string(),
        params,
        // Both bounded by their command-line parsers (lookout::limits).
        status_interval: Duration::from_secs_f64(args.status_interval),
        max_frames: args.frames,
        max_duration: args.duration.map(Duration::from_secs_f64),
        frame_timeout: Duration::from_secs(2),
    };
    let on_frame = Box::new(|_: Report<'_>| {});
    // Capture starts once the model is loaded: frames read during the load would only be
    // dropped.
    let source = if paced {
        FrameInput::Latest(LatestFrame::spawn(source).context("cannot start the capture thread")?)
    } else {
        FrameInput::Every(source)
    };
    let mut detector = YoloFrames::new(&mut detector);
    let pipeline = Pipeline {
        source,
        detector: &mut detector,
        tracker: Tracker::new(board.tracker),
        sinks,
        hooks,
        branches,
        options,
        clock: Arc::new(MonotonicClock),
    };
    let summary = pipeline.run(&stop, on_frame)?;
    eprintln!("{}", serde_json::to_string(&summary)?);
    let failed = summary.source_errors + summary.frames_corrupt;
    if summary.frames == 0 && failed > 0 {
        // Every frame the source offered failed: a run that processed nothing is a failure.
        eprintln!(
            "error: no frame was processed: all {failed} frames of the source failed to read or decode (see the warnings above)"
        );
        return Ok(false);
    }
    Ok(summary.sinks.iter().all(|s| s.drained))
}

/// The board's GPIO pins, when the config has a `[gpio]` section (feature `rpi`).
fn open_gpio(
    board: &BoardConfig,
    class_names: &[String],
    args: &RunArgs,
) -> anyhow::Result<Option<Box<dyn pipeline::FrameHooks>>> {
    lookout::gpio::check_support(board.gpio.as_ref())?;
    let Some(gpio) = &board.gpio else {
        return Ok(None);
    };
    let origin = format!("gpio.alert_classes of {}", args.config.display());
    let alert_ids = resolve_classes(&gpio.alert_classes, class_names, &origin)?.unwrap_or_default();
    #[cfg(feature = "rpi")]
    {
        let pins = lookout::gpio::rpi::open(gpio, alert_ids)?;
        Ok(Some(Box::new(pins)))
    }
    #[cfg(not(feature = "rpi"))]
    {
        let _ = alert_ids;
        Err(lookout::gpio::GpioError::NotCompiled.into())
    }
}

/// MobileSAM beside the detector, when the config's `[segmenter]` is enabled.
fn segmenter_branch(
    board: &BoardConfig,
    class_names: &[String],
    args: &RunArgs,
) -> anyhow::Result<Option<SegmenterBranch>> {
    let s = &board.segmenter;
    if s.enabled != Some(true) {
        return Ok(None);
    }
    let prefix = s.model.as_deref().unwrap_or_default();
    let sam = SamSegmenter::load(
        &SamModelPaths::from_prefix(prefix),
        &EngineOptions {
            threads: s.threads.unwrap_or(1),
            precision: s.precision.unwrap_or_default(),
            ..EngineOptions::default()
        },
    )
    .with_context(|| format!("segmenter.model of {}", args.config.display()))?;
    let origin = format!("segmenter.classes of {}", args.config.display());
    Ok(Some(SegmenterBranch {
        sam,
        budget: SegmentBudget {
            max_masks: s.max_masks.unwrap_or_default(),
            classes: resolve_classes(
                s.classes.as_deref().unwrap_or_default(),
                class_names,
                &origin,
            )?,
            time_budget: s.budget_ms.map(|ms| Duration::from_secs_f64(ms / 1e3)),
        },
        mask_frame_bytes: s.mask_frame_bytes.unwrap_or_default(),
        interval: Duration::from_secs_f64(s.interval_s.unwrap_or(0.0)),
    }))
}

/// The LiDAR classifier on the board's own sensor, when the config has a `[lidar]` section.
fn lidar_branch(board: &BoardConfig, args: &RunArgs) -> anyhow::Result<Option<LidarBranch>> {
    let Some(section) = &board.lidar else {
        return Ok(None);
    };
    let Some(input) = section.input() else {
        bail!(
            "{}: [lidar] names no sensor: set lidar.address (a live sensor, e.g. \"0.0.0.0:2368\") or lidar.replay (a pcap capture)",
            args.config.display()
        );
    };
    let source = lookout::source::lidar::open(&input)?;
    let spec = section.classifier.as_deref().unwrap_or_default();
    let classifier = PointNetClassifier::load(
        &PointModelChoice::resolve(spec),
        section.batch.unwrap_or(1),
        None,
        &EngineOptions::threads(section.threads.unwrap_or(1)),
    )
    .with_context(|| format!("lidar.classifier of {}", args.config.display()))?;
    Ok(Some(LidarBranch {
        source,
        classifier,
        model_name: spec.to_string(),
        params: section.segment_params(),
        paced: section.replay.is_some(),
    }))
}

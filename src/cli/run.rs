//! `lookout run`: the main job on a robot. Reads a board config, opens its frame source
//! (`[camera]`, or `[replay]` / `--replay` on any host), loads the detector, and runs the live
//! pipeline (capture → infer → track → publish) until the source ends, a limit is reached or
//! SIGINT/SIGTERM arrives; then flushes the sinks, says `offline`, and prints a summary.

use super::classes::resolve_classes;
use super::sinks::{open_sinks, SinkArgs};
use anyhow::{bail, Context};
use lookout::branch::lidar::LidarBranch;
use lookout::branch::segment::SegmenterBranch;
use lookout::clock::MonotonicClock;
use lookout::config::BoardConfig;
use lookout::decode::yolo::DecodeParams;
use lookout::infer::detector::YoloFrames;
use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier};
use lookout::infer::sam::{SamModelPaths, SamSegmenter, SegmentBudget};
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::EngineOptions;
use lookout::pipeline::{self, Branches, FrameInput, NamedSink, Pipeline, PipelineOptions, Report};
use lookout::source::camera::ReplaySection;
use lookout::source::latest::LatestFrame;
use lookout::source::open_camera;
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
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// With --replay: frames per second (default: as fast as possible).
    #[arg(long, value_parser = lookout::limits::parse_fps)]
    pub fps: Option<f64>,
    /// With --replay: start over at the end.
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
    /// Do not print a JSON line per frame.
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
    let stop = stop_flag()?;
    // Live and paced sources run behind latest-frame-wins; an unpaced replay hands over
    // every frame in order (offline processing: nothing is gained by dropping).
    let (source, paced) = match (&args.replay, &board.replay, &board.camera) {
        (Some(path), _, _) => {
            let replay = ReplaySection {
                path: path.clone(),
                fps: args.fps,
                looping: args.r#loop,
            };
            replay
                .validate()
                .map_err(|(key, problem)| anyhow::anyhow!("--replay/--fps ({key}) {problem}"))?;
            (replay.open()?, args.fps.is_some())
        }
        (None, Some(replay), _) => (replay.open()?, replay.fps.is_some()),
        (None, None, Some(camera)) => (open_camera(camera)?, true),
        (None, None, None) => bail!(
            "{}: no frame source: add a [camera] or [replay] section, or pass --replay PATH",
            args.config.display()
        ),
    };
    let d = &board.detector;
    // Resolved: every `unwrap_or_default` below only satisfies the type.
    let model = d.model.as_deref().unwrap_or_default();
    let mut detector = YoloDetector::load(
        ModelChoice::resolve(model),
        d.input_size.map(|[w, h]| (w, h)),
        &EngineOptions {
            threads: d.threads.unwrap_or_default(),
            precision: d.precision.unwrap_or_default(),
        },
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
    let hooks = open_gpio(&board, detector.class_names(), &args)?;
    let device_id = board.board.device_id.unwrap_or(0);
    let sink_args = SinkArgs {
        serial: args.serial.as_deref(),
        baud: args.baud,
        mqtt: args.mqtt.as_deref(),
        // A service waits for its adapter, as for its camera.
        wait_for_serial: true,
    };
    let sinks = open_sinks(&sink_args, &board, device_id)?
        .into_iter()
        .map(|s| NamedSink {
            name: s.name.to_string(),
            publisher: s.publisher,
            drain_timeout: Duration::from_secs(5),
        })
        .collect();
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
    let quiet = args.quiet;
    let on_frame = Box::new(move |report: Report<'_>| {
        if !quiet {
            if let Ok(line) = serde_json::to_string(&report) {
                println!("{line}");
            }
        }
    });
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

//! `lookout run`: the main job on a robot. Reads a board config, opens its frame source
//! (`[camera]`, or `[replay]` / `--replay` on any host), loads the detector, and runs the live
//! pipeline (capture → infer → track → publish) until the source ends, a limit is reached or
//! SIGINT/SIGTERM arrives; then flushes the sinks, says `offline`, and prints a summary.

use super::detect::{open_sinks, resolve_classes, SinkArgs};
use super::{
    default_threads, DEFAULT_LIDAR_BATCH, DEFAULT_MASK_FRAME_BYTES, DEFAULT_MAX_MASKS,
    DEFAULT_MODEL, DEFAULT_SAM_MODEL,
};
use anyhow::{bail, Context};
use lookout::branch::lidar::LidarBranch;
use lookout::branch::segment::SegmenterBranch;
use lookout::config::BoardConfig;
use lookout::decode::yolo::DecodeParams;
use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier, DEFAULT_POINT_MODEL};
use lookout::infer::sam::{SamModelPaths, SamSegmenter, SegmentBudget};
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::EngineOptions;
use lookout::pipeline::{self, Branches, FrameInput, NamedSink, PipelineOptions, Report};
use lookout::source::camera::{open_camera, ReplaySection};
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
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// With --replay: frames per second (default: as fast as possible).
    #[arg(long)]
    pub fps: Option<f64>,
    /// With --replay: start over at the end.
    #[arg(long)]
    pub r#loop: bool,
    /// Stop after this many processed frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Publish on this serial device too.
    #[arg(long)]
    pub serial: Option<String>,
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Publish to this MQTT broker (overrides the config's mqtt.url).
    #[arg(long)]
    pub mqtt: Option<String>,
    /// Seconds between status messages.
    #[arg(long, default_value_t = 5.0)]
    pub status_interval: f64,
    /// Do not print a JSON line per frame.
    #[arg(long)]
    pub quiet: bool,
}

/// Set by SIGINT/SIGTERM: the pipeline finishes the frame in hand, then shuts down cleanly.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handlers")?;
    }
    Ok(stop)
}

pub fn run(args: RunArgs) -> anyhow::Result<bool> {
    let board = BoardConfig::load(&args.config)?;
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
    let model = d.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let mut detector = YoloDetector::load(
        ModelChoice::resolve(model),
        d.input_size.map(|[w, h]| (w, h)),
        &EngineOptions {
            threads: d.threads.unwrap_or_else(default_threads).max(1),
            precision: d.precision.unwrap_or_default(),
        },
    )?;
    let origin = format!("detector.classes of {}", args.config.display());
    let defaults = DecodeParams::default();
    let params = DecodeParams {
        conf_threshold: d.conf.unwrap_or(defaults.conf_threshold),
        iou_threshold: d.iou.unwrap_or(defaults.iou_threshold),
        max_det: d.max_det.unwrap_or(defaults.max_det),
        agnostic: d.agnostic.unwrap_or(false),
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
        status_interval: Duration::from_secs_f64(args.status_interval.max(0.1)),
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
    let summary = pipeline::run(
        source,
        &mut detector,
        Tracker::new(board.tracker),
        sinks,
        hooks,
        branches,
        &options,
        &stop,
        on_frame,
    )?;
    eprintln!("{}", serde_json::to_string(&summary)?);
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
    let prefix = s.model.as_deref().unwrap_or(DEFAULT_SAM_MODEL);
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
            max_masks: s.max_masks.unwrap_or(DEFAULT_MAX_MASKS),
            classes: resolve_classes(
                s.classes.as_deref().unwrap_or_default(),
                class_names,
                &origin,
            )?,
            time_budget: s.budget_ms.map(|ms| Duration::from_secs_f64(ms / 1e3)),
        },
        mask_frame_bytes: s.mask_frame_bytes.unwrap_or(DEFAULT_MASK_FRAME_BYTES),
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
            "{}: [lidar] names no sensor: set lidar.address (a live Velodyne, e.g. \"0.0.0.0:2368\") or lidar.replay (a pcap capture)",
            args.config.display()
        );
    };
    let source = lookout::source::lidar::open(&input)?;
    let spec = section.classifier.as_deref().unwrap_or(DEFAULT_POINT_MODEL);
    let classifier = PointNetClassifier::load(
        &PointModelChoice::resolve(spec),
        section.batch.unwrap_or(DEFAULT_LIDAR_BATCH),
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

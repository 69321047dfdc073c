//! `lookout record`: raw frames from a camera (or a replay) into a `.lkraw` recording, bit for
//! bit, to replay later on any host with `[replay] path = "...lkraw"`.

use anyhow::{bail, Context};
use lookout::config::BoardConfig;
use lookout::source::camera::CameraSection;
use lookout::source::recording::RecordingWriter;
use lookout::source::{monotonic_us, open_camera, FrameSource};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// Where to write the recording (conventionally `*.lkraw`).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: u64,
    /// Board config whose `[camera]` (or `[replay]`) section says what to record.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Camera device (overrides the config's).
    #[arg(long)]
    pub device: Option<String>,
    /// Pixel format: YUYV, MJPEG, NV12 or RGB3.
    #[arg(long)]
    pub format: Option<String>,
    /// Frame size WIDTHxHEIGHT.
    #[arg(long, value_parser = super::parse_size)]
    pub size: Option<(u32, u32)>,
    #[arg(long)]
    pub fps: Option<u32>,
}

fn open_source(args: &RecordArgs) -> anyhow::Result<Box<dyn FrameSource + Send>> {
    let config = match &args.config {
        Some(path) => BoardConfig::load(path)?,
        None => BoardConfig::default(),
    };
    let overridden = args.device.is_some() || args.format.is_some() || args.size.is_some();
    if config.camera.is_none() && !overridden {
        if let Some(replay) = &config.replay {
            return Ok(replay.open()?);
        }
        bail!("nothing to record: give --device (e.g. /dev/video0) or a --config with a [camera] section");
    }
    let mut camera = config.camera.unwrap_or(CameraSection::v4l2(""));
    if let Some(device) = &args.device {
        camera.device = device.clone();
    }
    if let Some(format) = &args.format {
        camera.format = Some(format.clone());
    }
    if let Some((w, h)) = args.size {
        (camera.width, camera.height) = (w, h);
    }
    if let Some(fps) = args.fps {
        camera.fps = fps;
    }
    if let Err((key, problem)) = camera.validate() {
        bail!("{key} {problem}");
    }
    Ok(open_camera(&camera)?)
}

pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let mut source = open_source(&args)?;
    log::info!("recording {} frames of {}", args.frames, source.describe());
    let mut writer = RecordingWriter::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let (mut transient, mut max_age_us) = (0u64, 0u64);
    while writer.frames() < args.frames {
        match source.next_frame() {
            Ok(Some(frame)) => {
                max_age_us = max_age_us.max(monotonic_us().saturating_sub(frame.timestamp_us));
                writer
                    .write(&frame)
                    .with_context(|| format!("cannot write {}", args.out.display()))?;
            }
            Ok(None) => break,
            Err(e) if e.is_transient() => {
                transient += 1;
                log::debug!("{e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let frames = writer.frames();
    writer
        .finish()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "out": args.out,
            "frames": frames,
            "transient_errors": transient,
            "max_age_ms": max_age_us as f64 / 1000.0,
        })
    );
    Ok(())
}

//! `lookout check --config FILE`: validates a board config and prints it resolved, every
//! default filled in, as the commands that read it would run it. Then it checks what a
//! config cannot say about itself: that the files it names exist, that the models load, that
//! this build has the features the sections need. Problems go to stderr with their fix; the
//! exit status is 1 if there was any, so deploy scripts can run it before restarting the
//! service.

use anyhow::Context;
use lookout::config::BoardConfig;
use lookout::infer::pointnet::{PointModelChoice, PointNetClassifier};
use lookout::infer::sam::{SamModelPaths, SamSegmenter};
use lookout::infer::yolo::{ModelChoice, YoloDetector};
use lookout::infer::EngineOptions;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Board config to check (board-configs/*.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Resolve and check files only; do not load the models (faster on a small board).
    #[arg(long)]
    pub no_load: bool,
}

/// What is wrong, and how to fix it.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    fn file(&mut self, key: &str, path: &Path, fix: &str) {
        if !path.exists() {
            self.add(format!("{key}: {} does not exist; {fix}", path.display()));
        }
    }
}

pub fn run(args: CheckArgs) -> anyhow::Result<bool> {
    let board = BoardConfig::load(&args.config)?;
    let mut problems = Problems(Vec::new());
    let resolved = resolve(&board, &mut problems);
    let mut table = toml::Table::try_from(&resolved).context("cannot print the resolved config")?;

    let d = &resolved.detector;
    let model = d.model.as_deref().unwrap_or_default();
    let choice = ModelChoice::resolve(model);
    let mut facts = vec![format!("detector model file: {}", choice.path.display())];
    problems.file(
        "detector.model",
        &choice.path,
        &format!("run `models/fetch {model}` or give a path to an .onnx file"),
    );
    if let Some(path) = &d.names {
        problems.file(
            "detector.names",
            path,
            "give a file with one class name per line",
        );
    }
    if !args.no_load && choice.path.exists() {
        match YoloDetector::load(
            choice,
            d.input_size.map(|[w, h]| (w, h)),
            &EngineOptions {
                threads: 1,
                precision: d.precision.unwrap_or_default(),
                ..EngineOptions::default()
            },
        ) {
            Ok(mut detector) => {
                if let Err(e) = super::classes::apply_names_file(
                    &mut detector,
                    d.names.as_deref().filter(|p| p.exists()),
                    "detector.names",
                ) {
                    problems.add(e.to_string());
                }
                let (w, h) = detector.input_size();
                insert(&mut table, "detector", "input_size", [w, h]);
                facts.push(format!(
                    "detector: {} classes, {}x{} input, {} kernels",
                    detector.class_names().len(),
                    w,
                    h,
                    detector
                        .engine()
                        .matmul_kernels()
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                let names = detector.class_names();
                for (key, list) in [
                    ("detector.classes", d.classes.as_deref()),
                    (
                        "gpio.alert_classes",
                        board.gpio.as_ref().map(|g| &g.alert_classes[..]),
                    ),
                    ("segmenter.classes", board.segmenter.classes.as_deref()),
                ] {
                    for class in list.unwrap_or_default() {
                        let known = names.iter().any(|n| n == class)
                            || class.parse::<usize>().is_ok_and(|i| i < names.len());
                        if !known {
                            problems.add(format!(
                                "{key}: '{class}' is not a class of {model} (its classes: {}...)",
                                names[..names.len().min(8)].join(", ")
                            ));
                        }
                    }
                }
            }
            Err(e) => problems.add(format!("detector.model: {e}")),
        }
    }
    if board.segmenter.enabled == Some(true) {
        let prefix = resolved.segmenter.model.as_deref().unwrap_or_default();
        let precision = resolved.segmenter.precision.unwrap_or_default();
        let paths = SamModelPaths::from_prefix(prefix).for_precision(precision);
        let fix = paths.missing_fix(precision);
        problems.file("segmenter.model", &paths.encoder, &fix);
        problems.file("segmenter.model", &paths.decoder, &fix);
        if !args.no_load && paths.encoder.exists() && paths.decoder.exists() {
            let options = EngineOptions {
                threads: 1,
                precision,
                ..EngineOptions::default()
            };
            match SamSegmenter::load(&paths, &options) {
                Ok(sam) => facts.push(format!(
                    "segmenter: encoder {} ({}), decoder {} ({})",
                    paths.encoder.display(),
                    sam.precision().name(),
                    paths.decoder.display(),
                    sam.decoder_precision().name()
                )),
                Err(e) => problems.add(format!("segmenter.model: {e}")),
            }
        }
    }
    if let Some(lidar) = &resolved.lidar {
        let spec = lidar.classifier.as_deref().unwrap_or_default();
        let choice = PointModelChoice::resolve(spec);
        if !args.no_load {
            if let Err(e) = PointNetClassifier::load(
                &choice,
                lidar.batch.unwrap_or(1),
                None,
                &EngineOptions::threads(1),
            ) {
                problems.add(format!("lidar.classifier: {e}"));
            }
        }
        if let Some(path) = &lidar.replay {
            problems.file("lidar.replay", path, "give the path of a pcap capture");
        }
        if lidar.address.is_none() && lidar.replay.is_none() {
            problems.add("lidar: names no sensor; set lidar.address (a live Velodyne, e.g. \"0.0.0.0:2368\") or lidar.replay (a pcap capture)");
        }
    }
    check_sources_and_features(&board, &mut problems);

    tidy_floats(&mut table);
    // The printout is itself a valid config (facts that are not settings are comments).
    println!("# {}: resolved (defaults filled in)", args.config.display());
    for fact in &facts {
        println!("# {fact}");
    }
    print!("{}", toml::to_string(&table)?);
    for p in &problems.0 {
        eprintln!("problem: {p}");
    }
    if problems.0.is_empty() {
        eprintln!("{}: ok", args.config.display());
    }
    Ok(problems.0.is_empty())
}

/// The config as `lookout run` resolves it (the library's [`BoardConfig::resolved`]), with the
/// MQTT section resolved the way its sink does.
fn resolve(board: &BoardConfig, problems: &mut Problems) -> BoardConfig {
    let resolved = board.resolved();
    for note in resolved.notes {
        eprintln!("note: {note}");
    }
    let mut r = resolved.config;
    if let Some(m) = r.mqtt.as_mut() {
        resolve_mqtt(m, board.board.device_id.unwrap_or(0), problems);
    }
    r
}

#[cfg(feature = "mqtt")]
fn resolve_mqtt(m: &mut lookout::config::MqttSection, device_id: u16, problems: &mut Problems) {
    use lookout::sink::mqtt::MqttConfig;
    // `lookout run --mqtt URL` may give the broker instead; resolve the rest without one.
    let stand_in = m.url.is_none().then_some("mqtt://127.0.0.1:1883");
    if stand_in.is_some() {
        eprintln!("note: mqtt.url is not set: `lookout run` needs --mqtt mqtt://host:port");
    }
    // The same resolution `lookout run` does, the password read included (never printed).
    match MqttConfig::from_section(m, stand_in, device_id) {
        Ok(c) => {
            m.client_id = Some(c.client_id);
            m.topic_prefix = Some(c.topic_prefix);
            m.qos = Some(c.qos);
            m.keep_alive_s = Some(c.keep_alive.as_secs() as u16);
            m.queue_size = Some(c.queue_size);
            m.payload = Some(c.payload);
            m.persistent_session = Some(c.persistent_session);
            m.reconnect_max_s = Some(c.reconnect_max.as_secs_f64());
        }
        Err(e) => problems.add(format!("mqtt: {e}")),
    }
    for (key, path) in [
        ("mqtt.ca_file", &m.ca_file),
        ("mqtt.client_cert_file", &m.client_cert_file),
        ("mqtt.client_key_file", &m.client_key_file),
    ] {
        if let Some(path) = path {
            problems.file(key, path, "give the path of a PEM file");
        }
    }
}

#[cfg(not(feature = "mqtt"))]
fn resolve_mqtt(_: &mut lookout::config::MqttSection, _: u16, problems: &mut Problems) {
    problems.add(format!("mqtt: {}", super::sinks::NO_MQTT));
}

/// Frame sources that exist, and features this build has for the sections present.
fn check_sources_and_features(board: &BoardConfig, problems: &mut Problems) {
    if let Some(replay) = &board.replay {
        problems.file(
            "replay.path",
            &replay.path,
            "give an image, a directory of images or a .lkraw recording",
        );
    }
    if let Some(camera) = &board.camera {
        use lookout::source::camera::CameraKind;
        match camera.source {
            CameraKind::V4l2 if !cfg!(feature = "v4l") => {
                problems.add("camera: this lookout was built without V4L2 support: rebuild with `--features v4l` (or `--features pi`), or read the camera through source = \"rpicam\" or \"command\"");
            }
            CameraKind::V4l2 if !Path::new(&camera.device).exists() => {
                // Not fatal for the service (it waits for the camera), but worth knowing now.
                eprintln!(
                    "note: camera.device {} is not present now; `lookout run` waits for it (`lookout devices` lists cameras)",
                    camera.device
                );
            }
            CameraKind::Rpicam => {
                if let Err(e) = lookout::source::command::rpicam_argv(camera) {
                    eprintln!("note: camera.source = \"rpicam\": {e}");
                }
            }
            _ => {}
        }
    }
    if board.camera.is_none() && board.replay.is_none() {
        eprintln!("note: no [camera] or [replay] section: `lookout run` needs --replay PATH");
    }
    if board.gpio.is_some() && !cfg!(feature = "rpi") {
        problems.add(format!("gpio: {}", lookout::gpio::GpioError::NotCompiled));
    }
}

/// Adds `key = value` to `[section]` of the printed table.
fn insert(table: &mut toml::Table, section: &str, key: &str, value: impl serde::Serialize) {
    let Ok(value) = toml::Value::try_from(value) else {
        return;
    };
    if let Some(toml::Value::Table(t)) = table.get_mut(section) {
        t.insert(key.to_string(), value);
    }
}

/// Most settings are f32: print 0.7, not its nearest f64 0.699999988079071.
fn tidy_floats(table: &mut toml::Table) {
    fn tidy(value: &mut toml::Value) {
        match value {
            toml::Value::Float(f) => {
                if let Ok(short) = (*f as f32).to_string().parse::<f64>() {
                    if (short - *f).abs() <= f.abs() * 1e-6 {
                        *f = short;
                    }
                }
            }
            toml::Value::Array(items) => items.iter_mut().for_each(tidy),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| tidy(v)),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, v)| tidy(v));
}

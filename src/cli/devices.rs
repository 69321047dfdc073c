//! `lookout devices`: the V4L2 cameras this machine has, with every format, size and frame
//! rate each offers, and a `[camera]` section to paste into a board config. A Raspberry Pi
//! camera module is not a V4L2 capture device on current Pi OS (libcamera drives it), so on a
//! Pi the command points at the `rpicam` source instead.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Device nodes to describe (default: every /dev/video*).
    pub devices: Vec<PathBuf>,
    /// One JSON object per device instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg_attr(feature = "v4l", allow(dead_code))]
pub const NO_V4L: &str = "this lookout was built without V4L2 camera support: rebuild with `cargo build --release --features v4l` (or `--features pi`); a Raspberry Pi camera module needs no feature: `[camera] source = \"rpicam\"`";

/// Drivers of the Pi's camera receivers and ISPs: their nodes are libcamera's plumbing, not
/// cameras lookout can stream from.
#[cfg_attr(not(feature = "v4l"), allow(dead_code))]
const PI_CAMERA_DRIVERS: [&str; 5] = [
    "unicam",
    "rp1-cfe",
    "bcm2835-isp",
    "pispbe",
    "bcm2835-codec",
];

/// What to tell someone on a Raspberry Pi whose camera module is not a V4L2 camera.
#[cfg_attr(not(feature = "v4l"), allow(dead_code))]
const RPICAM_HINT: &str = "a Raspberry Pi camera module (ribbon cable) is read through libcamera: set `[camera] source = \"rpicam\"` (lookout runs rpicam-vid; `rpicam-hello --list-cameras` shows the module), see docs/cameras.md";

#[cfg_attr(not(feature = "v4l"), allow(dead_code))]
fn on_raspberry_pi() -> bool {
    std::fs::read_to_string("/proc/device-tree/model").is_ok_and(|m| m.contains("Raspberry Pi"))
}

#[cfg(not(feature = "v4l"))]
pub fn run(_args: DevicesArgs) -> anyhow::Result<bool> {
    anyhow::bail!("{NO_V4L}")
}

#[cfg(feature = "v4l")]
pub fn run(args: DevicesArgs) -> anyhow::Result<bool> {
    use lookout::source::v4l2::list_devices;
    let results = list_devices(&args.devices);
    if results.is_empty() {
        if on_raspberry_pi() {
            anyhow::bail!("no /dev/video* devices: is a USB camera plugged in? {RPICAM_HINT}");
        }
        anyhow::bail!("no /dev/video* devices: is the USB camera plugged in? (`lsusb` lists it; `dmesg` says why a driver refused it)");
    }
    let mut pi_camera_nodes = 0;
    let mut all_ok = true;
    let mut suggestion = None;
    for result in results {
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                eprintln!("error: {e}");
                all_ok = false;
                continue;
            }
        };
        if PI_CAMERA_DRIVERS.contains(&info.driver.as_str()) {
            pi_camera_nodes += 1;
        }
        if args.json {
            println!("{}", serde_json::to_string(&info)?);
            continue;
        }
        println!(
            "{}  {} ({}, {})",
            info.path.display(),
            info.card,
            info.driver,
            info.bus
        );
        for link in &info.links {
            println!("  link: {}", link.display());
        }
        if !info.capture {
            println!("  not a video capture node");
        }
        for format in &info.formats {
            let note = if format.supported {
                ""
            } else {
                "  (lookout cannot convert this)"
            };
            println!("  {}  {}{note}", format.fourcc, format.description);
            for size in &format.sizes {
                let rates: Vec<String> = size.fps.iter().map(|f| format!("{f:.0}")).collect();
                println!("    {:<12} {} fps", size.size, rates.join(", "));
                if suggestion.is_none() && format.supported {
                    if let (Some((w, h)), Some(fps)) = (size.size.split_once('x'), size.fps.first())
                    {
                        let device = info.links.first().unwrap_or(&info.path);
                        suggestion = Some(format!(
                            "[camera]\ndevice = \"{}\"\nformat = \"{}\"\nwidth = {w}\nheight = {h}\nfps = {fps:.0}",
                            device.display(),
                            format.fourcc
                        ));
                    }
                }
            }
        }
    }
    if let Some(s) = suggestion.filter(|_| !args.json) {
        println!("\nFor a board config, e.g.:\n{s}");
    }
    if pi_camera_nodes > 0 {
        eprintln!("note: {pi_camera_nodes} of these nodes belong to the Pi's camera pipeline, not to a camera lookout can open: {RPICAM_HINT}");
    }
    Ok(all_ok)
}

#[cfg(all(test, not(feature = "v4l")))]
mod tests {
    use super::*;

    #[test]
    fn devices_without_the_feature_names_the_feature_to_enable() {
        let err = run(DevicesArgs {
            devices: Vec::new(),
            json: false,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--features v4l") && err.contains("rpicam"),
            "{err}"
        );
    }
}

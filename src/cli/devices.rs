//! `lookout devices`: the V4L2 cameras this machine has, with every format, size and frame
//! rate each offers, and a `[camera]` section to paste into a board config.

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
pub const NO_V4L: &str = "this lookout was built without camera support: rebuild with `cargo build --release --features v4l` (or `--features pi`)";

#[cfg(not(feature = "v4l"))]
pub fn run(_args: DevicesArgs) -> anyhow::Result<bool> {
    anyhow::bail!("{NO_V4L}")
}

#[cfg(feature = "v4l")]
pub fn run(args: DevicesArgs) -> anyhow::Result<bool> {
    use lookout::source::v4l2::list_devices;
    let results = list_devices(&args.devices);
    if results.is_empty() {
        anyhow::bail!("no /dev/video* devices: is the camera plugged in (and, on a Pi, enabled)?");
    }
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
        assert!(err.contains("--features v4l"), "{err}");
    }
}

//! What the board itself says about its health: SoC temperature from the kernel's thermal
//! zones, CPU frequency, and on Raspberry Pis the firmware's throttling flags
//! (`vcgencmd get_throttled`). Status messages and `lookout bench` report them, because a board
//! that throttles runs inference slower than the numbers it was benchmarked with.
//!
//! Readers take the sysfs root as a parameter so the parsing is tested on files laid out like
//! the kernel's; on a host without thermal zones everything is simply `None`.

use std::path::Path;
use std::process::Command;

/// One reading of the board's health.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Health {
    /// Hottest CPU/SoC thermal zone, °C.
    pub temperature_c: Option<f32>,
    /// Current frequency of CPU 0, MHz.
    pub cpu_mhz: Option<u32>,
    /// Raw `vcgencmd get_throttled` bits (Raspberry Pi firmware); `None` elsewhere.
    pub throttled: Option<u32>,
}

impl Health {
    /// Reads the running system (`/sys`, `vcgencmd` when installed).
    pub fn read() -> Health {
        Health {
            temperature_c: temperature_c(Path::new("/sys")),
            cpu_mhz: cpu_mhz(Path::new("/sys")),
            throttled: vcgencmd_throttled(),
        }
    }

    /// Temperature as a status message carries it: hundredths of °C.
    pub fn temperature_centi_c(&self) -> Option<i16> {
        self.temperature_c
            .map(|t| (t * 100.0).round().clamp(i16::MIN as f32, i16::MAX as f32) as i16)
    }
}

/// The hottest thermal zone whose type names the CPU or SoC (`cpu-thermal` on a Pi,
/// `cpu-thermal`/`soc-thermal` on Jetsons, `x86_pkg_temp` on PCs); any zone if none does.
pub fn temperature_c(sysfs: &Path) -> Option<f32> {
    let zones = std::fs::read_dir(sysfs.join("class/thermal")).ok()?;
    let mut cpu = None::<f32>;
    let mut any = None::<f32>;
    for zone in zones.flatten() {
        let name = zone.file_name();
        if !name.to_string_lossy().starts_with("thermal_zone") {
            continue;
        }
        let millidegrees: Option<i64> = std::fs::read_to_string(zone.path().join("temp"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let Some(t) = millidegrees.map(|m| m as f32 / 1000.0) else {
            continue;
        };
        let kind = std::fs::read_to_string(zone.path().join("type")).unwrap_or_default();
        let kind = kind.trim().to_ascii_lowercase();
        if kind.contains("cpu") || kind.contains("soc") || kind.contains("pkg") {
            cpu = Some(cpu.map_or(t, |c| c.max(t)));
        }
        any = Some(any.map_or(t, |a| a.max(t)));
    }
    cpu.or(any)
}

pub fn cpu_mhz(sysfs: &Path) -> Option<u32> {
    let khz: u64 =
        std::fs::read_to_string(sysfs.join("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
    Some((khz / 1000) as u32)
}

/// Runs `vcgencmd get_throttled` when the Pi firmware tool is installed (on `PATH`). Elsewhere
/// no process is started: `lookout run` reads health while its inference threads run, and a
/// process started from a threaded program is the one place where an emulator (qemu user mode,
/// the aarch64 test suite) was seen to hang a child before it could exec.
pub fn vcgencmd_throttled() -> Option<u32> {
    let installed = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("vcgencmd").is_file()));
    if !installed {
        return None;
    }
    let out = Command::new("vcgencmd")
        .arg("get_throttled")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_throttled(&String::from_utf8_lossy(&out.stdout)))
        .flatten()
}

/// Parses `throttled=0x50005`.
pub fn parse_throttled(text: &str) -> Option<u32> {
    let hex = text.trim().strip_prefix("throttled=")?;
    u32::from_str_radix(hex.trim_start_matches("0x"), 16).ok()
}

/// The firmware's throttling bits in words (bits 0-3: now; 16-19: since boot).
pub fn describe_throttled(bits: u32) -> Vec<&'static str> {
    const FLAGS: [(u32, &str); 8] = [
        (0, "under-voltage now"),
        (1, "ARM frequency capped now"),
        (2, "throttled now"),
        (3, "soft temperature limit now"),
        (16, "under-voltage has occurred"),
        (17, "ARM frequency capping has occurred"),
        (18, "throttling has occurred"),
        (19, "soft temperature limit has occurred"),
    ];
    FLAGS
        .iter()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn zone(root: &Path, n: usize, kind: &str, millidegrees: &str) {
        let dir = root.join(format!("class/thermal/thermal_zone{n}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("type"), format!("{kind}\n")).unwrap();
        fs::write(dir.join("temp"), format!("{millidegrees}\n")).unwrap();
    }

    #[test]
    fn cpu_zones_win_over_hotter_unrelated_ones() {
        let root = std::env::temp_dir().join(format!("lookout-health-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        zone(&root, 0, "cpu-thermal", "61850");
        zone(&root, 1, "gpu-thermal", "70000");
        zone(&root, 2, "soc-thermal", "broken");
        fs::create_dir_all(root.join("devices/system/cpu/cpu0/cpufreq")).unwrap();
        fs::write(
            root.join("devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"),
            "1500000\n",
        )
        .unwrap();
        assert_eq!(temperature_c(&root), Some(61.85));
        assert_eq!(cpu_mhz(&root), Some(1500));
        let h = Health {
            temperature_c: Some(61.85),
            ..Health::default()
        };
        assert_eq!(h.temperature_centi_c(), Some(6185));
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(temperature_c(&root), None);
    }

    #[test]
    fn throttled_flags_read_like_the_firmware_documents_them() {
        assert_eq!(parse_throttled("throttled=0x50005\n"), Some(0x50005));
        assert_eq!(parse_throttled("throttled=0x0"), Some(0));
        assert_eq!(parse_throttled("error"), None);
        assert_eq!(
            describe_throttled(0x50005),
            vec![
                "under-voltage now",
                "throttled now",
                "under-voltage has occurred",
                "throttling has occurred"
            ]
        );
    }
}

//! Class filters as people write them: names or ids, checked against the model's class names,
//! with a "did you mean" for a misspelt name. Shared by `--classes`, `[segmenter] classes` and
//! `[gpio] alert_classes`.

use anyhow::{bail, Context};
use std::path::Path;

/// Reads a class-names file (`--names`, `detector.names`): one name per line (blank lines and
/// `#` comments skipped), or Ultralytics' `{0: 'name', ...}` as its metadata writes it.
pub fn read_names_file(path: &Path, origin: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{origin}: cannot read {}", path.display()))?;
    if text.trim_start().starts_with('{') {
        return lookout::infer::onnx_metadata::ultralytics_names(&text).with_context(|| {
            format!(
                "{origin}: {} is not a {{0: 'name', ...}} table with ids 0..n",
                path.display()
            )
        });
    }
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        bail!(
            "{origin}: {} names no class: write one class name per line",
            path.display()
        );
    }
    Ok(names)
}

/// Applies `--names`/`detector.names` to a loaded detector.
pub fn apply_names_file(
    detector: &mut lookout::infer::yolo::YoloDetector,
    path: Option<&Path>,
    origin: &str,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        let names = read_names_file(path, origin)?;
        detector
            .set_class_names(names)
            .map_err(|e| anyhow::anyhow!("{origin}: {} {e}", path.display()))?;
    }
    Ok(())
}

/// Levenshtein distance, for "did you mean" hints on class names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Resolves class filter entries (names or ids) against the model's class names; `origin`
/// names where they came from (`--classes`, or the config key) for error messages.
pub fn resolve_classes(
    wanted: &[String],
    names: &[String],
    origin: &str,
) -> anyhow::Result<Option<Vec<usize>>> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::new();
    for w in wanted.iter().map(|w| w.trim()).filter(|w| !w.is_empty()) {
        if let Some(id) = names.iter().position(|n| n.eq_ignore_ascii_case(w)) {
            ids.push(id);
        } else if let Ok(id) = w.parse::<usize>() {
            if id >= names.len() {
                bail!(
                    "class id {id} in {origin} is out of range: the model has {} classes (0..{})",
                    names.len(),
                    names.len() - 1
                );
            }
            ids.push(id);
        } else {
            let closest = names
                .iter()
                .min_by_key(|n| edit_distance(&w.to_lowercase(), n));
            let hint = closest.map_or(String::new(), |c| format!(" (did you mean '{c}'?)"));
            bail!("unknown class '{w}' in {origin}: not one of the model's {} class names{hint}; `lookout info --classes` lists them", names.len());
        }
    }
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["person", "bicycle", "dog"].map(String::from).to_vec()
    }

    #[test]
    fn classes_resolve_by_name_or_id() {
        let got = resolve_classes(&["Dog".into(), "1".into()], &names(), "--classes").unwrap();
        assert_eq!(got, Some(vec![2, 1]));
        assert_eq!(resolve_classes(&[], &names(), "--classes").unwrap(), None);
    }

    #[test]
    fn unknown_class_names_the_closest_one() {
        let err = resolve_classes(&["dgo".into()], &names(), "--classes")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown class 'dgo'") && err.contains("did you mean 'dog'"),
            "{err}"
        );
        let err = resolve_classes(&["7".into()], &names(), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}

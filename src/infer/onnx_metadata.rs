//! The `metadata_props` of an ONNX file, read straight from the protobuf bytes: Ultralytics
//! exports carry their class names there (`names`), with `imgsz`, `stride` and `task`. Only the
//! top-level fields are walked and the graph (field 7, the weights) is skipped by its length,
//! so reading them costs microseconds, not a second parse of the model.

use std::collections::BTreeMap;

/// `ModelProto.metadata_props` (repeated `StringStringEntryProto`, field 14).
const METADATA_PROPS: u64 = 14;

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Walks one message's fields, calling `field(number, payload)` for length-delimited ones.
/// Returns None when the bytes are not a well-formed message.
fn fields<'a>(bytes: &'a [u8], mut field: impl FnMut(u64, &'a [u8])) -> Option<()> {
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
            }
            1 => at = at.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|&e| e <= bytes.len())?;
                field(key >> 3, &bytes[at..end]);
                at = end;
            }
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
    }
    (at == bytes.len()).then_some(())
}

/// The file's metadata as key → value (a later entry wins). Empty when there is none or the
/// bytes are not ONNX (the model loader reports that, with the reason).
pub fn metadata_props(model: &[u8]) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    let _ = fields(model, |number, entry| {
        if number != METADATA_PROPS {
            return;
        }
        let (mut key, mut value) = (None, None);
        let _ = fields(entry, |n, text| match n {
            1 => key = std::str::from_utf8(text).ok(),
            2 => value = std::str::from_utf8(text).ok(),
            _ => {}
        });
        if let (Some(k), Some(v)) = (key, value) {
            props.insert(k.to_string(), v.to_string());
        }
    });
    props
}

/// Parses Ultralytics' `names`, a Python dict literal such as `{0: 'person', 1: "dog's"}`,
/// into names by class id. None unless the ids are exactly 0..n.
pub fn ultralytics_names(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut by_id = BTreeMap::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let colon = rest.find(':')?;
        let id: usize = rest[..colon].trim().parse().ok()?;
        rest = rest[colon + 1..].trim_start();
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let mut name = String::new();
        let mut chars = rest[1..].char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => name.push(chars.next()?.1),
                c if c == quote => break i + 2,
                c => name.push(c),
            }
        };
        by_id.insert(id, name);
        rest = rest[end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    let names: Vec<String> = by_id.values().cloned().collect();
    (by_id.keys().copied().eq(0..names.len()) && !names.is_empty()).then_some(names)
}

/// Appends one metadata entry to ONNX bytes: valid protobuf (repeated fields concatenate), and
/// it wins over an earlier entry with the same key. For making renamed-class model copies.
pub fn append_metadata(model: &mut Vec<u8>, key: &str, value: &str) {
    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut entry = Vec::new();
    for (number, text) in [(1u64, key), (2, value)] {
        put_varint(&mut entry, number << 3 | 2);
        put_varint(&mut entry, text.len() as u64);
        entry.extend_from_slice(text.as_bytes());
    }
    put_varint(model, METADATA_PROPS << 3 | 2);
    put_varint(model, entry.len() as u64);
    model.extend_from_slice(&entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dict_names_parse_with_both_quotes_and_escapes() {
        let names = ultralytics_names(r#"{0: 'person', 1: "dog's bowl", 2: 'a\'b'}"#).unwrap();
        assert_eq!(names, ["person", "dog's bowl", "a'b"]);
        assert_eq!(ultralytics_names("{}"), None);
        assert_eq!(ultralytics_names("{1: 'gap'}"), None, "ids must start at 0");
        assert_eq!(ultralytics_names("{0: 'x', 0: 'y'}").unwrap(), ["y"]);
        assert_eq!(ultralytics_names("[0, 1]"), None);
    }

    #[test]
    fn appended_metadata_is_read_back_and_wins() {
        // A ModelProto with ir_version (field 1, varint) and one metadata entry.
        let mut model = vec![0x08, 0x07];
        append_metadata(&mut model, "names", "{0: 'a'}");
        append_metadata(&mut model, "stride", "32");
        append_metadata(&mut model, "names", "{0: 'b'}");
        let props = metadata_props(&model);
        assert_eq!(props["names"], "{0: 'b'}");
        assert_eq!(props["stride"], "32");
        assert!(metadata_props(b"\xff\xff\xff").is_empty());
    }
}

//! Dequantizing a QDQ file's weights before tract parses it.
//!
//! A QDQ file stores each weight as an int8 constant behind a `DequantizeLinear`. tract folds
//! those while it declutters, through its generic broadcasting ops (cast, subtract the zero
//! point, multiply by the per-channel scale), one dynamically dispatched element at a time:
//! ~0.99 G of the ~2.1 G instructions a Cortex-A76 spent loading and optimising YOLO11n int8.
//! Here the same arithmetic, in the same order and in f32 (so the values are bit for bit
//! tract's), runs in one loop over the ONNX initializers, and the `DequantizeLinear` becomes
//! an f32 initializer. The integer pass later reads the int8 weights back from exactly these
//! values (`int8::weights`).

use std::collections::{HashMap, HashSet};

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

/// Replaces every `DequantizeLinear` of an initializer by its f32 result, as an initializer of
/// the same name. Returns how many it replaced; anything it does not recognise (external
/// data, a computed input, an unusual type or shape) is left for tract.
pub fn dequantize_initializers(graph: &mut GraphProto) -> usize {
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut folded = Vec::new();
    let mut removed = vec![false; graph.node.len()];
    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type != "DequantizeLinear"
            || !(node.domain.is_empty() || node.domain == "ai.onnx")
            || node.output.len() != 1
            || outputs.contains(&node.output[0].as_str())
        {
            continue;
        }
        if let Some(tensor) = dequantized(&initializers, node) {
            folded.push(tensor);
            removed[i] = true;
        }
    }
    drop(initializers);
    let count = folded.len();
    // The inputs of the folded nodes: constants that may now be read by nothing.
    let mut candidates: HashSet<String> = HashSet::new();
    let mut index = 0;
    graph.node.retain(|node| {
        index += 1;
        if removed[index - 1] {
            candidates.extend(node.input.iter().cloned());
        }
        !removed[index - 1]
    });
    graph.initializer.extend(folded);
    let read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let unread: HashSet<String> = candidates
        .into_iter()
        .filter(|name| !read.contains(name.as_str()))
        .collect();
    graph.initializer.retain(|t| !unread.contains(&t.name));
    count
}

/// The f32 initializer `node` would compute, or `None`.
fn dequantized(
    initializers: &HashMap<&str, &TensorProto>,
    node: &NodeProto,
) -> Option<TensorProto> {
    let initializer = |name: &str| initializers.get(name).copied();
    let x = initializer(node.input.first()?)?;
    let scale = floats(initializer(node.input.get(1)?)?)?;
    let values = integers(x)?;
    let zero_point = match node.input.get(2).filter(|n| !n.is_empty()) {
        Some(name) => {
            let zp = initializer(name)?;
            (zp.data_type == x.data_type).then_some(())?;
            integers(zp)?
        }
        None => vec![0],
    };
    let dims: Vec<usize> = x
        .dims
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()?;
    (dims.iter().product::<usize>() == values.len()).then_some(())?;
    // Per channel along `axis` (default 1), or one scale and zero point for all.
    let channels = scale.len();
    let inner = if channels == 1 {
        (zero_point.len() == 1).then_some(())?;
        1
    } else {
        let axis = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(1, |a| a.i);
        let axis = usize::try_from(if axis < 0 {
            axis + dims.len() as i64
        } else {
            axis
        })
        .ok()?;
        (dims.get(axis) == Some(&channels)).then_some(())?;
        (zero_point.len() == 1 || zero_point.len() == channels).then_some(())?;
        dims[axis + 1..].iter().product()
    };
    let mut raw = vec![0u8; values.len() * 4];
    // Runs of `inner` values share a channel; channels repeat along the outer axes. (Written
    // through fixed-size chunks: one store per value, no growth checks.)
    let inner = inner.max(1);
    for (run, (values, raw)) in values
        .chunks(inner)
        .zip(raw.chunks_mut(inner * 4))
        .enumerate()
    {
        let c = run % channels;
        let zp = zero_point[if zero_point.len() == 1 { 0 } else { c }] as f32;
        let scale = scale[c];
        for (&v, out) in values.iter().zip(raw.chunks_exact_mut(4)) {
            // tract's order: cast to f32, subtract the zero point, multiply by the scale.
            out.copy_from_slice(&((v as f32 - zp) * scale).to_le_bytes());
        }
    }
    Some(TensorProto {
        name: node.output[0].clone(),
        dims: x.dims.clone(),
        data_type: DataType::Float as i32,
        raw_data: raw,
        ..TensorProto::default()
    })
}

/// The values of an int8, uint8 or int32 (quantized biases) initializer stored in the file
/// itself.
fn integers(t: &TensorProto) -> Option<Vec<i32>> {
    let types = [DataType::Int8, DataType::Uint8, DataType::Int32];
    if !t.external_data.is_empty() || !types.iter().any(|&d| t.data_type == d as i32) {
        return None;
    }
    if t.raw_data.is_empty() {
        return Some(t.int32_data.clone());
    }
    let raw = &t.raw_data;
    match t.data_type {
        d if d == DataType::Int8 as i32 => Some(raw.iter().map(|&b| b as i8 as i32).collect()),
        d if d == DataType::Uint8 as i32 => Some(raw.iter().map(|&b| b as i32).collect()),
        d if d == DataType::Int32 as i32 && raw.len().is_multiple_of(4) => Some(
            raw.chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        _ => None,
    }
}

/// The values of an f32 initializer stored in the file itself.
fn floats(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 || !t.external_data.is_empty() {
        return None;
    }
    if !t.raw_data.is_empty() {
        t.raw_data.len().is_multiple_of(4).then_some(())?;
        Some(
            t.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        )
    } else {
        Some(t.float_data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::*;

    fn run(proto: &tract_onnx::pb::ModelProto) -> Vec<Tensor> {
        let model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .unwrap()
            .into_typed()
            .unwrap();
        let fact = model.input_fact(0).unwrap().clone();
        let shape: Vec<usize> = fact
            .shape
            .as_concrete()
            .expect("a fixed input shape")
            .to_vec();
        let len: usize = shape.iter().product();
        let input = tract_ndarray::Array::from_shape_vec(
            shape,
            (0..len)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect(),
        )
        .unwrap()
        .into_tensor();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(input.into()))
            .unwrap()
            .into_iter()
            .map(|v| v.into_tensor())
            .collect()
    }

    /// The committed tiny int8 MobileSAM encoder (per-channel int8 weights behind
    /// DequantizeLinear, tests/fixtures/sam/README.md) runs bit for bit as when tract folds
    /// its weights itself.
    #[test]
    fn weights_dequantized_here_run_bit_for_bit_as_tract_folds_them() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/sam/mobilesam_tiny_int8_encoder.onnx"
        );
        let bytes = std::fs::read(path).unwrap();
        let original = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .unwrap();
        let mut folded = original.clone();
        let graph = folded.graph.as_mut().unwrap();
        let before = graph.node.len();
        let count = dequantize_initializers(graph);
        assert!(count >= 5, "{count} weights dequantized");
        assert_eq!(graph.node.len(), before - count);
        let constants: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for node in &graph.node {
            assert!(
                node.op_type != "DequantizeLinear" || !constants.contains(node.input[0].as_str()),
                "{} still dequantizes a constant",
                node.name
            );
        }
        assert!(
            graph
                .initializer
                .iter()
                .all(|t| t.data_type != DataType::Int8 as i32),
            "the int8 weights nothing reads any more are gone"
        );
        let (want, got) = (run(&original), run(&folded));
        assert_eq!(want.len(), got.len());
        for (want, got) in want.iter().zip(&got) {
            assert_eq!(want, got, "outputs differ");
        }
    }
}

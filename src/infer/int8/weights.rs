//! The int8 weights of a quantized convolution, recovered from the f32 constants tract folds
//! them into.
//!
//! tract dequantizes a QDQ file's weights at load (`DequantizeLinear` of a constant is folded),
//! so the graph holds `q * scale` as f32. A symmetric per-channel quantizer picks
//! `scale = max|w| / 127`, so the largest weight of each output channel is `±127 * scale` and
//! `scale` can be read back from it. The recovered integers are then checked to give the f32
//! weights back; a tensor that was not made that way (a layer left in float) is refused and
//! stays on tract's f32 path.

/// Int8 weights of `rows` output channels and their per-channel scales.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeights {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    /// Per output channel, the sum of its weights: what the activations' zero point costs.
    pub sums: Vec<i32>,
}

/// The largest quantized magnitudes a symmetric int8 quantizer uses: 127 (the ±127 range
/// onnxruntime and most quantizers pick for weights) or 128 (full range).
const LEVELS: [f32; 2] = [127.0, 128.0];

/// Recovers int8 weights from `weights` (`rows` rows of equal length, row-major), or `None`
/// when some row is not `q * scale` for integers `q` in [-128, 127].
pub fn recover(weights: &[f32], rows: usize) -> Option<QuantizedWeights> {
    if rows == 0 || !weights.len().is_multiple_of(rows) {
        return None;
    }
    let cols = weights.len() / rows;
    let mut values = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(rows);
    let mut sums = Vec::with_capacity(rows);
    for row in weights.chunks(cols) {
        let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
        if !max.is_finite() {
            return None;
        }
        if max == 0.0 {
            values.extend(std::iter::repeat_n(0i8, cols));
            scales.push(0.0);
            sums.push(0);
            continue;
        }
        let (q, scale) = LEVELS.iter().find_map(|levels| {
            let scale = max / levels;
            // Dequantization is one f32 multiplication: allow its rounding and that of the
            // scale read back from the largest weight, nothing more.
            let tolerance = max * 4e-6;
            // One pass without an early exit, into a sized buffer, so that it vectorises:
            // collecting an `Option<Vec<_>>` went element by element through the generic
            // collector (65 M instructions of a Cortex-A76 start).
            let mut q = vec![0i8; cols];
            let mut exact = true;
            for (w, out) in row.iter().zip(q.iter_mut()) {
                let v = (w / scale).round();
                *out = v as i8;
                exact &= (-128.0..=127.0).contains(&v) & ((v * scale - w).abs() <= tolerance);
            }
            exact.then_some((q, scale))
        })?;
        sums.push(q.iter().map(|&v| v as i32).sum());
        values.extend(q);
        scales.push(scale);
    }
    Some(QuantizedWeights {
        values,
        scales,
        sums,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_made_by_a_symmetric_quantizer_come_back_exactly() {
        let q: Vec<i8> = vec![127, -3, 0, 55, -127, 12, 9, 1];
        let scales = [0.013f32, 0.4];
        let weights: Vec<f32> = q
            .chunks(4)
            .zip(scales)
            .flat_map(|(row, s)| row.iter().map(move |&v| v as f32 * s))
            .collect();
        let recovered = recover(&weights, 2).expect("recovered");
        assert_eq!(recovered.values, q);
        assert_eq!(recovered.sums, vec![179, -105]);
        for (got, want) in recovered.scales.iter().zip(scales) {
            assert!((got - want).abs() <= want * 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn a_row_that_is_not_on_an_int8_grid_is_refused() {
        let weights = [1.0f32, 0.5, 0.123_456_7, -0.9];
        assert_eq!(recover(&weights, 1), None);
    }

    #[test]
    fn an_all_zero_channel_has_zero_weights_and_scale() {
        let recovered = recover(&[0.0, 0.0, 0.25, -0.5], 2).expect("recovered");
        assert_eq!(recovered.values, vec![0, 0, 64, -128]);
        assert_eq!(recovered.scales[0], 0.0);
    }
}

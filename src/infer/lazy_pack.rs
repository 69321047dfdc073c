//! A matrix product's activation operand packed panel by panel as the kernel reaches it,
//! instead of whole before the product starts.
//!
//! Why: tract packs an activation into the kernel's panel layout as a node of its own
//! (`OptMatMulPack`), writing a full copy of it before the product reads it back. For
//! MobileSAM's encoder that is 91 nodes and a seventh of its time (x86, 1 thread: 333 of
//! 2419 ms), led by the 64 MB copies of the 256-channel 256x256 images in front of stage 0's
//! 1x1 convolutions (~41 ms each, most of it page faults of the fresh copy). Here the op in
//! its place hands the product a value that packs panel `i` into the thread's scratch buffer
//! when the kernel asks for it (tract-linalg's `MMMInputValue::panel_bytes`, the way its own
//! lazy im2col feeds convolutions): the panel is written and read while it is in L1, and no
//! copy is allocated. The product's loop asks for each activation panel once per block of the
//! other operand, and that operand is constant weights here, so a panel is packed about as
//! often as before.

use std::fmt;
use std::hash::{Hash, Hasher};

use tract_linalg::mmm::{
    EagerPackedInput, MMMInputFormat, MMMInputValue, PackedExoticFact, PackedMatrixStorage,
};
use tract_linalg::pack::PackedFormat;
use tract_linalg::WeightType;
use tract_onnx::prelude::tract_ndarray::Dimension;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::matmul::optimized::{MatMulOperand, OptMatMul, ProtoFusedSpec};
use tract_onnx::tract_core::ops::matmul::pack::{DynPackedExoticFact, OptMatMulPack};

/// Rewrites every `OptMatMulPack` that [`LazyPack`] can stand for: one packing, f32 or f16, a
/// layout with the k or the mn axis contiguous, read by one matrix product whose other operand
/// is constant. Runs on the optimised model. Returns how many.
pub fn activations(model: &mut TypedModel) -> TractResult<usize> {
    let mut rewritten = 0;
    for id in model.eval_order()? {
        let Some(op) = candidate(model, model.node(id))? else {
            continue;
        };
        let node = model.node(id);
        TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?.apply(model)?;
        rewritten += 1;
    }
    Ok(rewritten)
}

fn candidate(model: &TypedModel, node: &TypedNode) -> TractResult<Option<LazyPack>> {
    let Some(pack) = node.op_as::<OptMatMulPack>() else {
        return Ok(None);
    };
    let input = model.outlet_fact(node.inputs[0])?;
    if input.shape.as_concrete().is_none()
        || ![f32::datum_type(), f16::datum_type()].contains(&input.datum_type)
    {
        return Ok(None);
    }
    let output = &node.outputs[0].fact;
    let Some(exotic) = output
        .exotic_fact()
        .and_then(|f| f.downcast_ref::<DynPackedExoticFact>())
    else {
        return Ok(None);
    };
    let [packer] = &exotic.packers[..] else {
        return Ok(None);
    };
    let Some(format) = packer.downcast_ref::<PackedFormat>() else {
        return Ok(None);
    };
    if format.dt.unquantized() != input.datum_type {
        return Ok(None);
    }
    let mapping = pack.axes_mapping(&[input], &[output])?;
    let (k_axis, mn_axis) = (
        mapping.axis('K')?.inputs[0][0],
        mapping.axis('M')?.inputs[0][0],
    );
    // A layout pack_t can pack one panel of: the k or the mn axis contiguous.
    let strides = input
        .shape
        .as_concrete()
        .map(natural_strides)
        .unwrap_or_default();
    if strides[k_axis] != 1 && strides[mn_axis] != 1 {
        return Ok(None);
    }
    if !read_once_beside_a_constant(model, node, input.datum_type.size_of())? {
        return Ok(None);
    }
    Ok(Some(LazyPack {
        format: format.clone(),
        k_axis,
        mn_axis,
    }))
}

/// Whether `pack`'s only reader is a matrix product whose other operand is constant weights
/// that fit the core's share of L2, and which takes the packed value as it is (no panel
/// extractor in front of it). With both operands activations, the product's loop would pack
/// one of them again for every panel of the other.
fn read_once_beside_a_constant(
    model: &TypedModel,
    pack: &TypedNode,
    elem: usize,
) -> TractResult<bool> {
    let [reader] = &pack.outputs[0].successors[..] else {
        return Ok(false);
    };
    let Some(product) = model.node(reader.node).op_as::<OptMatMul>() else {
        return Ok(false);
    };
    let slot = reader.slot;
    let mut found = false;
    for spec in &product.micro_ops {
        let ProtoFusedSpec::AddMatMul { a, b, packings, .. } = spec else {
            continue;
        };
        let (is_a, other) = match (a, b) {
            (MatMulOperand::Input(i), other) if *i == slot => (true, other),
            (other, MatMulOperand::Input(i)) if *i == slot => (false, other),
            _ => continue,
        };
        // An extractor reads the A side as an eager packed buffer.
        if is_a && packings.iter().any(|(_, e)| e.is_some()) {
            return Ok(false);
        }
        let MatMulOperand::Const(weights) = other else {
            return Ok(false);
        };
        // tract-linalg cuts a product into blocks when the operand its loop streams (the
        // weights here) outgrows the core's share of L2, and then asks for each activation
        // panel once per block: packed that many times. Lazily only where it is once (an
        // unknown L2 reads as 0: tract-linalg does not block then).
        let bytes = weights.k() * weights.mn() * elem;
        let cache = tract_linalg::cache::cache_info();
        if cache.l2 > 0 && bytes > cache.l2 / cache.l2_sharers.max(1) {
            return Ok(false);
        }
        found = true;
    }
    Ok(found)
}

fn natural_strides(shape: &[usize]) -> TVec<isize> {
    let mut strides: TVec<isize> = tvec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1] as isize;
    }
    strides
}

/// In place of `OptMatMulPack`: its input, unpacked, wrapped so the product packs it panel by
/// panel. Output fact identical to the op it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LazyPack {
    format: PackedFormat,
    k_axis: usize,
    mn_axis: usize,
}

impl LazyPack {
    fn output_shape<D: DimLike>(&self, input: &[D]) -> TVec<D> {
        let mut shape: TVec<D> = input.into();
        shape.remove(self.mn_axis.max(self.k_axis));
        shape.remove(self.mn_axis.min(self.k_axis));
        shape
    }
}

impl Op for LazyPack {
    fn name(&self) -> StaticName {
        "LazyPack".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?}, k axis {}, mn axis {}",
            self.format, self.k_axis, self.mn_axis
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for LazyPack {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.wrap(inputs)?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.wrap(inputs)
    }
}

impl LazyPack {
    fn wrap(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let source: Arc<Tensor> = input.into_arc_tensor();
        let (shape, strides) = (source.shape(), source.strides());
        let (k, mn) = (shape[self.k_axis], shape[self.mn_axis]);
        let size = source.datum_type().size_of() as isize;
        let mut batch: TVec<usize> = shape.into();
        batch[self.k_axis] = 1;
        batch[self.mn_axis] = 1;
        let mut values: TVec<Box<dyn MMMInputValue>> = tvec![];
        for coords in tract_ndarray::indices(&*batch) {
            let offset: isize = coords
                .slice()
                .iter()
                .zip(strides)
                .map(|(c, s)| *c as isize * s * size)
                .sum();
            values.push(Box::new(LazyPanels {
                source: source.clone(),
                offset,
                k,
                mn,
                k_stride: strides[self.k_axis],
                mn_stride: strides[self.mn_axis],
                format: LazyFormat(self.format.clone()),
                fact: PackedExoticFact {
                    format: Box::new(LazyFormat(self.format.clone())),
                    mn: mn.to_dim(),
                    k,
                },
            }));
        }
        let output_shape = self.output_shape(shape);
        let storage = PackedMatrixStorage::new_batched(&output_shape, values);
        Ok(tvec!(storage
            .into_tensor(source.datum_type())
            .into_tvalue()))
    }
}

impl TypedOp for LazyPack {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let exotic = DynPackedExoticFact {
            k: inputs[0].shape[self.k_axis].clone(),
            mn: inputs[0].shape[self.mn_axis].clone(),
            packers: vec![Box::new(self.format.clone())],
        };
        Ok(tvec!(inputs[0]
            .datum_type
            .fact(self.output_shape(&inputs[0].shape))
            .with_exotic_fact(exotic)))
    }

    as_op!();
}

/// The kernel's packing, named apart so tract-linalg sees the operand as packed on demand
/// (it then walks the product's tiles so each of its panels is asked for once per block).
#[derive(Clone, PartialEq, Eq, Hash)]
struct LazyFormat(PackedFormat);

impl fmt::Debug for LazyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lazy{:?}", self.0)
    }
}

impl fmt::Display for LazyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lazy{}", self.0)
    }
}

impl MMMInputFormat for LazyFormat {
    fn prepare_tensor(&self, t: &Tensor, k_axis: usize, mn_axis: usize) -> TractResult<Tensor> {
        self.0.prepare_tensor(t, k_axis, mn_axis)
    }
    fn prepare_one_view(
        &self,
        t: &TensorView,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Box<dyn MMMInputValue>> {
        self.0.prepare_one_view(t, k_axis, mn_axis)
    }
    fn precursor(&self) -> WeightType {
        self.0.precursor()
    }
    fn r(&self) -> usize {
        self.0.r
    }
    fn k_alignment(&self) -> usize {
        self.0.k_alignment()
    }
    fn mem_size(&self, k: TDim, mn: TDim) -> TDim {
        self.0.mem_size(k, mn)
    }
    fn extract_at_mn_f16(
        &self,
        data: &EagerPackedInput,
        mn: usize,
        slice: &mut [f16],
    ) -> TractResult<()> {
        self.0.extract_at_mn_f16(data, mn, slice)
    }
    fn extract_at_mn_f32(
        &self,
        data: &EagerPackedInput,
        mn: usize,
        slice: &mut [f32],
    ) -> TractResult<()> {
        self.0.extract_at_mn_f32(data, mn, slice)
    }
}

/// One `k x mn` matrix inside `source` (at byte `offset`, element strides as given), packed a
/// panel at a time into the buffer the product's scratch space lends.
#[derive(Clone)]
struct LazyPanels {
    source: Arc<Tensor>,
    offset: isize,
    k: usize,
    mn: usize,
    k_stride: isize,
    mn_stride: isize,
    format: LazyFormat,
    fact: PackedExoticFact,
}

impl LazyPanels {
    fn value<T: Datum + Copy>(&self, mn: usize, slice: &mut [T]) -> TractResult<()> {
        ensure!(mn < self.mn && slice.len() >= self.k);
        unsafe {
            let base = (self.source.as_ptr_unchecked::<u8>().offset(self.offset)) as *const T;
            for (k, v) in slice.iter_mut().take(self.k).enumerate() {
                *v = *base.offset(mn as isize * self.mn_stride + k as isize * self.k_stride);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for LazyPanels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LazyPanels(k={}, mn={}, {:?})",
            self.k, self.mn, self.format
        )
    }
}

impl fmt::Display for LazyPanels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Hash for LazyPanels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.source) as usize).hash(state);
        (self.offset, self.k, self.mn, self.k_stride, self.mn_stride).hash(state);
        self.format.hash(state);
    }
}

impl PartialEq for LazyPanels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.source, &other.source)
            && (self.offset, self.k, self.mn, self.k_stride, self.mn_stride)
                == (
                    other.offset,
                    other.k,
                    other.mn,
                    other.k_stride,
                    other.mn_stride,
                )
            && self.format == other.format
    }
}

impl Eq for LazyPanels {}

impl MMMInputValue for LazyPanels {
    fn format(&self) -> &dyn MMMInputFormat {
        &self.format
    }

    fn scratch_panel_buffer_layout(&self) -> Option<std::alloc::Layout> {
        Some(
            self.format
                .0
                .single_panel_layout(self.k, self.source.datum_type().size_of()),
        )
    }

    fn panel_bytes(&self, i: usize, buffer: Option<*mut u8>) -> TractResult<*const u8> {
        let buffer = buffer.context("LazyPanels: the product lent no panel buffer")?;
        let r = self.format.0.r;
        let dt = self.source.datum_type();
        unsafe {
            if (i + 1) * r > self.mn {
                // The last panel's lanes past mn are computed then dropped: zeros, not stale
                // values that may be denormals.
                let bytes = self.format.0.single_panel_len(self.k) * dt.size_of();
                std::ptr::write_bytes(buffer, 0, bytes);
            }
            let base = self.source.as_ptr_unchecked::<u8>().offset(self.offset);
            let (k_range, mn_range) = (0..self.k, i * r..(i + 1) * r);
            if dt == f16::datum_type() {
                self.format.0.pack_t::<f16>(
                    buffer as _,
                    base as _,
                    self.mn,
                    self.k_stride,
                    self.mn_stride,
                    k_range,
                    mn_range,
                );
            } else {
                self.format.0.pack_t::<f32>(
                    buffer as _,
                    base as _,
                    self.mn,
                    self.k_stride,
                    self.mn_stride,
                    k_range,
                    mn_range,
                );
            }
        }
        Ok(buffer)
    }

    fn mn(&self) -> usize {
        self.mn
    }

    fn k(&self) -> usize {
        self.k
    }

    fn exotic_fact(&self) -> &dyn ExoticFact {
        &self.fact
    }

    fn extract_at_mn_f16(&self, mn: usize, slice: &mut [f16]) -> TractResult<()> {
        ensure!(self.source.datum_type() == f16::datum_type());
        self.value(mn, slice)
    }

    fn extract_at_mn_f32(&self, mn: usize, slice: &mut [f32]) -> TractResult<()> {
        ensure!(self.source.datum_type() == f32::datum_type());
        self.value(mn, slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;

    /// `expr` between an activation of `shape` and constant weights of `weights`, optimised
    /// by tract; run as tract packs it and with the activation packed panel by panel.
    fn check(expr: &str, shape: &[usize], weights: &[usize], dt: DatumType) {
        let values = |shape: &[usize], seed: usize| -> Tensor {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0) - 1.0)
                .collect();
            tensor1(&v)
                .into_shape(shape)
                .unwrap()
                .cast_to_dt(dt)
                .unwrap()
                .into_owned()
        };
        let mut model = TypedModel::default();
        let x = model.add_source("x", dt.fact(shape)).unwrap();
        let w = model.add_const("w", values(weights, 1)).unwrap();
        let einsum = EinSum::new(expr.parse().unwrap(), dt);
        let y = model.wire_node("product", einsum, &[x, w]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        let eager = model.into_optimized().unwrap();
        let mut lazy = eager.clone();
        let rewritten = activations(&mut lazy).unwrap();
        assert!(
            rewritten > 0,
            "{expr} {shape:?}: no activation packed lazily"
        );
        let input = values(shape, 2);
        let run = |m: TypedModel| {
            m.into_runnable()
                .unwrap()
                .run(tvec!(input.clone().into_tvalue()))
                .unwrap()
                .remove(0)
                .into_tensor()
        };
        let (expected, got) = (run(eager), run(lazy));
        let (expected, got) = (
            expected.cast_to::<f32>().unwrap().into_owned(),
            got.cast_to::<f32>().unwrap().into_owned(),
        );
        assert_eq!(expected.shape(), got.shape());
        // Same kernel, same order of accumulation: the same values.
        let plain = |t: &Tensor| {
            t.try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        };
        assert_eq!(plain(&expected), plain(&got), "{expr} {shape:?} {dt:?}");
    }

    #[test]
    fn equals_the_eager_packing() {
        for dt in [f32::datum_type(), f16::datum_type()] {
            // Channels first, pixels contiguous (a 1x1 convolution's image), pixel counts
            // that leave the last panel partial.
            check("ck,oc->ok", &[24, 101], &[40, 24], dt);
            check("ck,oc->ok", &[64, 4099], &[16, 64], dt);
            // Tokens first, channels contiguous (a transformer's linear layer), batched.
            check("btc,co->bto", &[3, 37, 48], &[48, 20], dt);
            check("tc,co->to", &[1, 48], &[48, 33], dt);
        }
    }
}

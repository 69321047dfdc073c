//! `QuantizeLinear` moved back to the uint8 tensors its input was computed from.
//!
//! In YOLO11n's QDQ file every convolution's output is quantized and dequantized again, then
//! goes through SiLU and, often, a split, a concatenation, an upsampling or a max pooling in
//! f32 before the next convolution's input is quantized. tract turns `DequantizeLinear ->
//! element-wise ops -> QuantizeLinear` into a 256-byte table only when each op has that one
//! reader; the C3k2 blocks' split halves, the concatenations and SPPF's poolings are not like
//! that, so ~40 M instructions of a Cortex-A76 frame went on SiLU in f32 and more on
//! dequantizing, concatenating and quantizing f32 tensors four times the size of the uint8
//! ones.
//!
//! Quantization is element-wise and never decreases, so it commutes exactly with what only
//! moves, copies or picks the largest of values: this pass carries each `QuantizeLinear` up
//! through concatenations, slices and max pooling (not nearest upsampling: see `commutes`)
//! until it meets element-wise ops on a `DequantizeLinear` of uint8 values, which become one
//! table (computed by tract's own ops over the 256 inputs, as tract computes its tables).
//! What it cannot carry further (the sum of two branches) is quantized where it stands. The
//! result is the graph's, bit for bit; the f32 ops nothing reads any more are pruned by the
//! optimiser.

use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::quant::{DequantizeLinearF32, QuantizeLinearU8};

use super::super::max_pool::MaxPoolPlanes;
use super::conv::{look_up, Table as Bytes};

/// Moves every uint8 `QuantizeLinear` of `model` that reads a concatenation, a slice, a max
/// pooling or element-wise ops on dequantized values back to the uint8 values it comes from.
/// Returns how many it moved.
pub fn quantize_at_sources(model: &mut TypedModel) -> TractResult<usize> {
    let mut moved = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let quantizes = node
            .op_as::<ElementWiseOp>()
            .is_some_and(|op| op.0.is::<QuantizeLinearU8>());
        if !quantizes {
            continue;
        }
        let input = node.inputs[0];
        if model.outlet_fact(input)?.datum_type != f32::datum_type()
            || !movable(model, model.node(input.node))
        {
            continue;
        }
        let mut carry = Carry {
            model: &*model,
            quantize: node,
            patch: TypedModelPatch::default(),
            taps: HashMap::new(),
            resolved: HashMap::new(),
            done: HashMap::new(),
            wired: 0,
        };
        let out = carry.quantized(input)?;
        let mut patch = carry.patch;
        patch.shunt_outside(model, OutletId::new(id, 0), out)?;
        patch.apply(model)?;
        moved += 1;
    }
    Ok(moved)
}

/// Whether the quantization can be carried through `node` (or onto it, a dequantization).
fn movable(model: &TypedModel, node: &TypedNode) -> bool {
    commutes(node).is_some()
        || node.op_is::<TypedConcat>()
        || dequantizes_u8(model, node)
        || element_wise_f32(model, node)
}

/// Ops that only move or take the largest of values: quantizing before or after them is the
/// same. Returns their single input. (Nearest upsampling would be too, but tract copies uint8
/// values one at a time through a generic path: 100 M instructions a Cortex-A76 frame where
/// its f32 path takes 2 M; the quantization stays after it.)
fn commutes(node: &TypedNode) -> Option<OutletId> {
    let ok = node.op_is::<Slice>()
        || node
            .op_as::<MaxPool>()
            .is_some_and(|op| op.with_index_outputs.is_none());
    (ok && node.inputs.len() == 1).then(|| node.inputs[0])
}

fn dequantizes_u8(model: &TypedModel, node: &TypedNode) -> bool {
    node.op_is::<DequantizeLinearF32>()
        && model
            .outlet_fact(node.inputs[0])
            .is_ok_and(|f| f.datum_type == u8::datum_type())
}

/// A one-input element-wise op from f32 to f32 (SiLU, a sigmoid...).
fn element_wise_f32(model: &TypedModel, node: &TypedNode) -> bool {
    let f32_at = |outlet: OutletId| {
        model
            .outlet_fact(outlet)
            .is_ok_and(|f| f.datum_type == f32::datum_type())
    };
    node.op_is::<ElementWiseOp>()
        && node.inputs.len() == 1
        && f32_at(node.inputs[0])
        && f32_at(OutletId::new(node.id, 0))
}

/// An f32 tensor as a function of uint8 values: `ops` (a `DequantizeLinear`, then element-wise
/// ops: model nodes) applied to `source` (a uint8 tensor wired in the patch, of the same shape).
#[derive(Clone)]
struct Table {
    source: OutletId,
    ops: Vec<usize>,
}

/// What a model outlet becomes as the quantization is carried up to it.
#[derive(Clone)]
enum Resolved {
    /// Still f32 in the model, computed from uint8 values through a table's ops.
    Table(Table),
    /// Quantized already: a uint8 outlet of the patch.
    Quantized(OutletId),
}

/// One `QuantizeLinear` being carried up the graph into a patch.
struct Carry<'a> {
    model: &'a TypedModel,
    quantize: &'a TypedNode,
    patch: TypedModelPatch,
    /// Model outlets tapped into the patch (each may be tapped once).
    taps: HashMap<OutletId, OutletId>,
    /// Per model outlet, what it resolved to (SPPF reads one tensor four ways).
    resolved: HashMap<OutletId, Resolved>,
    /// Per model outlet, its quantized uint8 outlet in the patch.
    done: HashMap<OutletId, OutletId>,
    wired: usize,
}

impl Carry<'_> {
    /// `outlet` (f32 in the model) quantized, as an outlet of the patch.
    fn quantized(&mut self, outlet: OutletId) -> TractResult<OutletId> {
        if let Some(&done) = self.done.get(&outlet) {
            return Ok(done);
        }
        let out = match self.resolve(outlet)? {
            Resolved::Quantized(out) => out,
            Resolved::Table(table) => self.look_up(&table)?,
        };
        self.done.insert(outlet, out);
        Ok(out)
    }

    fn resolve(&mut self, outlet: OutletId) -> TractResult<Resolved> {
        if let Some(r) = self.resolved.get(&outlet) {
            return Ok(r.clone());
        }
        let model = self.model;
        let node = model.node(outlet.node);
        let resolved = if dequantizes_u8(model, node) {
            let source = self.tap(node.inputs[0])?;
            Resolved::Table(Table {
                source,
                ops: vec![node.id],
            })
        } else if element_wise_f32(model, node) {
            match self.resolve(node.inputs[0])? {
                Resolved::Table(mut table) => {
                    table.ops.push(node.id);
                    Resolved::Table(table)
                }
                Resolved::Quantized(_) => Resolved::Quantized(self.quantize_here(outlet)?),
            }
        } else if let (Some(input), true) = (commutes(node), node.op_is::<Slice>()) {
            // A slice is cheaper taken of the uint8 values, before the table.
            match self.resolve(input)? {
                Resolved::Table(mut table) => {
                    table.source = self.wire(node, &[table.source])?;
                    Resolved::Table(table)
                }
                Resolved::Quantized(q) => Resolved::Quantized(self.wire(node, &[q])?),
            }
        } else if let Some(input) = commutes(node) {
            // Pooling: the table first, on as many values; then on uint8 planes when it can.
            let q = self.quantized(input)?;
            let shape = model
                .outlet_fact(input)?
                .shape
                .as_concrete()
                .map(<[usize]>::to_vec);
            let uint8 = node
                .op_as::<MaxPool>()
                .zip(shape)
                .and_then(|(pool, shape)| MaxPoolPlanes::for_pool(pool, DatumType::U8, &shape));
            match uint8 {
                Some(op) => {
                    let name = self.name(&node.name);
                    Resolved::Quantized(self.patch.wire_node(name, op, &[q])?[0])
                }
                None => Resolved::Quantized(self.wire(node, &[q])?),
            }
        } else if node.op_is::<TypedConcat>() {
            let inputs = node
                .inputs
                .iter()
                .map(|&i| self.quantized(i))
                .collect::<TractResult<TVec<_>>>()?;
            Resolved::Quantized(self.wire(node, &inputs)?)
        } else {
            Resolved::Quantized(self.quantize_here(outlet)?)
        };
        self.resolved.insert(outlet, resolved.clone());
        Ok(resolved)
    }

    fn tap(&mut self, outlet: OutletId) -> TractResult<OutletId> {
        if let Some(&tapped) = self.taps.get(&outlet) {
            return Ok(tapped);
        }
        let tapped = self.patch.tap_model(self.model, outlet)?;
        self.taps.insert(outlet, tapped);
        Ok(tapped)
    }

    /// `node`'s op wired again in the patch, on uint8 inputs.
    fn wire(&mut self, node: &TypedNode, inputs: &[OutletId]) -> TractResult<OutletId> {
        let name = self.name(&node.name);
        Ok(self.patch.wire_node(name, node.op.clone(), inputs)?[0])
    }

    /// The quantization itself, on an f32 outlet of the model it cannot be carried past.
    fn quantize_here(&mut self, outlet: OutletId) -> TractResult<OutletId> {
        let input = self.tap(outlet)?;
        let name = self.name(&self.model.node(outlet.node).name);
        Ok(self
            .patch
            .wire_node(name, self.quantize.op.clone(), &[input])?[0])
    }

    /// The table of `table`'s ops followed by the quantization, applied to its source; no op
    /// at all when that is the identity (a dequantization undone by the same quantization).
    fn look_up(&mut self, table: &Table) -> TractResult<OutletId> {
        let mut adhoc = TypedModel::default();
        let mut wire = adhoc.add_source("bytes", u8::fact([256]))?;
        for &op in table.ops.iter().chain([&self.quantize.id]) {
            let node = self.model.node(op);
            wire = adhoc.wire_node(&*node.name, node.op.clone(), &[wire])?[0];
        }
        adhoc.select_output_outlets(&[wire])?;
        let bytes = tensor1(&(0..=255u8).collect::<Vec<_>>());
        let out = SimplePlan::new(adhoc)?
            .run(tvec!(bytes.into_tvalue()))?
            .remove(0);
        let values: Bytes = out.try_as_plain_ram()?.as_slice::<u8>()?.try_into()?;
        if values.iter().enumerate().all(|(i, &v)| i == v as usize) {
            return Ok(table.source);
        }
        let op = LookUp {
            table: Arc::new(values),
        };
        let name = self.name(&self.model.node(table.ops[0]).name);
        Ok(self.patch.wire_node(name, op, &[table.source])?[0])
    }

    /// A name no other node has: the quantization's (unique in the model), a count, and the
    /// node the new one stands for.
    fn name(&mut self, of: &str) -> String {
        self.wired += 1;
        format!("{}.at_source.{}.{of}", self.quantize.name, self.wired)
    }
}

/// A uint8 -> uint8 table applied to every value: 16 a step on aarch64 (tract's own table op
/// goes byte by byte there, ~2.7 instructions each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookUp {
    pub table: Arc<Bytes>,
}

impl Op for LookUp {
    fn name(&self) -> StaticName {
        "LookUp".into()
    }

    fn as_typed(&self) -> Option<&dyn TypedOp> {
        Some(self)
    }
}

impl EvalOp for LookUp {
    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        Ok(Some(self.run(inputs)?))
    }

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.run(inputs)
    }
}

impl LookUp {
    fn run(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // In place when nothing else holds the input (a copy otherwise).
        let input = inputs.into_iter().next().context("LookUp: no input")?;
        let mut values = input.into_tensor();
        look_up(
            &self.table,
            values.try_as_plain_ram_mut()?.as_slice_mut::<u8>()?,
        );
        Ok(tvec!(values.into_tvalue()))
    }
}

impl TypedOp for LookUp {
    fn as_op(&self) -> &dyn Op {
        self
    }

    fn as_op_mut(&mut self) -> &mut dyn Op {
        self
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(u8::datum_type().fact(inputs[0].shape.clone())))
    }
}

//! A model cut in two where some inputs change more often than others: the part that depends
//! only on the slow inputs (run once, kept) and the rest (run every time).
//!
//! Why: MobileSAM's decoder runs once per prompt on the same image embedding, and a good part
//! of it never sees the prompt: with no mask given, the mask downscaling, the dense embedding,
//! and in the first transformer layer the key and value projections of the token-to-image
//! attention and the query projection of the image-to-token one. Node by node (x86, AMD EPYC,
//! 1 thread) that is ~14 % of a prompt (21 of 150 ms under the node profiler); `cargo bench
//! --bench sam`, three paired runs: a frame's second prompt 101-129 ms against 114-138 ms
//! uncut, its first unchanged.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::source::TypedSource;

use super::{first_line, read_multi_input, Engine, EngineOptions, ModelError, OpTime, Precision};

/// The two parts of a model [`split`] cut.
pub struct Split {
    /// Inputs: the model's inputs not in `varying`, in their order. Outputs: every value the
    /// rest reads from this part, `frontier` in order.
    pub fixed: TypedModel,
    /// Inputs: the frontier values (in the order of `fixed`'s outputs), then the `varying`
    /// inputs in the model's order. Outputs: the model's.
    pub varying: TypedModel,
}

/// Cuts `model` between what depends on the inputs numbered `varying` and what does not.
/// `None` when there is nothing to cut: no node is independent of them (but constants), or a
/// model output is.
pub fn split(model: &TypedModel, varying: &[usize]) -> TractResult<Option<Split>> {
    let inputs = model.input_outlets()?.to_vec();
    let order = model.eval_order()?;
    let mut dependent: HashSet<usize> = HashSet::new();
    for &id in &order {
        let from_varying = varying
            .iter()
            .any(|&v| inputs.get(v).is_some_and(|o| o.node == id));
        if from_varying
            || model
                .node(id)
                .inputs
                .iter()
                .any(|i| dependent.contains(&i.node))
        {
            dependent.insert(id);
        }
    }
    let outputs = model.output_outlets()?.to_vec();
    if outputs.iter().any(|o| !dependent.contains(&o.node)) {
        return Ok(None);
    }
    // Values computed without the varying inputs that the dependent nodes read; constants
    // stay where they are read.
    let mut frontier: Vec<OutletId> = vec![];
    for &id in &order {
        if !dependent.contains(&id) {
            continue;
        }
        for &input in &model.node(id).inputs {
            if !dependent.contains(&input.node)
                && model.outlet_fact(input)?.konst.is_none()
                && !frontier.contains(&input)
            {
                frontier.push(input);
            }
        }
    }
    let computed = frontier
        .iter()
        .any(|o| !inputs.contains(o) && !model.node(o.node).op_is::<TypedSource>());
    if !computed {
        return Ok(None);
    }

    let fixed_inputs: Vec<OutletId> = inputs
        .iter()
        .enumerate()
        .filter(|(i, _)| !varying.contains(i))
        .map(|(_, o)| *o)
        .collect();
    let mut fixed = model.clone();
    fixed.set_input_outlets(&fixed_inputs)?;
    fixed.select_output_outlets(&frontier)?;
    fixed.compact()?;

    let mut rest = model.clone();
    let mut new_inputs = vec![];
    for (i, &outlet) in frontier.iter().enumerate() {
        let fact = model.outlet_fact(outlet)?.without_value();
        let source = rest.add_source(format!("split.{i}"), fact)?;
        let readers: Vec<InletId> = model.outlet_successors(outlet).to_vec();
        for inlet in readers {
            if dependent.contains(&inlet.node) {
                rest.add_edge(source, inlet)?;
            }
        }
        new_inputs.push(source);
    }
    new_inputs.extend(
        inputs
            .iter()
            .enumerate()
            .filter(|(i, _)| varying.contains(i))
            .map(|(_, o)| *o),
    );
    rest.set_input_outlets(&new_inputs)?;
    rest.compact()?;
    Ok(Some(Split {
        fixed,
        varying: rest,
    }))
}

/// A multi-input model run as its two parts: the part that depends only on the fixed inputs
/// runs when they change, and its outputs are kept for the next runs.
pub struct SplitEngine {
    /// `None` when the model had nothing to cut: `varying` is then the whole model.
    fixed: Option<Engine>,
    varying: Engine,
    /// Which of the model's inputs are varying (the others are fixed).
    varying_inputs: Vec<usize>,
    /// The fixed inputs of the last run and what the fixed part made of them.
    kept: Option<(Vec<Tensor>, TVec<TValue>)>,
}

impl SplitEngine {
    /// Loads a model as [`Engine::load_multi_input`] does, cut between what depends on the
    /// inputs numbered `varying` and what does not.
    pub fn load(
        path: &Path,
        bytes: &[u8],
        input_facts: &dyn Fn(&InferenceModel) -> Vec<InferenceFact>,
        options: &EngineOptions,
        varying: &[usize],
    ) -> Result<SplitEngine, ModelError> {
        let (mut typed, precision) = read_multi_input(path, bytes, input_facts)?;
        let shape_err = |e: TractError| ModelError::Shape {
            path: path.to_path_buf(),
            shape: Vec::new(),
            reason: first_line(&e),
        };
        // Cut the decluttered graph: its values are plain tensors (after optimisation some
        // are packed matrix operands, which a plan does not take as inputs).
        typed.declutter().map_err(shape_err)?;
        let inputs = typed.input_outlets().map_err(shape_err)?.len();
        match split(&typed, varying).map_err(shape_err)? {
            Some(Split {
                fixed,
                varying: rest,
            }) => Ok(SplitEngine {
                fixed: Some(Engine::from_typed(path, fixed, options, true, precision)?),
                varying: Engine::from_typed(path, rest, options, true, precision)?,
                varying_inputs: varying.to_vec(),
                kept: None,
            }),
            None => Ok(SplitEngine {
                fixed: None,
                varying: Engine::from_typed(path, typed, options, true, precision)?,
                varying_inputs: (0..inputs).collect(),
                kept: None,
            }),
        }
    }

    /// Drops the kept outputs of the fixed part (their memory; the next run makes them again).
    pub fn forget(&mut self) {
        self.kept = None;
    }

    /// Times the runs from now on node by node, both parts (see [`Engine::start_profile`]).
    pub fn start_profile(&mut self) {
        self.varying.start_profile();
        if let Some(fixed) = self.fixed.as_mut() {
            fixed.start_profile();
        }
    }

    /// The time per operator kind of both parts' runs since [`SplitEngine::start_profile`],
    /// most expensive first.
    pub fn take_profile(&mut self) -> Vec<OpTime> {
        let mut ops = self.varying.take_profile();
        for op in self
            .fixed
            .as_mut()
            .map(Engine::take_profile)
            .unwrap_or_default()
        {
            match ops.iter_mut().find(|o| o.op == op.op) {
                Some(o) => {
                    o.nodes += op.nodes;
                    o.total += op.total;
                }
                None => ops.push(op),
            }
        }
        ops.sort_by_key(|op| std::cmp::Reverse(op.total));
        ops
    }

    /// Whether the model was cut (a part runs only when the fixed inputs change).
    pub fn is_split(&self) -> bool {
        self.fixed.is_some()
    }

    /// The precision the model runs at.
    pub fn precision(&self) -> Precision {
        self.varying.precision()
    }

    /// Runs the model on all its inputs, in the model's order; the fixed part only when the
    /// fixed inputs differ from the last run's (compared value by value).
    pub fn run_inputs(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        let Some(fixed) = self.fixed.as_mut() else {
            return self.varying.run_inputs(inputs);
        };
        let (mut fixed_inputs, mut varying_inputs) = (vec![], tvec![]);
        for (i, t) in inputs.into_iter().enumerate() {
            if self.varying_inputs.contains(&i) {
                varying_inputs.push(TValue::from(t));
            } else {
                fixed_inputs.push(t);
            }
        }
        let frontier = match &self.kept {
            Some((kept_inputs, frontier)) if *kept_inputs == fixed_inputs => frontier.clone(),
            _ => {
                let values = fixed_inputs.iter().cloned().map(TValue::from).collect();
                let frontier: TVec<TValue> = fixed
                    .run_values(values)?
                    .into_iter()
                    .map(|v| TValue::from_const(Arc::new(v.into_tensor())))
                    .collect();
                self.kept = Some((fixed_inputs, frontier.clone()));
                frontier
            }
        };
        let mut values = frontier;
        values.extend(varying_inputs);
        let outputs = self.varying.run_values(values)?;
        Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
    }
}

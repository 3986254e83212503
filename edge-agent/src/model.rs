//! An ONNX scoring model run by tract: load, check its shape, score batches.
//!
//! The only module that touches `tract-onnx`. A model takes `features`
//! (float32 `[N, F]`) and returns `M` scores per row (`[N, M]`); the file is
//! checked at load so a wrong or broken model is a clear start-up error, never
//! a panic in the pipeline. It knows nothing about what the features mean;
//! the classify stage that computes them and turns scores into verdicts is
//! separate (issue 3).

use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("model {path}: expects {expected} features per row, got {got}")]
    Width {
        path: PathBuf,
        expected: usize,
        got: usize,
    },
    #[error("model {path}: inference failed: {message}")]
    Run { path: PathBuf, message: String },
}

type Plan = std::sync::Arc<TypedRunnableModel>;

/// A loaded, optimized scoring model.
pub struct ScoreModel {
    path: PathBuf,
    width: usize,
    outputs: usize,
    plan: Plan,
}

impl std::fmt::Debug for ScoreModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreModel")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl ScoreModel {
    /// Loads `path`, which must map `[N, width]` float32 to `[N, M]` float32
    /// (`M` is read off the model by a dry run).
    pub fn load(path: &Path, width: usize) -> Result<ScoreModel, ModelError> {
        let load_err = |e: &dyn std::fmt::Display| ModelError::Load {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| load_err(&e))?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(load_err(&format!(
                "expected 1 input and 1 output, found {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let batch = model.symbols.sym("N");
        let shape: TVec<TDim> = tvec![batch.into(), width.into()];
        model
            .set_input_fact(0, f32::fact(shape).into())
            .map_err(|e| load_err(&e))?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(&format!("{e:#}")))?;
        let mut scorer = ScoreModel {
            path: path.to_owned(),
            width,
            outputs: 0,
            plan,
        };
        // Dry runs prove the output shape before the pipeline relies on it:
        // one row gives M, two rows must give 2·M.
        let one = scorer.run(&vec![0.0; width], 1).map_err(|e| load_err(&e))?;
        let two = scorer
            .run(&vec![0.0; 2 * width], 2)
            .map_err(|e| load_err(&e))?;
        if one.is_empty() || two.len() != 2 * one.len() {
            return Err(load_err(&format!(
                "expected [N, M] scores, got {} values for 1 row and {} for 2",
                one.len(),
                two.len()
            )));
        }
        scorer.outputs = one.len();
        Ok(scorer)
    }

    /// Features per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Scores per row (`M`).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scores `rows.len() / width` rows laid out row-major; returns `M` scores
    /// per row, row-major.
    pub fn score(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
        if rows.is_empty() || rows.len() % self.width != 0 {
            return Err(ModelError::Width {
                path: self.path.clone(),
                expected: self.width,
                got: rows.len(),
            });
        }
        let n = rows.len() / self.width;
        let scores = self.run(rows, n)?;
        if scores.len() != n * self.outputs {
            return Err(ModelError::Run {
                path: self.path.clone(),
                message: format!("{} outputs for {n} rows", scores.len()),
            });
        }
        Ok(scores)
    }

    fn run(&self, rows: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        let run_err = |e: TractError| ModelError::Run {
            path: self.path.clone(),
            message: format!("{e:#}"),
        };
        let input = Tensor::from_shape(&[n, self.width], rows).map_err(run_err)?;
        let outputs = self.plan.run(tvec!(input.into_tvalue())).map_err(run_err)?;
        let view = outputs[0].to_plain_array_view::<f32>().map_err(run_err)?;
        Ok(view.iter().copied().collect())
    }
}

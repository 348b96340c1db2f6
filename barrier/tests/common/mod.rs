//! Shared by the loom models: the modelled futex (from `mpsafe-serializer`'s
//! shim, the one every mpsafe crate's models use) and the model runner.

pub(crate) use mpsafe_serializer::__shim::ModelFutex;

/// Runs a loom model bounded as the crate's CI runs it
/// (`LOOM_MAX_PREEMPTIONS` from the environment, default 2).
#[allow(dead_code)] // not every model file uses both
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    model_preempting(2, f);
}

/// Runs a loom model with at least `min` preemptions, for a model whose
/// interesting interleaving needs more than the default bound.
pub(crate) fn model_preempting(min: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(2).max(min));
    builder.check(f);
}

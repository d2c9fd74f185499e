#pragma once
/// \file Umbrella header of Ember's runtime: primitives, plates, handlers, traces, params.
///
///     #include "ppl/ppl.h"
///     using namespace ember;
///     auto model = [](torch::Tensor data) {
///       auto mu = sample("mu", dist::Normal(0., 10.));
///       auto p = plate("data", data.size(0));
///       sample("x", dist::Normal(mu, 1.), data);
///     };
///     Trace t = trace(model).get_trace(data);

#include "core/error.h"
#include "distributions/distributions.h"
#include "ppl/block.h"
#include "ppl/condition.h"
#include "ppl/counterfactual.h"
#include "ppl/do.h"
#include "ppl/infer_config.h"
#include "ppl/lift.h"
#include "ppl/markov.h"
#include "ppl/message.h"
#include "ppl/messenger.h"
#include "ppl/model_graph.h"
#include "ppl/param_store.h"
#include "ppl/plate.h"
#include "ppl/primitives.h"
#include "ppl/replay.h"
#include "ppl/scale.h"
#include "ppl/seed.h"
#include "ppl/substitute.h"
#include "ppl/tensor_archive.h"
#include "ppl/trace.h"

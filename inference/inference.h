#pragma once
/// \file Umbrella header of Ember's inference library (namespace ember::infer).

#include "inference/elbo.h"
#include "inference/discrete.h"
#include "inference/enum.h"
#include "inference/mcmc/mcmc.h"
#include "inference/lr_scheduler.h"
#include "inference/optim.h"
#include "inference/predictive.h"
#include "inference/svi.h"
#include "inference/autoguide/autoguide.h"

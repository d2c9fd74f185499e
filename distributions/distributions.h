#pragma once
/// \file Umbrella header: every distribution, constraint and transform in Ember.

#include "distributions/bernoulli.h"
#include "distributions/constraints.h"
#include "distributions/delta.h"
#include "distributions/distribution.h"
#include "distributions/independent.h"
#include "distributions/normal.h"
#include "distributions/transforms.h"

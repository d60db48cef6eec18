#pragma once
// Everything a plugin author needs.
#include <selfsup/config.h>
#include <selfsup/dist.h>
#include <selfsup/errors.h>
#include <selfsup/interfaces/algorithm.h>
#include <selfsup/interfaces/data.h>
#include <selfsup/interfaces/modules.h>
#include <selfsup/interfaces/optimizer.h>
#include <selfsup/interfaces/sampler.h>
#include <selfsup/interfaces/training.h>
#include <selfsup/json.h>
#include <selfsup/options.h>
#include <selfsup/plugin.h>
#include <selfsup/registry.h>
#include <selfsup/schema.h>

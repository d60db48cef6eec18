// Composition transforms (mmselfsup / mmcv names and semantics): RandomApply, MultiView.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/schema.h>

#include "common.h"

namespace selfsup::core::transforms {

namespace {

// ---------------------------------------------------------------------------------------
// RandomApply

class RandomApply final : public Transform {
public:
  explicit RandomApply(const Config& cfg)
      : pipeline_(cfg["transforms"]), prob_(get_prob(cfg, "prob")) {}

  void apply(Sample& s, Rng& rng) const override {
    if (rng.bernoulli(prob_)) pipeline_.apply(s, rng);
  }

private:
  Pipeline pipeline_;
  double prob_;
};

Schema random_apply_schema() {
  return Schema("Applies a list of transforms, all or none, with probability `prob` (mmcv "
                "RandomApply).")
      .required("transforms", ArgType::List, "the transforms (a list of transform dicts)")
      .optional("prob", ArgType::Float, 0.5, "probability of applying them, in [0, 1]");
}

// ---------------------------------------------------------------------------------------
// MultiView

class MultiView final : public Transform {
public:
  explicit MultiView(const Config& cfg) {
    const Config list = cfg["transforms"];
    const Config nv = cfg["num_views"];
    std::vector<int> counts;
    if (nv.json().is_int()) {
      counts.push_back(nv.as<int>());
    } else if (nv.is_array()) {
      counts = nv.as<std::vector<int>>();
    } else {
      nv.fail("expected an int or a list of ints, got " + describe_value(nv.json()));
    }
    if (counts.size() != list.size())
      nv.fail("expected one count per pipeline of `transforms` (" + std::to_string(list.size()) +
              "), got " + describe_value(nv.json()));
    for (size_t i = 0; i < counts.size(); ++i)
      if (counts[i] < 1)
        (nv.is_array() ? nv.at(i) : nv)
            .fail("expected a view count >= 1, got " + std::to_string(counts[i]));
    for (size_t i = 0; i < list.size(); ++i) {
      const Config p = list.at(i);
      if (!p.is_array())
        p.fail("expected a pipeline (a list of transform dicts), got " + describe_value(p.json()));
      pipelines_.emplace_back(std::make_shared<Pipeline>(p), counts[i]);
    }
  }

  void apply(Sample& s, Rng& rng) const override {
    require_image(s.img, "MultiView");
    const Image src = std::move(s.img);
    s.img = Image();
    for (const auto& [pipeline, count] : pipelines_) {
      for (int k = 0; k < count; ++k) {
        Sample view; // a deep copy of the sample, as mmselfsup's copy.deepcopy(results)
        view.img = src;
        view.gt_label = s.gt_label;
        view.sample_idx = s.sample_idx;
        for (const auto& [key, t] : s.tensors) view.tensors.emplace(key, t.clone());
        view.strings = s.strings;
        pipeline->apply(view, rng);
        if (!view.views.empty()) {
          for (auto& v : view.views) s.views.push_back(std::move(v));
        } else {
          s.views.push_back(std::move(view.img));
        }
      }
    }
  }

private:
  std::vector<std::pair<std::shared_ptr<Pipeline>, int>> pipelines_;
};

Schema multi_view_schema() {
  return Schema("Runs each pipeline num_views[i] times on a copy of the sample and collects the "
                "resulting images as the sample's views, in order (mmselfsup MultiView). The "
                "single `img` is consumed; the sample's named values stay as they were (what a "
                "view pipeline writes besides its image is dropped, as in mmselfsup).")
      .required("transforms", ArgType::List, "a list of pipelines, each a list of transform dicts")
      .required("num_views", ArgType::Any,
                "views per pipeline: a list of ints (same length as transforms), or one int");
}

} // namespace

void register_composition(Registrar& r) {
  r.add<Transform>("RandomApply", &make<RandomApply>, random_apply_schema());
  r.add<Transform>("MultiView", &make<MultiView>, multi_view_schema());
}

} // namespace selfsup::core::transforms

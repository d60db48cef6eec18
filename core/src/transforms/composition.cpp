// Composition transforms (mmselfsup / mmcv names and semantics): RandomApply, MultiView.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <selfsup/config.h>
#include <selfsup/core/data.h>
#include <selfsup/errors.h>
#include <selfsup/options.h>

#include "common.h"

namespace selfsup::core::transforms {

namespace {

// ---------------------------------------------------------------------------------------
// RandomApply

struct RandomApplyOptions {
  Config transforms; // required
  double prob = 0.5;

  static OptionTable<RandomApplyOptions> table() {
    using O = RandomApplyOptions;
    return OptionTable<O>("Applies a list of transforms, all or none, with probability `prob` "
                          "(mmcv RandomApply).",
                          O())
        .required("transforms", &O::transforms, "the transforms (a list of transform dicts)")
        .as(ArgType::List)
        .component("transform")
        .optional("prob", &O::prob, "probability of applying them", check::in(0, 1));
  }
};

class RandomApply final : public Transform {
public:
  explicit RandomApply(const Config& cfg) : RandomApply(RandomApplyOptions::table().parse(cfg)) {}
  explicit RandomApply(const RandomApplyOptions& o) : pipeline_(o.transforms), prob_(o.prob) {}

  void apply(Sample& s, Rng& rng) const override {
    if (rng.bernoulli(prob_)) pipeline_.apply(s, rng);
  }

private:
  Pipeline pipeline_;
  double prob_;
};

// ---------------------------------------------------------------------------------------
// MultiView

struct MultiViewOptions {
  Config transforms; // required
  Json num_views;    // required

  static OptionTable<MultiViewOptions> table() {
    using O = MultiViewOptions;
    return OptionTable<O>("Runs each pipeline num_views[i] times on a copy of the sample and "
                          "collects the resulting images as the sample's views, in order "
                          "(mmselfsup MultiView). The single `img` is consumed; the sample's "
                          "named values stay as they were (what a view pipeline writes besides "
                          "its image is dropped, as in mmselfsup).",
                          O())
        .required("transforms", &O::transforms,
                  "a list of pipelines, each a list of transform dicts")
        .as(ArgType::List)
        .component("transform")
        .required("num_views", &O::num_views,
                  "views per pipeline: a list of ints (same length as transforms), or one int")
        .rule([](const O& o, const Config& cfg) {
          // Element by element, so an error names the element's path.
          const Config nv = cfg["num_views"];
          const size_t n = o.transforms.size();
          if (!nv.json().is_int() && !nv.is_array())
            nv.fail("expected an int or a list of ints, got " + describe_value(nv.json()));
          if ((nv.is_array() ? nv.size() : 1) != n)
            nv.fail("expected one count per pipeline of `transforms` (" + std::to_string(n) +
                    "), got " + describe_value(nv.json()));
          for (size_t i = 0; i < n; ++i) {
            const Config count = nv.is_array() ? nv.at(i) : nv;
            if (count.as<int>() < 1)
              count.fail("expected a view count >= 1, got " + describe_value(count.json()));
            const Config p = o.transforms.at(i);
            if (!p.is_array())
              p.fail("expected a pipeline (a list of transform dicts), got " +
                     describe_value(p.json()));
          }
        });
  }
};

class MultiView final : public Transform {
public:
  explicit MultiView(const Config& cfg) {
    const auto o = MultiViewOptions::table().parse(cfg);
    for (size_t i = 0; i < o.transforms.size(); ++i) {
      const Json& nv = o.num_views;
      const int count = int(nv.is_array() ? nv.at(i).as_int() : nv.as_int());
      pipelines_.emplace_back(std::make_shared<Pipeline>(o.transforms.at(i)), count);
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

} // namespace

void register_composition(Registrar& r) {
  r.add<Transform>("RandomApply", &make<RandomApply>, RandomApplyOptions::table().schema());
  r.add<Transform>("MultiView", &make<MultiView>, MultiViewOptions::table().schema());
}

} // namespace selfsup::core::transforms

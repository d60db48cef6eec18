// Learning-rate schedulers as mmengine 0.8.4 computes them (issue 8, point 3).
//
// Two oracles, neither of them our code:
//  * tests/fixtures/schedulers/lr_tables.json, written by make_lr_tables.py in that folder
//    with PyTorch's torch.optim.lr_scheduler classes (the chained forms MMEngine's are
//    modelled on) stepped as MMEngine's Runner and ParamSchedulerHook step them; the script
//    states each MMEngine rule it encodes.
//  * closed forms written out below from MMEngine's documented formulas, for the cases where
//    one scheduler acts at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <selfsup/core/runner.h>
#include <selfsup/core/schedulers.h>
#include <selfsup/errors.h>
#include <selfsup/json.h>
#include <selfsup/registry.h>

#include "test_support.h"

namespace selfsup::core {
namespace {

using test::has_substr;
using test::message_of;

std::vector<std::shared_ptr<ParamScheduler>> build_list(const Json& list) {
  test::load_plugins();
  std::vector<std::shared_ptr<ParamScheduler>> out;
  for (size_t i = 0; i < list.size(); ++i)
    out.push_back(
        build<ParamScheduler>(Config(list.at(i), "param_scheduler[" + std::to_string(i) + "]")));
  return out;
}

// lr[iteration][group] from our chain.
std::vector<std::vector<double>> run_chain(const Json& list, int64_t ipe, int64_t max_epochs,
                                           const std::vector<double>& bases) {
  ParamScheduleChain chain(build_list(list), ipe, max_epochs, -1);
  std::vector<std::vector<double>> out;
  for (int64_t it = 0; it < ipe * max_epochs; ++it) out.push_back(chain.values(it, bases));
  return out;
}

void expect_table(const std::string& name, const std::vector<std::vector<double>>& got,
                  const std::function<double(int64_t it, double base)>& want,
                  const std::vector<double>& bases) {
  for (size_t it = 0; it < got.size(); ++it)
    for (size_t g = 0; g < bases.size(); ++g)
      EXPECT_NEAR(got[it][g], want(int64_t(it), bases[g]), 1e-12 * std::max(1.0, bases[g]))
          << name << ": iteration " << it << ", group " << g;
}

TEST(SchedulerTest, MatchesMMEngineStepTablesFromTorch) {
  std::ifstream in(std::string(SELFSUP_SOURCE_DIR) + "/tests/fixtures/schedulers/lr_tables.json");
  ASSERT_TRUE(in) << "tests/fixtures/schedulers/lr_tables.json missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const Json doc = Json::parse(ss.str(), "lr_tables.json");
  const Json& cases = *doc.find("cases");
  ASSERT_GE(cases.size(), 12u);
  for (const Json& c : cases.items()) {
    const std::string name = c.find("name")->as_string();
    std::vector<double> bases;
    for (const Json& b : c.find("bases")->items()) bases.push_back(b.as_number());
    const int64_t ipe = c.find("iters_per_epoch")->as_int();
    const auto got =
        run_chain(*c.find("param_scheduler"), ipe, c.find("max_epochs")->as_int(), bases);
    const Json& want = *c.find("lr");
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t it = 0; it < got.size(); ++it)
      for (size_t g = 0; g < bases.size(); ++g) {
        const double w = want.at(it).at(g).as_number();
        EXPECT_NEAR(got[it][g], w, 1e-12 * std::max(1.0, std::abs(w)))
            << name << ": iteration " << it << " (epoch " << int64_t(it) / ipe << "), group " << g;
      }
  }
}

// One scheduler at a time: MMEngine's documented closed forms (LinearLR: factor
// start + (end - start) * t / (end - begin - 1); CosineAnnealingLR: eta_min + (base -
// eta_min) * (1 + cos(pi * t / T_max)) / 2; MultiStepLR: gamma ** (milestones passed since
// begin)), with t counted in steps since begin and frozen at end - 1.
TEST(SchedulerTest, MatchesMMEngineClosedForms) {
  const std::vector<double> bases = {0.3, 0.03};
  // Warm-up then cosine by epoch (one value per epoch of 3 iterations).
  expect_table(
      "warm-up + cosine by epoch",
      run_chain(Json::parse(R"([
                 {"type": "LinearLR", "start_factor": 0.001, "by_epoch": true, "begin": 0, "end": 3},
                 {"type": "CosineAnnealingLR", "T_max": 7, "by_epoch": true, "begin": 3, "end": 10}])",
                            "t"),
                3, 10, bases),
      [](int64_t it, double b) {
        const double e = double(it / 3);
        return e < 3 ? b * (0.001 + 0.999 * e / 2) : b * (1 + std::cos(M_PI * (e - 3) / 7)) / 2;
      },
      bases);
  // The same converted to iterations: [0, 9) and [9, 30), T_max 21.
  expect_table(
      "warm-up + cosine converted",
      run_chain(Json::parse(R"([
                 {"type": "LinearLR", "start_factor": 0.001, "by_epoch": true, "begin": 0, "end": 3,
                  "convert_to_iter_based": true},
                 {"type": "CosineAnnealingLR", "T_max": 7, "by_epoch": true, "begin": 3, "end": 10,
                  "convert_to_iter_based": true}])",
                            "t"),
                3, 10, bases),
      [](int64_t it, double b) {
        const double i = double(it);
        return it < 9 ? b * (0.001 + 0.999 * i / 8) : b * (1 + std::cos(M_PI * (i - 9) / 21)) / 2;
      },
      bases);
  // A cosine ending at epoch 5 of 8 (20 of 32 iterations): it stops at step 19, short of
  // eta_min, and the value stays.
  expect_table(
      "cosine ending before max_epochs",
      run_chain(Json::parse(R"([{"type": "CosineAnnealingLR", "eta_min": 0.001,
                                          "by_epoch": true, "end": 5, "convert_to_iter_based": true}])",
                            "t"),
                4, 8, bases),
      [](int64_t it, double b) {
        const double t = double(std::min<int64_t>(it, 19));
        return 0.001 + (b - 0.001) * (1 + std::cos(M_PI * t / 20)) / 2;
      },
      bases);
  // MultiStepLR from epoch 1, milestones 2, 4, 4: x0.5 from epoch 3, x0.25 more from epoch 5.
  expect_table(
      "MultiStepLR",
      run_chain(Json::parse(R"([{"type": "MultiStepLR", "milestones": [2, 4, 4],
                                          "gamma": 0.5, "begin": 1}])",
                            "t"),
                2, 9, bases),
      [](int64_t it, double b) {
        const int64_t e = it / 2;
        return b * (e >= 5 ? 0.125 : e >= 3 ? 0.5 : 1.0);
      },
      bases);
  // eta_min_ratio: eta_min = 0.01 * the group's initial lr; T_max 8 inside [2, 22).
  expect_table(
      "CosineAnnealingLR eta_min_ratio",
      run_chain(Json::parse(R"([{"type": "CosineAnnealingLR", "eta_min_ratio": 0.01,
                                          "T_max": 8, "by_epoch": false, "begin": 2, "end": 22}])",
                            "t"),
                5, 5, bases),
      [](int64_t it, double b) {
        if (it < 2) return b;
        const double t = double(std::min<int64_t>(it, 21) - 2), eta = 0.01 * b;
        return eta + (b - eta) * (1 + std::cos(M_PI * t / 8)) / 2;
      },
      bases);
  // LinearLR of length 1 ([3, 4)): start_factor from iteration 3 on, never undone.
  expect_table(
      "LinearLR of length 1",
      run_chain(Json::parse(R"([{"type": "LinearLR", "start_factor": 0.25,
                                          "by_epoch": false, "begin": 3, "end": 4}])",
                            "t"),
                2, 4, bases),
      [](int64_t it, double b) { return it < 3 ? b : 0.25 * b; }, bases);
  // PolyLR with eta_min (torch's PolynomialLR has none): eta + (b - eta)(1 - t/(n-1))^p.
  expect_table(
      "PolyLR eta_min",
      run_chain(Json::parse(R"([{"type": "PolyLR", "eta_min": 0.002, "power": 2,
                                          "by_epoch": false, "begin": 1, "end": 11}])",
                            "t"),
                4, 4, bases),
      [](int64_t it, double b) {
        if (it < 1) return b;
        const double t = double(std::min<int64_t>(it, 10) - 1);
        return 0.002 + (b - 0.002) * std::pow(1 - t / 9, 2);
      },
      bases);
}

// Overlapping schedulers with eta_min != 0 compose step by step (MMEngine's chained form):
// not the product of their closed forms, which the engine computed before.
TEST(SchedulerTest, OverlappingSchedulersChainStepByStep) {
  const Json list = Json::parse(R"([
    {"type": "LinearLR", "start_factor": 0.1, "by_epoch": false, "begin": 0, "end": 10},
    {"type": "CosineAnnealingLR", "eta_min": 0.05, "by_epoch": false, "begin": 0, "end": 24}])",
                                "t");
  const auto got = run_chain(list, 4, 6, {1.0});
  // The chained recursion, written out: v <- v * linear ratio, then v <- cosine ratio step.
  double v = 1.0 * 0.1;
  for (int64_t it = 1; it < 24; ++it) {
    if (it < 10) v *= 1 + 0.9 / (9 * 0.1 + double(it - 1) * 0.9);
    const double s = double(it);
    v = (1 + std::cos(M_PI * s / 24)) / (1 + std::cos(M_PI * (s - 1) / 24)) * (v - 0.05) + 0.05;
    EXPECT_NEAR(got[size_t(it)][0], v, 1e-12) << "iteration " << it;
  }
  // The product of closed forms differs (it ignores that eta_min is reached by a warmed-up v).
  const auto warm = build_list(list);
  for (auto& s : warm) s->bind(4, 6);
  const double closed = warm[1]->apply(5, warm[0]->apply(5, 1.0));
  EXPECT_GT(std::abs(closed - got[5][0]), 1e-3);
}

// ParamScheduler::apply (one scheduler alone, closed form) agrees with the chained steps.
TEST(SchedulerTest, ClosedFormAgreesWithChainForOneScheduler) {
  for (const char* cfg :
       {R"({"type": "LinearLR", "start_factor": 0.2, "by_epoch": false, "begin": 2, "end": 9})",
        R"({"type": "LinearLR", "start_factor": 0.2, "by_epoch": false, "begin": 2, "end": 3})",
        R"({"type": "CosineAnnealingLR", "eta_min": 0.1, "begin": 1, "end": 4,
               "convert_to_iter_based": true})",
        R"({"type": "CosineAnnealingLR", "eta_min_ratio": 0.1, "T_max": 3, "by_epoch": false})",
        R"({"type": "MultiStepLR", "milestones": [1, 3], "begin": 1})",
        R"({"type": "StepLR", "step_size": 3, "gamma": 0.5, "by_epoch": false})",
        R"({"type": "ExponentialLR", "gamma": 0.9, "by_epoch": false, "end": 12})",
        R"({"type": "PolyLR", "eta_min": 0.01, "power": 0.5, "by_epoch": false, "end": 15})",
        R"({"type": "ConstantLR", "factor": 0.5, "by_epoch": false, "begin": 3, "end": 8})"}) {
    const Json list = Json::array({Json::parse(cfg, "t")});
    const auto chained = run_chain(list, 4, 5, {0.7});
    const auto s = build_list(list);
    s[0]->bind(4, 5);
    for (int64_t it = 0; it < 20; ++it)
      EXPECT_NEAR(s[0]->apply(it, 0.7), chained[size_t(it)][0], 1e-12) << cfg << " at " << it;
  }
}

TEST(SchedulerTest, ResumeReplaysFromTheStart) {
  const Json list = Json::parse(R"([
    {"type": "LinearLR", "start_factor": 0.1, "by_epoch": false, "begin": 0, "end": 10},
    {"type": "CosineAnnealingLR", "eta_min": 0.05, "by_epoch": true, "begin": 0, "end": 6}])",
                                "t");
  const auto straight = run_chain(list, 4, 6, {1.0, 0.5});
  ParamScheduleChain resumed(build_list(list), 4, 6, -1);
  EXPECT_EQ(resumed.values(17, {1.0, 0.5}), straight[17]); // a fresh chain jumps to 17
  EXPECT_EQ(resumed.values(3, {1.0, 0.5}), straight[3]);   // and back
  EXPECT_EQ(resumed.values(4, {1.0, 0.5}), straight[4]);
}

TEST(SchedulerTest, RejectsWhatMMEngineRejects) {
  test::load_plugins();
  auto fails = [](const std::string& json) {
    return message_of<ConfigError>([&] {
      auto s = build<ParamScheduler>(Config(Json::parse(json, "t"), "param_scheduler[0]"));
      ParamScheduleChain chain({s}, 4, 3, -1);
    });
  };
  EXPECT_TRUE(has_substr(fails(R"({"type": "CosineAnnealingLR", "eta_min": 0,
                                   "eta_min_ratio": 0.1})"),
                         "param_scheduler[0].eta_min_ratio: give either eta_min or eta_min_ratio"));
  EXPECT_TRUE(has_substr(
      fails(R"({"type": "LinearLR", "by_epoch": false, "convert_to_iter_based": true})"),
      "param_scheduler[0].convert_to_iter_based: converts epochs to iterations, so it needs "
      "by_epoch: true"));
  EXPECT_TRUE(has_substr(fails(R"({"type": "LinearLR", "start_factor": 0})"),
                         "param_scheduler[0].start_factor: must be > 0"));
  EXPECT_TRUE(has_substr(fails(R"({"type": "ConstantLR", "factor": 0})"),
                         "param_scheduler[0].factor: must be > 0"));
  // int(0.1 * 4) = 0 = int(0.2 * 4): empty once converted, as MMEngine's ValueError.
  EXPECT_TRUE(has_substr(fails(R"({"type": "LinearLR", "begin": 0.1, "end": 0.2,
                                   "convert_to_iter_based": true})"),
                         "param_scheduler[0]: end must be greater than begin, got begin 0"));
  EXPECT_TRUE(
      has_substr(fails(R"({"type": "StepLR", "step_size": 0})"), "param_scheduler[0].step_size"));
}

// The Runner sets every iteration's lr from the chain: a warm-up by iteration over a cosine
// (eta_min 0.05) converted from epochs that ends before max_epochs, read back from the
// run's scalars.jsonl and compared with the chained recursion written out.
TEST(SchedulerTest, RunnerTrainsWithTheChainedSchedule) {
  test::load_plugins();
  test::TempDir dir;
  (void)test::make_fake_fmnist(dir.path() / "data", 64, 20);
  Json cfg = Json::parse(R"({
    "model": {"type": "SimCLR",
      "data_preprocessor": {"mean": [128.0], "std": [64.0], "bgr_to_rgb": false},
      "backbone": {"type": "ResNet", "depth": 18, "in_channels": 1, "stem_channels": 4, "base_channels": 4,
                   "stem": "cifar"},
      "neck": {"type": "NonLinearNeck", "in_channels": 32, "hid_channels": 16, "out_channels": 8},
      "head": {"type": "ContrastiveHead", "loss": {"type": "CrossEntropyLoss"}, "temperature": 0.1}},
    "train_dataloader": {"batch_size": 16, "num_workers": 1, "drop_last": true,
      "dataset": {"type": "FashionMNIST", "split": "train", "pipeline": [
        {"type": "MultiView", "num_views": [2], "transforms": [[
          {"type": "RandomResizedCrop", "size": 8}]]},
        {"type": "PackSelfSupInputs"}]}},
    "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 3},
    "optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.3}},
    "param_scheduler": [
      {"type": "LinearLR", "start_factor": 0.1, "by_epoch": false, "begin": 0, "end": 6},
      {"type": "CosineAnnealingLR", "eta_min": 0.05, "begin": 0, "end": 2,
       "convert_to_iter_based": true}],
    "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 3}},
    "randomness": {"seed": 1}
  })",
                         "t");
  cfg.find("train_dataloader")->find("dataset")->set("data_root", (dir.path() / "data").string());
  core::TrainOptions o;
  o.work_dir = (dir.path() / "work").string();
  core::Runner runner(cfg, o);
  runner.train();
  std::ifstream jl(dir.path() / "work" / "scalars.jsonl");
  std::vector<double> lr;
  for (std::string line; std::getline(jl, line);) {
    const Json row = Json::parse(line, "scalars.jsonl"); // find() points into it: keep it alive
    if (const Json* v = row.find("lr")) lr.push_back(v->as_number());
  }
  ASSERT_EQ(lr.size(), 12u); // 4 iterations per epoch, 3 epochs
  double v = 0.3 * 0.1;      // LinearLR's step 0; the cosine's step 0 keeps it
  for (size_t it = 0; it < lr.size(); ++it) {
    if (it > 0) {
      const double s = double(it);
      if (it < 6) v *= 1 + 0.9 / (5 * 0.1 + (s - 1) * 0.9); // LinearLR, total_iters 5
      if (it < 8) // CosineAnnealingLR over [0, 8), T_max 8; frozen from iteration 8
        v = (1 + std::cos(M_PI * s / 8)) / (1 + std::cos(M_PI * (s - 1) / 8)) * (v - 0.05) + 0.05;
    }
    EXPECT_NEAR(lr[it], v, 1e-12) << "iteration " << it;
  }
}

} // namespace
} // namespace selfsup::core

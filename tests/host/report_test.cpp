// `selfsup report`: the page of a hand-made work dir (one SVG per logged series, figures,
// escaped config, nothing fetched from elsewhere), and of a tiny run, opened in headless
// Chromium when it is installed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <regex>

#include <selfsup/core/report.h>
#include <selfsup/errors.h>

#include "test_support.h"
#include "tiny_run.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The page refers to nothing outside itself: no URLs, scripts, stylesheets, images or frames.
void expect_self_contained(const std::string& html) {
  for (const char* bad : {"http://", "https://", "<script", "<link", "<img", "<iframe",
                          "src=", "href=", "url(", "@import"})
    EXPECT_EQ(html.find(bad), std::string::npos) << "the page holds '" << bad << "'";
}

} // namespace

TEST(ReportTest, OnePlotPerSeriesFiguresAndTheEscapedConfig) {
  test::TempDir tmp;
  std::string log;
  log += R"({"iter":0,"epoch":0,"knn/top1":52.36})"
         "\n";
  for (int i = 1; i <= 120; ++i)
    log += "{\"iter\":" + std::to_string(i) + ",\"epoch\":" + std::to_string((i - 1) / 40 + 1) +
           ",\"lr\":" + std::to_string(0.3 * (1 - i / 121.0)) +
           ",\"loss\":" + std::to_string(8.0 - i * 0.03) +
           ",\"loss_aux\":" + std::to_string(1.0 + (i % 7) * 0.01) + ",\"time\":0.5}\n";
  log += R"({"iter":120,"epoch":3,"knn/top1":75.4})"
         "\n";
  log += R"({"iter":121,"epo)"; // a killed run's last line, cut short
  test::write_file(tmp.path() / "scalars.jsonl", log);
  test::write_file(tmp.path() / "knn.json",
                   R"({"k": 200, "temperature": 0.07, "trained": {"top1": 75.4, "top5": 99.24},
                       "random_init": {"top1": 52.36, "top5": 94.24}})");
  test::write_file(tmp.path() / "my_config.json",
                   R"({"model": {"type": "SimCLR", "note": "<script>alert(1)</script>"}})");
  test::write_file(tmp.path() / "last_checkpoint", (tmp.path() / "epoch_3.pth").string());

  const auto series = core::read_scalar_series(tmp.str());
  ASSERT_EQ(series.size(), 4u);
  EXPECT_EQ(series[0].name, "knn/top1");
  EXPECT_EQ(series[0].points.size(), 2u);
  EXPECT_EQ(series[1].name, "lr");
  EXPECT_EQ(series[2].name, "loss");
  EXPECT_EQ(series[2].points.size(), 120u);
  EXPECT_EQ(series[3].name, "loss_aux");

  const std::string html = core::render_run_report(tmp.str());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  EXPECT_EQ(count(html, "<svg "), 4u);
  EXPECT_EQ(count(html, "</svg>"), 4u);
  EXPECT_EQ(count(html, "<polyline "), 4u);
  for (const char* name : {"loss", "loss_aux", "lr", "knn/top1"})
    EXPECT_NE(html.find("data-series=\"" + std::string(name) + "\""), std::string::npos) << name;
  EXPECT_NE(html.find("data-series=\"loss\" data-points=\"120\""), std::string::npos);
  EXPECT_NE(html.find("data-series=\"knn/top1\" data-points=\"2\""), std::string::npos);
  // Losses come first, then the lr, then kNN.
  EXPECT_LT(html.find("data-series=\"loss_aux\""), html.find("data-series=\"lr\""));
  EXPECT_LT(html.find("data-series=\"lr\""), html.find("data-series=\"knn/top1\""));
  // Final figures.
  EXPECT_NE(html.find("<th>iterations</th><td>120</td>"), std::string::npos);
  EXPECT_NE(html.find("<th>epochs</th><td>3</td>"), std::string::npos);
  EXPECT_NE(html.find("60.0 s"), std::string::npos) << "120 iterations of 0.5 s";
  EXPECT_NE(html.find("top-1 75.40 %, top-5 99.24 %"), std::string::npos);
  EXPECT_NE(html.find("top-1 52.36 %, top-5 94.24 %"), std::string::npos);
  EXPECT_NE(html.find("<th>last loss</th><td>4.4 at iteration 120"), std::string::npos);
  // The config, escaped.
  EXPECT_NE(html.find("my_config.json"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  expect_self_contained(html);

  // A folder without a scalar log is refused by name.
  test::TempDir empty;
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { (void)core::render_run_report(empty.str()); }),
      (empty.path() / "scalars.jsonl").string()));
  // A damaged line in the middle is an error naming the line.
  test::write_file(empty.path() / "scalars.jsonl", "{\"iter\":1,\"loss\":1}\nnot json\n{}\n");
  EXPECT_TRUE(test::has_substr(
      test::message_of<ValueError>([&] { (void)core::read_scalar_series(empty.str()); }),
      "scalars.jsonl:2"));
}

TEST(ReportTest, ReportOfATinyRunRendersItsPlotsInChromium) {
  test::TempDir tmp;
  const auto trained = test::train_tiny_run(tmp.path());
  ASSERT_EQ(trained.code, 0) << trained.output;
  const fs::path out = tmp.path() / "page" / "run.html";
  fs::create_directories(out.parent_path());
  const auto r =
      test::run_selfsup("report " + (tmp.path() / "work").string() + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string html = test::read_text(out);
  // SimCLR logs loss, the run logs lr, the KNNEvalHook knn/top1 (random init and trained).
  EXPECT_EQ(count(html, "<svg "), 3u) << html.substr(0, 2000);
  for (const char* name : {"loss", "lr", "knn/top1"})
    EXPECT_NE(html.find("data-series=\"" + std::string(name) + "\""), std::string::npos) << name;
  EXPECT_NE(html.find("data-series=\"knn/top1\" data-points=\"2\""), std::string::npos);
  EXPECT_NE(html.find("<th>epochs</th><td>2</td>"), std::string::npos);
  EXPECT_NE(html.find("simclr_resnet18_fmnist.json"), std::string::npos);
  EXPECT_NE(html.find("&quot;SimCLR&quot;"), std::string::npos) << "the config is on the page";
  expect_self_contained(html);
  // The default place is the work dir; a missing work dir exits 2 naming it.
  ASSERT_EQ(test::run_selfsup("report " + (tmp.path() / "work").string()).code, 0);
  EXPECT_TRUE(fs::exists(tmp.path() / "work" / "report.html"));
  const auto bad = test::run_selfsup("report " + (tmp.path() / "nowhere").string());
  EXPECT_EQ(bad.code, 2);
  EXPECT_TRUE(test::has_substr(bad.output, (tmp.path() / "nowhere").string()));

  if (std::system("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium is not installed (scripts/deps.sh installs it): the page was "
                    "checked as text but not rendered";
  const fs::path dom = tmp.path() / "dom.html";
  const std::string cmd = "timeout 120 chromium --headless --no-sandbox --disable-gpu "
                          "--user-data-dir=" +
                          (tmp.path() / "chromium-profile").string() + " --dump-dom file://" +
                          out.string() + " > " + dom.string() + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const std::string rendered = test::read_text(dom);
  // The parsed document holds the three plots, each with its polyline of points.
  EXPECT_EQ(count(rendered, "<svg "), 3u) << rendered.substr(0, 2000);
  EXPECT_EQ(count(rendered, "<polyline "), 3u);
  for (const char* name : {"loss", "lr", "knn/top1"})
    EXPECT_NE(rendered.find("data-series=\"" + std::string(name) + "\""), std::string::npos)
        << name;
  EXPECT_NE(rendered.find("<pre class=\"config\">"), std::string::npos);
}

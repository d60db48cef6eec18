#include <selfsup/core/report.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <selfsup/errors.h>
#include <selfsup/json.h>
#include <selfsup/version.h>

namespace fs = std::filesystem;

namespace selfsup::core {

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&quot;";
      break;
    case '\'':
      out += "&#39;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

std::string fmt(double v, const char* f = "%.6g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// At most `max_points` points: consecutive points averaged in equal buckets (a long run's
// curve keeps its shape without a megabyte of SVG per series).
std::vector<std::pair<double, double>> thin(const std::vector<std::pair<double, double>>& pts,
                                            size_t max_points) {
  if (pts.size() <= max_points) return pts;
  std::vector<std::pair<double, double>> out;
  const double step = double(pts.size()) / double(max_points);
  for (size_t b = 0; b < max_points; ++b) {
    const size_t lo = size_t(double(b) * step),
                 hi = std::min(pts.size(), size_t(double(b + 1) * step));
    double x = 0, y = 0;
    for (size_t i = lo; i < hi; ++i) {
      x += pts[i].first;
      y += pts[i].second;
    }
    const double n = double(hi - lo);
    if (n > 0) out.emplace_back(x / n, y / n);
  }
  return out;
}

// "Nice" tick values covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int target = 5) {
  const double span = hi - lo;
  if (!(span > 0)) return {lo};
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return out;
}

std::string svg_plot(const ReportSeries& s, const std::string& colour) {
  const double W = 640, H = 260, left = 70, right = 16, top = 30, bottom = 40;
  const auto pts = thin(s.points, 2000);
  double x0 = pts.front().first, x1 = x0, y0 = pts.front().second, y1 = y0;
  for (const auto& [x, y] : pts) {
    x0 = std::min(x0, x);
    x1 = std::max(x1, x);
    y0 = std::min(y0, y);
    y1 = std::max(y1, y);
  }
  if (x1 == x0) {
    x0 -= 1;
    x1 += 1;
  }
  if (y1 == y0) {
    const double pad = y0 == 0 ? 1 : std::abs(y0) * 0.05;
    y0 -= pad;
    y1 += pad;
  }
  const double pw = W - left - right, ph = H - top - bottom;
  auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };

  std::ostringstream o;
  o << "<svg class=\"plot\" data-series=\"" << escape(s.name) << "\" data-points=\""
    << s.points.size() << "\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
    << " " << H << "\" role=\"img\">\n";
  o << "<title>" << escape(s.name) << " over iterations</title>\n";
  o << "<text x=\"" << left << "\" y=\"18\" class=\"title\">" << escape(s.name) << "</text>\n";
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" class=\"frame\"/>\n";
  for (double t : ticks(y0, y1)) {
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << fmt(Y(t), "%.2f")
      << "\" y2=\"" << fmt(Y(t), "%.2f") << "\" class=\"grid\"/>";
    o << "<text x=\"" << left - 6 << "\" y=\"" << fmt(Y(t) + 4, "%.2f")
      << "\" text-anchor=\"end\" class=\"tick\">" << fmt(t, "%.4g") << "</text>\n";
  }
  for (double t : ticks(x0, x1)) {
    o << "<line y1=\"" << top << "\" y2=\"" << top + ph << "\" x1=\"" << fmt(X(t), "%.2f")
      << "\" x2=\"" << fmt(X(t), "%.2f") << "\" class=\"grid\"/>";
    o << "<text x=\"" << fmt(X(t), "%.2f") << "\" y=\"" << top + ph + 16
      << "\" text-anchor=\"middle\" class=\"tick\">" << fmt(t, "%.6g") << "</text>\n";
  }
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 6
    << "\" text-anchor=\"middle\" class=\"axis\">iteration</text>\n";
  o << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"1.5\" points=\"";
  for (const auto& [x, y] : pts) o << fmt(X(x), "%.2f") << "," << fmt(Y(y), "%.2f") << " ";
  o << "\"/>\n";
  if (pts.size() <= 60)
    for (const auto& [x, y] : pts)
      o << "<circle cx=\"" << fmt(X(x), "%.2f") << "\" cy=\"" << fmt(Y(y), "%.2f")
        << "\" r=\"3\" fill=\"" << colour << "\"><title>iter " << fmt(x, "%.0f") << ": " << fmt(y)
        << "</title></circle>\n";
  o << "</svg>\n";
  return o.str();
}

// The merged config the run wrote into its work dir: the newest *.json there holding a
// "model" object (knn*.json are results, not configs).
std::pair<std::string, std::string> find_config(const fs::path& dir) {
  std::string best_name, best_text;
  fs::file_time_type best_time{};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || e.path().extension() != ".json") continue;
    const std::string name = e.path().filename().string();
    if (name.rfind("knn", 0) == 0) continue;
    const std::string text = read_all(e.path());
    try {
      const Json j = Json::parse(text, e.path().string());
      if (!j.is_object() || !j.find("model")) continue;
      const auto t = e.last_write_time(ec);
      if (best_name.empty() || t > best_time) {
        best_name = name;
        best_text = j.dump(2);
        best_time = t;
      }
    } catch (const std::exception&) {
      continue;
    }
  }
  return {best_name, best_text};
}

void row(std::ostringstream& o, const std::string& k, const std::string& v) {
  o << "<tr><th>" << escape(k) << "</th><td>" << escape(v) << "</td></tr>\n";
}

const char* kStyle = R"(body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse}th,td{text-align:left;padding:3px 12px;border-bottom:1px solid #eee}
th{font-weight:600}.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:4px}svg .frame{fill:none;stroke:#888}
svg .grid{stroke:#eee}svg .tick{font-size:11px;fill:#555}svg .axis{font-size:12px;fill:#333}
svg .title{font-size:14px;font-weight:600;fill:#222}
pre{background:#f6f6f6;padding:12px;overflow:auto;max-height:600px;font-size:12px})";

} // namespace

std::vector<ReportSeries> read_scalar_series(const std::string& work_dir) {
  const fs::path file = fs::path(work_dir) / "scalars.jsonl";
  std::ifstream in(file);
  if (!in)
    throw ValueError(file.string() + ": cannot read the run's scalar log (is " + work_dir +
                     " the work dir of a `selfsup train` run?)");
  std::vector<ReportSeries> out;
  std::map<std::string, size_t> index;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json j;
    try {
      j = Json::parse(line, file.string() + ":" + std::to_string(n));
    } catch (const std::exception& e) {
      // A killed run may leave its last line cut short; anything earlier is damage.
      if (in.peek() == std::char_traits<char>::eof()) break;
      throw ValueError(std::string(e.what()));
    }
    if (!j.is_object())
      throw ValueError(file.string() + ":" + std::to_string(n) + ": expected a JSON object");
    const Json* iter = j.find("iter");
    if (!iter || !iter->is_number())
      throw ValueError(file.string() + ":" + std::to_string(n) + ": expected a number at 'iter'");
    for (const auto& key : j.keys()) {
      if (key == "iter" || key == "epoch" || key == "time") continue;
      const Json* v = j.find(key);
      if (!v->is_number()) continue;
      auto [it, fresh] = index.emplace(key, out.size());
      if (fresh) out.push_back({key, {}});
      out[it->second].points.emplace_back(iter->as_number(), v->as_number());
    }
  }
  return out;
}

std::string render_run_report(const std::string& work_dir) {
  const fs::path dir(work_dir);
  if (!fs::is_directory(dir)) throw ValueError(work_dir + ": not a folder (expected a work dir)");
  const auto series = read_scalar_series(work_dir);

  // Training time and the last iteration / epoch, from the same log.
  double total_time = 0, last_iter = 0, last_epoch = 0;
  {
    std::ifstream in(dir / "scalars.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      try {
        const Json j = Json::parse(line, "scalars.jsonl");
        if (const Json* t = j.find("time"); t && t->is_number()) total_time += t->as_number();
        if (const Json* i = j.find("iter"); i && i->is_number())
          last_iter = std::max(last_iter, i->as_number());
        if (const Json* e = j.find("epoch"); e && e->is_number())
          last_epoch = std::max(last_epoch, e->as_number());
      } catch (const std::exception&) {
      }
    }
  }
  const auto [config_name, config_text] = find_config(dir);

  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<title>selfsup run report: " << escape(dir.filename().string()) << "</title>\n<style>"
    << kStyle << "</style>\n</head>\n<body>\n";
  o << "<h1>Run report: " << escape(fs::absolute(dir).lexically_normal().string()) << "</h1>\n";
  o << "<p>Written by selfsup " << SELFSUP_VERSION_STRING << " from the work dir's scalars.jsonl"
    << (config_name.empty() ? "" : ", " + escape(config_name)) << " and knn.json.</p>\n";

  // Final figures.
  o << "<h2 id=\"figures\">Final figures</h2>\n<table class=\"figures\">\n";
  row(o, "iterations", fmt(last_iter, "%.0f"));
  row(o, "epochs", fmt(last_epoch, "%.0f"));
  row(o, "training time (sum of iteration times)", fmt(total_time, "%.1f") + " s");
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    const size_t n = s.points.size(), tail = std::min<size_t>(n, 50);
    double mean = 0;
    for (size_t i = n - tail; i < n; ++i) mean += s.points[i].second;
    mean /= double(tail);
    std::string text =
        fmt(s.points.back().second) + " at iteration " + fmt(s.points.back().first, "%.0f");
    if (tail > 1 && s.name.find("loss") != std::string::npos) // a noisy series
      text += " (mean of the last " + std::to_string(tail) + ": " + fmt(mean) + ")";
    row(o, "last " + s.name, text);
  }
  if (const std::string knn = read_all(dir / "knn.json"); !knn.empty()) {
    try {
      const Json j = Json::parse(knn, (dir / "knn.json").string());
      std::string params;
      if (const Json* k = j.find("k"); k && k->is_number()) params += "k=" + fmt(k->as_number());
      if (const Json* t = j.find("temperature"); t && t->is_number())
        params += ", T=" + fmt(t->as_number());
      for (const char* what : {"trained", "random_init"}) {
        const Json* r = j.find(what);
        if (!r || !r->is_object()) continue;
        const Json *t1 = r->find("top1"), *t5 = r->find("top5");
        if (!t1 || !t5 || !t1->is_number() || !t5->is_number()) continue;
        row(o,
            std::string("kNN ") + (std::string(what) == "trained" ? "trained" : "random init") +
                " (" + params + ")",
            "top-1 " + fmt(t1->as_number(), "%.2f") + " %, top-5 " + fmt(t5->as_number(), "%.2f") +
                " %");
      }
    } catch (const std::exception& e) {
      row(o, "knn.json", std::string("unreadable: ") + e.what());
    }
  }
  if (const std::string last = read_all(dir / "last_checkpoint"); !last.empty())
    row(o, "last checkpoint", last.substr(0, last.find_last_not_of("\r\n") + 1));
  o << "</table>\n";

  // Plots: losses, then the learning rate, then kNN / linear-probe accuracy, then the rest.
  auto group_of = [](const std::string& name) {
    if (name.find("loss") != std::string::npos) return 0;
    if (name == "lr" || name.rfind("lr/", 0) == 0 || name.rfind("lr_", 0) == 0) return 1;
    if (name.rfind("knn", 0) == 0 || name.rfind("linear/", 0) == 0) return 2;
    return 3;
  };
  static const char* kGroups[] = {"Losses", "Learning rate",
                                  "Evaluation accuracy (kNN, linear probe)", "Other scalars"};
  static const char* kIds[] = {"losses", "lr", "knn", "other"};
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
  for (int g = 0; g < 4; ++g) {
    std::vector<const ReportSeries*> in_group;
    for (const auto& s : series)
      if (group_of(s.name) == g && !s.points.empty()) in_group.push_back(&s);
    if (in_group.empty() && g == 3) continue;
    o << "<h2 id=\"" << kIds[g] << "\">" << kGroups[g] << "</h2>\n";
    if (in_group.empty()) {
      o << "<p>Not logged by this run.</p>\n";
      continue;
    }
    o << "<div class=\"plots\">\n";
    for (const auto* s : in_group) o << "<figure>\n" << svg_plot(*s, kColours[g]) << "</figure>\n";
    o << "</div>\n";
  }

  o << "<h2 id=\"config\">Config</h2>\n";
  if (config_name.empty()) {
    o << "<p>No merged config (a *.json with a \"model\" key) in the work dir.</p>\n";
  } else {
    o << "<p>" << escape(config_name) << "</p>\n<pre class=\"config\">" << escape(config_text)
      << "</pre>\n";
  }
  o << "</body>\n</html>\n";
  return o.str();
}

} // namespace selfsup::core

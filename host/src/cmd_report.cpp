// `selfsup report WORK_DIR [--out FILE.html]`: one self-contained HTML page of a run.
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>

#include <selfsup/core/checkpoint.h>
#include <selfsup/core/report.h>
#include <selfsup/errors.h>

#include "cli.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace selfsup::host {

int cmd_report(int argc, char** argv) {
  po::options_description opts("selfsup report WORK_DIR [--out FILE.html]");
  std::string out;
  opts.add_options()("help,h", "show this help")(
      "out", po::value(&out), "where the page goes (default: WORK_DIR/report.html)");
  std::string work_dir;
  po::variables_map vm = parse_with_config(argc, argv, opts, work_dir);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return kOk;
  }
  if (work_dir.empty()) {
    std::cerr << "selfsup report: a WORK_DIR is required\n\n" << opts << "\n";
    return kUsage;
  }
  std::string html;
  try {
    html = core::render_run_report(work_dir);
  } catch (const ValueError& e) {
    std::cerr << "selfsup report: error: " << e.what() << "\n";
    return kUsage;
  }
  if (out.empty()) out = (fs::path(work_dir) / "report.html").string();
  core::write_file_atomic(out, html);
  std::cout << "Wrote " << out << std::endl;
  return kOk;
}

} // namespace selfsup::host

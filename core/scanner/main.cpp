// selfsup-plugin-scanner: a helper the plugin loader starts to open new or changed plugin
// files out of the host process (as GStreamer's gst-plugin-scanner). A file whose loading
// crashes, exits or hangs takes only this process down; the host refuses it and goes on.
#include "../src/plugin_scan.h"

int main(int argc, char** argv) {
  return selfsup::core::detail::scanner_main(argc, argv);
}

// Fuzzes image decoding of the image-folder dataset (decode_image: JPEG or PNG, by magic
// bytes), with its default size limit, as a dataset reads a file's bytes. An accepted image
// is uint8 [H,W,C] with C = 1 or 3 and at most kDefaultMaxImagePixels pixels.
// Seeds: `scripts/fuzz.sh --seeds` encodes small JPEGs (grey, RGB, progressive, CMYK) and PNGs
// (grey 1/8/16-bit, RGB, RGBA, palette, interlaced) with libjpeg and libpng.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

// jpeglib.h needs <cstdio> and <cstddef> first.
#include <jpeglib.h>
#include <png.h>

#include <torch/torch.h>

#include <selfsup/core/data.h>

#include "support/fuzz_support.h"

namespace fuzz = selfsup::fuzz;

namespace {

// A w x h gradient with `channels` interleaved samples of `bytes` each (big-endian).
std::vector<uint8_t> pattern(int w, int h, int channels, int bytes = 1) {
  std::vector<uint8_t> out;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c)
        for (int b = 0; b < bytes; ++b) out.push_back(uint8_t(x * 16 + y * 8 + c * 64 + b * 3));
  return out;
}

void write_jpeg(const std::string& path, int w, int h, J_COLOR_SPACE space, int channels,
                bool progressive) {
  FILE* f = std::fopen(path.c_str(), "wb");
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = JDIMENSION(w);
  cinfo.image_height = JDIMENSION(h);
  cinfo.input_components = channels;
  cinfo.in_color_space = space;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 75, TRUE);
  if (progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  std::vector<uint8_t> pixels = pattern(w, h, channels);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = &pixels[size_t(cinfo.next_scanline) * size_t(w * channels)];
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

void write_png(const std::string& path, int w, int h, int color, int depth, bool interlaced) {
  FILE* f = std::fopen(path.c_str(), "wb");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, png_uint_32(w), png_uint_32(h), depth, color,
               interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  std::vector<png_color> palette;
  if (color == PNG_COLOR_TYPE_PALETTE) {
    for (int i = 0; i < 4; ++i)
      palette.push_back(png_color{png_byte(i * 60), png_byte(255 - i * 60), png_byte(i * 20)});
    png_set_PLTE(png, info, palette.data(), int(palette.size()));
  }
  png_write_info(png, info);
  const int channels = color == PNG_COLOR_TYPE_RGB    ? 3
                       : color == PNG_COLOR_TYPE_RGBA ? 4
                       : color == PNG_COLOR_TYPE_GA   ? 2
                                                      : 1;
  const size_t row_bytes = (size_t(w) * size_t(channels) * size_t(depth) + 7) / 8;
  std::vector<uint8_t> pixels = pattern(int(row_bytes), h, 1);
  if (color == PNG_COLOR_TYPE_PALETTE)
    for (auto& p : pixels) p &= depth == 8 ? 0x03 : 0xFF; // indices within the 4 colours
  std::vector<png_bytep> rows;
  for (int y = 0; y < h; ++y) rows.push_back(&pixels[size_t(y) * row_bytes]);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::maybe_write_seeds([](const std::string& dir) {
    write_jpeg(dir + "/rgb.jpg", 16, 8, JCS_RGB, 3, false);
    write_jpeg(dir + "/grey.jpg", 9, 7, JCS_GRAYSCALE, 1, false);
    write_jpeg(dir + "/progressive.jpg", 16, 16, JCS_RGB, 3, true);
    write_jpeg(dir + "/cmyk.jpg", 8, 8, JCS_CMYK, 4, false);
    write_png(dir + "/rgb.png", 5, 4, PNG_COLOR_TYPE_RGB, 8, false);
    write_png(dir + "/rgba.png", 4, 3, PNG_COLOR_TYPE_RGBA, 8, false);
    write_png(dir + "/grey.png", 6, 2, PNG_COLOR_TYPE_GRAY, 8, false);
    write_png(dir + "/grey1.png", 9, 3, PNG_COLOR_TYPE_GRAY, 1, false);
    write_png(dir + "/grey16.png", 3, 3, PNG_COLOR_TYPE_GRAY, 16, false);
    write_png(dir + "/grey_alpha.png", 3, 2, PNG_COLOR_TYPE_GA, 8, false);
    write_png(dir + "/palette.png", 4, 4, PNG_COLOR_TYPE_PALETTE, 8, false);
    write_png(dir + "/palette2.png", 7, 2, PNG_COLOR_TYPE_PALETTE, 2, false);
    write_png(dir + "/interlaced.png", 11, 9, PNG_COLOR_TYPE_RGB, 8, true);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  torch::Tensor image;
  if (!fuzz::run_expecting([&] { image = selfsup::core::decode_image(data, size, "input"); }))
    return 0;
  fuzz::check(image.defined() && image.dim() == 3 && image.scalar_type() == torch::kUInt8,
              "decode_image: not a uint8 [H,W,C] tensor");
  fuzz::check(image.size(2) == 1 || image.size(2) == 3, "decode_image: channels not 1 or 3");
  fuzz::check(image.size(0) > 0 && image.size(1) > 0 &&
                  image.size(0) * image.size(1) <= selfsup::core::kDefaultMaxImagePixels,
              "decode_image: an empty image or one over the pixel limit");
  fuzz::check(image.is_contiguous(), "decode_image: not contiguous");
  return 0;
}

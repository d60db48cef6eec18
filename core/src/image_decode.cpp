// Image decoding from memory (JPEG through libjpeg-turbo's libjpeg API, PNG through libpng)
// and CIFAR binary records. Both C libraries report errors by longjmp: every call that can
// fail runs inside a small "stage" function that owns the setjmp and holds only plain C data,
// so no C++ object is ever jumped over; the tensors are allocated between stages, after the
// header has been checked against the pixel limit.
#include <selfsup/core/data.h>

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

// jpeglib.h needs <cstdio> and <cstddef> first.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include <selfsup/errors.h>

namespace selfsup::core {

namespace {

std::string hex_prefix(const uint8_t* data, size_t size) {
  std::string out;
  char buf[4];
  for (size_t i = 0; i < size && i < 8; ++i) {
    std::snprintf(buf, sizeof buf, "%02X", data[i]);
    if (i) out += ' ';
    out += buf;
  }
  return out.empty() ? "nothing" : out;
}

void check_pixels(uint64_t width, uint64_t height, int64_t max_pixels, const std::string& name,
                  const char* format) {
  if (width == 0 || height == 0)
    throw ValueError(name + ": " + format + " image has an empty size " + std::to_string(width) +
                     "x" + std::to_string(height));
  if (width * height > uint64_t(max_pixels))
    throw ValueError(name + ": " + format + " image of " + std::to_string(width) + "x" +
                     std::to_string(height) + " pixels is larger than the limit of " +
                     std::to_string(max_pixels) +
                     " pixels (refused before decoding; a decompression bomb or a huge image)");
}

// ---------------------------------------------------------------------------------------
// JPEG

struct JpegErrorManager {
  jpeg_error_mgr pub; // first: libjpeg sees a jpeg_error_mgr*
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

// Warnings are ignored except a premature end of data, which libjpeg would fill with grey:
// a truncated file is corrupt, not an image.
void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return; // trace messages
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
  cinfo->err->num_warnings++;
}

// Plain C state of one JPEG decode.
struct JpegJob {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  bool created;
};

// Each stage returns false (message in job.err.message) if libjpeg failed.
bool jpeg_stage_header(JpegJob& job, const uint8_t* data, size_t size) {
  if (setjmp(job.err.jump)) return false;
  job.cinfo.err = jpeg_std_error(&job.err.pub);
  job.err.pub.error_exit = &jpeg_on_error;
  job.err.pub.emit_message = &jpeg_on_message;
  jpeg_create_decompress(&job.cinfo);
  job.created = true;
  jpeg_mem_src(&job.cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&job.cinfo, TRUE);
  switch (job.cinfo.jpeg_color_space) {
  case JCS_GRAYSCALE:
    job.cinfo.out_color_space = JCS_GRAYSCALE;
    break;
  case JCS_CMYK:
  case JCS_YCCK:
    job.cinfo.out_color_space = JCS_CMYK;
    break;
  default:
    job.cinfo.out_color_space = JCS_RGB;
  }
  return true;
}

bool jpeg_stage_start(JpegJob& job, long max_memory) {
  if (setjmp(job.err.jump)) return false;
  job.cinfo.mem->max_memory_to_use = max_memory;
  jpeg_start_decompress(&job.cinfo);
  return true;
}

bool jpeg_stage_read(JpegJob& job, uint8_t* out, size_t row_bytes) {
  if (setjmp(job.err.jump)) return false;
  while (job.cinfo.output_scanline < job.cinfo.output_height) {
    JSAMPROW row = out + size_t(job.cinfo.output_scanline) * row_bytes;
    jpeg_read_scanlines(&job.cinfo, &row, 1);
  }
  jpeg_finish_decompress(&job.cinfo);
  return true;
}

struct JpegGuard {
  JpegJob* job;
  ~JpegGuard() {
    if (job->created) jpeg_destroy_decompress(&job->cinfo);
  }
};

torch::Tensor decode_jpeg(const uint8_t* data, size_t size, const std::string& name,
                          int64_t max_pixels) {
  JpegJob job;
  std::memset(&job, 0, sizeof job);
  JpegGuard guard{&job};
  auto fail = [&]() -> ValueError {
    return ValueError(name + ": corrupt or unsupported JPEG (" + job.err.message + ")");
  };
  if (!jpeg_stage_header(job, data, size)) throw fail();
  check_pixels(job.cinfo.image_width, job.cinfo.image_height, max_pixels, name, "JPEG");
  // Progressive files keep every coefficient in memory: 2 bytes per pixel and component.
  const int64_t budget = std::min<int64_t>(max_pixels, int64_t(1) << 40) * 8 + (int64_t(64) << 20);
  if (!jpeg_stage_start(job, long(budget))) throw fail();
  const int64_t h = job.cinfo.output_height, w = job.cinfo.output_width;
  const int c = job.cinfo.output_components;
  if (c != 1 && c != 3 && c != 4)
    throw ValueError(name + ": JPEG with " + std::to_string(c) + " output components");
  torch::Tensor out = torch::empty({h, w, c}, torch::kUInt8);
  if (!jpeg_stage_read(job, out.data_ptr<uint8_t>(), size_t(w) * size_t(c))) throw fail();
  if (c != 4) return out;
  // CMYK (Adobe files store it inverted) to RGB, as PIL converts it.
  const bool inverted = job.cinfo.saw_Adobe_marker;
  torch::Tensor rgb = torch::empty({h, w, 3}, torch::kUInt8);
  const uint8_t* src = out.data_ptr<uint8_t>();
  uint8_t* dst = rgb.data_ptr<uint8_t>();
  for (int64_t i = 0; i < h * w; ++i, src += 4, dst += 3) {
    const int k = inverted ? src[3] : 255 - src[3];
    for (int ch = 0; ch < 3; ++ch) {
      const int v = inverted ? src[ch] : 255 - src[ch];
      dst[ch] = uint8_t((v * k + 127) / 255);
    }
  }
  return rgb;
}

// ---------------------------------------------------------------------------------------
// PNG

struct PngJob {
  png_structp png;
  png_infop info;
  const uint8_t* data;
  size_t size;
  size_t pos;
  char message[256];
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof job->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void png_on_warning(png_structp /*png*/, png_const_charp /*msg*/) {}

void png_read_memory(png_structp png, png_bytep out, size_t n) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > job->size - job->pos) png_error(png, "truncated PNG data");
  std::memcpy(out, job->data + job->pos, n);
  job->pos += n;
}

bool png_stage_header(PngJob& job) {
  if (setjmp(png_jmpbuf(job.png))) return false;
  png_set_read_fn(job.png, &job, &png_read_memory);
  png_read_info(job.png, job.info);
  const int color = png_get_color_type(job.png, job.info);
  const int depth = png_get_bit_depth(job.png, job.info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(job.png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(job.png);
  if (depth == 16) png_set_strip_16(job.png);
  png_set_strip_alpha(job.png);
  png_set_interlace_handling(job.png);
  png_read_update_info(job.png, job.info);
  return true;
}

bool png_stage_read(PngJob& job, png_bytepp rows) {
  if (setjmp(png_jmpbuf(job.png))) return false;
  png_read_image(job.png, rows);
  return true;
}

struct PngGuard {
  PngJob* job;
  ~PngGuard() {
    if (job->png) png_destroy_read_struct(&job->png, job->info ? &job->info : nullptr, nullptr);
  }
};

torch::Tensor decode_png(const uint8_t* data, size_t size, const std::string& name,
                         int64_t max_pixels) {
  PngJob job;
  std::memset(&job, 0, sizeof job);
  PngGuard guard{&job};
  job.data = data;
  job.size = size;
  job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, &png_on_error, &png_on_warning);
  if (!job.png) throw ValueError(name + ": cannot initialise libpng");
  job.info = png_create_info_struct(job.png);
  if (!job.info) throw ValueError(name + ": cannot initialise libpng");
  auto fail = [&]() -> ValueError {
    return ValueError(name + ": corrupt or unsupported PNG (" + job.message + ")");
  };
  if (!png_stage_header(job)) throw fail();
  const uint64_t w = png_get_image_width(job.png, job.info);
  const uint64_t h = png_get_image_height(job.png, job.info);
  check_pixels(w, h, max_pixels, name, "PNG");
  const int c = png_get_channels(job.png, job.info);
  if ((c != 1 && c != 3) || png_get_rowbytes(job.png, job.info) != w * uint64_t(c))
    throw ValueError(name + ": PNG layout not reduced to 8-bit grey or RGB (" + std::to_string(c) +
                     " channels)");
  torch::Tensor out = torch::empty({int64_t(h), int64_t(w), c}, torch::kUInt8);
  std::vector<png_bytep> rows(static_cast<size_t>(h));
  uint8_t* base = out.data_ptr<uint8_t>();
  for (size_t y = 0; y < rows.size(); ++y) rows[y] = base + y * size_t(w) * size_t(c);
  if (!png_stage_read(job, rows.data())) throw fail();
  return out;
}

} // namespace

torch::Tensor decode_image(const uint8_t* data, size_t size, const std::string& name,
                           int64_t max_pixels) {
  if (max_pixels <= 0)
    throw ValueError(name + ": the pixel limit must be > 0, got " + std::to_string(max_pixels));
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (data && size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
    return decode_jpeg(data, size, name, max_pixels);
  if (data && size >= 8 && std::memcmp(data, kPng, 8) == 0)
    return decode_png(data, size, name, max_pixels);
  if (!data || size == 0) throw ValueError(name + ": empty file, not an image");
  throw ValueError(name + ": not a JPEG or PNG image (the file starts with " +
                   hex_prefix(data, size) +
                   "; JPEG starts with FF D8 FF, PNG with 89 50 4E 47 0D 0A 1A 0A)");
}

torch::Tensor decode_image(const uint8_t* data, size_t size, const std::string& name) {
  return decode_image(data, size, name, kDefaultMaxImagePixels);
}

// ---------------------------------------------------------------------------------------
// CIFAR

CifarRecords parse_cifar(const uint8_t* data, size_t size, int label_bytes, int num_classes,
                         const std::string& name) {
  constexpr size_t kPixels = 32 * 32 * 3;
  if (label_bytes != 1 && label_bytes != 2)
    throw ValueError(name + ": CIFAR records have 1 (CIFAR-10) or 2 (CIFAR-100) label bytes, got " +
                     std::to_string(label_bytes));
  if (num_classes <= 0 || num_classes > 256)
    throw ValueError(name + ": CIFAR num_classes must be in [1, 256], got " +
                     std::to_string(num_classes));
  const char* kind = label_bytes == 1 ? "CIFAR-10" : "CIFAR-100";
  const size_t record = size_t(label_bytes) + kPixels;
  if (!data || size == 0) throw ValueError(name + ": empty " + std::string(kind) + " file");
  if (size % record != 0)
    throw ValueError(
        name + ": " + std::to_string(size) + " bytes is not a whole number of " + kind +
        " records of " + std::to_string(record) + " bytes (" + std::to_string(label_bytes) +
        " label byte(s) + 3072 pixels): " + std::to_string(size / record) + " records and " +
        std::to_string(size % record) + " bytes left over (truncated, or not a binary CIFAR file)");
  const int64_t n = int64_t(size / record);
  CifarRecords out;
  out.images = torch::empty({n, 32, 32, 3}, torch::kUInt8);
  out.labels = torch::empty({n}, torch::kInt64);
  if (label_bytes == 2) out.coarse_labels = torch::empty({n}, torch::kInt64);
  uint8_t* img = out.images.data_ptr<uint8_t>();
  int64_t* labels = out.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* rec = data + size_t(i) * record;
    const int label = rec[label_bytes - 1];
    if (label >= num_classes)
      throw ValueError(name + ": record " + std::to_string(i) + ": label " + std::to_string(label) +
                       " is not in [0, " + std::to_string(num_classes) + ")" +
                       (label_bytes == 2 ? " (the fine label, second byte)" : ""));
    labels[i] = label;
    if (label_bytes == 2) {
      if (rec[0] >= 20)
        throw ValueError(name + ": record " + std::to_string(i) + ": coarse label " +
                         std::to_string(rec[0]) + " is not in [0, 20) (first byte)");
      out.coarse_labels.data_ptr<int64_t>()[i] = rec[0];
    }
    const uint8_t* planes = rec + label_bytes;
    uint8_t* dst = img + size_t(i) * kPixels;
    for (size_t p = 0; p < 1024; ++p)
      for (size_t ch = 0; ch < 3; ++ch) dst[p * 3 + ch] = planes[ch * 1024 + p];
  }
  return out;
}

} // namespace selfsup::core

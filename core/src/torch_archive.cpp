#include "torch_archive.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include <selfsup/errors.h>

namespace selfsup::core {

namespace {

uint64_t le(std::string_view b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | uint8_t(b[at + size_t(i)]);
  return v;
}

struct Entry {
  std::string name;
  uint64_t method = 0, compressed = 0, size = 0, offset = 0;
};

// The central directory's entries (zip64 sizes and offsets included), or nothing when the
// bytes are no zip; throws when it points outside the file.
std::optional<std::vector<Entry>> zip_entries(std::string_view b, const std::string& path) {
  const auto bad = [&](const std::string& why) {
    return ValueError(path + ": corrupt checkpoint archive (" + why + ")");
  };
  if (b.size() < 22) return std::nullopt;
  size_t eocd = std::string_view::npos;
  for (size_t i = b.size() - 22 + 1; i-- > 0 && b.size() - i <= 22 + 65535;)
    if (le(b, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd == std::string_view::npos) return std::nullopt;
  uint64_t count = le(b, eocd + 10, 2), cd_size = le(b, eocd + 12, 4), cd = le(b, eocd + 16, 4);
  if ((count == 0xFFFF || cd_size == 0xFFFFFFFF || cd == 0xFFFFFFFF) && eocd >= 20 &&
      le(b, eocd - 20, 4) == 0x07064b50) {
    const uint64_t z = le(b, eocd - 20 + 8, 8);
    if (z > b.size() || b.size() - z < 56 || le(b, size_t(z), 4) != 0x06064b50)
      throw bad("zip64 end record outside the file");
    count = le(b, size_t(z) + 32, 8);
    cd_size = le(b, size_t(z) + 40, 8);
    cd = le(b, size_t(z) + 48, 8);
  }
  if (cd > b.size() || cd_size > b.size() - cd) throw bad("central directory outside the file");
  std::vector<Entry> entries;
  size_t at = size_t(cd);
  for (uint64_t i = 0; i < count; ++i) {
    if (b.size() - at < 46 || le(b, at, 4) != 0x02014b50) throw bad("bad central directory");
    Entry e;
    e.method = le(b, at + 10, 2);
    e.compressed = le(b, at + 20, 4);
    e.size = le(b, at + 24, 4);
    e.offset = le(b, at + 42, 4);
    const size_t name = le(b, at + 28, 2), extra = le(b, at + 30, 2), comment = le(b, at + 32, 2);
    if (b.size() - at - 46 < name + extra + comment) throw bad("bad central directory");
    e.name = std::string(b.substr(at + 46, name));
    // zip64: the fields saturated at 0xFFFFFFFF follow in the extra field 0x0001, in order.
    for (size_t x = at + 46 + name; x + 4 <= at + 46 + name + extra;) {
      const uint64_t id = le(b, x, 2), len = le(b, x + 2, 2);
      size_t f = x + 4;
      const size_t end = std::min(f + size_t(len), at + 46 + name + extra);
      if (id == 0x0001)
        for (uint64_t* field : {&e.size, &e.compressed, &e.offset})
          if (*field == 0xFFFFFFFF && f + 8 <= end) {
            *field = le(b, f, 8);
            f += 8;
          }
      x += 4 + size_t(len);
    }
    // Stored records (LibTorch writes them so) are as large as their bytes; deflate expands
    // at most about 1032 times.
    if (e.compressed > b.size() || e.offset > b.size() - e.compressed ||
        (e.method == 0 ? e.size != e.compressed : e.size / 1032 > e.compressed))
      throw bad("record " + e.name + " announces " + std::to_string(e.size) +
                " bytes, more than the file holds");
    entries.push_back(std::move(e));
    at += 46 + name + extra + comment;
  }
  return entries;
}

// An opcode's stack effect: the values it takes from above the last mark and leaves there
// (`to_mark`: it first removes everything above the last mark, and the mark; `mark`: it
// pushes a mark). LibTorch's unpickler pops without checking, so a pickle that takes more
// than is there crashes it (found by fuzz/checkpoint: BUILD on an empty stack).
struct Effect {
  int takes = 0, leaves = 0;
  bool to_mark = false, mark = false;
};

std::optional<Effect> effect(uint8_t op) {
  switch (op) {
  case 0x80:
  case 0x95:
    return Effect{0, 0}; // PROTO FRAME
  case '(':
    return Effect{0, 0, false, true}; // MARK
  case 't':
  case 'l':
  case 'd':
  case 0x91:
  case 'i':
    return Effect{0, 1, true}; // to a mark
  case 'e':
  case 'u':
  case 0x90:
    return Effect{1, 1, true}; // APPENDS SETITEMS ADDITEMS
  case '1':
    return Effect{0, 0, true}; // POP_MARK
  case '0':
    return Effect{1, 0}; // POP
  case '2':
    return Effect{1, 2}; // DUP
  case 0x85:
  case 'Q':
  case 'q':
  case 'r':
  case 'p':
  case 0x94:
  case 0x98:
    return Effect{1, 1};
  case 0x86:
  case 'a':
  case 'R':
  case 'b':
  case 0x81:
  case 0x93:
    return Effect{2, 1};
  case 0x87:
  case 's':
  case 0x92:
    return Effect{3, 1};
  case '.':
    return Effect{1, 0}; // STOP
  case 'K':
  case 'M':
  case 'J':
  case 'G':
  case 0x8a:
  case 0x8b:
  case 'U':
  case 'C':
  case 0x8c:
  case 'X':
  case 'T':
  case 'B':
  case 0x8d:
  case 0x8e:
  case 0x96:
  case 'N':
  case 0x88:
  case 0x89:
  case ')':
  case ']':
  case '}':
  case 0x8f:
  case 'c':
  case 'h':
  case 'j':
  case 'g':
  case 'I':
  case 'L':
  case 'F':
  case 'S':
  case 'V':
  case 'P':
  case 0x97:
    return Effect{0, 1};
  default:
    return std::nullopt;
  }
}

// Walks the opcodes of a pickle (protocols 0-5) and refuses an argument longer than the
// rest of the pickle; stops at STOP or at an opcode whose argument it cannot size.
void check_pickle(std::string_view p, const std::string& path) {
  size_t at = 0;
  size_t depth = 0, memo = 0; // values on the stack, memo entries
  std::vector<size_t> marks;
  while (at < p.size()) {
    const auto op = uint8_t(p[at++]);
    const size_t left = p.size() - at;
    if (const auto e = effect(op)) {
      const auto corrupt = [&](const std::string& why) {
        return ValueError(path + ": corrupt checkpoint: data.pkl " + why + " at offset " +
                          std::to_string(at - 1));
      };
      if (e->mark) marks.push_back(depth);
      if (e->to_mark) {
        if (marks.empty()) throw corrupt("closes a mark it never opened");
        depth = marks.back();
        marks.pop_back();
      }
      const size_t above = depth - (marks.empty() ? 0 : marks.back());
      if (above < size_t(e->takes))
        throw corrupt("takes " + std::to_string(e->takes) + " values where " +
                      std::to_string(above) + " are");
      depth = depth - size_t(e->takes) + size_t(e->leaves);
      if (op == 0x94) ++memo;
      if ((op == 'h' || op == 'j') && left >= (op == 'h' ? 1u : 4u) &&
          le(p, at, op == 'h' ? 1 : 4) >= memo)
        throw corrupt("reads memo entry " + std::to_string(le(p, at, op == 'h' ? 1 : 4)) + " of " +
                      std::to_string(memo));
      if ((op == 'q' || op == 'r') && left >= (op == 'q' ? 1u : 4u))
        memo = std::max<size_t>(memo, size_t(le(p, at, op == 'q' ? 1 : 4)) + 1);
    }
    uint64_t skip = 0;
    auto prefixed = [&](int bytes) {
      if (left < size_t(bytes)) return uint64_t(~uint64_t(0));
      return uint64_t(bytes) + le(p, at, bytes);
    };
    switch (op) {
    case '.': // STOP
      return;
    case 'K':
    case 'q':
    case 'h':
    case 0x80:
      skip = 1;
      break; // BININT1 BINPUT BINGET PROTO
    case 'M':
      skip = 2;
      break; // BININT2
    case 'J':
    case 'r':
    case 'j':
      skip = 4;
      break; // BININT LONG_BINPUT/GET
    case 'G':
    case 0x95:
      skip = 8;
      break; // BINFLOAT FRAME
    case 'U':
    case 'C':
    case 0x8c:
    case 0x8a:
      skip = prefixed(1);
      break; // short strings, LONG1
    case 'X':
    case 'T':
    case 'B':
    case 0x8b:
      skip = prefixed(4);
      break; // strings, LONG4
    case 0x8d:
    case 0x8e:
    case 0x96:
      skip = prefixed(8);
      break; // 8-byte lengths
    case '(':
    case ')':
    case ']':
    case '}':
    case 'N':
    case 0x88:
    case 0x89:
    case 't':
    case 0x85:
    case 0x86:
    case 0x87:
    case 'a':
    case 'e':
    case 'l':
    case 'd':
    case 's':
    case 'u':
    case 'R':
    case 'b':
    case 0x81:
    case 0x92:
    case 'Q':
    case '0':
    case '1':
    case '2':
    case 0x94:
    case 0x8f:
    case 0x90:
    case 0x91:
    case 0x93:
    case 0x97:
    case 0x98:
      skip = 0;
      break;
    case 'c': // GLOBAL, INST: two lines of text (module, name)
    case 'i':
    case 'I': // INT, LONG, FLOAT, STRING, UNICODE, PERSID, GET, PUT: one line
    case 'L':
    case 'F':
    case 'S':
    case 'V':
    case 'P':
    case 'g':
    case 'p': {
      size_t end = at;
      for (int line = (op == 'c' || op == 'i') ? 2 : 1; line > 0; --line) {
        end = p.find('\n', end);
        if (end == std::string_view::npos) return; // LibTorch finds it short
        ++end;
      }
      skip = end - at;
      break;
    }
    default: // an opcode LibTorch does not know either: it refuses it
      return;
    }
    // A memo index is the count of values memoized before (as Python's pickler and
    // LibTorch's write them); LibTorch grows its memo table to any index it is given.
    if ((op == 'q' || op == 'r') && skip <= left && le(p, at, int(skip)) > at)
      throw ValueError(path + ": corrupt checkpoint: data.pkl memoizes at index " +
                       std::to_string(le(p, at, int(skip))) + " at offset " +
                       std::to_string(at - 1) + " (out of sequence)");
    if (skip > left)
      throw ValueError(path + ": corrupt checkpoint: data.pkl announces " +
                       std::to_string(skip == ~uint64_t(0) ? left + 1 : skip) +
                       " bytes at offset " + std::to_string(at - 1) + ", where " +
                       std::to_string(left) + " remain");
    at += size_t(skip);
  }
}

} // namespace

void check_torch_archive(const std::vector<char>& bytes, const std::string& path) {
  const std::string_view b(bytes.data(), bytes.size());
  const auto entries = zip_entries(b, path);
  if (!entries) return;
  for (const auto& e : *entries) {
    const bool pickle =
        e.name == "data.pkl" ||
        (e.name.size() > 9 && e.name.compare(e.name.size() - 9, 9, "/data.pkl") == 0);
    if (!pickle || e.method != 0 || b.size() - e.offset < 30 || le(b, e.offset, 4) != 0x04034b50)
      continue;
    const size_t data = size_t(e.offset) + 30 + le(b, e.offset + 26, 2) + le(b, e.offset + 28, 2);
    if (data > b.size() || b.size() - data < e.size)
      throw ValueError(path + ": corrupt checkpoint archive (record " + e.name +
                       " outside the file)");
    check_pickle(b.substr(data, e.size), path);
  }
}

void check_tensor_in_storage(const torch::Tensor& t, const std::string& what) {
  if (!t.defined()) throw ValueError(what + ": an undefined tensor");
  if (t.numel() == 0) return;
  if (!t.has_storage()) throw ValueError(what + ": a tensor without storage");
  // The last element's offset, in elements; every step checked against overflow.
  constexpr uint64_t kLimit = uint64_t(1) << 62;
  uint64_t last = 0;
  bool ok = t.storage_offset() >= 0;
  for (int64_t d = 0; ok && d < t.dim(); ++d) {
    const uint64_t extent = uint64_t(t.size(d) - 1), stride = uint64_t(t.stride(d));
    ok = t.stride(d) >= 0 && (stride == 0 || extent <= kLimit / stride);
    if (ok) last += extent * stride;
    ok = ok && last <= kLimit;
  }
  const uint64_t end =
      ok ? (last + uint64_t(t.storage_offset()) + 1) * uint64_t(t.element_size()) : 0;
  if (!ok || end > uint64_t(t.storage().nbytes()))
    throw ValueError(what + ": a tensor of shape " + c10::str(t.sizes()) + ", strides " +
                     c10::str(t.strides()) + " and offset " + std::to_string(t.storage_offset()) +
                     " reaches past its storage of " + std::to_string(t.storage().nbytes()) +
                     " bytes");
}

} // namespace selfsup::core

// A COCO results file straight to columns, without a Python object per record.
//
// Only the plain form is read here: a JSON array of objects that each have exactly the keys
// image_id and category_id (JSON integers), bbox (an array of 4 JSON numbers) and score (a
// JSON number), once each, in any order, keys without escapes. Anything else (other keys,
// ids written as floats or text, NaN, numbers out of double range, malformed JSON, an empty
// array) returns None, and the caller reads the file the general way, which accepts or
// rejects it with a message naming the record: this parser never decides that a file is bad.
//
// Numbers are the doubles Python's json module gives: the JSON grammar is checked strictly,
// then the text is converted with std::from_chars, which rounds correctly to nearest, as
// float() does. A JSON integer becomes an int in Python and then a double by correct
// rounding too; the one difference is -0, which Python reads as the integer 0, so an integer
// zero is +0.0 here.
//
// Large files are read in parts on several threads, split between records.
//
// Python API: columns(data: bytes-like, threads=1) -> None | (image_id int64 bytes,
// category_id int64 bytes, bbox float64 bytes (4 per record), score float64 bytes).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../_bytes.h"

#include <algorithm>
#include <charconv>
#include <new>
#include <thread>
#include <utility>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

using evalkit::Bytes;

struct Columns {
  std::vector<std::int64_t> image_id, category_id;
  std::vector<double> bbox, score;
};

class Reader {
 public:
  Reader(const char* begin, const char* end) : p_(begin), end_(end) {}

  // False as soon as the input leaves the plain form. For a file split between records:
  // the `opening` part holds the '[', the `closing` one the ']'; every other part starts
  // with the ',' before its first record and ends right after its last record's '}'.
  bool Read(Columns& out, bool opening, bool closing) {
    SkipSpace();
    if (opening) {
      if (!Take('[')) return false;
      SkipSpace();
      if (Peek() == ']') return false;  // empty: the general path returns no detections
    } else {  // the ',' after the previous part's last record
      if (!Take(',')) return false;
      SkipSpace();
    }
    while (true) {
      if (!Record(out)) return false;
      if (!closing && p_ == end_) return true;
      SkipSpace();
      if (closing && Take(']')) break;
      if (!Take(',')) return false;
      SkipSpace();
    }
    SkipSpace();
    return p_ == end_;
  }

 private:
  const char* p_;
  const char* end_;

  char Peek() const { return p_ < end_ ? *p_ : '\0'; }
  bool Take(char c) {
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // One object; each of the four keys exactly once.
  bool Record(Columns& out) {
    if (!Take('{')) return false;
    unsigned seen = 0;
    std::int64_t image_id = 0, category_id = 0;
    double box[4] = {0, 0, 0, 0}, score = 0;
    SkipSpace();
    while (true) {
      std::string_view key;
      if (!Key(key)) return false;
      SkipSpace();
      if (!Take(':')) return false;
      SkipSpace();
      unsigned bit;
      bool ok;
      if (key == "image_id") {
        bit = 1, ok = Integer(image_id);
      } else if (key == "category_id") {
        bit = 2, ok = Integer(category_id);
      } else if (key == "bbox") {
        bit = 4, ok = Box(box);
      } else if (key == "score") {
        bit = 8, ok = Number(score);
      } else {
        return false;
      }
      if (!ok || (seen & bit)) return false;
      seen |= bit;
      SkipSpace();
      if (Take('}')) break;
      if (!Take(',')) return false;
      SkipSpace();
    }
    if (seen != 15) return false;
    out.image_id.push_back(image_id);
    out.category_id.push_back(category_id);
    out.bbox.insert(out.bbox.end(), box, box + 4);
    out.score.push_back(score);
    return true;
  }

  bool Key(std::string_view& key) {
    if (!Take('"')) return false;
    const char* start = p_;
    while (p_ < end_ && *p_ != '"') {
      // An escape or a control character: not a plain key.
      if (*p_ == '\\' || static_cast<unsigned char>(*p_) < 0x20) return false;
      ++p_;
    }
    if (p_ == end_) return false;
    key = std::string_view(start, static_cast<std::size_t>(p_ - start));
    ++p_;
    return true;
  }

  // The extent of a JSON number (strict grammar); is_integer when it has neither a
  // fraction nor an exponent.
  bool Scan(const char*& start, bool& is_integer) {
    start = p_;
    Take('-');
    if (Take('0')) {
    } else if (p_ < end_ && *p_ >= '1' && *p_ <= '9') {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    } else {
      return false;
    }
    is_integer = true;
    if (Take('.')) {
      is_integer = false;
      if (!(p_ < end_ && *p_ >= '0' && *p_ <= '9')) return false;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      is_integer = false;
      ++p_;
      if (!Take('+')) Take('-');
      if (!(p_ < end_ && *p_ >= '0' && *p_ <= '9')) return false;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    return true;
  }

  bool Number(double& value) {
    const char* start;
    bool is_integer;
    if (!Scan(start, is_integer)) return false;
    const auto [end, ec] = std::from_chars(start, p_, value);
    if (ec != std::errc() || end != p_) return false;  // out of double range: general path
    if (is_integer && value == 0.0) value = 0.0;       // Python's int -0 is 0
    return true;
  }

  // A JSON integer that fits in int64 with room to spare (at most 18 digits).
  bool Integer(std::int64_t& value) {
    const char* start;
    bool is_integer;
    if (!Scan(start, is_integer) || !is_integer) return false;
    const bool negative = *start == '-';
    const char* digits = start + (negative ? 1 : 0);
    if (p_ - digits > 18) return false;
    std::int64_t v = 0;
    for (const char* c = digits; c < p_; ++c) v = v * 10 + (*c - '0');
    value = negative ? -v : v;
    return true;
  }

  bool Box(double (&box)[4]) {
    if (!Take('[')) return false;
    for (int i = 0; i < 4; ++i) {
      SkipSpace();
      if (!Number(box[i])) return false;
      SkipSpace();
      if (!Take(i < 3 ? ',' : ']')) return false;
    }
    return true;
  }
};

// Where to split [begin, end) near `from` between two records: just after a '}' that a ','
// and a '{' follow (white space allowed). In the plain form no string holds a brace, so
// that is a record boundary; a file that is not plain fails in one of the parts anyway.
const char* Boundary(const char* from, const char* end) {
  auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  for (const char* p = from; p < end; ++p) {
    if (*p != '}') continue;
    const char* q = p + 1;
    while (q < end && space(*q)) ++q;
    if (q == end || *q != ',') continue;
    ++q;
    while (q < end && space(*q)) ++q;
    if (q < end && *q == '{') return p + 1;
  }
  return end;
}

// Parts of at least this many bytes are worth a thread of their own.
constexpr Py_ssize_t kPartBytes = 4 << 20;

bool ReadParts(const char* begin, const char* end, int threads, Columns& out) {
  std::vector<const char*> cuts{begin};
  for (int w = 1; w < threads; ++w) {
    const char* at = Boundary(begin + (end - begin) * w / threads, end);
    if (at > cuts.back() && at < end) cuts.push_back(at);
  }
  cuts.push_back(end);
  const std::size_t parts = cuts.size() - 1;
  std::vector<Columns> found(parts);
  std::vector<char> ok(parts, 0);
  auto read = [&](std::size_t i) {
    try {
      ok[i] = Reader(cuts[i], cuts[i + 1]).Read(found[i], i == 0, i + 1 == parts);
    } catch (const std::bad_alloc&) {
      ok[i] = 0;  // the general path will say so (MemoryError) or manage
    }
  };
  std::vector<std::thread> workers;
  for (std::size_t i = 1; i < parts; ++i) workers.emplace_back(read, i);
  read(0);
  for (std::thread& t : workers) t.join();
  for (std::size_t i = 0; i < parts; ++i) {
    if (!ok[i]) return false;
  }
  if (parts == 1) {
    out = std::move(found[0]);
    return true;
  }
  for (const Columns& part : found) {
    out.image_id.insert(out.image_id.end(), part.image_id.begin(), part.image_id.end());
    out.category_id.insert(out.category_id.end(), part.category_id.begin(),
                           part.category_id.end());
    out.bbox.insert(out.bbox.end(), part.bbox.begin(), part.bbox.end());
    out.score.insert(out.score.end(), part.score.begin(), part.score.end());
  }
  return true;
}

PyObject* ColumnsOf(PyObject*, PyObject* args) {
  Py_buffer view;
  int threads = 1;
  if (!PyArg_ParseTuple(args, "y*|i", &view, &threads)) return nullptr;
  Columns out;
  bool ok;
  Py_BEGIN_ALLOW_THREADS;
  const char* begin = static_cast<const char*>(view.buf);
  const int parts = static_cast<int>(std::max<Py_ssize_t>(
      1, std::min<Py_ssize_t>(threads, view.len / kPartBytes)));
  ok = ReadParts(begin, begin + view.len, parts, out);
  Py_END_ALLOW_THREADS;
  PyBuffer_Release(&view);
  if (!ok) Py_RETURN_NONE;
  return Py_BuildValue("(NNNN)", Bytes(out.image_id), Bytes(out.category_id), Bytes(out.bbox),
                       Bytes(out.score));
}

PyMethodDef kMethods[] = {
    {"columns", ColumnsOf, METH_VARARGS,
     "A plain COCO results file as (image_id, category_id, bbox, score) byte columns, or None."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_results_json",
                       "COCO results files to columns, with the doubles Python's json gives.",
                       -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__results_json(void) { return PyModule_Create(&kModule); }

// TensorFlow's CPU combined non-max suppression, one image at a time.
//
// Written from the rules of tensorflow/core/kernels/image/non_max_suppression_op.cc
// (DoNMSPerClass, then SelectResultPerBatch). Bit-exactness with that kernel needs more than
// the documented semantics: equal scores come out in the order of its containers, so this
// file uses the same ones the same way (std::priority_queue ordered by score alone, filled
// in box order; std::sort, not stable, over the whole per-class result table including its
// unfilled slots). Compiled with -ffp-contract=off so the float32 IoU is TF's, operation by
// operation (evalkit/postprocess/nms.py says how this is checked against TF itself).
//
// Speed (issue 17: under 1 ms per image at 3000 boxes x 80 classes) comes from work TF does
// that cannot change an output: corners and areas computed once per box, not per pair; the
// IoU with all kept boxes computed branch-free in vectorised blocks (the answer, suppressed
// or not, does not depend on the order TF checks them in); one pass over the scores in
// memory order; and, when the kept top scores are distinct, a selection instead of sorting
// the whole result table. Equal scores still take TF's own containers and full sort.
//
// Python API (buffers are C-contiguous; numpy arrays qualify):
//   select(boxes: float32[B*4], scores: float32[B*C], num_boxes, num_classes,
//          score_threshold, iou_threshold, max_per_class, max_total, clip)
//     -> (box_index int32 bytes, class_index int32 bytes, scores float32 bytes,
//         corners float32 bytes (4 per kept box)), in TF's output order.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../_bytes.h"

#include <algorithm>
#include <cstdint>
#include <queue>
#include <vector>

namespace {

using evalkit::Bytes;

struct Candidate {
  int box_index;
  float score;
};

// One box's corners as TF's IOU() sees them (min/max per axis) and its area, computed once
// per image with the same float32 operations TF performs on every call.
struct Corners {
  std::vector<float> lo0, lo1, hi0, hi1, area;
  Corners(const float* boxes, int num_boxes)
      : lo0(num_boxes), lo1(num_boxes), hi0(num_boxes), hi1(num_boxes), area(num_boxes) {
    for (int i = 0; i < num_boxes; ++i) {
      const float* b = boxes + 4 * static_cast<std::int64_t>(i);
      lo0[i] = std::min(b[0], b[2]);
      lo1[i] = std::min(b[1], b[3]);
      hi0[i] = std::max(b[0], b[2]);
      hi1[i] = std::max(b[1], b[3]);
      area[i] = (hi0[i] - lo0[i]) * (hi1[i] - lo1[i]);
    }
  }
};

// The boxes a class has kept so far, as columns, so that the IoU of a candidate with all of
// them is one loop the compiler vectorises.
struct Kept {
  std::vector<float> lo0, lo1, hi0, hi1, area;
  std::vector<int> box_index;
  void Reserve(int n) {
    for (auto* v : {&lo0, &lo1, &hi0, &hi1, &area}) v->reserve(n);
    box_index.reserve(n);
  }
  void Clear() {
    for (auto* v : {&lo0, &lo1, &hi0, &hi1, &area}) v->clear();
    box_index.clear();
  }
  void Add(const Corners& c, int i) {
    lo0.push_back(c.lo0[i]);
    lo1.push_back(c.lo1[i]);
    hi0.push_back(c.hi0[i]);
    hi1.push_back(c.hi1[i]);
    area.push_back(c.area[i]);
    box_index.push_back(i);
  }
  // TF's IOU(candidate i, kept j) > threshold for any kept j. TF checks newest first and
  // stops at the first; the answer (suppressed or not) does not depend on the order, so
  // every pair is computed without branches. Same float32 operations as IOU(): a box
  // without area has IoU 0 with everything.
  inline __attribute__((always_inline)) bool Suppresses(const Corners& c, int i,
                                                        float iou_threshold) const {
    const float lo0_a = c.lo0[i], lo1_a = c.lo1[i], hi0_a = c.hi0[i], hi1_a = c.hi1[i];
    const float area_a = c.area[i];
    const std::size_t n = box_index.size();
    // IoU is 0 with a box without area, which suppresses only under a negative threshold.
    const bool zero_suppresses = 0.0f > iou_threshold;
    if (area_a <= 0) return n > 0 && zero_suppresses;
    // No branch in a block's body (bitwise, not short-circuit), so it is vectorised; TF
    // stops at the first suppressing box, here at the first block holding one.
    constexpr std::size_t kBlock = 32;
    int hit = 0;
    for (std::size_t start = 0; start < n && !hit; start += kBlock) {
      const std::size_t end = std::min(n, start + kBlock);
      for (std::size_t j = start; j < end; ++j) {
        const float inter_lo0 = std::max(lo0_a, lo0[j]);
        const float inter_lo1 = std::max(lo1_a, lo1[j]);
        const float inter_hi0 = std::min(hi0_a, hi0[j]);
        const float inter_hi1 = std::min(hi1_a, hi1[j]);
        const float inter =
            std::max(inter_hi0 - inter_lo0, 0.0f) * std::max(inter_hi1 - inter_lo1, 0.0f);
        const float ratio = inter / (area_a + area[j] - inter);
        const int has_area = area[j] > 0;
        hit |= (has_area & (ratio > iou_threshold)) | ((1 - has_area) & zero_suppresses);
      }
    }
    return hit != 0;
  }
};

// DoNMSPerClass: candidates strictly above the threshold, in box order, into a heap keyed on
// score only; greedy selection popping from it; a candidate is dropped when its IoU with a
// box already selected exceeds the threshold.
// On x86-64 the greedy pass is also compiled for AVX2 (8 IoUs per instruction), chosen at
// load time where the CPU has it; the arithmetic is the same IEEE float32 either way (no
// FMA: -ffp-contract=off), so the answers are too.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EVALKIT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define EVALKIT_CLONES
#endif
EVALKIT_CLONES void NmsPerClass(const Candidate* first, const Candidate* last, const Corners& corners,
                                int size_per_class, float iou_threshold, Kept& kept,
                                std::vector<Candidate>& selected) {
  auto cmp = [](const Candidate a, const Candidate b) { return a.score < b.score; };
  std::vector<Candidate> storage;  // room for every push at once: no reallocation
  storage.reserve(static_cast<std::size_t>(last - first));
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(cmp)> queue(
      cmp, std::move(storage));
  // Pushed one at a time in box order, as TF does: the heap's layout (hence the pop order of
  // equal scores) depends on it.
  for (const Candidate* candidate = first; candidate != last; ++candidate) queue.push(*candidate);
  kept.Clear();
  while (static_cast<int>(kept.box_index.size()) < size_per_class && !queue.empty()) {
    const Candidate next = queue.top();
    queue.pop();
    if (kept.Suppresses(corners, next.box_index, iou_threshold)) continue;
    selected.push_back(next);
    kept.Add(corners, next.box_index);
  }
}

// A slot of the result table as the final sort sees it: std::sort's sequence of comparisons
// and moves depends only on the comparator's answers, so sorting (score, slot) keys with the
// same comparator puts the slots in the same order as sorting TF's 32-byte rows, faster.
struct SlotKey {
  float score;
  int slot;
};

// The first ``count`` keys in the order TF's std::sort gives them. When the ``count`` highest
// scores are distinct and above every other, any correct sort puts the same keys there in
// the same order, so selecting them (nth_element) and sorting those few is exact and much
// cheaper; otherwise (equal scores at the top, frequent with int8 models) the order of
// equal keys is std::sort's own, so the whole table goes through it as in TF.
void SortLikeTf(std::vector<SlotKey>& keys, int count) {
  auto descending = [](const SlotKey a, const SlotKey b) { return a.score > b.score; };
  const std::size_t n = static_cast<std::size_t>(count);
  if (count > 0 && n < keys.size()) {
    std::vector<SlotKey> top(keys);
    std::nth_element(top.begin(), top.begin() + count, top.end(), descending);
    const float next = top[n].score;  // the highest score left out
    std::sort(top.begin(), top.begin() + count, descending);
    bool distinct = top[n - 1].score > next;
    for (std::size_t k = 1; k < n && distinct; ++k) distinct = top[k - 1].score > top[k].score;
    if (distinct) {
      std::copy(top.begin(), top.begin() + count, keys.begin());
      return;
    }
  }
  std::sort(keys.begin(), keys.end(), descending);
}

bool Contiguous(Py_buffer& view, Py_ssize_t want, const char* name) {
  if (view.len != want) {
    PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name, want, view.len);
    return false;
  }
  return true;
}

PyObject* Select(PyObject*, PyObject* args) {
  Py_buffer boxes_view, scores_view;
  int num_boxes, num_classes, max_per_class, max_total, clip;
  float score_threshold, iou_threshold;
  if (!PyArg_ParseTuple(args, "y*y*iiffiip", &boxes_view, &scores_view, &num_boxes,
                        &num_classes, &score_threshold, &iou_threshold, &max_per_class,
                        &max_total, &clip)) {
    return nullptr;
  }
  PyObject* result = nullptr;
  if (num_boxes < 0 || num_classes < 0 || max_per_class < 0 || max_total < 0) {
    PyErr_SetString(PyExc_ValueError, "sizes and limits must be non-negative");
  } else if (Contiguous(boxes_view, static_cast<Py_ssize_t>(num_boxes) * 4 * 4, "boxes") &&
             Contiguous(scores_view,
                        static_cast<Py_ssize_t>(num_boxes) * num_classes * 4, "scores")) {
    const float* boxes = static_cast<const float*>(boxes_view.buf);
    const float* scores = static_cast<const float*>(scores_view.buf);
    std::vector<int> out_box, out_class;
    std::vector<float> out_score, out_corner;
    Py_BEGIN_ALLOW_THREADS;
    // BatchedNonMaxSuppressionOp: size_per_class = min(max_size_per_class, num_boxes), and
    // a table of size_per_class slots per class, unfilled slots {-1, -1.0, -1, 0...}.
    const int size_per_class = std::min(max_per_class, num_boxes);
    // Each class's candidates in box order: one pass over the scores in memory order into
    // one list (a vectorised test of 16 classes gives a bit mask of the candidates; only
    // its set bits are visited), then a stable counting sort by class.
    struct Found {
      int class_idx;
      Candidate candidate;
    };
    std::vector<Found> found;
    found.reserve(4096);
    for (int i = 0; i < num_boxes; ++i) {
      const float* row = scores + static_cast<std::int64_t>(i) * num_classes;
      constexpr int kChunk = 16;
      for (int start = 0; start < num_classes; start += kChunk) {
        const int width = std::min(num_classes - start, kChunk);
        unsigned mask = 0;
        for (int k = 0; k < width; ++k) {
          mask |= static_cast<unsigned>(row[start + k] > score_threshold) << k;
        }
        while (mask != 0) {  // the set bits, lowest (first class) first
          const int c = start + __builtin_ctz(mask);
          found.push_back({c, Candidate({i, row[c]})});
          mask &= mask - 1;
        }
      }
    }
    std::vector<std::size_t> offset(static_cast<std::size_t>(num_classes) + 1, 0);
    for (const Found& f : found) ++offset[f.class_idx + 1];
    for (int c = 0; c < num_classes; ++c) offset[c + 1] += offset[c];
    std::vector<Candidate> by_class(found.size());
    {
      std::vector<std::size_t> next(offset.begin(), offset.end() - 1);
      for (const Found& f : found) by_class[next[f.class_idx]++] = f.candidate;
    }
    const Corners corners(boxes, num_boxes);
    Kept kept;
    kept.Reserve(size_per_class);
    std::vector<std::vector<Candidate>> selected(num_classes);
    for (int c = 0; c < num_classes; ++c) {
      NmsPerClass(by_class.data() + offset[c], by_class.data() + offset[c + 1], corners,
                  size_per_class, iou_threshold, kept, selected[c]);
    }
    // SelectResultPerBatch: TF's result table (size_per_class slots per class, unfilled slots
    // scored -1) sorted by descending score, then the first min(filled slots, max_total)
    // rows (pad_per_class false). The table is sorted as (score, slot) keys.
    const std::size_t slots = static_cast<std::size_t>(size_per_class) * num_classes;
    std::vector<SlotKey> keys(slots);
    int filled = 0;
    for (int c = 0; c < num_classes; ++c) {
      const std::vector<Candidate>& kept_c = selected[c];
      filled += static_cast<int>(kept_c.size());
      for (int k = 0; k < size_per_class; ++k) {
        const std::size_t slot = static_cast<std::size_t>(size_per_class) * c + k;
        keys[slot] = {k < static_cast<int>(kept_c.size()) ? kept_c[k].score : -1.0f,
                      static_cast<int>(slot)};
      }
    }
    const int count = std::min(filled, max_total);
    SortLikeTf(keys, count);
    out_box.reserve(count);
    out_class.reserve(count);
    out_score.reserve(count);
    out_corner.reserve(static_cast<std::size_t>(count) * 4);
    for (int k = 0; k < count && k < static_cast<int>(keys.size()); ++k) {
      const int c = keys[k].slot / size_per_class;
      const int rank = keys[k].slot % size_per_class;
      if (rank >= static_cast<int>(selected[c].size())) {
        // An unfilled slot sorted among the first rows (only when kept scores are <= -1):
        // TF returns its placeholder row.
        out_box.push_back(-1);
        out_class.push_back(-1);
        out_score.push_back(-1.0f);
        for (int v = 0; v < 4; ++v) out_corner.push_back(0.0f);
        continue;
      }
      const Candidate& kept_box = selected[c][rank];
      const float* corner = boxes + 4 * static_cast<std::int64_t>(kept_box.box_index);
      out_box.push_back(kept_box.box_index);
      out_class.push_back(c);
      out_score.push_back(kept_box.score);
      for (int v = 0; v < 4; ++v) {
        const float value = corner[v];
        out_corner.push_back(clip ? std::max(std::min(value, 1.0f), 0.0f) : value);
      }
    }
    Py_END_ALLOW_THREADS;
    result = Py_BuildValue("(NNNN)", Bytes(out_box), Bytes(out_class), Bytes(out_score),
                           Bytes(out_corner));
  }
  PyBuffer_Release(&boxes_view);
  PyBuffer_Release(&scores_view);
  return result;
}

PyMethodDef kMethods[] = {
    {"select", Select, METH_VARARGS,
     "TensorFlow combined NMS of one image: (box, class, score, corner) byte buffers."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_tfnms",
                       "TensorFlow's CPU combined NMS, with its order of equal scores.", -1,
                       kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__tfnms(void) { return PyModule_Create(&kModule); }

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
// Python API (buffers are C-contiguous; numpy arrays qualify):
//   select(boxes: float32[B*4], scores: float32[B*C], num_boxes, num_classes,
//          score_threshold, iou_threshold, max_per_class, max_total, clip)
//     -> (box_index int32 bytes, class_index int32 bytes, scores float32 bytes,
//         corners float32 bytes (4 per kept box)), in TF's output order.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cstdint>
#include <queue>
#include <vector>

namespace {

struct Candidate {
  int box_index;
  float score;
};

struct ResultCandidate {
  int box_index;
  float score;
  int class_idx;
  float box_coord[4];
};

// TF's IOU(): min/max per axis, zero for a box without area, float32 throughout.
inline float Iou(const float* boxes, int i, int j) {
  const float* a = boxes + 4 * static_cast<std::int64_t>(i);
  const float* b = boxes + 4 * static_cast<std::int64_t>(j);
  const float lo0_a = std::min(a[0], a[2]);
  const float lo1_a = std::min(a[1], a[3]);
  const float hi0_a = std::max(a[0], a[2]);
  const float hi1_a = std::max(a[1], a[3]);
  const float lo0_b = std::min(b[0], b[2]);
  const float lo1_b = std::min(b[1], b[3]);
  const float hi0_b = std::max(b[0], b[2]);
  const float hi1_b = std::max(b[1], b[3]);
  const float area_a = (hi0_a - lo0_a) * (hi1_a - lo1_a);
  const float area_b = (hi0_b - lo0_b) * (hi1_b - lo1_b);
  if (area_a <= 0 || area_b <= 0) return 0.0f;
  const float inter_lo0 = std::max(lo0_a, lo0_b);
  const float inter_lo1 = std::max(lo1_a, lo1_b);
  const float inter_hi0 = std::min(hi0_a, hi0_b);
  const float inter_hi1 = std::min(hi1_a, hi1_b);
  const float inter = std::max(inter_hi0 - inter_lo0, 0.0f) * std::max(inter_hi1 - inter_lo1, 0.0f);
  return inter / (area_a + area_b - inter);
}

// DoNMSPerClass: candidates strictly above the threshold into a heap keyed on score only;
// greedy selection popping from it; a candidate is dropped when its IoU with any box
// already selected (checked newest first) exceeds the threshold.
void NmsPerClass(int class_idx, const float* boxes, const float* scores, int num_boxes,
                 int num_classes, int size_per_class, float score_threshold,
                 float iou_threshold, std::vector<ResultCandidate>& table) {
  auto cmp = [](const Candidate a, const Candidate b) { return a.score < b.score; };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(cmp)> queue(cmp);
  for (int i = 0; i < num_boxes; ++i) {
    const float s = scores[static_cast<std::int64_t>(i) * num_classes + class_idx];
    if (s > score_threshold) queue.emplace(Candidate({i, s}));
  }
  std::vector<int> selected;
  while (static_cast<int>(selected.size()) < size_per_class && !queue.empty()) {
    const Candidate next = queue.top();
    queue.pop();
    bool keep = true;
    for (int j = static_cast<int>(selected.size()) - 1; j >= 0; --j) {
      if (Iou(boxes, next.box_index, selected[j]) > iou_threshold) {
        keep = false;
        break;
      }
    }
    if (keep) {
      const float* c = boxes + 4 * static_cast<std::int64_t>(next.box_index);
      table[selected.size() + static_cast<std::size_t>(size_per_class) * class_idx] = {
          next.box_index, next.score, class_idx, {c[0], c[1], c[2], c[3]}};
      selected.push_back(next.box_index);
    }
  }
}

bool Contiguous(Py_buffer& view, Py_ssize_t want, const char* name) {
  if (view.len != want) {
    PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name, want, view.len);
    return false;
  }
  return true;
}

// A vector's bytes as a Python bytes object (an empty vector's data() may be null).
template <typename V>
PyObject* Bytes(const std::vector<V>& values) {
  const Py_ssize_t size = static_cast<Py_ssize_t>(values.size() * sizeof(V));
  PyObject* out = PyBytes_FromStringAndSize(nullptr, size);
  if (out != nullptr && size > 0) std::copy_n(values.data(), values.size(), reinterpret_cast<V*>(PyBytes_AS_STRING(out)));
  return out;
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
    std::vector<ResultCandidate> table(
        static_cast<std::size_t>(size_per_class) * num_classes, {-1, -1.0f, -1, {0, 0, 0, 0}});
    for (int c = 0; c < num_classes; ++c) {
      NmsPerClass(c, boxes, scores, num_boxes, num_classes, size_per_class, score_threshold,
                  iou_threshold, table);
    }
    // SelectResultPerBatch: the whole table sorted by descending score, then the first
    // min(filled slots, max_total) rows (pad_per_class false).
    auto rc_cmp = [](const ResultCandidate a, const ResultCandidate b) {
      return a.score > b.score;
    };
    std::sort(table.begin(), table.end(), rc_cmp);
    const int filled = static_cast<int>(std::count_if(
        table.begin(), table.end(), [](const ResultCandidate& rc) { return rc.box_index > -1; }));
    const int count = std::min(filled, max_total);
    out_box.reserve(count);
    out_class.reserve(count);
    out_score.reserve(count);
    out_corner.reserve(static_cast<std::size_t>(count) * 4);
    for (int k = 0; k < count && k < static_cast<int>(table.size()); ++k) {
      const ResultCandidate& rc = table[k];
      out_box.push_back(rc.box_index);
      out_class.push_back(rc.class_idx);
      out_score.push_back(rc.score);
      for (float v : rc.box_coord) {
        out_corner.push_back(clip ? std::max(std::min(v, 1.0f), 0.0f) : v);
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

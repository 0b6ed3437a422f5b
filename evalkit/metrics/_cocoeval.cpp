// pycocotools' COCOeval for boxes (evaluate() then accumulate()), for any parameters.
//
// Written from the rules of pycocotools/cocoeval.py and maskApi.c (bbIou); every value the
// Python code computes is computed here with the same double operations in the same order
// (compiled with -ffp-contract=off, so no fused multiply-add changes an IoU), and every
// order it depends on (stable mergesorts by descending score, ground truths with regular
// ones first, images in ascending id order) is reproduced, so the arrays are bit-identical.
//
// What is not pycocotools' way is only how the work is organised: detections are laid out
// once in accumulate() order (per evaluated category, descending score, then image, then
// rank in the image), matching writes its flags straight there, and each precision curve is
// walked once with precision computed at its first point and its true positives only: between
// two true positives precision only falls, so the right-to-left envelope at any point is the
// max over the true positives after it (max is exact, so nothing changes).
//
// Python API (buffers are C-contiguous; numpy arrays qualify):
//   evaluate(g_img i64[G], g_cat i64[G], g_box f64[G*4], g_area f64[G], g_crowd u8[G],
//            g_real u8[G], d_img i64[D], d_cat i64[D], d_box f64[D*4], d_score f64[D],
//            num_images, num_categories, iou_thrs f64[T], rec_thrs f64[R],
//            area_rng f64[A*2], max_dets i64[M], use_cats, threads, want_slots=False)
//     -> (precision f64 (T,R,K,A,M), recall f64 (T,K,A,M), tp i64 (T,K,A,M),
//         fp i64 (T,K,A,M), num_gt i64 (K,A), num_det i64 (K,M)) as bytes, K = num_categories
//         with use_cats, else 1. Images and categories are given as ranks (0..n-1 in the order
//         pycocotools evaluates them); g_real is 0 for a ground truth whose id is 0 (a match
//         to it counts as none in accumulate(), as pycocotools tests stored ids for truth).
//         With want_slots, three more: slot_det i64 (each evaluated detection, as an index
//         into the d_ arrays, in accumulate() order), flags u8 (A*T per slot: 1 true
//         positive, 2 ignored, 0 false positive) and cat_start i64 (K+1: each category's
//         range of slots).
//   count_duplicates(img i64[D], cat i64[D], box f64[D*4], score f64[D]) -> int: rows equal
//         to an earlier row (-0.0 equal to 0.0, as numpy.unique compares).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../_bytes.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
#include <atomic>
#include <new>
#include <thread>

namespace {

using evalkit::Bytes;

using i64 = std::int64_t;

// A Py_buffer released when it goes out of scope.
struct View {
  Py_buffer view{};
  bool held = false;
  ~View() {
    if (held) PyBuffer_Release(&view);
  }
  template <typename T>
  const T* As() const {
    return static_cast<const T*>(view.buf);
  }
};

bool Sized(const View& v, i64 count, i64 item, const char* name) {
  if (v.view.len != count * item) {
    PyErr_Format(PyExc_ValueError, "%s: expected %lld bytes, got %zd", name,
                 static_cast<long long>(count * item), v.view.len);
    return false;
  }
  return true;
}

struct Problem {
  i64 G, D, I, K, T, R, A, M;
  const i64 *g_img, *g_cat, *d_img, *d_cat, *max_dets;
  const double *g_box, *g_area, *d_box, *d_score, *iou_thrs, *rec_thrs, *area_rng;
  const std::uint8_t *g_crowd, *g_real;
  bool use_cats;
};

struct Result {
  std::vector<double> precision, recall;
  std::vector<i64> tp, fp, num_gt, num_det;
  // With want_slots: every kept detection in accumulate() order, its flags (A*T per slot),
  // and each evaluated category's range of slots.
  std::vector<i64> slot_det, cat_start;
  std::vector<std::uint8_t> flags;
};

// Indices 0..n-1 ordered by key (stable: index order within a key). A counting sort when the
// key space is small next to n, else a stable sort.
std::vector<i64> OrderByKey(const std::vector<i64>& key, i64 key_space) {
  const i64 n = static_cast<i64>(key.size());
  std::vector<i64> order(n);
  if (key_space <= 4 * n + (1 << 20)) {
    std::vector<i64> start(key_space + 1, 0);
    for (i64 k : key) ++start[k + 1];
    for (i64 k = 0; k < key_space; ++k) start[k + 1] += start[k];
    for (i64 i = 0; i < n; ++i) order[start[key[i]]++] = i;
  } else {
    for (i64 i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&key](i64 a, i64 b) { return key[a] < key[b]; });
  }
  return order;
}

// maskApi.c bbIou for one pair, operation for operation.
inline double BoxIou(const double* D, const double* G, bool crowd) {
  const double ga = G[2] * G[3];
  const double da = D[2] * D[3];
  const double w = std::fmin(D[2] + D[0], G[2] + G[0]) - std::fmax(D[0], G[0]);
  if (w <= 0) return 0.0;
  const double h = std::fmin(D[3] + D[1], G[3] + G[1]) - std::fmax(D[1], G[1]);
  if (h <= 0) return 0.0;
  const double i = w * h;
  const double u = crowd ? da : da + ga - i;
  return i / u;
}

// Runs fn(lo, hi) over contiguous ranges of items [0, n) on up to `workers` threads, cut
// so that each range holds about the same weight (prefix[i]: total weight of items < i).
// The ranges write disjoint outputs, so the result does not depend on the thread count.
template <typename Fn>
void InParallel(int workers, const std::vector<i64>& prefix, const Fn& fn) {
  const i64 n = static_cast<i64>(prefix.size()) - 1;
  if (workers <= 1 || n < 2) {
    fn(0, n);
    return;
  }
  std::vector<i64> cut(workers + 1, n);
  cut[0] = 0;
  for (int w = 1; w < workers; ++w) {
    const i64 goal = prefix[n] / workers * w;
    const i64 at = std::lower_bound(prefix.begin(), prefix.end(), goal) - prefix.begin();
    cut[w] = std::min(n, std::max(cut[w - 1], at));
  }
  std::atomic<bool> failed{false};
  auto guarded = [&](i64 lo, i64 hi) {
    try {
      fn(lo, hi);
    } catch (...) {  // std::bad_alloc: reported once the threads are joined
      failed = true;
    }
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < workers; ++w) threads.emplace_back(guarded, cut[w], cut[w + 1]);
  guarded(cut[0], cut[1]);
  for (std::thread& t : threads) t.join();
  if (failed) throw std::bad_alloc();
}

// prefix[i] = sum of weight(j) for j < i.
template <typename W>
std::vector<i64> Prefix(i64 n, const W& weight) {
  std::vector<i64> prefix(n + 1, 0);
  for (i64 i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + weight(i);
  return prefix;
}

// Detections and ground truths grouped as evaluateImg sees them, and every kept detection's
// place in accumulate() order.
struct Group {
  i64 g_lo, g_hi, d_lo, d_kept;  // ranges in g_order and d_order (detections cut to E)
};

struct Slot {
  double score;
  i64 det;
  i64 rank;  // place in its image's score order (maxDets cuts on it)
};

struct Layout {
  std::vector<i64> g_order, d_order;
  std::vector<Group> groups;
  std::vector<i64> cat_start;  // per evaluated category, its range of slots
  std::vector<Slot> slots;     // accumulate() order
  std::vector<i64> position;   // detection -> slot (-1 when cut by E)
};

Layout MakeLayout(const Problem& p, i64 K_eval, i64 E, int workers) {
  Layout L;
  // Fine key (image, category): within an image, categories in evaluation order, as
  // pycocotools concatenates them when useCats is 0. Groups are fine keys with useCats,
  // else images.
  const i64 K = std::max<i64>(p.K, 1);
  std::vector<i64> g_key(p.G), d_key(p.D);
  for (i64 i = 0; i < p.G; ++i) g_key[i] = p.g_img[i] * K + p.g_cat[i];
  for (i64 i = 0; i < p.D; ++i) d_key[i] = p.d_img[i] * K + p.d_cat[i];
  L.g_order = OrderByKey(g_key, p.I * K);
  L.d_order = OrderByKey(d_key, p.I * K);
  auto group_of = [&](i64 fine) { return p.use_cats ? fine : fine / K; };
  constexpr i64 kNone = std::numeric_limits<i64>::max();
  i64 gi = 0, di = 0;
  while (gi < p.G || di < p.D) {
    const i64 gg = gi < p.G ? group_of(g_key[L.g_order[gi]]) : kNone;
    const i64 dg = di < p.D ? group_of(d_key[L.d_order[di]]) : kNone;
    const i64 g = std::min(gg, dg);
    i64 g_hi = gi, d_hi = di;
    while (g_hi < p.G && group_of(g_key[L.g_order[g_hi]]) == g) ++g_hi;
    while (d_hi < p.D && group_of(d_key[L.d_order[d_hi]]) == g) ++d_hi;
    L.groups.push_back({gi, g_hi, di, d_hi});
    gi = g_hi;
    di = d_hi;
  }
  // Each detection group sorted by descending score (stable: mergesort in pycocotools),
  // then cut to E.
  const i64 num_groups = static_cast<i64>(L.groups.size());
  InParallel(workers, Prefix(num_groups, [&L](i64 i) { return L.groups[i].d_kept - L.groups[i].d_lo; }),
             [&](i64 lo, i64 hi) {
               for (i64 i = lo; i < hi; ++i) {
                 Group& grp = L.groups[i];
                 std::stable_sort(L.d_order.begin() + grp.d_lo, L.d_order.begin() + grp.d_kept,
                                  [&p](i64 a, i64 b) { return p.d_score[a] > p.d_score[b]; });
                 grp.d_kept = std::min(grp.d_kept, grp.d_lo + E);
               }
             });
  // accumulate(): per evaluated category, images ascending with each image's kept
  // detections in score order, then a stable sort by descending score.
  auto cat_of = [&p](i64 det) { return p.use_cats ? p.d_cat[det] : 0; };
  L.cat_start.assign(K_eval + 1, 0);
  for (const Group& grp : L.groups) {
    for (i64 j = grp.d_lo; j < grp.d_kept; ++j) ++L.cat_start[cat_of(L.d_order[j]) + 1];
  }
  for (i64 k = 0; k < K_eval; ++k) L.cat_start[k + 1] += L.cat_start[k];
  L.slots.resize(L.cat_start[K_eval]);
  std::vector<i64> next(L.cat_start.begin(), L.cat_start.end() - 1);
  for (const Group& grp : L.groups) {
    for (i64 j = grp.d_lo; j < grp.d_kept; ++j) {
      const i64 d = L.d_order[j];
      L.slots[next[cat_of(d)]++] = {p.d_score[d], d, j - grp.d_lo};
    }
  }
  InParallel(workers, L.cat_start, [&L](i64 lo, i64 hi) {
    for (i64 k = lo; k < hi; ++k) {
      std::stable_sort(L.slots.begin() + L.cat_start[k], L.slots.begin() + L.cat_start[k + 1],
                       [](const Slot& a, const Slot& b) { return a.score > b.score; });
    }
  });
  L.position.assign(p.D, -1);
  for (std::size_t s = 0; s < L.slots.size(); ++s) L.position[L.slots[s].det] = s;
  return L;
}

// Per (slot, area range, threshold): true positive and ignored flags, one slot's flags
// together, so that matching writes one cache line per detection and accumulate() walks
// every curve of a category in one pass.
constexpr std::uint8_t kTp = 1, kIgnored = 2;

// evaluateImg for every group, area range and threshold. Fills flags and the non-ignored
// ground truths per (evaluated category, area range).
//
// pycocotools' loop gives a detection, at threshold t, the ground truth with the highest IoU
// (the later one on ties) among those not yet taken at t with IoU >= min(t, 1 - 1e-10),
// regular ones first: an ignored one only when no regular one qualifies (regular ground
// truths come first in its scan, and it stops at the first ignored one once it holds a
// regular match). Ground truths below every threshold can never qualify, so each detection
// looks only at its candidates, ordered by (IoU, position) descending: the first one that
// qualifies at t wins t. Thresholds go 64 at a time as bit masks: a candidate's passing
// thresholds, a ground truth's taken ones, the ones still without a match.
void Match(const Problem& p, const Layout& L, int workers, std::vector<std::uint8_t>& flags,
           std::vector<i64>& num_gt) {
  const i64 A = p.A, T = p.T, AT = A * T;
  const i64 chunks = (T + 63) / 64;
  flags.assign(static_cast<std::size_t>(AT * L.slots.size()), 0);
  std::vector<double> limit(T);
  double lowest = 1.0;
  for (i64 t = 0; t < T; ++t) {
    limit[t] = std::min(p.iou_thrs[t], 1 - 1e-10);
    lowest = std::min(lowest, limit[t]);
  }
  struct Candidate {
    i64 g;
    double iou;
  };
  const i64 num_groups = static_cast<i64>(L.groups.size());
  std::vector<std::vector<i64>> counts(std::max(workers, 1));  // num_gt of each range
  std::atomic<int> next_range{0};
  InParallel(workers, Prefix(num_groups, [&L](i64 i) {
    const Group& grp = L.groups[i];
    return 1 + (grp.d_kept - grp.d_lo) * (1 + grp.g_hi - grp.g_lo);
  }), [&](i64 group_lo, i64 group_hi) {
  std::vector<i64>& gt_count = counts[next_range++];
  gt_count.assign(num_gt.size(), 0);
  std::vector<std::uint8_t> ignored;   // (a, g)
  std::vector<std::uint64_t> taken;    // (a, chunk, g)
  std::vector<Candidate> cands;
  std::vector<std::uint64_t> passes;   // (candidate, chunk)
  std::vector<i64> match(T);
  for (i64 group = group_lo; group < group_hi; ++group) {
    const Group& grp = L.groups[group];
    const i64 ng = grp.g_hi - grp.g_lo;
    const i64* gts = L.g_order.data() + grp.g_lo;
    ignored.resize(A * ng);
    for (i64 a = 0; a < A; ++a) {
      const double lo = p.area_rng[2 * a], hi = p.area_rng[2 * a + 1];
      for (i64 g = 0; g < ng; ++g) {
        const i64 gt = gts[g];
        const bool ig = p.g_crowd[gt] || p.g_area[gt] < lo || p.g_area[gt] > hi;
        ignored[a * ng + g] = ig;
        if (!ig) ++gt_count[(p.use_cats ? p.g_cat[gt] : 0) * A + a];
      }
    }
    taken.assign(A * chunks * ng, 0);
    for (i64 j = grp.d_lo; j < grp.d_kept; ++j) {  // in score order
      const i64 det = L.d_order[j];
      const double* box = p.d_box + 4 * det;
      const double det_area = box[2] * box[3];  // loadRes: area = w * h
      std::uint8_t* row = flags.data() + L.position[det] * AT;
      // Rows are scattered (accumulate() order): fetch a later detection's row meanwhile.
      if (j + 16 < static_cast<i64>(L.d_order.size())) {
        const i64 ahead = L.position[L.d_order[j + 16]];
        if (ahead >= 0) __builtin_prefetch(flags.data() + ahead * AT, 1);
      }
      cands.clear();
      for (i64 g = 0; g < ng; ++g) {
        const double v = BoxIou(box, p.g_box + 4 * gts[g], p.g_crowd[gts[g]]);
        if (v >= lowest) cands.push_back({g, v});
      }
      std::sort(cands.begin(), cands.end(), [](const Candidate& x, const Candidate& y) {
        return x.iou > y.iou || (x.iou == y.iou && x.g > y.g);
      });
      passes.assign(cands.size() * chunks, 0);
      for (std::size_t c = 0; c < cands.size(); ++c) {
        for (i64 t = 0; t < T; ++t) {
          if (cands[c].iou >= limit[t]) passes[c * chunks + t / 64] |= std::uint64_t{1} << (t % 64);
        }
      }
      for (i64 a = 0; a < A; ++a) {
        const bool outside = det_area < p.area_rng[2 * a] || det_area > p.area_rng[2 * a + 1];
        const std::uint8_t* ig_a = ignored.data() + a * ng;
        std::fill(match.begin(), match.end(), -1);
        for (i64 chunk = 0; chunk < chunks && !cands.empty(); ++chunk) {
          const i64 width = std::min<i64>(64, T - chunk * 64);
          std::uint64_t open = width == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << width) - 1;
          std::uint64_t* taken_a = taken.data() + (a * chunks + chunk) * ng;
          for (int regular = 1; regular >= 0 && open; --regular) {
            for (std::size_t c = 0; c < cands.size() && open; ++c) {
              const i64 g = cands[c].g;
              if (ig_a[g] == regular) continue;
              // A crowd is never taken (ignored, so only in the second round).
              const std::uint64_t free = p.g_crowd[gts[g]] ? ~std::uint64_t{0} : ~taken_a[g];
              std::uint64_t won = passes[c * chunks + chunk] & free & open;
              if (won == 0) continue;
              taken_a[g] |= won;
              open &= ~won;
              for (; won; won &= won - 1) match[chunk * 64 + __builtin_ctzll(won)] = g;
            }
          }
        }
        for (i64 t = 0; t < T; ++t) {
          const i64 m = match[t];
          // dtMatches holds the ground truth's id: a match to id 0 reads as none.
          const bool real = m != -1 && p.g_real[gts[m]] != 0;
          const bool ig = (m != -1 && ig_a[m]) || (!real && outside);
          row[a * T + t] = ig ? kIgnored : (real ? kTp : 0);
        }
      }
    }
  }
  });
  for (const std::vector<i64>& part : counts) {
    for (std::size_t i = 0; i < part.size(); ++i) num_gt[i] += part[i];
  }
}

// accumulate(): for every (category, maxDets, area range, threshold) curve, recall at its
// end and precision sampled at the recall thresholds.
void Accumulate(const Problem& p, const Layout& L, const std::vector<std::uint8_t>& flags,
                i64 K, i64 E, int workers, Result& out) {
  const i64 T = p.T, R = p.R, A = p.A, M = p.M, AT = A * T;
  out.precision.assign(T * R * K * A * M, -1.0);
  out.recall.assign(T * K * A * M, -1.0);
  out.tp.assign(T * K * A * M, 0);
  out.fp.assign(T * K * A * M, 0);
  out.num_det.assign(K * M, 0);
  const double eps = std::numeric_limits<double>::epsilon();  // np.spacing(1)
  auto precision_at = [eps](i64 tp, i64 fp) {  // pycocotools: tp / (fp + tp + eps)
    return static_cast<double>(tp) / (static_cast<double>(fp) + static_cast<double>(tp) + eps);
  };
  // Per curve (a, t) of the walk: counts, precision at point 0, and precision at each true
  // positive, turned into suffix maxima: best[i] = max at true positives i+1, i+2, ...
  InParallel(workers, L.cat_start, [&](i64 k_lo, i64 k_hi) {
  std::vector<i64> tp(AT), fp(AT);
  std::vector<double> pr0(AT);
  std::vector<std::vector<double>> suffix(AT);
  for (i64 k = k_lo; k < k_hi; ++k) {
    const i64 lo = L.cat_start[k], hi = L.cat_start[k + 1];
    for (i64 m = 0; m < M; ++m) {
      const i64 cap = std::min(p.max_dets[m], E);
      std::fill(tp.begin(), tp.end(), 0);
      std::fill(fp.begin(), fp.end(), 0);
      std::fill(pr0.begin(), pr0.end(), 0.0);
      for (auto& v : suffix) v.clear();
      i64 nd = 0;
      for (i64 s = lo; s < hi; ++s) {
        if (L.slots[s].rank >= cap) continue;
        const std::uint8_t* f = flags.data() + s * AT;
        for (i64 c = 0; c < AT; ++c) {
          tp[c] += f[c] & kTp;
          fp[c] += f[c] == 0;
          if (f[c] & kTp) suffix[c].push_back(precision_at(tp[c], fp[c]));
        }
        if (nd++ == 0) {
          for (i64 c = 0; c < AT; ++c) pr0[c] = precision_at(tp[c], fp[c]);
        }
      }
      out.num_det[k * M + m] = nd;
      for (i64 a = 0; a < A; ++a) {
        const i64 npig = out.num_gt[k * A + a];
        for (i64 t = 0; t < T; ++t) {
          const i64 c = a * T + t;
          const i64 at = ((t * K + k) * A + a) * M + m;
          out.tp[at] = tp[c];
          out.fp[at] = fp[c];
          if (npig == 0) continue;  // pycocotools leaves -1
          const double n = static_cast<double>(npig);
          out.recall[at] = nd ? static_cast<double>(tp[c]) / n : 0.0;
          std::vector<double>& best = suffix[c];
          for (i64 i = tp[c] - 2; i >= 0; --i) best[i] = std::max(best[i], best[i + 1]);
          double* q = out.precision.data() + k * A * M + a * M + m;
          // pycocotools fills the samples in threshold order inside one try: the first
          // threshold never reached (an index past the curve) ends the loop, so with
          // unsorted thresholds every later one stays 0 too.
          bool stopped = nd == 0;  // no detections: pr[0] fails at once
          for (i64 r = 0; r < R; ++r) {
            double value = 0.0;
            if (!stopped) {
              // searchsorted(rc, thr, 'left'): the first point with tp/npig >= thr. Recall
              // rises only at true positives, so it is the c-th one for the smallest such
              // c, or point 0 when c is 0; the envelope there is the max from it on.
              const double thr = p.rec_thrs[r];
              i64 c_lo = 0, c_hi = tp[c] + 1;  // tp + 1: never
              while (c_lo < c_hi) {
                const i64 mid = c_lo + (c_hi - c_lo) / 2;
                if (static_cast<double>(mid) / n >= thr) {
                  c_hi = mid;
                } else {
                  c_lo = mid + 1;
                }
              }
              if (c_lo == 0) {
                value = tp[c] > 0 ? std::max(pr0[c], best[0]) : pr0[c];
              } else if (c_lo <= tp[c]) {
                value = best[c_lo - 1];
              } else {
                stopped = true;
              }
            }
            q[(t * R + r) * K * A * M] = value;
          }
        }
      }
    }
  }
  });
}

void Run(const Problem& p, int workers, bool want_slots, Result& out) {
  const i64 K_eval = p.use_cats ? p.K : 1;
  const i64 E = p.M > 0 ? p.max_dets[p.M - 1] : 0;  // evaluateImg keeps maxDets[-1]
  const Layout layout = MakeLayout(p, K_eval, E, workers);
  out.num_gt.assign(K_eval * p.A, 0);
  Match(p, layout, workers, out.flags, out.num_gt);
  Accumulate(p, layout, out.flags, K_eval, E, workers, out);
  if (want_slots) {
    for (const Slot& slot : layout.slots) out.slot_det.push_back(slot.det);
    out.cat_start = layout.cat_start;
  } else {
    std::vector<std::uint8_t>().swap(out.flags);
  }
}

PyObject* Evaluate(PyObject*, PyObject* args) {
  View g_img, g_cat, g_box, g_area, g_crowd, g_real, d_img, d_cat, d_box, d_score;
  View iou_thrs, rec_thrs, area_rng, max_dets;
  long long num_images, num_cats;
  int use_cats, workers, want_slots = 0;
  if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*y*LLy*y*y*y*pi|p", &g_img.view, &g_cat.view,
                        &g_box.view, &g_area.view, &g_crowd.view, &g_real.view, &d_img.view,
                        &d_cat.view, &d_box.view, &d_score.view, &num_images, &num_cats,
                        &iou_thrs.view, &rec_thrs.view, &area_rng.view, &max_dets.view,
                        &use_cats, &workers, &want_slots)) {
    return nullptr;
  }
  for (View* v : {&g_img, &g_cat, &g_box, &g_area, &g_crowd, &g_real, &d_img, &d_cat, &d_box,
                  &d_score, &iou_thrs, &rec_thrs, &area_rng, &max_dets}) {
    v->held = true;
  }
  Problem p{};
  p.G = g_img.view.len / 8;
  p.D = d_img.view.len / 8;
  p.I = num_images;
  p.K = num_cats;
  p.T = iou_thrs.view.len / 8;
  p.R = rec_thrs.view.len / 8;
  p.A = area_rng.view.len / 16;
  p.M = max_dets.view.len / 8;
  p.use_cats = use_cats != 0;
  if (!(Sized(g_cat, p.G, 8, "g_cat") && Sized(g_box, p.G, 32, "g_box") &&
        Sized(g_area, p.G, 8, "g_area") && Sized(g_crowd, p.G, 1, "g_crowd") &&
        Sized(g_real, p.G, 1, "g_real") && Sized(d_cat, p.D, 8, "d_cat") &&
        Sized(d_box, p.D, 32, "d_box") && Sized(d_score, p.D, 8, "d_score") &&
        Sized(area_rng, p.A, 16, "area_rng"))) {
    return nullptr;
  }
  p.g_img = g_img.As<i64>();
  p.g_cat = g_cat.As<i64>();
  p.g_box = g_box.As<double>();
  p.g_area = g_area.As<double>();
  p.g_crowd = g_crowd.As<std::uint8_t>();
  p.g_real = g_real.As<std::uint8_t>();
  p.d_img = d_img.As<i64>();
  p.d_cat = d_cat.As<i64>();
  p.d_box = d_box.As<double>();
  p.d_score = d_score.As<double>();
  p.iou_thrs = iou_thrs.As<double>();
  p.rec_thrs = rec_thrs.As<double>();
  p.area_rng = area_rng.As<double>();
  p.max_dets = max_dets.As<i64>();
  // Out-of-range ranks would index outside the arrays: the caller's bug, refused.
  bool ok = p.I >= 0 && p.K >= 0;
  for (i64 i = 0; ok && i < p.G; ++i) {
    ok = p.g_img[i] >= 0 && p.g_img[i] < p.I && p.g_cat[i] >= 0 && p.g_cat[i] < p.K;
  }
  for (i64 i = 0; ok && i < p.D; ++i) {
    ok = p.d_img[i] >= 0 && p.d_img[i] < p.I && p.d_cat[i] >= 0 && p.d_cat[i] < p.K;
  }
  for (i64 m = 0; ok && m < p.M; ++m) ok = p.max_dets[m] >= 0;
  if (!ok) {
    PyErr_SetString(PyExc_ValueError, "image or category rank out of range, or maxDets < 0");
    return nullptr;
  }
  Result out;
  bool no_memory = false;
  Py_BEGIN_ALLOW_THREADS;
  try {
    Run(p, std::max(workers, 1), want_slots != 0, out);
  } catch (const std::bad_alloc&) {
    no_memory = true;
  }
  Py_END_ALLOW_THREADS;
  if (no_memory) return PyErr_NoMemory();
  if (want_slots) {
    return Py_BuildValue("(NNNNNNNNN)", Bytes(out.precision), Bytes(out.recall), Bytes(out.tp),
                         Bytes(out.fp), Bytes(out.num_gt), Bytes(out.num_det),
                         Bytes(out.slot_det), Bytes(out.flags), Bytes(out.cat_start));
  }
  return Py_BuildValue("(NNNNNN)", Bytes(out.precision), Bytes(out.recall), Bytes(out.tp),
                       Bytes(out.fp), Bytes(out.num_gt), Bytes(out.num_det));
}

// A detection row's 7 values as count_duplicates compares them: -0.0 folded into 0.0
// (x + 0.0), as numpy.unique treats them as equal.
struct Rows {
  const i64 *img, *cat;
  const double *box, *score;
  void Values(i64 i, double (&v)[7]) const {
    v[0] = static_cast<double>(img[i]);
    v[1] = static_cast<double>(cat[i]);
    for (int j = 0; j < 4; ++j) v[2 + j] = box[4 * i + j] + 0.0;
    v[6] = score[i] + 0.0;
  }
  std::uint64_t Hash(i64 i) const {
    double v[7];
    Values(i, v);
    std::uint64_t h = 0x9E3779B97F4A7C15ull;
    for (double x : v) {
      std::uint64_t bits;
      std::memcpy(&bits, &x, 8);
      h = (h ^ bits) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 29;
    }
    return h;
  }
  bool Equal(i64 i, i64 j) const {
    double a[7], b[7];
    Values(i, a);
    Values(j, b);
    for (int k = 0; k < 7; ++k) {
      if (a[k] != b[k]) return false;
    }
    return true;
  }
};

// Rows equal to an earlier row, with an open-addressing table of row numbers.
i64 CountDuplicates(const Rows& rows, i64 n) {
  std::size_t size = 1;
  while (size < static_cast<std::size_t>(2 * n + 1)) size <<= 1;
  std::vector<std::uint32_t> table(size, 0);  // row number + 1, 0 for empty
  i64 duplicates = 0;
  for (i64 i = 0; i < n; ++i) {
    std::size_t at = rows.Hash(i) & (size - 1);
    while (true) {
      const std::uint32_t held = table[at];
      if (held == 0) {
        table[at] = static_cast<std::uint32_t>(i + 1);
        break;
      }
      if (rows.Equal(held - 1, i)) {
        ++duplicates;
        break;
      }
      at = (at + 1) & (size - 1);
    }
  }
  return duplicates;
}

PyObject* CountDuplicatesPy(PyObject*, PyObject* args) {
  View img, cat, box, score;
  if (!PyArg_ParseTuple(args, "y*y*y*y*", &img.view, &cat.view, &box.view, &score.view)) {
    return nullptr;
  }
  for (View* v : {&img, &cat, &box, &score}) v->held = true;
  const i64 n = img.view.len / 8;
  if (!(Sized(cat, n, 8, "cat") && Sized(box, n, 32, "box") && Sized(score, n, 8, "score"))) {
    return nullptr;
  }
  if (n >= (i64{1} << 32) - 1) {
    PyErr_SetString(PyExc_ValueError, "count_duplicates: too many rows");
    return nullptr;
  }
  const Rows rows{img.As<i64>(), cat.As<i64>(), box.As<double>(), score.As<double>()};
  i64 duplicates = 0;
  bool no_memory = false;
  Py_BEGIN_ALLOW_THREADS;
  try {
    duplicates = CountDuplicates(rows, n);
  } catch (const std::bad_alloc&) {
    no_memory = true;
  }
  Py_END_ALLOW_THREADS;
  if (no_memory) return PyErr_NoMemory();
  return PyLong_FromLongLong(duplicates);
}

PyMethodDef kMethods[] = {
    {"evaluate", Evaluate, METH_VARARGS,
     "COCOeval evaluate() + accumulate() for boxes: precision, recall, tp, fp, num_gt, num_det."},
    {"count_duplicates", CountDuplicatesPy, METH_VARARGS,
     "How many rows (image, category, box, score) repeat an earlier row exactly."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_cocoeval",
                       "pycocotools' COCOeval for boxes, bit for bit, for any parameters.", -1,
                       kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__cocoeval(void) { return PyModule_Create(&kModule); }

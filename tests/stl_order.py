"""libstdc++'s ``std::priority_queue`` and ``std::sort``, step by step in Python.

TensorFlow's combined-NMS kernel takes equal scores in the order these two containers
produce (reference-pipeline.md 6b.4). This module re-states the GNU implementations
(bits/stl_heap.h: __push_heap, __adjust_heap, __pop_heap, __make_heap; bits/stl_algo.h:
__introsort_loop with threshold 16, median of (first+1, mid, last-1), __unguarded_partition,
__final_insertion_sort, heap sort past the depth limit) as plain loops over a list, so that
the test reference shares no code with evalkit's C++ kernel. ``less(a, b)`` is the
comparator: true when ``a`` goes before ``b`` (sort) or below ``b`` (heap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Less = Callable[[Any, Any], bool]

THRESHOLD = 16  # _S_threshold


def _push_up(heap: list[Any], hole: int, top: int, value: Any, less: Less) -> None:
    parent = (hole - 1) // 2
    while hole > top and less(heap[parent], value):
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = value


def _adjust(heap: list[Any], hole: int, length: int, value: Any, less: Less) -> None:
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if less(heap[child], heap[child - 1]):
            child -= 1
        heap[hole] = heap[child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        heap[hole] = heap[child - 1]
        hole = child - 1
    _push_up(heap, hole, top, value, less)


def _pop_into(heap: list[Any], first: int, last: int, result: int, less: Less) -> None:
    """__pop_heap on heap[first:last], the top going to ``result``."""
    view = heap[first:last]
    value = heap[result]
    heap[result] = heap[first]
    _adjust(view, 0, last - first, value, less)
    heap[first:last] = view


class PriorityQueue:
    """``std::priority_queue<T, std::vector<T>, Less>``: push, top, pop."""

    def __init__(self, less: Less) -> None:
        self.items: list[Any] = []
        self.less = less

    def push(self, value: Any) -> None:
        self.items.append(value)
        _push_up(self.items, len(self.items) - 1, 0, value, self.less)

    def top(self) -> Any:
        return self.items[0]

    def pop(self) -> None:
        n = len(self.items)
        if n > 1:
            last = self.items[n - 1]
            self.items[n - 1] = self.items[0]
            _adjust(self.items, 0, n - 1, last, self.less)
        self.items.pop()

    def __len__(self) -> int:
        return len(self.items)


def _make_heap(a: list[Any], lo: int, hi: int, less: Less) -> None:
    length = hi - lo
    if length < 2:
        return
    parent = (length - 2) // 2
    view = a[lo:hi]
    while True:
        _adjust(view, parent, length, view[parent], less)
        if parent == 0:
            break
        parent -= 1
    a[lo:hi] = view


def _heap_sort(a: list[Any], lo: int, hi: int, less: Less) -> None:
    _make_heap(a, lo, hi, less)
    while hi - lo > 1:
        hi -= 1
        _pop_into(a, lo, hi, hi, less)


def _median_to_first(a: list[Any], result: int, x: int, y: int, z: int, less: Less) -> None:
    if less(a[x], a[y]):
        if less(a[y], a[z]):
            pick = y
        elif less(a[x], a[z]):
            pick = z
        else:
            pick = x
    elif less(a[x], a[z]):
        pick = x
    elif less(a[y], a[z]):
        pick = z
    else:
        pick = y
    a[result], a[pick] = a[pick], a[result]


def _partition(a: list[Any], first: int, last: int, pivot: int, less: Less) -> int:
    while True:
        while less(a[first], a[pivot]):
            first += 1
        last -= 1
        while less(a[pivot], a[last]):
            last -= 1
        if not first < last:
            return first
        a[first], a[last] = a[last], a[first]
        first += 1


def _introsort(a: list[Any], lo: int, hi: int, depth: int, less: Less) -> None:
    while hi - lo > THRESHOLD:
        if depth == 0:
            _heap_sort(a, lo, hi, less)
            return
        depth -= 1
        mid = lo + (hi - lo) // 2
        _median_to_first(a, lo, lo + 1, mid, hi - 1, less)
        cut = _partition(a, lo + 1, hi, lo, less)
        _introsort(a, cut, hi, depth, less)
        hi = cut


def _linear_insert(a: list[Any], last: int, less: Less) -> None:
    value = a[last]
    prev = last - 1
    while less(value, a[prev]):
        a[last] = a[prev]
        last = prev
        prev -= 1
    a[last] = value


def _insertion_sort(a: list[Any], lo: int, hi: int, less: Less) -> None:
    if lo == hi:
        return
    for i in range(lo + 1, hi):
        if less(a[i], a[lo]):
            value = a[i]
            a[lo + 1 : i + 1] = a[lo:i]
            a[lo] = value
        else:
            _linear_insert(a, i, less)


def std_sort(a: list[T], less: Less) -> None:
    """``std::sort(a.begin(), a.end(), less)`` in place."""
    n = len(a)
    if n == 0:
        return
    _introsort(a, 0, n, 2 * (n.bit_length() - 1), less)
    if n > THRESHOLD:
        _insertion_sort(a, 0, THRESHOLD, less)
        for i in range(THRESHOLD, n):
            _linear_insert(a, i, less)
    else:
        _insertion_sort(a, 0, n, less)

// Shared by evalkit's C++ extensions (include after Python.h).
#pragma once

#include <cstring>
#include <vector>

namespace evalkit {

// A vector's bytes as a new Python bytes object (an empty vector's data() may be null).
template <typename V>
inline PyObject* Bytes(const std::vector<V>& values) {
  const Py_ssize_t size = static_cast<Py_ssize_t>(values.size() * sizeof(V));
  PyObject* out = PyBytes_FromStringAndSize(nullptr, size);
  if (out != nullptr && size > 0) {
    std::memcpy(PyBytes_AS_STRING(out), values.data(), static_cast<std::size_t>(size));
  }
  return out;
}

}  // namespace evalkit

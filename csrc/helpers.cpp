// Placeholder: replaced by the sample-index builders (issue 3).
#include <pybind11/pybind11.h>
PYBIND11_MODULE(helpers, m) { m.doc() = "ERNIE sample-index helpers"; }

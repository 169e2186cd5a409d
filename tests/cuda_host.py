"""A kernel's CUDA C source built for the host and launched through ctypes, for tests without a GPU.

`HostKernel(source, function)` compiles the source with g++ against tests/cuda_on_host.h (a
std::thread per CUDA thread, a std::barrier per block) into a shared library exporting two things:

- `signature()`: the C types of the function's parameters as the compiler sees them, one string
  each: 'const f4*' (pointer to const float32), 'i4*', 'i8' (long long), 'f4' (float);
- `launch(grid, block, params)`: the function run on the host, `params` being one address per
  parameter where its value's bytes lie, as cuLaunchKernel takes them. The value is read with the
  parameter's own C type, so bytes packed for the wrong type give wrong results here as on a GPU.

Libraries are built once per (source, function) per process, in a temporary folder.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

HEADER = Path(__file__).resolve().parent / "cuda_on_host.h"
CXX = shutil.which("g++")
needs_cxx = pytest.mark.skipif(CXX is None, reason="g++ is not on PATH")

# Appended to the kernel's source: the generic launcher and the signature, for FUNCTION.
EXPORTS = r"""
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

template <class T> std::string gpukit_scalar() {
  return (std::is_floating_point_v<T> ? "f" : std::is_signed_v<T> ? "i" : "u") +
         std::to_string(sizeof(T));
}
template <class T> std::string gpukit_param() {
  if constexpr (std::is_pointer_v<T>) {
    using E = std::remove_pointer_t<T>;
    return (std::is_const_v<E> ? "const " : "") + gpukit_scalar<std::remove_cv_t<E>>() + "*";
  } else {
    return gpukit_scalar<T>();
  }
}
template <class... P> std::string gpukit_signature_of(void (*)(P...)) {
  return ((gpukit_param<P>() + "\n") + ... + std::string());
}
// Each value is copied out of its bytes (memcpy: the bytes need not be aligned for the type).
template <class T> T gpukit_read(void* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}
template <class... P, std::size_t... I>
void gpukit_call(void (*f)(P...), void** params, std::index_sequence<I...>) {
  f(gpukit_read<std::remove_cv_t<P>>(params[I])...);
}
template <class... P> void gpukit_invoke(void (*f)(P...), void** params) {
  gpukit_call(f, params, std::index_sequence_for<P...>{});
}
template <class... P> int gpukit_arity(void (*)(P...)) { return sizeof...(P); }

extern "C" const char* gpukit_signature() {
  static const std::string text = gpukit_signature_of(&FUNCTION);
  return text.c_str();
}
extern "C" int gpukit_param_count() { return gpukit_arity(&FUNCTION); }
extern "C" void gpukit_launch(unsigned grid, unsigned block, void** params) {
  launch(grid, block, [=] { gpukit_invoke(&FUNCTION, params); });
}
"""

_BUILT: dict[tuple[str, str], ctypes.CDLL] = {}
_FOLDER: list[Path] = []


def _folder() -> Path:
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="gpukit-cuda-host-")))
        atexit.register(shutil.rmtree, _FOLDER[0], True)
    return _FOLDER[0]


class HostKernel:
    def __init__(self, source: str, function: str):
        if CXX is None:
            pytest.skip("g++ is not on PATH")
        key = (hashlib.sha1(source.encode()).hexdigest()[:16], function)
        if key not in _BUILT:
            _BUILT[key] = self._build(source, function, "-".join(key))
        self._lib = _BUILT[key]
        self._lib.gpukit_signature.restype = ctypes.c_char_p
        self._lib.gpukit_launch.argtypes = [ctypes.c_uint, ctypes.c_uint,
                                            ctypes.POINTER(ctypes.c_void_p)]
        self.function = function

    @staticmethod
    def _build(source: str, function: str, stem: str) -> ctypes.CDLL:
        folder = _folder()
        cu, cpp, lib = folder / f"{stem}.cu", folder / f"{stem}.cpp", folder / f"{stem}.so"
        cu.write_text(source)
        cpp.write_text(f'#include "{HEADER}"\n#include "{cu}"\n{EXPORTS}')
        build = subprocess.run([CXX, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                                "-ffp-contract=off", f"-DFUNCTION={function}", str(cpp),
                                "-o", str(lib)], capture_output=True, text=True, timeout=300)
        if build.returncode != 0 and "<barrier>" in build.stderr:
            pytest.skip("this g++ has no C++20 <barrier>")
        assert build.returncode == 0, build.stderr
        return ctypes.CDLL(str(lib))

    def signature(self) -> list[str]:
        return self._lib.gpukit_signature().decode().splitlines()

    def launch(self, grid: int, block: int, params: list[int]) -> None:
        """Run the function; params[i] is the address of parameter i's bytes."""
        if len(params) != self._lib.gpukit_param_count():
            raise TypeError(f"{self.function} takes {self._lib.gpukit_param_count()} "
                            f"parameters, given {len(params)}")
        array = (ctypes.c_void_p * len(params))(*params)
        self._lib.gpukit_launch(grid, block, array)


class ParamBytes:
    """Values as the bytes a launch reads, kept alive with their addresses: NumPy scalars as
    their own bytes, device or host pointers as 8-byte addresses."""

    def __init__(self):
        self._keep: list[np.ndarray] = []

    def value(self, scalar: np.generic) -> int:
        buf = np.frombuffer(np.asarray(scalar).tobytes(), dtype=np.uint8).copy()
        self._keep.append(buf)
        return buf.ctypes.data

    def pointer(self, address: int) -> int:
        return self.value(np.uint64(address))

    def of(self, args) -> list[int]:
        """Addresses for a launch's arguments: ints are pointers, NumPy scalars values."""
        return [self.value(a) if isinstance(a, np.generic) else self.pointer(int(a))
                for a in args]

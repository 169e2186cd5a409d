"""blackscholes: European call and put prices for n options, in float32.

Each option has five inputs (spot S, strike K, years to expiry T, rate r, volatility v) and two
outputs:
    d1 = (log(S/K) + (r + v^2/2) T) / (v sqrt(T)),   d2 = d1 - v sqrt(T)
    call = S N(d1) - K e^(-rT) N(d2),                put = K e^(-rT) (1 - N(d2)) - S (1 - N(d1))
The classic offload case: 20 bytes in and 8 out per option against ~58 operations, so transfers
weigh heavily against modest arithmetic.

One cumulative normal everywhere. N is the Abramowitz-Stegun 26.2.17 polynomial (|error| <
7.5e-8 against the true N), used by the Python, NumPy and CUDA implementations and by the
float64 reference alike, so the check measures float32 rounding and nothing else: with erfc in
one place and a polynomial in another the two would differ by the approximation, not by the
arithmetic. Inputs cover S in [5, 30], K in [1, 100], T in [0.25, 10] (the CUDA samples' ranges),
r in [0, 0.05] and v in [0.1, 0.6].

Error measure: max over options and both outputs of |price - ref| / (S + K). A call is worth at
most S and a put at most K, so this is the error relative to the largest price the option could
have, and it never divides by a price that is nearly zero (deep out of the money).

Tolerance 2**-16 = 256 u (u = 2**-24), from this sketch of the float32 error:
- the products and sums that form the prices round a few times: <= ~4 u (S + K);
- N's evaluation in float32 (a division, 5 Horner steps with |coefficients| summing to 5.6, an
  exp): absolute error <= ~30 u, times S or K: <= ~30 u (S + K);
- an absolute error e in d1 (d2 carries the same) moves each price by <= 2 S phi(d1) e, because
  S phi(d1) = K e^(-rT) phi(d2). log(S/K) and the drift carry <= ~4 u (1 + |log S/K| + |(r +
  v^2/2) T|) absolute error, which the division by v sqrt(T) >= 0.05 magnifies; with
  phi <= 0.4, phi(d) |d| <= 0.25 and |drift| <= 2.3 this term stays below ~80 u S.
Together <= ~115 u (S + K); 256 u leaves a factor two for this being a sketch rather than a
proof. Measured on 2**20 options (also at the money with v sqrt(T) = 0.05, the worst corner):
~4 u for NumPy; the Python version computes in float64 and rounds once.
Real mistakes are far above it: spot and strike swapped, no discounting, or variance passed
for volatility are each off by more than 1e-3 (tests/test_kernels.py).
"""

from __future__ import annotations

import math

import numpy as np

from gpukit.kernels.base import Check, CudaLaunch, Inputs, Kernel, Work
from gpukit.kernels.checks import failed_check, nonfinite_problem, output_problem

UNIT_ROUNDOFF = 2.0 ** -24
TOLERANCE = 2.0 ** -16

# Abramowitz & Stegun 26.2.17; the same literals are in kernels/blackscholes.cu.
CND_P = 0.2316419
CND_A = (0.31938153, -0.356563782, 1.781477937, -1.821255978, 1.330274429)
RSQRT_2PI = 0.3989422804014327

# Operations per option, counting +, -, *, /, sqrt, log and exp as one each:
# sqrt(T), v*sqrtT: 2; S/K, log: 2; v*v, *0.5, +r, *T, +log, /(v sqrtT): 6; d2: 1;
# -r*T, exp, K*exp: 3; N twice at 18 (k: 3, polynomial: 9, exp(-d*d/2)/sqrt(2pi): 5, 1-N: 1);
# call: 3; put: 5.
FLOPS_PER_OPTION = 58

INPUTS = ("S", "K", "T", "r", "v")
OUTPUTS = ("call", "put")

# Options per NumPy block: 5 inputs, 2 outputs and the temporaries (about 3 MiB) stay in L2 or
# the core's share of L3. Smaller blocks pay ~40 ufunc calls of a few us each per block: at 16 Ki
# options serial ran 2.2x slower than at 64 Ki on the 2-core dev machine (n=2^22).
NUMPY_BLOCK = 64 * 1024
REFERENCE_BLOCK = 64 * 1024
CUDA_BLOCK = 256


def options(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, n, 11])
    lows_highs = {"S": (5.0, 30.0), "K": (1.0, 100.0), "T": (0.25, 10.0), "r": (0.0, 0.05),
                  "v": (0.1, 0.6)}
    return {name: rng.uniform(lo, hi, size=n).astype(np.float32)
            for name, (lo, hi) in lows_highs.items()}


def _cnd_array(d: np.ndarray) -> np.ndarray:
    """N(d) by A&S 26.2.17 on an array, in d's dtype (float32 or float64)."""
    dt = d.dtype.type
    k = np.abs(d)
    k *= dt(CND_P)
    k += dt(1.0)
    np.divide(dt(1.0), k, out=k)
    poly = np.full_like(d, dt(CND_A[4]))
    for a in CND_A[3::-1]:
        poly *= k
        poly += dt(a)
    poly *= k
    e = np.multiply(d, d)
    e *= dt(-0.5)
    np.exp(e, out=e)
    e *= dt(RSQRT_2PI)
    e *= poly  # the lower tail N(-|d|)
    return np.where(d > 0, dt(1.0) - e, e)


def _price_arrays(S, K, T, r, v, call, put) -> None:
    """Both prices for arrays of one dtype; results stored into `call` and `put`."""
    dt = S.dtype.type
    sqrt_t = np.sqrt(T)
    vst = v * sqrt_t
    d1 = np.log(S / K)
    drift = v * v
    drift *= dt(0.5)
    drift += r
    drift *= T
    d1 += drift
    d1 /= vst
    d2 = d1 - vst
    k_disc = np.multiply(r, T)
    np.negative(k_disc, out=k_disc)
    np.exp(k_disc, out=k_disc)
    k_disc *= K
    n1, n2 = _cnd_array(d1), _cnd_array(d2)
    np.subtract(S * n1, k_disc * n2, out=call)
    np.subtract(k_disc * (dt(1.0) - n2), S * (dt(1.0) - n1), out=put)


def blackscholes_numpy(split, whole, out, params) -> None:
    """float32 throughout, a cache-sized block at a time; every ufunc call releases the GIL."""
    n = split["S"].shape[0]
    for lo in range(0, n, NUMPY_BLOCK):
        hi = min(n, lo + NUMPY_BLOCK)
        _price_arrays(*(split[name][lo:hi] for name in INPUTS),
                      out["call"][lo:hi], out["put"][lo:hi])


def _cnd(d: float) -> float:
    k = 1.0 / (1.0 + CND_P * abs(d))
    a1, a2, a3, a4, a5 = CND_A
    tail = RSQRT_2PI * math.exp(-0.5 * d * d) * (k * (a1 + k * (a2 + k * (a3 + k * (a4 + k * a5)))))
    return 1.0 - tail if d > 0 else tail


def blackscholes_python(split, whole, out, params) -> None:
    """Pure Python floats (doubles), rounded to float32 once at the end; holds the GIL."""
    calls, puts = [], []
    log, exp, sqrt = math.log, math.exp, math.sqrt
    for S, K, T, r, v in zip(*(split[name].tolist() for name in INPUTS)):
        vst = v * sqrt(T)
        d1 = (log(S / K) + (r + 0.5 * v * v) * T) / vst
        d2 = d1 - vst
        k_disc = K * exp(-r * T)
        n1, n2 = _cnd(d1), _cnd(d2)
        calls.append(S * n1 - k_disc * n2)
        puts.append(k_disc * (1.0 - n2) - S * (1.0 - n1))
    out["call"][:] = calls
    out["put"][:] = puts


class BlackScholes(Kernel):
    name = "blackscholes"
    summary = ("European call and put prices for n options (float32): 20 bytes in, 8 out, "
               f"{FLOPS_PER_OPTION} operations per option")
    params = ()
    # No knob: the work per option is fixed, and that fixed, low intensity is the point of this
    # kernel. A parameter that only repeated the pricing would measure nothing a user has.
    default_param_sets = ({},)
    outputs = OUTPUTS
    cuda_file = "blackscholes.cu"
    spec = "blackscholes"

    def make_inputs(self, n, params, seed=0) -> Inputs:
        return Inputs(split=options(n, seed), whole={})

    def output_dtypes(self, params):
        return {name: np.dtype(np.float32) for name in OUTPUTS}

    def reference(self, inputs, params) -> dict[str, np.ndarray]:
        split = inputs.split
        n = split["S"].shape[0]
        ref = {name: np.empty(n, dtype=np.float64) for name in OUTPUTS}
        for lo in range(0, n, REFERENCE_BLOCK):
            hi = min(n, lo + REFERENCE_BLOCK)
            _price_arrays(*(split[name][lo:hi].astype(np.float64) for name in INPUTS),
                          ref["call"][lo:hi], ref["put"][lo:hi])
        return ref

    def check(self, out, ref, inputs, params) -> Check:
        measure = "max |price - ref| / (S + K) over calls and puts"
        n = inputs.split["S"].shape[0]
        problem = output_problem(out, self.output_dtypes(params), n) or nonfinite_problem(out)
        if problem:
            return failed_check(TOLERANCE, measure, problem)
        scale = inputs.split["S"].astype(np.float64) + inputs.split["K"]
        error, detail = 0.0, ""
        for name in OUTPUTS:
            rel = np.abs(out[name] - ref[name]) / scale
            worst = int(np.argmax(rel)) if n else 0
            if n and rel[worst] > error:
                error = float(rel[worst])
                detail = (f"worst {name}[{worst}]: got {float(out[name][worst])!r}, "
                          f"reference {float(ref[name][worst])!r}")
        ok = error <= TOLERANCE
        return Check(ok, error, TOLERANCE, measure, "" if ok else detail)

    def work(self, n, params) -> Work:
        return Work(flops=float(FLOPS_PER_OPTION) * n, bytes_in=4 * len(INPUTS) * n,
                    bytes_out=4 * len(OUTPUTS) * n)

    def host_impls(self):
        return {"python": blackscholes_python, "numpy": blackscholes_numpy}

    def cuda_launch(self, n, params) -> CudaLaunch:
        return CudaLaunch(function="blackscholes", args=(*INPUTS, *OUTPUTS, ("n", np.int64)),
                          block=CUDA_BLOCK, grid=max(1, -(-n // CUDA_BLOCK)))

// CUDA C on the host, for tests that run gpukit's kernels without a GPU: include this header,
// then the .cu file, then call launch(grid, block, [=] { kernel(args...); }).
//
// A std::thread per CUDA thread and a std::barrier per block (blocks run one after another), so
// tiles, barriers and grid-stride loops run for real, and threads really interleave between
// barriers; __shared__ becomes a static local (one copy, shared by the block's threads). Host
// libm stands in for CUDA's logf/expf (both within a few ulp), a correctly rounded 1/sqrt for
// rsqrtf; the _rn intrinsics are the plain IEEE operations they name (compile with
// -ffp-contract=off so that none is fused).
#pragma once
#include <barrier>
#include <cmath>
#include <math.h>
#include <thread>
#include <vector>
struct dim3_ { unsigned x, y, z; };
thread_local dim3_ threadIdx;
static dim3_ blockIdx, blockDim, gridDim;
static std::barrier<>* block_barrier;
struct float4 { float x, y, z, w; };
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmaf_ieee_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
template <class F> static void launch(unsigned grid, unsigned block, F body) {
  gridDim.x = grid;
  blockDim.x = block;
  for (unsigned b = 0; b < grid; ++b) {
    blockIdx.x = b;
    std::barrier<> barrier(block);
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; ++t) threads.emplace_back([=] { threadIdx.x = t; body(); });
    for (auto& t : threads) t.join();
  }
}

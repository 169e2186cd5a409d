// Runs kernels/polyval.cu on the CPU, so its indexing, tiles and barriers are tested without a
// GPU (tests/test_cuda_compile.py builds this with -DKERNEL="path/to/polyval.cu").
//
// tests/cuda_on_host.h runs each CUDA thread as a std::thread and each block's __syncthreads as a
// std::barrier, so threads really interleave between barriers. The result must equal a plain
// float32 Horner loop with std::fmaf bit for bit, for odd n, k around multiples of 4 and of the
// tile, pointers that are (vector path) and aren't (scalar path) 16-byte aligned, and grids
// smaller than the tile count (grid-stride loop). Rows outside [0, n) must stay untouched.
#include <cstdio>
#include <random>

#include "cuda_on_host.h"
#include KERNEL

int main() {
  const int block = POLYVAL_BLOCK;
  const long long per_block = (long long)block * POLYVAL_POINTS;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  const long long ns[] = {1, 3, 1000, per_block - 1, per_block, per_block + 1, 2 * per_block + 13};
  const int ks[] = {1, 3, 4, 7, 300, POLYVAL_TILE + 3};
  int cases = 0, bad = 0;
  for (long long n : ns)
    for (int k : ks)
      for (int offset : {0, 1}) {
        std::vector<float> xs(n + 4), c(k + 1), ys(n + 4, NAN);
        for (auto& v : xs) v = uniform(rng);
        for (auto& v : c) v = uniform(rng);
        const float* x = xs.data() + offset;  // offset 1: not 16-byte aligned
        float* y = ys.data() + offset;
        int grid = (int)((n + per_block - 1) / per_block);
        if (cases % 3 == 1 && grid > 1) grid /= 2;  // fewer blocks than tiles
        const float* coef = c.data();
        launch(grid, block, [=] { polyval(x, coef, y, n, k); });
        ++cases;
        for (long long i = 0; i < n; ++i) {
          float want = c[k];
          for (int j = k - 1; j >= 0; --j) want = std::fmaf(want, x[i], c[j]);
          if (want != y[i]) {
            if (bad < 10)
              std::printf("n=%lld k=%d offset=%d i=%lld: got %a, want %a\n", n, k, offset, i,
                          y[i], want);
            ++bad;
          }
        }
        for (long long i = 0; i < (long long)ys.size(); ++i) {
          if ((i < offset || i >= offset + n) && !std::isnan(ys[i])) {
            std::printf("n=%lld k=%d offset=%d: wrote outside [0, n) at %lld\n", n, k, offset,
                        i - offset);
            ++bad;
          }
        }
      }
  std::printf("%d cases, %d mismatches\n", cases, bad);
  return bad != 0;
}

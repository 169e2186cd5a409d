// polyval: y[i] = c[0] + c[1]*x[i] + ... + c[k]*x[i]**k by Horner's rule, in float32.
//
// One source for both GPU backends: CuPy compiles it with NVRTC (RawModule), PyCUDA with nvcc
// (SourceModule, no_extern_c=True). It includes no header, so NVRTC needs no include path.
//
// Launch: block = POLYVAL_BLOCK threads, grid = ceil(n / (POLYVAL_BLOCK * POLYVAL_POINTS)) blocks
// (gpukit/kernels/polyval.py, Polyval.cuda_launch; tests/test_cuda_compile.py checks the two
// agree). The grid-stride loop makes any grid correct; that grid just gives each block one tile.
//
// Two regimes, one code path:
// * small k is bound by memory: each thread moves POLYVAL_POINTS/4 float4s each way (128-bit
//   loads and stores, all issued before any use), so enough bytes are in flight to fill HBM;
// * large k is bound by FMA issue: each thread keeps POLYVAL_POINTS independent Horner chains,
//   so consecutive FMAs never wait on each other, and the coefficients come from shared memory
//   four at a time: one 128-bit broadcast load feeds 4 * POLYVAL_POINTS FMAs. Every non-FMA
//   instruction takes an issue slot from an FMA, so loads must be rare.

// Threads per block. __launch_bounds__ lets ptxas budget registers for it (at most 64 each, so
// 8 blocks = 2048 threads fit on one SM).
#define POLYVAL_BLOCK 256
// Points per thread: independent FMA chains in the compute-bound regime and 16 float4 bytes in
// flight per thread in the memory-bound one. A multiple of 4 (whole float4s).
#define POLYVAL_POINTS 16
// Coefficients per shared-memory tile (4 KiB): a multiple of 4, small enough that 8 resident
// blocks use 32 KiB of shared memory, large enough that the two barriers per tile are rare.
#define POLYVAL_TILE 1024

// The FMA of every Horner step. __fmaf_ieee_rn rather than fmaf: CuPy always compiles with
// -ftz=true and PyCUDA does not, and fmaf would become FFMA.FTZ under the first and FFMA under
// the second; this intrinsic ignores -ftz, so both backends run the same IEEE instruction and
// agree bitwise even when a value is subnormal. It still rounds once, as fmaf does.
#define POLYVAL_FMA(a, b, c) __fmaf_ieee_rn((a), (b), (c))

extern "C" __global__ void __launch_bounds__(POLYVAL_BLOCK)
polyval(const float* __restrict__ x, const float* __restrict__ c, float* __restrict__ y,
        long long n, int k)
{
    // The tile holds coefficients in the order Horner uses them (highest first), so the inner
    // loop reads it forwards with aligned 128-bit loads. All lanes read the same address: a
    // broadcast, no bank conflicts.
    __shared__ __align__(16) float tile[POLYVAL_TILE];
    const float4* tile4 = reinterpret_cast<const float4*>(tile);

    // Whether float4 access is legal. The backends' allocations are 256-byte aligned, so this
    // holds in practice; a caller passing an offset pointer still gets correct results.
    const bool aligned =
        ((reinterpret_cast<unsigned long long>(x) | reinterpret_cast<unsigned long long>(y))
         & 15ull) == 0;
    const long long per_block = (long long)blockDim.x * POLYVAL_POINTS;

    // `base` is the same for every thread of a block, so every branch below on `full` and every
    // loop bound is block-uniform and all threads reach the same __syncthreads.
    for (long long base = (long long)blockIdx.x * per_block; base < n;
         base += (long long)gridDim.x * per_block) {
        const bool full = aligned && base + per_block <= n;
        float xv[POLYVAL_POINTS];
        float acc[POLYVAL_POINTS];

        // Point p of this thread: float4 number (threadIdx.x + (p/4) * blockDim.x) of the tile in
        // the vector path, point (threadIdx.x + p * blockDim.x) in the scalar one. Both cover the
        // tile once and are coalesced; loads and stores use the same map.
        if (full) {
            const float4* x4 = reinterpret_cast<const float4*>(x + base);
#pragma unroll
            for (int v = 0; v < POLYVAL_POINTS / 4; ++v) {
                const float4 q = x4[threadIdx.x + v * blockDim.x];
                xv[4 * v + 0] = q.x;
                xv[4 * v + 1] = q.y;
                xv[4 * v + 2] = q.z;
                xv[4 * v + 3] = q.w;
            }
        } else {
            // The last, partial tile (any n, not only multiples of 4) or unaligned pointers.
            // Lanes past n compute on 0 and store nothing; they must still run the loop
            // because the tiles below need every thread at the barriers.
#pragma unroll
            for (int p = 0; p < POLYVAL_POINTS; ++p) {
                const long long i = base + threadIdx.x + (long long)p * blockDim.x;
                xv[p] = i < n ? x[i] : 0.0f;
            }
        }

        // Horner: acc = c[k]; then acc = acc * x + c[j] for j = k-1 down to 0.
        const float top = c[k];
#pragma unroll
        for (int p = 0; p < POLYVAL_POINTS; ++p) acc[p] = top;

        // The first k % 4 steps read their coefficient straight from global memory (one cached
        // broadcast each), leaving a multiple of 4 for the float4 tiles. For k <= 3 (the
        // memory-bound end) this is all there is: no shared memory, no barrier.
        int j = k - 1;
        for (int r = k & 3; r > 0; --r, --j) {
            const float cj = c[j];
#pragma unroll
            for (int p = 0; p < POLYVAL_POINTS; ++p) acc[p] = POLYVAL_FMA(acc[p], xv[p], cj);
        }

        // c[j], c[j-1], ..., c[0] remain: j + 1 of them, a multiple of 4, in tiles of
        // POLYVAL_TILE (also a multiple of 4), so every tile is whole float4s.
        for (int hi = j; hi >= 0; hi -= POLYVAL_TILE) {
            const int len = hi + 1 < POLYVAL_TILE ? hi + 1 : POLYVAL_TILE;
            __syncthreads();  // everyone is done reading the previous tile
            for (int m = threadIdx.x; m < len; m += blockDim.x) tile[m] = c[hi - m];
            __syncthreads();  // the tile is complete before anyone reads it

            // Unrolled 4 times: 4 LDS.128 and a handful of loop instructions per
            // 16 * POLYVAL_POINTS FFMAs, so FFMAs are ~97% of what this loop issues.
#pragma unroll 4
            for (int q = 0; q < len / 4; ++q) {
                const float4 cq = tile4[q];
#pragma unroll
                for (int p = 0; p < POLYVAL_POINTS; ++p) acc[p] = POLYVAL_FMA(acc[p], xv[p], cq.x);
#pragma unroll
                for (int p = 0; p < POLYVAL_POINTS; ++p) acc[p] = POLYVAL_FMA(acc[p], xv[p], cq.y);
#pragma unroll
                for (int p = 0; p < POLYVAL_POINTS; ++p) acc[p] = POLYVAL_FMA(acc[p], xv[p], cq.z);
#pragma unroll
                for (int p = 0; p < POLYVAL_POINTS; ++p) acc[p] = POLYVAL_FMA(acc[p], xv[p], cq.w);
            }
        }

        if (full) {
            float4* y4 = reinterpret_cast<float4*>(y + base);
#pragma unroll
            for (int v = 0; v < POLYVAL_POINTS / 4; ++v) {
                y4[threadIdx.x + v * blockDim.x] =
                    make_float4(acc[4 * v + 0], acc[4 * v + 1], acc[4 * v + 2], acc[4 * v + 3]);
            }
        } else {
#pragma unroll
            for (int p = 0; p < POLYVAL_POINTS; ++p) {
                const long long i = base + threadIdx.x + (long long)p * blockDim.x;
                if (i < n) y[i] = acc[p];
            }
        }
    }
}

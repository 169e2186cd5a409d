// nbody: one step of all-pairs softened gravitational accelerations, in float32 (G = 1):
//     a_i = sum_j m_j (r_j - r_i) / (|r_j - r_i|^2 + eps^2)^(3/2)
//
// One source for both GPU backends (CuPy's NVRTC and PyCUDA's nvcc); no headers.
// Launch (gpukit/kernels/nbody.py, NBody.cuda_launch): block = NBODY_BLOCK threads (the kernel
// relies on it: the tile is one body per thread), grid = ceil(n / NBODY_BLOCK), one target body
// per thread. n is both the number of targets (xi, yi, zi) and of bodies (x, y, z, m).
//
// Shared-memory tiling (GPU Gems 3, ch. 31): each block walks all bodies in tiles of NBODY_BLOCK;
// every thread loads one body of the tile into shared memory, and after the barrier every thread
// reads the whole tile. All threads of a warp read the same float4 at a time (a broadcast, no
// bank conflicts), so each body is read from global memory once per block rather than once per
// thread. Bodies past n in the last tile get mass 0 and add nothing; threads past n load, wait at
// the barriers and store nothing. The self term has r_j - r_i = 0 and adds nothing either, so
// there is no branch in the inner loop.

#define NBODY_BLOCK 256
// eps^2, the float32 nearest 1e-4: the same value as SOFTENING2 in gpukit/kernels/nbody.py.
#define NBODY_SOFTENING2 1.0e-4f

extern "C" __global__ void __launch_bounds__(NBODY_BLOCK)
nbody(const float* __restrict__ xi, const float* __restrict__ yi, const float* __restrict__ zi,
      const float* __restrict__ x, const float* __restrict__ y, const float* __restrict__ z,
      const float* __restrict__ m, float* __restrict__ ax, float* __restrict__ ay,
      float* __restrict__ az, long long n)
{
    __shared__ float4 tile[NBODY_BLOCK];
    const long long i = (long long)blockIdx.x * NBODY_BLOCK + threadIdx.x;
    const bool mine = i < n;
    const float px = mine ? xi[i] : 0.0f;
    const float py = mine ? yi[i] : 0.0f;
    const float pz = mine ? zi[i] : 0.0f;
    float sx = 0.0f, sy = 0.0f, sz = 0.0f;

    for (long long base = 0; base < n; base += NBODY_BLOCK) {
        const long long j = base + threadIdx.x;
        tile[threadIdx.x] = j < n ? make_float4(x[j], y[j], z[j], m[j])
                                  : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        __syncthreads();  // the tile is complete before anyone reads it
#pragma unroll 8
        for (int t = 0; t < NBODY_BLOCK; ++t) {
            const float4 b = tile[t];
            const float dx = b.x - px;
            const float dy = b.y - py;
            const float dz = b.z - pz;
            const float r2 = fmaf(dx, dx, fmaf(dy, dy, fmaf(dz, dz, NBODY_SOFTENING2)));
            const float inv = rsqrtf(r2);
            const float s = b.w * inv * inv * inv;
            sx = fmaf(s, dx, sx);
            sy = fmaf(s, dy, sy);
            sz = fmaf(s, dz, sz);
        }
        __syncthreads();  // everyone is done with the tile before it is overwritten
    }
    if (mine) {
        ax[i] = sx;
        ay[i] = sy;
        az[i] = sz;
    }
}

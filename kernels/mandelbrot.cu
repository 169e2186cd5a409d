// mandelbrot: escape-time iteration counts of n points c = cx + i cy, float32 arithmetic.
//
// One source for both GPU backends (CuPy's NVRTC and PyCUDA's nvcc); no headers.
// Launch (gpukit/kernels/mandelbrot.py, Mandelbrot.cuda_launch): block = MANDELBROT_BLOCK
// threads, grid = ceil(n / MANDELBROT_BLOCK), one point per thread; the grid-stride loop keeps
// any grid correct.
//
// Work per point is uneven: a warp runs until its slowest point is done (points inside the set
// run all max_iter iterations). Neighbouring threads hold neighbouring grid points, whose counts
// are alike, which keeps that divergence down; small blocks (4 warps) let the block scheduler
// balance slow blocks inside the set against fast ones outside.
//
// Every operation is an explicit round-to-nearest intrinsic, so no multiply-add is contracted
// into an FMA: the GPU rounds the same float32 operations in the same order as the NumPy version
// and gives the same counts bit for bit whatever --fmad the backend compiles with (checked in the
// SASS: FMUL and FADD only). -ftz (CuPy) could only matter if x or y fell below 1e-19 in
// magnitude, which grid points and their orbits do only by a coincidence of that order.

#define MANDELBROT_BLOCK 128

extern "C" __global__ void __launch_bounds__(MANDELBROT_BLOCK)
mandelbrot(const float* __restrict__ cx, const float* __restrict__ cy, int* __restrict__ count,
           long long n, int max_iter)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float a = cx[i], b = cy[i];
        float x = 0.0f, y = 0.0f;
        int it = 0;
        for (; it < max_iter; ++it) {
            const float x2 = __fmul_rn(x, x);
            const float y2 = __fmul_rn(y, y);
            if (__fadd_rn(x2, y2) > 4.0f) break;
            y = __fadd_rn(__fmul_rn(__fadd_rn(x, x), y), b);
            x = __fadd_rn(__fsub_rn(x2, y2), a);
        }
        count[i] = it;
    }
}

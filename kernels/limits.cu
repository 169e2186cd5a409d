// The kernels `gpukit limits` times to measure the GPU's own ceilings (gpukit/limits/gpu.py).
//
// One source for both GPU libraries, as with every kernel here: CuPy compiles it with NVRTC
// (RawModule), PyCUDA with nvcc (SourceModule, no_extern_c=True). No header, so NVRTC needs no
// include path.

// Does nothing: launching it costs only what the library, the driver and the GPU's front end
// charge for a launch. No parameters, so no argument packing is counted either.
extern "C" __global__ void gpukit_empty() {}

// Threads per block the FMA kernel is launched with (gpukit/limits/gpu.py, FMA_BLOCK).
#define GPUKIT_FMA_BLOCK 256

// The float32 FMA rate: each thread runs 8 independent FMA chains, so every FMA has seven others
// to issue while its result is in flight (FMA latency is 4 cycles on Hopper), and the SMs issue
// one FMA per lane per cycle. 2 * 8 * iters FLOPs per thread. `a` and `b` are kernel arguments,
// so the compiler cannot fold the chains; the sum is written out, so it cannot drop them.
extern "C" __global__ void __launch_bounds__(GPUKIT_FMA_BLOCK)
gpukit_fma(float* __restrict__ out, int iters, float a, float b)
{
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const float seed = (float)(tid & 1023) * 1e-3f;
    float x0 = seed, x1 = seed + 0.1f, x2 = seed + 0.2f, x3 = seed + 0.3f;
    float x4 = seed + 0.4f, x5 = seed + 0.5f, x6 = seed + 0.6f, x7 = seed + 0.7f;
    // Unrolled so the loop's counter and branch take a few issue slots in 128 FMAs.
#pragma unroll 16
    for (int i = 0; i < iters; ++i) {
        x0 = __fmaf_rn(x0, a, b);
        x1 = __fmaf_rn(x1, a, b);
        x2 = __fmaf_rn(x2, a, b);
        x3 = __fmaf_rn(x3, a, b);
        x4 = __fmaf_rn(x4, a, b);
        x5 = __fmaf_rn(x5, a, b);
        x6 = __fmaf_rn(x6, a, b);
        x7 = __fmaf_rn(x7, a, b);
    }
    out[tid] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
}

// Keeps one thread busy for `ns` nanoseconds of the GPU's global timer, so that the stream it
// runs on stays busy while the host queues what follows: work queued behind it starts as soon
// as the device can take it, not when Python gets round to issuing it.
extern "C" __global__ void gpukit_spin(long long ns)
{
    long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}

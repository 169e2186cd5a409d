// blackscholes: European call and put prices for n options, in float32.
//
// One source for both GPU backends (CuPy's NVRTC and PyCUDA's nvcc); no headers.
// Launch (gpukit/kernels/blackscholes.py, BlackScholes.cuda_launch): block = BS_BLOCK threads,
// grid = ceil(n / BS_BLOCK), one option per thread. The grid-stride loop keeps any grid correct.
//
// The cumulative normal is the Abramowitz-Stegun 26.2.17 polynomial with the same constants as
// the Python, NumPy and float64 reference versions, so results differ by float32 rounding only.
// logf, expf, sqrtf and '/' are the precise versions (neither backend passes --use_fast_math).
//
// Memory-bound by design: 20 bytes in and 8 out per option, read and written once, coalesced.

#define BS_BLOCK 256

__device__ __forceinline__ float bs_cnd(float d)
{
    const float k = 1.0f / (1.0f + 0.2316419f * fabsf(d));
    const float poly =
        k * (0.31938153f + k * (-0.356563782f + k * (1.781477937f + k * (-1.821255978f +
                                                                         k * 1.330274429f))));
    const float tail = 0.3989422804014327f * expf(-0.5f * d * d) * poly;
    return d > 0.0f ? 1.0f - tail : tail;
}

extern "C" __global__ void __launch_bounds__(BS_BLOCK)
blackscholes(const float* __restrict__ S, const float* __restrict__ K,
             const float* __restrict__ T, const float* __restrict__ r,
             const float* __restrict__ v, float* __restrict__ call, float* __restrict__ put,
             long long n)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float s = S[i], k = K[i], t = T[i], rate = r[i], vol = v[i];
        const float vst = vol * sqrtf(t);
        const float d1 = (logf(s / k) + (rate + 0.5f * vol * vol) * t) / vst;
        const float d2 = d1 - vst;
        const float k_disc = k * expf(-rate * t);
        const float n1 = bs_cnd(d1);
        const float n2 = bs_cnd(d2);
        call[i] = s * n1 - k_disc * n2;
        put[i] = k_disc * (1.0f - n2) - s * (1.0f - n1);
    }
}

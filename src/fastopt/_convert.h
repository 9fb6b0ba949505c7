/* Block conversions between 16-bit storage and float32, and the reductions' block loops.
   Included by every loop module, so each is compiled with that ISA level's flags: the plain C
   loops are vectorised by the compiler (bfloat16 is shifts and masks); float16 uses the F16C
   instructions where the level has them (AVX2).  Every path rounds exactly as the scalar
   functions of _fastopt.h, so the results are bitwise identical across levels.

   AVX-512 BF16's vcvtneps2bf16 is deliberately not used: it treats subnormal inputs as zero, so
   its results would differ from the other levels (and from IEEE round-to-nearest-even). */
#ifndef FASTOPT_CONVERT_H
#define FASTOPT_CONVERT_H

#include "_fastopt.h"
#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__F16C__)
#define FO_HAVE_F16C 1
#else
#define FO_HAVE_F16C 0
#endif

#if defined(__AVX2__)
/* AVX2: 8 elements at a time, the same integer operations as the scalar functions (so the same
   bits); the scalar functions finish the tail. */
static inline __m256 fo_bf16x8_load(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

static inline void fo_bf16x8_store(uint16_t *p, __m256i r) {
    /* r holds 8 values in [0, 0xffff] in 32-bit lanes: pack to 16 bits, in order */
    __m256i k = _mm256_packus_epi32(r, r);
    k = _mm256_permute4x64_epi64(k, 0x08);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(k));
}

static inline __m256i fo_bf16x8_nan(__m256i u, __m256i r) {
    /* NaN lanes (unordered with themselves) get (u >> 16) | 0x40, as the scalar code */
    __m256 x = _mm256_castsi256_ps(u);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, q, nan);
}

static inline __m256i fo_bf16x8_rne(__m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    return fo_bf16x8_nan(u, _mm256_srli_epi32(r, 16));
}

static inline __m256i fo_mix32x8(__m256i x) {
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x846ca68bu));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    return x;
}
#define FO_HAVE_AVX2 1
#else
#define FO_HAVE_AVX2 0
#endif

static void fo_load_bf16(float *d, const char *s, Py_ssize_t n) {
    const uint16_t *p = (const uint16_t *)s;
    Py_ssize_t i = 0;
#if FO_HAVE_AVX2
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, fo_bf16x8_load(p + i));
#endif
    for (; i < n; i++) d[i] = fo_bf16_to_f32(p[i]);
}

static void fo_store_bf16(char *s, const float *x, Py_ssize_t n) {
    uint16_t *p = (uint16_t *)s;
    Py_ssize_t i = 0;
#if FO_HAVE_AVX2
    for (; i + 8 <= n; i += 8) fo_bf16x8_store(p + i, fo_bf16x8_rne(_mm256_loadu_ps(x + i)));
#endif
    for (; i < n; i++) p[i] = fo_f32_to_bf16(x[i]);
}

static void fo_store_bf16_sr(char *s, const float *x, Py_ssize_t n, uint32_t key, uint32_t lo) {
    uint16_t *p = (uint16_t *)s;
    Py_ssize_t i = 0;
#if FO_HAVE_AVX2
    const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i k = _mm256_set1_epi32((int)key);
    for (; i + 8 <= n; i += 8) {
        __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)(lo + (uint32_t)i)), step);
        __m256i r = fo_mix32x8(_mm256_xor_si256(idx, k));
        __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
        __m256i t = _mm256_add_epi32(u, _mm256_and_si256(r, _mm256_set1_epi32(0xffff)));
        fo_bf16x8_store(p + i, fo_bf16x8_nan(u, _mm256_srli_epi32(t, 16)));
    }
#endif
    for (; i < n; i++)
        p[i] = fo_f32_to_bf16_sr(x[i], fo_mix32(((uint32_t)i + lo) ^ key));
}

static void fo_load_f16(float *d, const char *s, Py_ssize_t n) {
    const uint16_t *p = (const uint16_t *)s;
    Py_ssize_t i = 0;
#if FO_HAVE_F16C
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + i))));
#endif
    for (; i < n; i++) d[i] = fo_f16_to_f32(p[i]);
}

static void fo_store_f16(char *s, const float *x, Py_ssize_t n) {
    uint16_t *p = (uint16_t *)s;
    Py_ssize_t i = 0;
#if FO_HAVE_F16C
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(p + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < n; i++) p[i] = fo_f32_to_f16(x[i]);
}

static void fo_store_f16_sr(char *s, const float *x, Py_ssize_t n, uint32_t key, uint32_t lo) {
    uint16_t *p = (uint16_t *)s;
    for (Py_ssize_t i = 0; i < n; i++)
        p[i] = fo_f32_to_f16_sr(x[i], fo_mix32(((uint32_t)i + lo) ^ key));
}

/* Kahan-compensated 16-bit parameter: x = p + c was updated in float32; the parameter keeps
   x rounded to nearest and the compensation what that rounding lost (itself rounded). */
static void fo_store_kahan_bf16(char *ps, char *cs, const float *x, Py_ssize_t n) {
    uint16_t *p = (uint16_t *)ps, *c = (uint16_t *)cs;
    Py_ssize_t i = 0;
#if FO_HAVE_AVX2
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256i q = fo_bf16x8_rne(xv);
        __m256 qf = _mm256_castsi256_ps(_mm256_slli_epi32(q, 16));
        fo_bf16x8_store(p + i, q);
        fo_bf16x8_store(c + i, fo_bf16x8_rne(_mm256_sub_ps(xv, qf)));
    }
#endif
    for (; i < n; i++) {
        uint16_t q = fo_f32_to_bf16(x[i]);
        p[i] = q;
        c[i] = fo_f32_to_bf16(x[i] - fo_bf16_to_f32(q));
    }
}

static void fo_store_kahan_f16(char *ps, char *cs, const float *x, Py_ssize_t n) {
    float tmp[256];
    Py_ssize_t i0, i, m;
    for (i0 = 0; i0 < n; i0 += 256) {
        m = n - i0 < 256 ? n - i0 : 256;
        fo_store_f16(ps + 2 * i0, x + i0, m);
        fo_load_f16(tmp, ps + 2 * i0, m);
        for (i = 0; i < m; i++) tmp[i] = x[i0 + i] - tmp[i];
        fo_store_f16(cs + 2 * i0, tmp, m);
    }
}

static void fo_add_comp_bf16(float *x, const char *cs, Py_ssize_t n) {
    const uint16_t *c = (const uint16_t *)cs;
    Py_ssize_t i = 0;
#if FO_HAVE_AVX2
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), fo_bf16x8_load(c + i)));
#endif
    for (; i < n; i++) x[i] = x[i] + fo_bf16_to_f32(c[i]);
}

static void fo_add_comp_f16(float *x, const char *cs, Py_ssize_t n) {
    float tmp[256];
    Py_ssize_t i0, i, m;
    for (i0 = 0; i0 < n; i0 += 256) {
        m = n - i0 < 256 ? n - i0 : 256;
        fo_load_f16(tmp, cs + 2 * i0, m);
        for (i = 0; i < m; i++) x[i0 + i] = x[i0 + i] + tmp[i];
    }
}

/* ---- reductions: 16 independent float64 lanes (vectorised without reassociation) ---- */
#define FO_LANES 16

#define FO_SUMSQ(NAME, T, LOAD)                                                   \
static double NAME(const char *xs, Py_ssize_t n) {                                \
    const T *x = (const T *)xs;                                                   \
    double acc[FO_LANES], total = 0.0, t;                                         \
    Py_ssize_t i, j, nl = n - n % FO_LANES;                                       \
    for (j = 0; j < FO_LANES; j++) acc[j] = 0.0;                                  \
    for (i = 0; i < nl; i += FO_LANES)                                            \
        for (j = 0; j < FO_LANES; j++) { t = (double)LOAD(x[i + j]); acc[j] += t * t; } \
    for (i = nl; i < n; i++) { t = (double)LOAD(x[i]); acc[i - nl] += t * t; }    \
    for (j = 0; j < FO_LANES; j++) total += acc[j];                               \
    return total;                                                                 \
}

/* x - x is 0 for finite x and NaN for NaN/Inf: one read, no branch per element */
#define FO_FINITE(NAME, T, CT, LOAD)                                              \
static int NAME(const char *xs, Py_ssize_t n) {                                   \
    const T *x = (const T *)xs;                                                   \
    CT acc[FO_LANES], v;                                                          \
    Py_ssize_t i, j, nl = n - n % FO_LANES;                                       \
    int ok = 1;                                                                   \
    for (j = 0; j < FO_LANES; j++) acc[j] = 0;                                    \
    for (i = 0; i < nl; i += FO_LANES)                                            \
        for (j = 0; j < FO_LANES; j++) { v = LOAD(x[i + j]); acc[j] += v - v; }   \
    for (i = nl; i < n; i++) { v = LOAD(x[i]); acc[0] += v - v; }                 \
    for (j = 0; j < FO_LANES; j++) ok = ok && acc[j] == 0;                        \
    return ok;                                                                    \
}

#define FO_ID(x) (x)
FO_SUMSQ(fo_sumsq_f64, double, FO_ID)
FO_SUMSQ(fo_sumsq_f32, float, FO_ID)
FO_SUMSQ(fo_sumsq_bf16, uint16_t, fo_bf16_to_f32)
FO_SUMSQ(fo_sumsq_f16, uint16_t, fo_f16_to_f32)
FO_FINITE(fo_finite_f64, double, double, FO_ID)
FO_FINITE(fo_finite_f32, float, float, FO_ID)
FO_FINITE(fo_finite_bf16, uint16_t, float, fo_bf16_to_f32)
FO_FINITE(fo_finite_f16, uint16_t, float, fo_f16_to_f32)

#endif

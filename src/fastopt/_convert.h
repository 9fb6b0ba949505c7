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
#if defined(__F16C__)
#include <immintrin.h>
#define FO_HAVE_F16C 1
#else
#define FO_HAVE_F16C 0
#endif

static void fo_load_bf16(float *d, const char *s, Py_ssize_t n) {
    const uint16_t *p = (const uint16_t *)s;
    for (Py_ssize_t i = 0; i < n; i++) d[i] = fo_bf16_to_f32(p[i]);
}

static void fo_store_bf16(char *s, const float *x, Py_ssize_t n) {
    uint16_t *p = (uint16_t *)s;
    for (Py_ssize_t i = 0; i < n; i++) p[i] = fo_f32_to_bf16(x[i]);
}

static void fo_store_bf16_sr(char *s, const float *x, Py_ssize_t n, uint32_t key, uint32_t lo) {
    uint16_t *p = (uint16_t *)s;
    for (Py_ssize_t i = 0; i < n; i++)
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
    for (Py_ssize_t i = 0; i < n; i++) {
        uint16_t q = fo_f32_to_bf16(x[i]);
        p[i] = q;
        c[i] = fo_f32_to_bf16(x[i] - fo_bf16_to_f32(q));
    }
}

static void fo_store_kahan_f16(char *ps, char *cs, const float *x, Py_ssize_t n) {
    uint16_t *p = (uint16_t *)ps, *c = (uint16_t *)cs;
    float tmp[256];
    Py_ssize_t i0, i, m;
    for (i0 = 0; i0 < n; i0 += 256) {
        m = n - i0 < 256 ? n - i0 : 256;
        fo_store_f16(ps + 2 * i0, x + i0, m);
        fo_load_f16(tmp, ps + 2 * i0, m);
        for (i = 0; i < m; i++) tmp[i] = x[i0 + i] - tmp[i];
        fo_store_f16(cs + 2 * i0, tmp, m);
    }
    (void)p; (void)c;
}

static void fo_add_comp_bf16(float *x, const char *cs, Py_ssize_t n) {
    const uint16_t *c = (const uint16_t *)cs;
    for (Py_ssize_t i = 0; i < n; i++) x[i] = x[i] + fo_bf16_to_f32(c[i]);
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

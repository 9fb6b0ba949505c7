/* What the core extension (_core) and the per-ISA loop modules (_loops_*) share: the
   hyperparameter struct, the loop table, and the scalar 16-bit conversions and hash.

   The core is built once; each loop module is built once per instruction-set level and hands the
   core a LoopTable through a PyCapsule.  The core picks one table at import (fastopt._dispatch).

   Everything here is plain C99 so that both sides agree on the layout exactly. */
#ifndef FASTOPT_H
#define FASTOPT_H

#include <stdint.h>
#include <string.h>
#include <Python.h>

#define FASTOPT_ABI 2

/* Scalars of one call, computed once in float64 and rounded to the compute type in the loop. */
typedef struct {
    double lr;         /* learning rate */
    double step_size;  /* Adam: lr / (1 - beta1^t) */
    double scale;      /* scale kernel: x <- scale * x */
    double gscale;     /* the gradient is multiplied by this first: grad_scale, negated to maximize */
    double wd;         /* L2 coefficient added to the gradient */
    double decay;      /* Adam: 1 - lr*wd for decoupled weight decay, else 1 */
    double b1, omb1;   /* beta (momentum, RMSprop, EWA) or beta1, and 1 - it */
    double b2, omb2;   /* Adam beta2 and 1 - beta2 */
    double c2;         /* Adam 1 / (1 - beta2^t) */
    double eps_in;     /* epsilon inside the square root (0 when outside) */
    double eps_out;    /* epsilon outside the square root (0 when inside) */
    double damp1;      /* momentum: 1 - dampening */
    double mom;        /* RMSprop momentum */
} Hyper;

/* A loop over n elements.  a[i] points at the first element of operand slot i (all of one
   compute type: float for the float32 loops, double for the float64 ones). */
typedef void (*fo_loop)(char **a, Py_ssize_t n, const Hyper *h);
/* 16-bit storage <-> float32 over n elements. */
typedef void (*fo_load)(float *dst, const char *src, Py_ssize_t n);
typedef void (*fo_store)(char *dst, const float *src, Py_ssize_t n);
/* Stochastic rounding: the random bits of element j are fo_mix32((lo + j) ^ key). */
typedef void (*fo_store_sr)(char *dst, const float *src, Py_ssize_t n, uint32_t key, uint32_t lo);
/* Kahan: x holds param + compensation; p <- rn(x), c <- rn(x - rn(x)). */
typedef void (*fo_store_kahan)(char *p, char *c, const float *x, Py_ssize_t n);
/* Add the compensation into the loaded parameter: x <- x + load(c). */
typedef void (*fo_add_comp)(float *x, const char *c, Py_ssize_t n);
/* Reductions over one block: sum of squares (float64 lanes), finiteness. */
typedef double (*fo_sumsq)(const char *x, Py_ssize_t n);
typedef int (*fo_finite)(const char *x, Py_ssize_t n);

/* Storage types (operand dtype codes). */
enum { FO_F64 = 0, FO_F32 = 1, FO_F16 = 2, FO_BF16 = 3, FO_NTYPES = 4 };

typedef struct {
    int abi;                     /* FASTOPT_ABI */
    int n_kernels;               /* entries in f32 / f64 (from the registry) */
    const char *name;            /* "baseline", "avx2", "avx512" */
    const char *features;        /* what this level uses, for show_config() */
    const fo_loop *f32;          /* [n_kernels] */
    const fo_loop *f64;          /* [n_kernels] */
    fo_loop traffic_f32[4];      /* same-traffic reference, 1..4 written arrays */
    fo_loop traffic_f64[4];
    fo_loop scale_f32, scale_f64;
    fo_load load[FO_NTYPES];              /* FO_F16, FO_BF16 (others NULL) */
    fo_store store[FO_NTYPES];            /* round to nearest even */
    fo_store_sr store_sr[FO_NTYPES];      /* stochastic rounding */
    fo_store_kahan store_kahan[FO_NTYPES];
    fo_add_comp add_comp[FO_NTYPES];
    fo_sumsq sumsq[FO_NTYPES];
    fo_finite finite[FO_NTYPES];
} LoopTable;

/* ---- scalar conversions (used by every level for tails, and as the whole loop at baseline) ---- */

static inline float fo_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t fo_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float fo_bf16_to_f32(uint16_t h) { return fo_bits_f32((uint32_t)h << 16); }

/* float32 -> bfloat16, round to nearest even; NaN stays NaN (quieted, sign and top payload
   bits kept); overflow gives Inf (the carry runs into the exponent). */
static inline uint16_t fo_f32_to_bf16(float f) {
    /* branch-free (a select), so that the compiler vectorises the loops that call it; the NaN
       test is the float comparison f != f (one vcmpps), exactly (u & 0x7fffffff) > 0x7f800000 */
    uint32_t u = fo_f32_bits(f);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t q = (u >> 16) | 0x0040u;
    return (uint16_t)((f != f) ? q : r);
}

/* float32 -> bfloat16, stochastic: add 16 random bits below the kept ones and truncate, so x
   rounds away from zero with probability (dropped bits) / 2^16: unbiased. */
static inline uint16_t fo_f32_to_bf16_sr(float f, uint32_t r) {
    uint32_t u = fo_f32_bits(f);
    uint32_t s = (u + (r & 0xffffu)) >> 16;
    uint32_t q = (u >> 16) | 0x0040u;
    return (uint16_t)((f != f) ? q : s);
}

static inline float fo_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1fu) return fo_bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e != 0) return fo_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    /* zero or subnormal: m * 2^-24, exact in float32 */
    return fo_bits_f32(sign | fo_f32_bits((float)m * 5.9604644775390625e-08f));
}

/* float32 -> float16, round to nearest even, as IEEE 754 (and F16C's vcvtps2ph) prescribe:
   subnormal results, overflow to Inf, NaN quieted with its sign and top payload bits. */
static inline uint16_t fo_f32_to_f16(float f) {
    uint32_t u = fo_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);          /* >= 65520: Inf */
    if (a >= 0x38800000u) {                                            /* >= 2^-14: normal */
        uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
        return (uint16_t)(sign | (r >> 13));
    }
    if (a <= 0x33000000u) return (uint16_t)sign;                        /* <= 2^-25: zero */
    {   /* subnormal: round(a / 2^-24) to nearest even */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
}

/* float32 -> float16, stochastic.  Below the float16 spacing at x there are d dropped bits of
   x's significand (13 for float16 normals, more in the subnormal range); adding d random bits and
   truncating rounds away from zero with probability (dropped bits) / 2^d.  The truncated value is
   exactly representable, so the final conversion does not round again. */
static inline uint16_t fo_f32_to_f16_sr(float f, uint32_t r) {
    uint32_t u = fo_f32_bits(f);
    uint32_t a = u & 0x7fffffffu, e = a >> 23, d;
    if (a >= 0x7f800000u) return fo_f32_to_f16(f);                      /* Inf, NaN */
    d = e >= 113u ? 13u : 126u - e;                                     /* e = 0: f32 subnormal */
    if (e == 0u || d >= 24u) {
        /* |x| < 2^-24: 0 or the smallest subnormal 2^-24, up with probability |x| / 2^-24 */
        float p = fo_bits_f32(a) * 281474976710656.0f;                 /* |x| * 2^48, exact */
        uint16_t up = (float)(r >> 8) < p ? 1u : 0u;
        return (uint16_t)(((u >> 16) & 0x8000u) | up);
    }
    u = (u + (r & ((1u << d) - 1u))) & ~((1u << d) - 1u);
    return fo_f32_to_f16(fo_bits_f32(u));
}

/* The counter-based hash of stochastic rounding (Wellons' lowbias32): a bijection of 32-bit
   words with full avalanche.  No state: element i's bits depend only on (seed, step, slot, i). */
static inline uint32_t fo_mix32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}

#endif

# Cython's view of _fastopt.h: what the core and the loop modules share (included by both).

from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "_fastopt.h":
    enum: FASTOPT_ABI
    enum: FO_F64, FO_F32, FO_F16, FO_BF16, FO_NTYPES

    ctypedef struct Hyper:
        double lr, step_size, scale, gscale, wd, decay, b1, omb1, b2, omb2, c2
        double eps_in, eps_out, damp1, mom

    ctypedef void (*fo_loop)(char** a, Py_ssize_t n, const Hyper* h) noexcept nogil
    ctypedef void (*fo_load)(float* dst, const char* src, Py_ssize_t n) noexcept nogil
    ctypedef void (*fo_store)(char* dst, const float* src, Py_ssize_t n) noexcept nogil
    ctypedef void (*fo_store_sr)(char* dst, const float* src, Py_ssize_t n, uint32_t key,
                                 uint32_t lo) noexcept nogil
    ctypedef void (*fo_store_kahan)(char* p, char* c, const float* x, Py_ssize_t n) noexcept nogil
    ctypedef void (*fo_add_comp)(float* x, const char* c, Py_ssize_t n) noexcept nogil
    ctypedef double (*fo_sumsq)(const char* x, Py_ssize_t n) noexcept nogil
    ctypedef int (*fo_finite)(const char* x, Py_ssize_t n) noexcept nogil

    ctypedef struct LoopTable:
        int abi
        int n_kernels
        const char* name
        const char* features
        const fo_loop* f32
        const fo_loop* f64
        fo_loop traffic_f32[4]
        fo_loop traffic_f64[4]
        fo_loop scale_f32
        fo_loop scale_f64
        fo_load load[4]
        fo_store store[4]
        fo_store_sr store_sr[4]
        fo_store_kahan store_kahan[4]
        fo_add_comp add_comp[4]
        fo_sumsq sumsq[4]
        fo_finite finite[4]

    float fo_bf16_to_f32(uint16_t h) noexcept nogil
    uint16_t fo_f32_to_bf16(float f) noexcept nogil
    uint16_t fo_f32_to_bf16_sr(float f, uint32_t r) noexcept nogil
    float fo_f16_to_f32(uint16_t h) noexcept nogil
    uint16_t fo_f32_to_f16(float f) noexcept nogil
    uint16_t fo_f32_to_f16_sr(float f, uint32_t r) noexcept nogil
    uint32_t fo_mix32(uint32_t x) noexcept nogil

/*
 * fastnn_gemm_vec512.h -- the vector macros of fastnn's products at level 2 (AVX-512, zmm
 * registers and mask registers) for one element type: FNN_DOUBLE 0 (float, 16 lanes) or 1
 * (double, 8 lanes) must be defined.  The names and meanings of fastnn_gemm_vec256.h (undefine
 * its set first: fastnn_gemm_vec_undef.h); FNN_VMASK is a mask register (__mmask16 /
 * __mmask8) and FNN_VCMP too, a masked-off lane is neither read nor written, FNN_VN adds
 * _avx512.  x86-64 only (FNN_GEMM_X86); needs FNN_P for FNN_VN.
 */
#if FNN_DOUBLE
#define FNN_V __m512d
#define FNN_W 8
#define FNN_VMASK __mmask8
#define FNN_VZERO() _mm512_setzero_pd()
#define FNN_VLOAD(p) _mm512_loadu_pd(p)
#define FNN_VMLOAD(p, m) _mm512_maskz_loadu_pd((m), (p))
#define FNN_VSTORE(p, v) _mm512_storeu_pd((p), (v))
#define FNN_VMSTORE(p, m, v) _mm512_mask_storeu_pd((p), (m), (v))
#define FNN_VBCAST(p) _mm512_set1_pd(*(p))
#define FNN_VFMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define FNN_VMUL(a, b) _mm512_mul_pd((a), (b))
#define FNN_VADD(a, b) _mm512_add_pd((a), (b))
#define FNN_VLT0(a) _mm512_cmp_pd_mask((a), _mm512_setzero_pd(), _CMP_LT_OQ)
#define FNN_VBLEND(a, b, m) _mm512_mask_blend_pd((m), (a), (b))
#else
#define FNN_V __m512
#define FNN_W 16
#define FNN_VMASK __mmask16
#define FNN_VZERO() _mm512_setzero_ps()
#define FNN_VLOAD(p) _mm512_loadu_ps(p)
#define FNN_VMLOAD(p, m) _mm512_maskz_loadu_ps((m), (p))
#define FNN_VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define FNN_VMSTORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define FNN_VBCAST(p) _mm512_set1_ps(*(p))
#define FNN_VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define FNN_VMUL(a, b) _mm512_mul_ps((a), (b))
#define FNN_VADD(a, b) _mm512_add_ps((a), (b))
#define FNN_VLT0(a) _mm512_cmp_ps_mask((a), _mm512_setzero_ps(), _CMP_LT_OQ)
#define FNN_VBLEND(a, b, m) _mm512_mask_blend_ps((m), (a), (b))
/* rows 8 h .. 8 h + 7 of a float vector (the twide kernel's AVX2 store) */
#define FNN_VHALF(v, h) ((h) ? _mm512_extractf32x8_ps((v), 1) : _mm512_castps512_ps256(v))
#endif
/* the first r lanes (0 < r <= FNN_W) */
#define FNN_MASK(r) ((FNN_VMASK) ((1u << (r)) - 1u))
#define FNN_NOMASK ((FNN_VMASK) 0)
#define FNN_VCMP FNN_VMASK
#define FNN_VINLINE FNN_GEMM_AVX512_INLINE
#define FNN_VFUNC FNN_GEMM_AVX512
#define FNN_VN(name) FNN_P(name##_avx512)

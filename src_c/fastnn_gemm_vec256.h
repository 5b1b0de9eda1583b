/*
 * fastnn_gemm_vec256.h -- the vector macros of fastnn's products at level 1 (AVX2 + FMA, ymm
 * registers) for one element type: FNN_DOUBLE 0 (float, 8 lanes) or 1 (double, 4 lanes) must
 * be defined.  Defines FNN_V (the vector type), FNN_W (its lanes), FNN_VZERO, FNN_VLOAD,
 * FNN_VMLOAD (masked: the lanes of a mask), FNN_VSTORE, FNN_VMSTORE, FNN_VBCAST (one element
 * to every lane), FNN_VFMA (a b + c, one rounding), FNN_VMUL, FNN_VADD, FNN_VLT0 (lanes < 0),
 * FNN_VBLEND (b where m, else a), FNN_VMASK (a lane mask: __m256i), FNN_MASK(r) (the first r
 * lanes, 0 < r <= FNN_W), FNN_NOMASK, FNN_VCMP (FNN_VLT0's type), FNN_VHALF (float only:
 * rows 8 h .. 8 h + 7 of a vector as a ymm, the vector itself here), FNN_VINLINE / FNN_VFUNC
 * (the level's function attributes) and FNN_VN(name) (FNN_P(name) with the level's suffix,
 * _avx2).  The
 * 512-bit set with the same names is fastnn_gemm_vec512.h; fastnn_gemm_vec_undef.h undefines
 * either, so that a header can instantiate one kernel source at both widths.  x86-64 only
 * (FNN_GEMM_X86); needs FNN_P for FNN_VN.
 */
#if FNN_DOUBLE
#define FNN_V __m256d
#define FNN_W 4
#define FNN_VZERO() _mm256_setzero_pd()
#define FNN_VLOAD(p) _mm256_loadu_pd(p)
#define FNN_VMLOAD(p, m) _mm256_maskload_pd((p), (m))
#define FNN_VSTORE(p, v) _mm256_storeu_pd((p), (v))
#define FNN_VMSTORE(p, m, v) _mm256_maskstore_pd((p), (m), (v))
#define FNN_VBCAST(p) _mm256_broadcast_sd(p)
#define FNN_VFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define FNN_VMUL(a, b) _mm256_mul_pd((a), (b))
#define FNN_VADD(a, b) _mm256_add_pd((a), (b))
#define FNN_VLT0(a) _mm256_cmp_pd((a), _mm256_setzero_pd(), _CMP_LT_OQ)
#define FNN_VBLEND(a, b, m) _mm256_blendv_pd((a), (b), (m))
#define FNN_MASK(r) _mm256_loadu_si256((const __m256i *) (fnn_gemm_mask64 + 4 - (r)))
#else
#define FNN_V __m256
#define FNN_W 8
#define FNN_VZERO() _mm256_setzero_ps()
#define FNN_VLOAD(p) _mm256_loadu_ps(p)
#define FNN_VMLOAD(p, m) _mm256_maskload_ps((p), (m))
#define FNN_VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define FNN_VMSTORE(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define FNN_VBCAST(p) _mm256_broadcast_ss(p)
#define FNN_VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define FNN_VMUL(a, b) _mm256_mul_ps((a), (b))
#define FNN_VADD(a, b) _mm256_add_ps((a), (b))
#define FNN_VLT0(a) _mm256_cmp_ps((a), _mm256_setzero_ps(), _CMP_LT_OQ)
#define FNN_VBLEND(a, b, m) _mm256_blendv_ps((a), (b), (m))
#define FNN_MASK(r) _mm256_loadu_si256((const __m256i *) (fnn_gemm_mask32 + 8 - (r)))
#define FNN_VHALF(v, h) (v)
#endif
#define FNN_VMASK __m256i
#define FNN_NOMASK _mm256_setzero_si256()
#define FNN_VCMP FNN_V
#define FNN_VINLINE FNN_GEMM_AVX2_INLINE
#define FNN_VFUNC FNN_GEMM_AVX2
#define FNN_VN(name) FNN_P(name##_avx2)

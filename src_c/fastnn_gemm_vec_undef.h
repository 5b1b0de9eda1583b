/*
 * fastnn_gemm_vec_undef.h -- undefines the vector macros of fastnn_gemm_vec256.h /
 * fastnn_gemm_vec512.h (whichever is defined), before the other width's set or at the end of
 * an element type's instantiation.
 */
#undef FNN_V
#undef FNN_W
#undef FNN_VZERO
#undef FNN_VLOAD
#undef FNN_VMLOAD
#undef FNN_VSTORE
#undef FNN_VMSTORE
#undef FNN_VBCAST
#undef FNN_VFMA
#undef FNN_VMUL
#undef FNN_VADD
#undef FNN_VLT0
#undef FNN_VBLEND
#undef FNN_VHALF
#undef FNN_MASK
#undef FNN_VMASK
#undef FNN_NOMASK
#undef FNN_VCMP
#undef FNN_VINLINE
#undef FNN_VFUNC
#undef FNN_VN

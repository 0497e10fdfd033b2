// Which CPU kernels run: the AVX-512 ones (dense convolution) and the AVX2 + FMA ones (the rest)
// when the processor has them (checked once, at run time, so one binary serves every x86-64
// machine), else the plain loops. STIMLOOP_CPU_KERNELS=reference forces the plain loops, e.g. to
// compare or to replay a record made on a machine without AVX2 byte for byte (the paths differ by
// float rounding); STIMLOOP_CPU_KERNELS=avx2 stops at AVX2, so both fast paths stay testable and a
// record made on an AVX2-only machine replays exactly on an AVX-512 one.
#pragma once

namespace stimloop::cpu {

bool use_avx2();
bool use_avx512();  // implies use_avx2()

}  // namespace stimloop::cpu

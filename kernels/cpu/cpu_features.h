// Which CPU kernels run: the AVX2 + FMA ones when the processor has them (checked once, at run
// time, so one binary serves every x86-64 machine), else the plain loops. STIMLOOP_CPU_KERNELS=
// reference forces the plain loops, e.g. to compare the two or to replay a record made on a
// machine without AVX2 byte for byte (the two differ by float rounding).
#pragma once

namespace stimloop::cpu {

bool use_avx2();

}  // namespace stimloop::cpu

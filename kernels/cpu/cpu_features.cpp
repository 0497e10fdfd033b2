#include "kernels/cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace stimloop::cpu {

bool use_avx2() {
  static const bool enabled = [] {
#if defined(__x86_64__) && defined(STIMLOOP_HAVE_AVX2_KERNELS)
    const char* choice = std::getenv("STIMLOOP_CPU_KERNELS");
    if (choice != nullptr && std::strcmp(choice, "reference") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return enabled;
}

}  // namespace stimloop::cpu

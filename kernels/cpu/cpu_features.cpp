#include "kernels/cpu/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace stimloop::cpu {
namespace {

bool kernels_forced(const char* name) {
  const char* choice = std::getenv("STIMLOOP_CPU_KERNELS");
  return choice != nullptr && std::strcmp(choice, name) == 0;
}

}  // namespace

bool use_avx2() {
  static const bool enabled = [] {
#if defined(__x86_64__) && defined(STIMLOOP_HAVE_AVX2_KERNELS)
    if (kernels_forced("reference")) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return enabled;
}

bool use_avx512() {
  static const bool enabled = [] {
#if defined(__x86_64__) && defined(STIMLOOP_HAVE_AVX512_KERNELS)
    if (!use_avx2() || kernels_forced("avx2")) return false;
    // GCC's check includes the operating system's support for the 512-bit register state.
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return false;
#endif
  }();
  return enabled;
}

}  // namespace stimloop::cpu

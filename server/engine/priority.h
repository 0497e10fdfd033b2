// Who is waiting for a job decides when it runs: a recording rig between trials before a person
// at a client before a background campaign. Lower value = more urgent.
#pragma once

#include <array>

namespace stimloop::engine {

enum class Priority { kRig = 0, kInteractive = 1, kCampaign = 2 };
inline constexpr int kNumPriorities = 3;
inline constexpr std::array<Priority, kNumPriorities> kAllPriorities = {
    Priority::kRig, Priority::kInteractive, Priority::kCampaign};

inline const char* to_string(Priority p) {
  switch (p) {
    case Priority::kRig:
      return "rig";
    case Priority::kInteractive:
      return "interactive";
    case Priority::kCampaign:
      return "campaign";
  }
  return "?";
}

}  // namespace stimloop::engine

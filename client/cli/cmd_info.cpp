#include <iostream>
#include <thread>

#include "client/cli/commands.h"
#include "kernels/device_info.h"

namespace stimloop::cli {

Command add_info_command(CLI::App& app, const CommonOptions& common) {
  auto* sub = app.add_subcommand("info", "Version, build and compute devices");
  return {
      sub, [&common] {
        const DeviceInfo gpu = probe_device();
        nlohmann::json out = {
            {"version", stimloop_version()},
            {"cuda_compiled", gpu.cuda_compiled},
            {"gpu", gpu.available ? nlohmann::json{{"name", gpu.name},
                                                   {"compute_capability", gpu.compute_capability},
                                                   {"multiprocessors", gpu.multiprocessors},
                                                   {"memory_bytes", gpu.memory_bytes}}
                                  : nlohmann::json(nullptr)},
            {"gpu_unavailable_reason", gpu.available ? "" : gpu.reason},
            {"cpu_threads", std::thread::hardware_concurrency()},
            {"backends", gpu.available ? nlohmann::json{"cpu", "cuda"} : nlohmann::json{"cpu"}},
            {"models_directory", default_models_directory(common.models_dir)},
        };
        std::cout << out.dump(2) << "\n";
        return kExitOk;
      }};
}

}  // namespace stimloop::cli

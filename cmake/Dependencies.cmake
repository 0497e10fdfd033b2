# Third-party libraries, all from Debian 12 packages (see scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig REQUIRED)
# libzip-config.cmake insists on the zipcmp/zipmerge tools (package zip-tools): use pkg-config.
pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)
find_package(HDF5 REQUIRED COMPONENTS C HL)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(CLI11 REQUIRED)
# gRPC's config needs protobuf-compiler-grpc installed (it checks the plugins exist); a "Could NOT
# find c-ares" line during configure is harmless.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(spdlog REQUIRED)
# HTTP for the Prometheus /metrics endpoint (the Debian library is compiled, with OpenSSL, zlib and
# brotli support defines that its header must see too).
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

# Debian's split OpenCV packages ship no OpenCVConfig.cmake: find the three libraries directly.
find_path(OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
add_library(stimloop_opencv INTERFACE)
foreach(component core imgproc imgcodecs)
  find_library(OPENCV_${component}_LIBRARY opencv_${component} REQUIRED)
  target_link_libraries(stimloop_opencv INTERFACE ${OPENCV_${component}_LIBRARY})
endforeach()
target_include_directories(stimloop_opencv SYSTEM INTERFACE ${OPENCV_INCLUDE_DIR})

add_library(stimloop_hdf5 INTERFACE)
target_include_directories(stimloop_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(stimloop_hdf5 INTERFACE ${HDF5_HL_LIBRARIES} ${HDF5_C_LIBRARIES})
target_compile_definitions(stimloop_hdf5 INTERFACE ${HDF5_DEFINITIONS})

# Closed-loop sessions: SQLite (the session store) and Eigen (calibration's linear algebra).
find_package(SQLite3 REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)

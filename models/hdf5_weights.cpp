#include "models/hdf5_weights.h"

#include <hdf5.h>
#include <hdf5_hl.h>

#include <cmath>
#include <mutex>
#include <string>

#include "models/keras_config.h"
#include "models/keras_writer_core.h"

namespace stimloop {
namespace {

// Debian's libhdf5 is built without thread safety: every HDF5 call in the process, reading here
// and writing in keras_writer_core, goes through one lock.
std::mutex& hdf5_mutex() { return hdf5_library_mutex(); }

// Closes an HDF5 handle of any kind when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// True when every link along `path` exists, so opening it cannot fail noisily.
bool path_exists(hid_t file, const std::string& path) {
  std::size_t pos = 0;
  while ((pos = path.find('/', pos + 1)) != std::string::npos) {
    if (H5Lexists(file, path.substr(0, pos).c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return H5Lexists(file, path.c_str(), H5P_DEFAULT) > 0;
}

StatusOr<WeightTensor> read_dataset(hid_t file, std::size_t file_bytes, const std::string& path,
                                    const std::vector<std::int64_t>& expected) {
  if (!path_exists(file, path)) return data_loss("missing weights dataset " + path);
  Handle dataset(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.valid()) return data_loss("cannot open weights dataset " + path);
  Handle type(H5Dget_type(dataset.get()), H5Tclose);
  if (!type.valid() || H5Tget_class(type.get()) != H5T_FLOAT) {
    return data_loss(path + " is not a floating-point dataset");
  }
  Handle space(H5Dget_space(dataset.get()), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || rank > 8) return data_loss(path + " has an unreadable dataspace");
  hsize_t dims[8] = {};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  std::vector<std::int64_t> actual(dims, dims + rank);
  if (actual != expected) {
    return data_loss(path + " has shape " + shape_string(actual) + ", the config implies " +
                     shape_string(expected));
  }
  WeightTensor tensor;
  tensor.shape = expected;
  std::int64_t count = 1;
  for (auto d : expected) count *= d;
  // Keras stores every dataset uncompressed. Storage smaller than the values (never written, so
  // HDF5 would hand back fill values; or compressed) or larger than the whole file is refused,
  // which also bounds what a small hostile file can make us allocate.
  const hsize_t stored = H5Dget_storage_size(dataset.get());
  const hsize_t needed = static_cast<hsize_t>(count) * H5Tget_size(type.get());
  if (stored < needed || stored > file_bytes) {
    return data_loss(path + " stores " + std::to_string(stored) + " bytes for " +
                     std::to_string(count) + " values (missing, compressed or corrupt data)");
  }
  tensor.values.resize(static_cast<std::size_t>(count));
  if (H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
              tensor.values.data()) < 0) {
    return data_loss("cannot read " + path + " (corrupt or truncated HDF5 data)");
  }
  for (float v : tensor.values) {
    if (!std::isfinite(v)) return data_loss(path + " holds NaN or infinite weights");
  }
  return tensor;
}

// A variance + epsilon that is not positive makes BatchNorm divide by zero or take the root of
// a negative number: every response would be NaN.
Status check_batchnorm_variance(const KerasLayer& layer) {
  if (layer.type != KerasLayerType::kBatchNormalization || layer.vars.size() < 4) {
    return Status::Ok();
  }
  const auto& variance = layer.vars[3].values;
  for (std::size_t ch = 0; ch < variance.size(); ++ch) {
    const double denominator = static_cast<double>(variance[ch]) + layer.epsilon;
    if (!(denominator > 0.0)) {
      return data_loss("layer '" + layer.name + "' (" + layer.class_name +
                       "): moving_variance + epsilon of channel " + std::to_string(ch) + " is " +
                       std::to_string(denominator) + ", not positive");
    }
  }
  return Status::Ok();
}

}  // namespace

Status read_keras_weights(const std::vector<std::uint8_t>& h5_bytes, KerasGraph& graph) {
  std::lock_guard lock(hdf5_mutex());
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors come back as Status, not stderr noise
  if (h5_bytes.size() < 8) {
    return data_loss("model.weights.h5 is empty or truncated");
  }
  // H5LTopen_file_image copies the buffer (flags 0), so HDF5 never writes into ours.
  Handle file(H5LTopen_file_image(const_cast<std::uint8_t*>(h5_bytes.data()), h5_bytes.size(), 0),
              H5Fclose);
  if (!file.valid()) return data_loss("model.weights.h5 is not a readable HDF5 file");
  for (auto& layer : graph.layers) {
    const auto shapes = expected_var_shapes(layer);
    layer.vars.clear();
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const std::string path = "/layers/" + layer.weights_group + "/vars/" + std::to_string(i);
      auto tensor = read_dataset(file.get(), h5_bytes.size(), path, shapes[i]);
      if (!tensor.ok()) {
        return tensor.status().with_context("layer '" + layer.name + "' (" + layer.class_name +
                                            ")");
      }
      layer.vars.push_back(std::move(tensor).value());
    }
    RETURN_IF_ERROR(check_batchnorm_variance(layer));
  }
  return Status::Ok();
}

}  // namespace stimloop

// The one place where stimloop's Status becomes a grpc::Status (and back, for the client).
#pragma once

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace stimloop::service {

grpc::Status to_grpc(const Status& status);
Status from_grpc(const grpc::Status& status);

}  // namespace stimloop::service

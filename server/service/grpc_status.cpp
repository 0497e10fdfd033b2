#include "server/service/grpc_status.h"

namespace stimloop::service {
namespace {

struct CodePair {
  StatusCode ours;
  grpc::StatusCode theirs;
};

constexpr CodePair kCodes[] = {
    {StatusCode::kOk, grpc::StatusCode::OK},
    {StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
    {StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
    {StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
    {StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
    {StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
    {StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
    {StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
    {StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
    {StatusCode::kInternal, grpc::StatusCode::INTERNAL},
    {StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
    {StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
    {StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
    {StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
    {StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
};

}  // namespace

grpc::Status to_grpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  for (const auto& pair : kCodes) {
    if (pair.ours == status.code()) return {pair.theirs, status.message()};
  }
  return {grpc::StatusCode::UNKNOWN, status.message()};
}

Status from_grpc(const grpc::Status& status) {
  if (status.ok()) return Status::Ok();
  for (const auto& pair : kCodes) {
    if (pair.theirs == status.error_code()) return {pair.ours, status.error_message()};
  }
  return {StatusCode::kUnknown, status.error_message()};
}

}  // namespace stimloop::service

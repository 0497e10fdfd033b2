// Between stimloop.v1.Sessions messages and the session manager's plain structs. Every error
// names the field it is about ("trials[3].responses[1]", "strategy.mix[0].count").
#pragma once

#include <grpcpp/server_context.h>

#include "server/sessions/session_manager.h"
#include "stimloop/v1/sessions.pb.h"

namespace stimloop::service {

namespace v1 = ::stimloop::v1;

StatusOr<sessions::SessionConfig> to_session_config(const v1::OpenSessionRequest& request);
StatusOr<sessions::BlockRequest> to_block_request(const v1::NextBlockRequest& request,
                                                  const grpc::ServerContextBase& context);
// Shape checks only (sizes, finiteness); the store checks ids against the session.
StatusOr<std::vector<sessions::TrialRow>> to_trials(const v1::ReportResponsesRequest& request);

void fill_session_info(const sessions::SessionStatus& status, v1::SessionInfo* out);
void fill_calibration(const sessions::CalibrationState& state, v1::CalibrationState* out);
void fill_block(const sessions::BlockResult& block, const std::string& session_id,
                v1::ImageEncoding encoding, int height, int width, v1::Block* out);

}  // namespace stimloop::service

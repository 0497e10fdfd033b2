// One Synthesize stream: a gRPC write reactor fed by the engine through an outbox. The engine's
// thread only appends to the outbox (never waits for the network); the reactor writes one event
// at a time. For a client that reads slowly, PROGRESS and SNAPSHOT events beyond a small backlog
// are dropped; STIMULUS and DONE events never are. A client that cancels or disconnects cancels
// the job, which stops at its next step.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include <grpcpp/grpcpp.h>

#include "server/engine/metrics.h"
#include "server/engine/synthesize_job.h"
#include "stimloop/v1/stimloop.grpc.pb.h"

namespace stimloop::service {

struct SynthesizeCallInfo {
  std::string request_id;
  int height = 0, width = 0;  // the model's input size
  stimloop::v1::ImageEncoding encoding = stimloop::v1::PNG;
  engine::EngineMetrics* metrics = nullptr;
  const grpc::CallbackServerContext* context = nullptr;  // the stream's, for delivered_status
  // Called once when the stream is done, with the status the client got (see call_outcome.h)
  // and the job's summary when it ended normally: for the request log and counters.
  std::function<void(const grpc::Status&, const engine::SynthesisSummary*)> on_end;
};

class SynthesizeCall : public grpc::ServerWriteReactor<stimloop::v1::SynthesisEvent> {
 public:
  // Events the engine produces are held until accept() (ACCEPTED goes first) or reject().
  explicit SynthesizeCall(SynthesizeCallInfo info);

  // The sink the engine job writes to.
  std::shared_ptr<engine::SynthesisSink> sink();
  void set_job(std::shared_ptr<engine::Job> job);
  void accept();                            // sends ACCEPTED
  void reject(const grpc::Status& status);  // ends the stream with an error at once

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class Outbox;
  std::shared_ptr<Outbox> outbox_;
};

}  // namespace stimloop::service

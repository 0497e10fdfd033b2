#include "server/service/synthesize_call.h"

#include "server/service/call_outcome.h"
#include "server/service/convert.h"
#include "server/service/grpc_status.h"

namespace stimloop::service {
namespace {

constexpr std::size_t kMaxDroppableBacklog = 4;

}  // namespace

class SynthesizeCall::Outbox : public engine::SynthesisSink,
                               public std::enable_shared_from_this<Outbox> {
 public:
  Outbox(SynthesizeCall* call, SynthesizeCallInfo info) : call_(call), info_(std::move(info)) {}

  // Queues an event; droppable ones are dropped when the client is behind.
  void push(v1::SynthesisEvent event, bool droppable) {
    event.set_request_id(info_.request_id);
    {
      std::lock_guard lock(mutex_);
      if (call_ == nullptr || finishing_) return;
      if (droppable && pending_.size() >= kMaxDroppableBacklog) {
        if (info_.metrics != nullptr) info_.metrics->count_snapshot_dropped();
        return;
      }
      pending_.push_back({std::move(event), droppable});
    }
    pump();
  }

  void end(const grpc::Status& status, const engine::SynthesisSummary* summary) {
    {
      std::lock_guard lock(mutex_);
      if (call_ == nullptr || finish_status_) return;
      finish_status_ = status;
      if (summary != nullptr) summary_ = *summary;
    }
    pump();
  }

  // The stream is over: records what the client got.
  void done() {
    grpc::Status sent;
    std::optional<engine::SynthesisSummary> summary;
    {
      std::lock_guard lock(mutex_);
      call_ = nullptr;
      // Finish is only ever called with the status end() set.
      sent = finish_status_.value_or(grpc::Status::OK);
      summary = summary_;
    }
    if (!info_.on_end) return;
    const grpc::Status delivered =
        info_.context != nullptr ? delivered_status(*info_.context, sent) : sent;
    info_.on_end(delivered, summary ? &*summary : nullptr);
  }

  // Starts the next write, or Finish once everything is written. Never holds the mutex while
  // calling into gRPC (a reaction may run inline).
  void pump() {
    enum class Action { kNone, kWrite, kFinish } action = Action::kNone;
    grpc::Status status;
    SynthesizeCall* call = nullptr;  // read under the mutex: done() clears call_ from OnDone
    {
      std::lock_guard lock(mutex_);
      if (call_ == nullptr || held_ || writing_ || finishing_) return;
      call = call_;
      if (!pending_.empty()) {
        current_ = std::move(pending_.front().event);
        pending_.pop_front();
        writing_ = true;
        action = Action::kWrite;
      } else if (finish_status_) {
        finishing_ = true;
        status = *finish_status_;
        action = Action::kFinish;
      }
    }
    if (action == Action::kWrite) call->StartWrite(&current_);
    if (action == Action::kFinish) call->Finish(status);
  }

  // Events wait until the job is accepted, so ACCEPTED is always the first event.
  void release(v1::SynthesisEvent accepted) {
    accepted.set_request_id(info_.request_id);
    {
      std::lock_guard lock(mutex_);
      pending_.push_front({std::move(accepted), false});
      held_ = false;
    }
    pump();
  }

  void drop_held() {
    std::lock_guard lock(mutex_);
    pending_.clear();
    held_ = false;
  }

  void write_done(bool ok) {
    {
      std::lock_guard lock(mutex_);
      writing_ = false;
      if (!ok) pending_.clear();  // the client is gone: nothing more can be delivered
      broken_ = broken_ || !ok;
    }
    if (!ok) {
      cancel_job();
    }
    pump();
  }

  void cancel_job() {
    std::shared_ptr<engine::Job> job;
    {
      std::lock_guard lock(mutex_);
      job = job_.lock();
    }
    if (job) job->cancel();
  }

  void set_job(const std::shared_ptr<engine::Job>& job) {
    std::lock_guard lock(mutex_);
    job_ = job;
  }

  bool broken() const {
    std::lock_guard lock(mutex_);
    return broken_;
  }

  // engine::SynthesisSink
  void on_progress(const synthesis::ProgressEvent& p) override {
    v1::SynthesisEvent e;
    e.set_kind(v1::SynthesisEvent::PROGRESS);
    e.set_steps_done(p.steps_done);
    e.set_steps(p.steps);
    for (double v : p.best_response) e.add_best_response(v);
    push(std::move(e), true);
  }

  void on_snapshot(const synthesis::ProgressEvent& p,
                   std::vector<std::vector<std::uint8_t>> pixels) override {
    {
      std::lock_guard lock(mutex_);
      if (pending_.size() >= kMaxDroppableBacklog) {  // skip the PNG encoding too
        if (info_.metrics != nullptr) info_.metrics->count_snapshot_dropped();
        return;
      }
    }
    v1::SynthesisEvent e;
    e.set_kind(v1::SynthesisEvent::SNAPSHOT);
    e.set_steps_done(p.steps_done);
    e.set_steps(p.steps);
    for (double v : p.best_response) e.add_best_response(v);
    for (const auto& image : pixels) {
      encode_image(image, info_.height, info_.width, info_.encoding, nullptr, e.add_snapshot());
    }
    push(std::move(e), true);
  }

  void on_stimulus(const engine::SynthesisOutput& out) override {
    v1::SynthesisEvent e;
    e.set_kind(v1::SynthesisEvent::STIMULUS);
    e.set_steps_done(out.record.value("steps_done", 0));
    e.set_stop_reason(out.record.value("stop_reason", ""));
    auto* s = e.mutable_stimulus();
    s->set_index(out.stimulus.index);
    s->set_seed(out.stimulus.seed);
    encode_image(out.stimulus.pixels, info_.height, info_.width, info_.encoding, &out.png,
                 s->mutable_image());
    s->set_response(out.stimulus.response);
    for (float v : out.stimulus.outputs) s->add_outputs(v);
    s->set_record_json(out.record.dump());
    push(std::move(e), false);
  }

  void on_done(const engine::SynthesisSummary& summary) override {
    v1::SynthesisEvent e;
    e.set_kind(v1::SynthesisEvent::DONE);
    e.set_steps_done(summary.steps_done);
    e.set_steps(summary.steps);
    e.set_stop_reason(synthesis::to_string(summary.stop_reason));
    e.set_queue_ms(summary.queue_ms);
    e.set_wall_ms(summary.wall_ms);
    push(std::move(e), false);
    end(grpc::Status::OK, &summary);
  }

  void on_error(const Status& status) override { end(to_grpc(status), nullptr); }

 private:
  struct Pending {
    v1::SynthesisEvent event;
    bool droppable;
  };
  mutable std::mutex mutex_;
  SynthesizeCall* call_;
  SynthesizeCallInfo info_;
  std::deque<Pending> pending_;
  v1::SynthesisEvent current_;  // the event being written (must outlive the write)
  bool held_ = true, writing_ = false, finishing_ = false, broken_ = false;
  std::optional<grpc::Status> finish_status_;
  std::optional<engine::SynthesisSummary> summary_;
  std::weak_ptr<engine::Job> job_;
};

SynthesizeCall::SynthesizeCall(SynthesizeCallInfo info)
    : outbox_(std::make_shared<Outbox>(this, std::move(info))) {}

std::shared_ptr<engine::SynthesisSink> SynthesizeCall::sink() { return outbox_; }

void SynthesizeCall::set_job(std::shared_ptr<engine::Job> job) { outbox_->set_job(std::move(job)); }

void SynthesizeCall::accept() {
  v1::SynthesisEvent e;
  e.set_kind(v1::SynthesisEvent::ACCEPTED);
  outbox_->release(std::move(e));
}

void SynthesizeCall::reject(const grpc::Status& status) {
  outbox_->drop_held();
  outbox_->end(status, nullptr);
}

void SynthesizeCall::OnWriteDone(bool ok) { outbox_->write_done(ok); }

void SynthesizeCall::OnCancel() { outbox_->cancel_job(); }

void SynthesizeCall::OnDone() {
  outbox_->done();
  delete this;
}

}  // namespace stimloop::service

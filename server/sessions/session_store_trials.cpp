// SessionStore's trials and fits: each call checks every row before writing any, inside one
// BEGIN IMMEDIATE transaction, so a refused call stores nothing and an idempotent retry stores
// nothing twice.
#include <cmath>
#include <cstdio>
#include <map>
#include <utility>

#include "server/sessions/session_store.h"
#include "server/sessions/session_store_sql.h"

namespace stimloop::sessions {
namespace {

std::string format_double(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

std::string trial_key(const TrialRow& t) {
  return "(stimulus " + sql::quote_value(t.stimulus_id) + ", repeat " +
         std::to_string(t.repeat_index) + ")";
}

// The checks that need no database: shape and values of one trial.
Status check_trial_values(const TrialRow& t, int channels, const std::string& name) {
  if (t.repeat_index < 0) {
    return invalid_argument(name + ".repeat_index must be >= 0, got " +
                            std::to_string(t.repeat_index));
  }
  if (t.responses.size() != static_cast<std::size_t>(channels)) {
    return invalid_argument(name + ".responses has " + std::to_string(t.responses.size()) +
                            " values; the session has " + std::to_string(channels) + " channels");
  }
  for (std::size_t k = 0; k < t.responses.size(); ++k) {
    const double r = t.responses[k];
    if (!std::isfinite(r) || r < 0) {
      return invalid_argument(name + ".responses[" + std::to_string(k) + "] is " +
                              format_double(r) + "; responses must be finite and >= 0");
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<ReportOutcome> SessionStore::add_trials(const std::string& session_id, int channels,
                                                 std::span<const TrialRow> trials) {
  std::lock_guard lock(impl_->mu);
  sql::Db& db = *impl_->db;
  sql::Transaction tx(db);
  RETURN_IF_ERROR(tx.begin());
  sql::SessionKey key;
  RETURN_IF_ERROR(sql::require_open(db, session_id, &key));
  if (channels <= 0) {
    return invalid_argument("channels must be positive, got " + std::to_string(channels));
  }
  ASSIGN_OR_RETURN(sql::Stmt stimulus,
                   db.prepare("SELECT 1 FROM stimuli WHERE session=?1 AND stimulus_id=?2"));
  ASSIGN_OR_RETURN(sql::Stmt stored,
                   db.prepare("SELECT valid, responses FROM trials "
                              "WHERE session=?1 AND stimulus_id=?2 AND repeat_index=?3"));
  std::map<std::pair<std::string, int>, std::size_t> in_call;
  std::vector<bool> duplicate(trials.size(), false);
  ReportOutcome outcome;
  for (std::size_t i = 0; i < trials.size(); ++i) {
    const TrialRow& t = trials[i];
    const std::string name = "trials[" + std::to_string(i) + "]";
    stimulus.reset();
    ASSIGN_OR_RETURN(const bool known, stimulus.bind(1, key.seq).bind(2, t.stimulus_id).step());
    if (!known) {
      return invalid_argument(name + ".stimulus_id " + sql::quote_value(t.stimulus_id) +
                              " is not a stimulus of session " + sql::quote_value(session_id));
    }
    RETURN_IF_ERROR(check_trial_values(t, channels, name));
    if (auto [it, fresh] = in_call.emplace(std::pair(t.stimulus_id, t.repeat_index), i); !fresh) {
      return invalid_argument(name + " repeats the key " + trial_key(t) + " of trials[" +
                              std::to_string(it->second) + "]");
    }
    stored.reset();
    stored.bind(1, key.seq).bind(2, t.stimulus_id).bind(3, std::int64_t{t.repeat_index});
    ASSIGN_OR_RETURN(const bool exists, stored.step());
    if (!exists) continue;
    ASSIGN_OR_RETURN(const std::vector<double> responses, stored.doubles(1));
    if ((stored.int64(0) != 0) != t.valid || responses != t.responses) {
      return failed_precondition(name + " " + trial_key(t) +
                                 " is already stored with different values");
    }
    duplicate[i] = true;
    ++outcome.duplicates;
  }

  ASSIGN_OR_RETURN(sql::Stmt insert,
                   db.prepare("INSERT INTO trials (session, stimulus_id, repeat_index, valid, "
                              "responses, received_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"));
  const std::int64_t received = sql::now_unix_ms();
  for (std::size_t i = 0; i < trials.size(); ++i) {
    if (duplicate[i]) continue;
    const TrialRow& t = trials[i];
    insert.reset();
    RETURN_IF_ERROR(insert.bind(1, key.seq)
                        .bind(2, t.stimulus_id)
                        .bind(3, std::int64_t{t.repeat_index})
                        .bind(4, std::int64_t{t.valid ? 1 : 0})
                        .bind_blob(5, sql::encode_doubles(t.responses))
                        .bind(6, received)
                        .run());
    ++outcome.stored;
  }
  RETURN_IF_ERROR(tx.commit());
  return outcome;
}

std::vector<TrialRow> SessionStore::trials(const std::string& session_id) const {
  std::lock_guard lock(impl_->mu);
  std::vector<TrialRow> rows;
  auto s = impl_->db->prepare(
      "SELECT stimulus_id, repeat_index, valid, responses, received_unix_ms FROM trials "
      "WHERE session=(SELECT seq FROM sessions WHERE id=?1) ORDER BY rowid");
  if (!s.ok()) return rows;
  s->bind(1, session_id);
  for (auto row = s->step(); row.ok() && *row; row = s->step()) {
    auto responses = s->doubles(3);
    if (!responses.ok()) continue;
    TrialRow t;
    t.stimulus_id = s->text(0);
    t.repeat_index = static_cast<int>(s->int64(1));
    t.valid = s->int64(2) != 0;
    t.responses = std::move(responses).value();
    t.received_unix_ms = s->int64(4);
    rows.push_back(std::move(t));
  }
  return rows;
}

Status SessionStore::add_fits(const std::string& session_id, std::span<const FitRow> fits) {
  std::lock_guard lock(impl_->mu);
  sql::Db& db = *impl_->db;
  sql::Transaction tx(db);
  RETURN_IF_ERROR(tx.begin());
  ASSIGN_OR_RETURN(const sql::SessionKey key, sql::find_session(db, session_id));
  ASSIGN_OR_RETURN(sql::Stmt stored,
                   db.prepare("SELECT summary_json FROM fits "
                              "WHERE session=?1 AND version=?2 AND channel_id=?3"));
  std::map<std::pair<int, std::string>, std::size_t> in_call;
  std::vector<bool> duplicate(fits.size(), false);
  for (std::size_t i = 0; i < fits.size(); ++i) {
    const FitRow& f = fits[i];
    const std::string name = "fits[" + std::to_string(i) + "]";
    if (f.version < 1) {
      return invalid_argument(name + ".version must be >= 1, got " + std::to_string(f.version));
    }
    RETURN_IF_ERROR(sql::check_id(f.channel_id, name + ".channel_id"));
    if (auto [it, fresh] = in_call.emplace(std::pair(f.version, f.channel_id), i); !fresh) {
      return invalid_argument(name + " repeats the version and channel of fits[" +
                              std::to_string(it->second) + "]");
    }
    stored.reset();
    stored.bind(1, key.seq).bind(2, std::int64_t{f.version}).bind(3, f.channel_id);
    ASSIGN_OR_RETURN(const bool exists, stored.step());
    if (!exists) continue;
    if (stored.text(0) != f.summary_json) {
      return failed_precondition(name + " (version " + std::to_string(f.version) + ", channel " +
                                 sql::quote_value(f.channel_id) +
                                 ") is already stored with another summary");
    }
    duplicate[i] = true;
  }
  ASSIGN_OR_RETURN(sql::Stmt insert,
                   db.prepare("INSERT INTO fits (session, version, channel_id, summary_json, "
                              "created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)"));
  const std::int64_t created = sql::now_unix_ms();
  for (std::size_t i = 0; i < fits.size(); ++i) {
    if (duplicate[i]) continue;
    insert.reset();
    RETURN_IF_ERROR(insert.bind(1, key.seq)
                        .bind(2, std::int64_t{fits[i].version})
                        .bind(3, fits[i].channel_id)
                        .bind(4, fits[i].summary_json)
                        .bind(5, created)
                        .run());
  }
  return tx.commit();
}

std::vector<FitRow> SessionStore::fits(const std::string& session_id) const {
  std::lock_guard lock(impl_->mu);
  std::vector<FitRow> rows;
  auto s = impl_->db->prepare(
      "SELECT version, channel_id, summary_json, created_unix_ms FROM fits "
      "WHERE session=(SELECT seq FROM sessions WHERE id=?1) ORDER BY version, rowid");
  if (!s.ok()) return rows;
  s->bind(1, session_id);
  for (auto row = s->step(); row.ok() && *row; row = s->step()) {
    FitRow f;
    f.version = static_cast<int>(s->int64(0));
    f.channel_id = s->text(1);
    f.summary_json = s->text(2);
    f.created_unix_ms = s->int64(3);
    rows.push_back(std::move(f));
  }
  return rows;
}

}  // namespace stimloop::sessions

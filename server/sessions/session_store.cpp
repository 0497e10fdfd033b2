#include "server/sessions/session_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <utility>

#include "common/durable_file.h"
#include "common/sha256.h"
#include "server/sessions/session_store_sql.h"

namespace fs = std::filesystem;

namespace stimloop::sessions {
namespace {

using sql::check_id;
using sql::find_session;
using sql::quote_value;
using sql::require_open;
using sql::SessionKey;

// A temporary image older than this was left by a killed writer, never by a live one.
constexpr auto kStaleTemporary = std::chrono::hours(1);

// Content-addressed: images/<first two hex digits>/<sha256>.png.
std::string image_file(const std::string& images_dir, const std::string& sha) {
  return images_dir + "/" + sha.substr(0, 2) + "/" + sha + ".png";
}

bool is_sha256_hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status make_dir(const std::string& dir) {
  std::error_code ec, probe;
  fs::create_directories(dir, ec);
  if (fs::is_directory(dir, probe)) return Status::Ok();
  if (fs::exists(dir, probe)) return failed_precondition(dir + " exists and is not a directory");
  return errno_status(ec ? ec.value() : ENOENT, "cannot create " + dir);
}

StatusOr<std::vector<std::uint8_t>> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return not_found(path + " does not exist");
  if (fd < 0) return errno_status(errno, "cannot open " + path);
  std::vector<std::uint8_t> bytes;
  std::uint8_t chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return errno_status(err, "cannot read " + path);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  ::close(fd);
  return bytes;
}

// Removes temporaries that a writer killed mid-image left behind. Best effort: a failure here
// only leaves garbage.
void sweep_stale_temporaries(const std::string& images_dir) {
  std::error_code ec;
  const auto cutoff = fs::file_time_type::clock::now() - kStaleTemporary;
  for (fs::directory_iterator top(images_dir, ec), end; !ec && top != end; top.increment(ec)) {
    if (!top->is_directory(ec)) continue;
    std::error_code inner_ec;
    for (fs::directory_iterator it(top->path(), inner_ec); !inner_ec && it != end;
         it.increment(inner_ec)) {
      if (!is_temporary_name(it->path().filename().string())) continue;
      std::error_code file_ec;
      const auto written = it->last_write_time(file_ec);
      if (!file_ec && written < cutoff) fs::remove(it->path(), file_ec);
    }
  }
}

constexpr const char* kSessionSelect =
    "SELECT s.id, s.config_json, s.created_unix_ms, s.closed_unix_ms,"
    " (SELECT COUNT(*) FROM blocks b WHERE b.session = s.seq),"
    " (SELECT COUNT(*) FROM stimuli t WHERE t.session = s.seq),"
    " (SELECT COUNT(*) FROM trials r WHERE r.session = s.seq) FROM sessions s ";

SessionRow session_from(const sql::Stmt& s) {
  SessionRow row;
  row.id = s.text(0);
  row.config_json = s.text(1);
  row.created_unix_ms = s.int64(2);
  row.closed = !s.is_null(3);
  row.closed_unix_ms = row.closed ? s.int64(3) : 0;
  row.blocks = static_cast<int>(s.int64(4));
  row.stimuli = static_cast<int>(s.int64(5));
  row.trials = static_cast<int>(s.int64(6));
  return row;
}

StatusOr<SessionRow> read_session(sql::Db& db, const std::string& id) {
  const std::string query = std::string(kSessionSelect) + "WHERE s.id=?1";
  ASSIGN_OR_RETURN(sql::Stmt s, db.prepare(query.c_str()));
  ASSIGN_OR_RETURN(const bool row, s.bind(1, id).step());
  if (!row) return not_found("session " + quote_value(id) + " not found");
  return session_from(s);
}

constexpr const char* kStimulusColumns =
    "SELECT stimulus_id, block_index, position, origin, source_json, image_sha256, predicted "
    "FROM stimuli ";

StatusOr<StimulusRow> stimulus_from(const sql::Stmt& s) {
  StimulusRow row;
  row.stimulus_id = s.text(0);
  row.block_index = static_cast<int>(s.int64(1));
  row.position = static_cast<int>(s.int64(2));
  row.origin = s.text(3);
  row.source_json = s.text(4);
  row.image_sha256 = s.text(5);
  ASSIGN_OR_RETURN(row.predicted, s.doubles(6));
  return row;
}

StatusOr<std::optional<BlockRow>> load_block(sql::Db& db, std::int64_t session,
                                             const std::string& block_id) {
  ASSIGN_OR_RETURN(sql::Stmt b, db.prepare("SELECT block_index, strategy_json FROM blocks "
                                           "WHERE session=?1 AND block_id=?2"));
  ASSIGN_OR_RETURN(const bool found, b.bind(1, session).bind(2, block_id).step());
  if (!found) return std::optional<BlockRow>();
  BlockRow block;
  block.block_id = block_id;
  block.block_index = static_cast<int>(b.int64(0));
  block.strategy_json = b.text(1);
  const std::string query =
      std::string(kStimulusColumns) + "WHERE session=?1 AND block_index=?2 ORDER BY position";
  ASSIGN_OR_RETURN(sql::Stmt s, db.prepare(query.c_str()));
  s.bind(1, session).bind(2, std::int64_t{block.block_index});
  for (;;) {
    ASSIGN_OR_RETURN(const bool row, s.step());
    if (!row) break;
    ASSIGN_OR_RETURN(StimulusRow stimulus, stimulus_from(s));
    block.stimuli.push_back(std::move(stimulus));
  }
  return std::optional<BlockRow>(std::move(block));
}

// Whether a retried add_block carries what is stored (ids, images, predictions, provenance).
bool same_block(const BlockRow& stored, const BlockRow& retry) {
  if (stored.strategy_json != retry.strategy_json) return false;
  if (stored.stimuli.size() != retry.stimuli.size()) return false;
  for (std::size_t i = 0; i < stored.stimuli.size(); ++i) {
    const StimulusRow& a = stored.stimuli[i];
    const StimulusRow& b = retry.stimuli[i];
    if (a.stimulus_id != b.stimulus_id || a.origin != b.origin || a.source_json != b.source_json ||
        a.image_sha256 != b.image_sha256 || a.predicted != b.predicted) {
      return false;
    }
  }
  return true;
}

}  // namespace

SessionStore::SessionStore() : impl_(std::make_unique<Impl>()) {}
SessionStore::~SessionStore() = default;

StatusOr<std::unique_ptr<SessionStore>> SessionStore::open(const std::string& data_dir) {
  if (data_dir.empty()) return invalid_argument("the session data directory is empty");
  RETURN_IF_ERROR(make_dir(data_dir));
  if (::access(data_dir.c_str(), W_OK | X_OK) != 0) {
    return Status(StatusCode::kPermissionDenied, data_dir + " is not writable");
  }
  std::unique_ptr<SessionStore> store(new SessionStore());
  Impl& impl = *store->impl_;
  impl.images_dir = data_dir + "/images";
  RETURN_IF_ERROR(make_dir(impl.images_dir));
  ASSIGN_OR_RETURN(impl.db, sql::Db::open(data_dir + "/sessions.sqlite3"));
  // SQLite syncs its journals' directory entries but not a newly created database's.
  RETURN_IF_ERROR(sync_path(data_dir));
  sweep_stale_temporaries(impl.images_dir);
  return store;
}

StatusOr<SessionRow> SessionStore::create_session(const std::string& id,
                                                  const std::string& config_json) {
  RETURN_IF_ERROR(check_id(id, "session id"));
  std::lock_guard lock(impl_->mu);
  sql::Db& db = *impl_->db;
  sql::Transaction tx(db);
  RETURN_IF_ERROR(tx.begin());
  ASSIGN_OR_RETURN(sql::Stmt s, db.prepare("SELECT config_json FROM sessions WHERE id=?1"));
  ASSIGN_OR_RETURN(const bool exists, s.bind(1, id).step());
  if (exists) {
    if (s.text(0) != config_json) {
      return failed_precondition("session " + quote_value(id) +
                                 " exists with another configuration");
    }
    return read_session(db, id);
  }
  ASSIGN_OR_RETURN(sql::Stmt insert,
                   db.prepare("INSERT INTO sessions (id, config_json, created_unix_ms) "
                              "VALUES (?1, ?2, ?3)"));
  RETURN_IF_ERROR(insert.bind(1, id).bind(2, config_json).bind(3, sql::now_unix_ms()).run());
  RETURN_IF_ERROR(tx.commit());
  return read_session(db, id);
}

StatusOr<SessionRow> SessionStore::get_session(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  return read_session(*impl_->db, id);
}

std::vector<SessionRow> SessionStore::list_sessions() const {
  std::lock_guard lock(impl_->mu);
  std::vector<SessionRow> rows;
  const std::string query = std::string(kSessionSelect) + "ORDER BY s.seq";
  auto s = impl_->db->prepare(query.c_str());
  if (!s.ok()) return rows;
  for (auto row = s->step(); row.ok() && *row; row = s->step()) rows.push_back(session_from(*s));
  return rows;
}

StatusOr<SessionRow> SessionStore::close_session(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  sql::Db& db = *impl_->db;
  sql::Transaction tx(db);
  RETURN_IF_ERROR(tx.begin());
  ASSIGN_OR_RETURN(const SessionKey key, find_session(db, id));
  if (!key.closed) {
    ASSIGN_OR_RETURN(sql::Stmt s, db.prepare("UPDATE sessions SET closed_unix_ms=?1 WHERE seq=?2"));
    RETURN_IF_ERROR(s.bind(1, sql::now_unix_ms()).bind(2, key.seq).run());
    RETURN_IF_ERROR(tx.commit());
  }
  return read_session(db, id);
}

StatusOr<std::string> SessionStore::put_image(std::span<const std::uint8_t> png) {
  if (png.empty()) return invalid_argument("the image is empty");
  const std::string sha = sha256_hex(png);
  const std::string path = image_file(impl_->images_dir, sha);
  // Already there and intact: nothing to do. A damaged copy is replaced below.
  if (auto existing = read_file(path);
      existing.ok() && std::equal(existing->begin(), existing->end(), png.begin(), png.end())) {
    return sha;
  }
  const std::string dir = impl_->images_dir + "/" + sha.substr(0, 2);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_status(errno, "cannot create " + dir);
  }
  RETURN_IF_ERROR(sync_path(impl_->images_dir));
  RETURN_IF_ERROR(write_file_atomically(path, png));
  return sha;
}

StatusOr<std::vector<std::uint8_t>> SessionStore::get_image(const std::string& sha256) const {
  if (!is_sha256_hex(sha256)) {
    return invalid_argument("image " + quote_value(sha256) +
                            " is not a lower-case SHA-256 hex digest");
  }
  const std::string path = image_file(impl_->images_dir, sha256);
  auto bytes = read_file(path);
  if (!bytes.ok() && bytes.status().code() == StatusCode::kNotFound) {
    return not_found("image " + sha256 + " not found");
  }
  if (!bytes.ok()) return bytes.status();
  if (sha256_hex(*bytes) != sha256) {
    return data_loss(path + ": the file's contents no longer match its SHA-256");
  }
  return bytes;
}

namespace {

// Everything add_block refuses, checked before anything is written.
Status validate_stimuli(sql::Db& db, const std::string& images_dir, std::int64_t session,
                        const std::vector<StimulusRow>& stimuli) {
  if (stimuli.empty()) return invalid_argument("the block has no stimuli");
  ASSIGN_OR_RETURN(sql::Stmt used,
                   db.prepare("SELECT 1 FROM stimuli WHERE session=?1 AND stimulus_id=?2"));
  std::map<std::string, std::size_t> in_block;
  for (std::size_t i = 0; i < stimuli.size(); ++i) {
    const StimulusRow& st = stimuli[i];
    const std::string name = "stimuli[" + std::to_string(i) + "]";
    RETURN_IF_ERROR(check_id(st.stimulus_id, name + ".stimulus_id"));
    if (auto [it, fresh] = in_block.emplace(st.stimulus_id, i); !fresh) {
      return invalid_argument(name + ".stimulus_id " + quote_value(st.stimulus_id) +
                              " repeats stimuli[" + std::to_string(it->second) + "]");
    }
    used.reset();
    ASSIGN_OR_RETURN(const bool taken, used.bind(1, session).bind(2, st.stimulus_id).step());
    if (taken) {
      return invalid_argument(name + ".stimulus_id " + quote_value(st.stimulus_id) +
                              " is already used in this session");
    }
    struct stat info {};
    if (!is_sha256_hex(st.image_sha256) ||
        ::stat(image_file(images_dir, st.image_sha256).c_str(), &info) != 0 ||
        !S_ISREG(info.st_mode)) {
      return invalid_argument(name + ".image_sha256 " + quote_value(st.image_sha256) +
                              " names no stored image (put_image first)");
    }
    for (std::size_t k = 0; k < st.predicted.size(); ++k) {
      if (!std::isfinite(st.predicted[k])) {
        return invalid_argument(name + ".predicted[" + std::to_string(k) + "] is not finite");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<int> SessionStore::add_block(const std::string& session_id, BlockRow block) {
  std::lock_guard lock(impl_->mu);
  sql::Db& db = *impl_->db;
  sql::Transaction tx(db);
  RETURN_IF_ERROR(tx.begin());
  SessionKey key;
  RETURN_IF_ERROR(require_open(db, session_id, &key));
  RETURN_IF_ERROR(check_id(block.block_id, "block_id"));
  ASSIGN_OR_RETURN(const std::optional<BlockRow> stored, load_block(db, key.seq, block.block_id));
  if (stored) {
    if (same_block(*stored, block)) return stored->block_index;
    return failed_precondition("block " + quote_value(block.block_id) + " exists in session " +
                               quote_value(session_id) + " with other stimuli");
  }
  RETURN_IF_ERROR(validate_stimuli(db, impl_->images_dir, key.seq, block.stimuli));

  ASSIGN_OR_RETURN(sql::Stmt count, db.prepare("SELECT COUNT(*) FROM blocks WHERE session=?1"));
  ASSIGN_OR_RETURN(const bool counted, count.bind(1, key.seq).step());
  const std::int64_t index = counted ? count.int64(0) : 0;
  ASSIGN_OR_RETURN(sql::Stmt insert_block,
                   db.prepare("INSERT INTO blocks (session, block_index, block_id, strategy_json, "
                              "created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5)"));
  RETURN_IF_ERROR(insert_block.bind(1, key.seq)
                      .bind(2, index)
                      .bind(3, block.block_id)
                      .bind(4, block.strategy_json)
                      .bind(5, sql::now_unix_ms())
                      .run());
  ASSIGN_OR_RETURN(sql::Stmt insert,
                   db.prepare("INSERT INTO stimuli (session, stimulus_id, block_index, position, "
                              "origin, source_json, image_sha256, predicted) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  for (std::size_t i = 0; i < block.stimuli.size(); ++i) {
    const StimulusRow& st = block.stimuli[i];
    insert.reset();
    RETURN_IF_ERROR(insert.bind(1, key.seq)
                        .bind(2, st.stimulus_id)
                        .bind(3, index)
                        .bind(4, static_cast<std::int64_t>(i))
                        .bind(5, st.origin)
                        .bind(6, st.source_json)
                        .bind(7, st.image_sha256)
                        .bind_blob(8, sql::encode_doubles(st.predicted))
                        .run());
  }
  RETURN_IF_ERROR(tx.commit());
  return static_cast<int>(index);
}

StatusOr<std::optional<BlockRow>> SessionStore::find_block(const std::string& session_id,
                                                           const std::string& block_id) const {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(const SessionKey key, find_session(*impl_->db, session_id));
  return load_block(*impl_->db, key.seq, block_id);
}

std::vector<StimulusRow> SessionStore::stimuli(const std::string& session_id) const {
  std::lock_guard lock(impl_->mu);
  std::vector<StimulusRow> rows;
  const std::string query = std::string(kStimulusColumns) +
                            "WHERE session=(SELECT seq FROM sessions WHERE id=?1) "
                            "ORDER BY block_index, position";
  auto s = impl_->db->prepare(query.c_str());
  if (!s.ok()) return rows;
  s->bind(1, session_id);
  for (auto row = s->step(); row.ok() && *row; row = s->step()) {
    auto stimulus = stimulus_from(*s);
    if (stimulus.ok()) rows.push_back(std::move(stimulus).value());
  }
  return rows;
}

}  // namespace stimloop::sessions

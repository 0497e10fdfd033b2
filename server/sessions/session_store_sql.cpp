#include "server/sessions/session_store_sql.h"

#include <bit>
#include <chrono>
#include <cstring>

#include "common/truncate.h"

namespace stimloop::sessions::sql {
namespace {

// "STLP" in the header's application_id marks the file as ours; user_version is the schema.
constexpr std::int64_t kApplicationId = 0x53544C50;
constexpr std::int64_t kSchemaVersion = 1;

// Schema, version 1. Sessions get an integer key (seq, also their creation order) that the other
// tables refer to, so a long client id is stored once. Doubles are little-endian float64 blobs
// (one per channel). Trials are returned in rowid order, i.e. the order they were stored.
//   sessions(seq PK, id UNIQUE, config_json, created_unix_ms, closed_unix_ms NULL while open)
//   blocks(session, block_index, block_id, strategy_json, created_unix_ms)
//     PK (session, block_index), UNIQUE (session, block_id)
//   stimuli(session, stimulus_id, block_index, position, origin, source_json, image_sha256,
//     predicted) PK (session, stimulus_id), UNIQUE (session, block_index, position),
//     FK (session, block_index) -> blocks
//   trials(session, stimulus_id, repeat_index, valid, responses, received_unix_ms)
//     PK (session, stimulus_id, repeat_index), FK (session, stimulus_id) -> stimuli
//   fits(session, version, channel_id, summary_json, created_unix_ms)
//     PK (session, version, channel_id)
constexpr const char* kSchema = R"sql(
CREATE TABLE sessions (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  config_json TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  closed_unix_ms INTEGER
);
CREATE TABLE blocks (
  session INTEGER NOT NULL REFERENCES sessions (seq),
  block_index INTEGER NOT NULL,
  block_id TEXT NOT NULL,
  strategy_json TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  PRIMARY KEY (session, block_index),
  UNIQUE (session, block_id)
);
CREATE TABLE stimuli (
  session INTEGER NOT NULL,
  stimulus_id TEXT NOT NULL,
  block_index INTEGER NOT NULL,
  position INTEGER NOT NULL,
  origin TEXT NOT NULL,
  source_json TEXT NOT NULL,
  image_sha256 TEXT NOT NULL,
  predicted BLOB NOT NULL,
  PRIMARY KEY (session, stimulus_id),
  UNIQUE (session, block_index, position),
  FOREIGN KEY (session, block_index) REFERENCES blocks (session, block_index)
);
CREATE TABLE trials (
  session INTEGER NOT NULL,
  stimulus_id TEXT NOT NULL,
  repeat_index INTEGER NOT NULL,
  valid INTEGER NOT NULL,
  responses BLOB NOT NULL,
  received_unix_ms INTEGER NOT NULL,
  PRIMARY KEY (session, stimulus_id, repeat_index),
  FOREIGN KEY (session, stimulus_id) REFERENCES stimuli (session, stimulus_id)
);
CREATE TABLE fits (
  session INTEGER NOT NULL REFERENCES sessions (seq),
  version INTEGER NOT NULL,
  channel_id TEXT NOT NULL,
  summary_json TEXT NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  PRIMARY KEY (session, version, channel_id)
);
)sql";

StatusCode code_for(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StatusCode::kDataLoss;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_TOOBIG:
      return StatusCode::kResourceExhausted;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
      return StatusCode::kUnavailable;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CANTOPEN:
      return StatusCode::kPermissionDenied;
    default:
      return StatusCode::kInternal;
  }
}

}  // namespace

std::string encode_doubles(std::span<const double> values) {
  std::string bytes(values.size() * 8, '\0');
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto bits = std::bit_cast<std::uint64_t>(values[i]);
    for (int b = 0; b < 8; ++b) bytes[8 * i + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
  }
  return bytes;
}

std::optional<std::vector<double>> decode_doubles(const void* data, int bytes) {
  if (bytes < 0 || bytes % 8 != 0 || (bytes > 0 && data == nullptr)) return std::nullopt;
  const auto* p = static_cast<const unsigned char*>(data);
  std::vector<double> values(static_cast<std::size_t>(bytes / 8));
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::uint64_t bits = 0;
    for (int b = 0; b < 8; ++b) bits |= std::uint64_t{p[8 * i + b]} << (8 * b);
    values[i] = std::bit_cast<double>(bits);
  }
  return values;
}

std::string quote_value(const std::string& value) {
  std::string out(1, '\'');
  out += truncated_id(value, 100);
  return out + "'";
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status check_id(const std::string& id, const std::string& name) {
  constexpr std::size_t kMaxIdBytes = 256;
  if (id.empty() || id.size() > kMaxIdBytes) {
    return invalid_argument(name + " must be 1 to " + std::to_string(kMaxIdBytes) +
                            " bytes long, got " + std::to_string(id.size()));
  }
  return Status::Ok();
}

Stmt::Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_), bind_rc_(other.bind_rc_) {
  other.stmt_ = nullptr;
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

Stmt& Stmt::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind(int index, const std::string& text) {
  const int rc =
      sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_blob(int index, const std::string& bytes) {
  // A zero-length blob, not NULL, for an empty vector (the column is NOT NULL).
  const int rc = sqlite3_bind_blob64(stmt_, index, bytes.empty() ? "" : bytes.data(), bytes.size(),
                                     SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

StatusOr<bool> Stmt::step() {
  if (bind_rc_ != SQLITE_OK) return db_->error(bind_rc_, "binding a parameter");
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->error(rc, "running a statement");
}

Status Stmt::run() {
  for (;;) {
    ASSIGN_OR_RETURN(const bool row, step());
    if (!row) return Status::Ok();
  }
}

void Stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_rc_ = SQLITE_OK;
}

std::int64_t Stmt::int64(int column) const { return sqlite3_column_int64(stmt_, column); }

bool Stmt::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

std::string Stmt::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  const int n = sqlite3_column_bytes(stmt_, column);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

StatusOr<std::vector<double>> Stmt::doubles(int column) const {
  const void* p = sqlite3_column_blob(stmt_, column);
  auto values = decode_doubles(p, sqlite3_column_bytes(stmt_, column));
  if (!values) return db_->error(SQLITE_CORRUPT, "reading a float64 column (bad length)");
  return std::move(*values);
}

Status Db::error(int rc, const char* what) const {
  std::string detail = sqlite3_errstr(rc);
  // errmsg is more specific than errstr when it belongs to this failure.
  if (db_ != nullptr && sqlite3_extended_errcode(db_) == rc) detail = sqlite3_errmsg(db_);
  std::string message = path_ + ": " + what + ": " + detail;
  if ((rc & 0xff) == SQLITE_NOTADB)
    message = path_ + " is not a stimloop session database (" + detail + ")";
  return {code_for(rc), std::move(message)};
}

StatusOr<std::unique_ptr<Db>> Db::open(const std::string& path) {
  sqlite3* handle = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &handle,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<Db> db(new Db(path, handle));
  if (rc != SQLITE_OK) return db->error(rc, "opening the database");
  sqlite3_extended_result_codes(handle, 1);
  // SQLite quietly falls back to read-only for a write-protected file; a store must write.
  if (sqlite3_db_readonly(handle, "main") == 1) {
    return Status(StatusCode::kPermissionDenied, path + ": the database file is not writable");
  }
  sqlite3_busy_timeout(handle, 10000);
  bool empty = false;
  // The identity check comes before anything that writes (journal_mode=WAL does), so a foreign
  // database is refused untouched.
  RETURN_IF_ERROR(db->check_identity(&empty));
  RETURN_IF_ERROR(db->configure());
  if (empty) RETURN_IF_ERROR(db->create_schema());
  return db;
}

Db::~Db() { sqlite3_close_v2(db_); }

StatusOr<Stmt> Db::prepare(const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return error(rc, "preparing a statement");
  }
  return Stmt(this, stmt);
}

Status Db::exec(const char* sql) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return error(rc, "running a statement");
  return Status::Ok();
}

Status Db::check_identity(bool* empty) {
  ASSIGN_OR_RETURN(Stmt s, prepare("SELECT (SELECT application_id FROM pragma_application_id), "
                                   "(SELECT user_version FROM pragma_user_version), "
                                   "(SELECT COUNT(*) FROM sqlite_schema)"));
  ASSIGN_OR_RETURN(const bool row, s.step());
  if (!row) return error(SQLITE_INTERNAL, "reading the schema version");
  const std::int64_t app = s.int64(0), version = s.int64(1), objects = s.int64(2);
  *empty = app == 0 && version == 0 && objects == 0;
  if (*empty) return Status::Ok();
  if (app != kApplicationId || version < 1) {
    return data_loss(path_ + " is not a stimloop session database (a foreign SQLite file)");
  }
  if (version > kSchemaVersion) {
    return failed_precondition(path_ + " has session schema version " + std::to_string(version) +
                               "; this server reads up to " + std::to_string(kSchemaVersion));
  }
  return Status::Ok();
}

Status Db::configure() {
  ASSIGN_OR_RETURN(Stmt wal, prepare("PRAGMA journal_mode=WAL"));
  ASSIGN_OR_RETURN(const bool row, wal.step());
  if (!row || wal.text(0) != "wal") {
    return failed_precondition(path_ + ": cannot switch the database to WAL mode");
  }
  return exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA trusted_schema=OFF;");
}

Status Db::create_schema() {
  Transaction tx(*this);
  RETURN_IF_ERROR(tx.begin());
  // Another process may have created it between the check above and the write lock.
  bool empty = false;
  RETURN_IF_ERROR(check_identity(&empty));
  if (!empty) return Status::Ok();
  RETURN_IF_ERROR(exec(kSchema));
  RETURN_IF_ERROR(exec(("PRAGMA application_id=" + std::to_string(kApplicationId) +
                        "; PRAGMA user_version=" + std::to_string(kSchemaVersion) + ";")
                           .c_str()));
  return tx.commit();
}

Status Transaction::begin() {
  RETURN_IF_ERROR(db_.exec("BEGIN IMMEDIATE"));
  open_ = true;
  return Status::Ok();
}

Status Transaction::commit() {
  RETURN_IF_ERROR(db_.exec("COMMIT"));
  open_ = false;
  return Status::Ok();
}

Transaction::~Transaction() {
  if (open_) (void)db_.exec("ROLLBACK");
}

StatusOr<SessionKey> find_session(Db& db, const std::string& id) {
  ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT seq, closed_unix_ms FROM sessions WHERE id=?1"));
  ASSIGN_OR_RETURN(const bool row, s.bind(1, id).step());
  if (!row) return not_found("session " + quote_value(id) + " not found");
  return SessionKey{s.int64(0), !s.is_null(1)};
}

Status require_open(Db& db, const std::string& id, SessionKey* key) {
  ASSIGN_OR_RETURN(*key, find_session(db, id));
  if (key->closed) return failed_precondition("session " + quote_value(id) + " is closed");
  return Status::Ok();
}

}  // namespace stimloop::sessions::sql

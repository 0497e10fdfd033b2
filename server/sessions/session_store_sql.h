// The SQLite layer under SessionStore (internal to server/sessions): a connection that maps
// SQLite's result codes onto Status with the database's path in every message, prepared
// statements with bound parameters only, an all-or-none transaction guard, and the schema.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/sessions/session_store.h"

namespace stimloop::sessions::sql {

// Blobs of float64, little-endian whatever the host, so a database file moves between machines.
std::string encode_doubles(std::span<const double> values);
std::optional<std::vector<double>> decode_doubles(const void* data, int bytes);

// A user-supplied value for an error message: quoted, at most ~100 characters, control bytes
// replaced, so a hostile megabyte id cannot flood a log.
std::string quote_value(const std::string& value);

std::int64_t now_unix_ms();

// INVALID_ARGUMENT naming `name` unless 1 to 256 bytes long.
Status check_id(const std::string& id, const std::string& name);

class Db;

// One prepared statement. Binding errors are kept and reported by the next step().
class Stmt {
 public:
  Stmt(Db* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept;
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt();

  Stmt& bind(int index, std::int64_t value);
  Stmt& bind(int index, const std::string& text);
  Stmt& bind_blob(int index, const std::string& bytes);
  Stmt& bind_null(int index);
  // true: a row is ready; false: done.
  StatusOr<bool> step();
  Status run();  // steps to completion, for statements without results
  void reset();  // clears bindings too, ready for the next use

  std::int64_t int64(int column) const;
  bool is_null(int column) const;
  std::string text(int column) const;
  // DATA_LOSS when the blob is not a whole number of float64.
  StatusOr<std::vector<double>> doubles(int column) const;

 private:
  Db* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

class Db {
 public:
  // Opens or creates the stimloop session database at `path`: WAL, synchronous=FULL, foreign
  // keys on, the schema created in an empty file. DATA_LOSS for any other file.
  static StatusOr<std::unique_ptr<Db>> open(const std::string& path);
  ~Db();

  StatusOr<Stmt> prepare(const char* sql);
  Status exec(const char* sql);  // fixed SQL only: never text built from user data
  // The Status for a failed SQLite call, naming the database and what was being done.
  Status error(int rc, const char* what) const;

 private:
  Db(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Status check_identity(bool* empty);
  Status configure();
  Status create_schema();

  std::string path_;
  sqlite3* db_;
};

// BEGIN IMMEDIATE on construction (the write lock up front, so checks and writes see one
// state); ROLLBACK on destruction unless commit() succeeded: every early return undoes all.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) {}
  ~Transaction();
  Status begin();
  Status commit();

 private:
  Db& db_;
  bool open_ = false;
};

struct SessionKey {
  std::int64_t seq = 0;  // the sessions table's integer key, which the other tables refer to
  bool closed = false;
};
// NOT_FOUND naming the id.
StatusOr<SessionKey> find_session(Db& db, const std::string& id);
// As find_session, and FAILED_PRECONDITION for a closed session.
Status require_open(Db& db, const std::string& id, SessionKey* key);

}  // namespace stimloop::sessions::sql

namespace stimloop::sessions {

struct SessionStore::Impl {
  std::string images_dir;
  std::unique_ptr<sql::Db> db;
  // One connection, used by one thread at a time; image files need no lock (each write goes to
  // its own temporary name and renames are atomic).
  mutable std::mutex mu;
};

}  // namespace stimloop::sessions

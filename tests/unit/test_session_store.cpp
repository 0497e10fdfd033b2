// SessionStore: nothing acknowledged is ever lost. Sessions, blocks and trials round trip and
// survive a reopen and a kill -9; refused calls store nothing (all or none); retries are
// idempotent and conflicting retries are refused; images are content-addressed and a damaged
// one is reported, as is a file at the database path that is not a session database.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/sha256.h"
#include "server/sessions/session_store.h"
#include "tests/support/test_data.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using namespace stimloop;
using namespace stimloop::sessions;
using stimloop::test::scratch_dir;

namespace {

std::unique_ptr<SessionStore> open_store(const std::string& dir) {
  auto store = SessionStore::open(dir);
  INFO(store.status().to_string());
  REQUIRE(store.ok());
  return std::move(store).value();
}

void require_error(const Status& status, StatusCode code, const std::string& fragment) {
  INFO(status.to_string());
  REQUIRE(status.code() == code);
  REQUIRE_THAT(status.message(), Contains(fragment));
}

// Stand-in image bytes: a PNG signature and a distinct body per seed.
std::vector<std::uint8_t> image_bytes(int seed) {
  std::vector<std::uint8_t> bytes = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  for (int i = 0; i < 64; ++i) bytes.push_back(static_cast<std::uint8_t>(seed * 31 + i * 7));
  return bytes;
}

// A block of stimuli `<prefix>0`, `<prefix>1`, ... with their images put first.
BlockRow make_block(SessionStore& store, const std::string& block_id, const std::string& prefix,
                    int count, int channels) {
  BlockRow block;
  block.block_id = block_id;
  block.strategy_json = R"({"strategy":")" + block_id + R"("})";
  for (int i = 0; i < count; ++i) {
    StimulusRow st;
    st.stimulus_id = prefix + std::to_string(i);
    st.origin = i % 2 == 0 ? "pool" : "synthesized";
    st.source_json = R"({"name":")" + st.stimulus_id + R"("})";
    auto sha = store.put_image(image_bytes(static_cast<int>(std::hash<std::string>{}(prefix)) + i));
    REQUIRE(sha.ok());
    st.image_sha256 = *sha;
    for (int c = 0; c < channels; ++c) st.predicted.push_back(0.1 * i - 0.37 * c + 1.0 / 3);
    block.stimuli.push_back(st);
  }
  return block;
}

TrialRow trial(const std::string& stimulus, int repeat, std::vector<double> responses,
               bool valid = true) {
  TrialRow t;
  t.stimulus_id = stimulus;
  t.repeat_index = repeat;
  t.valid = valid;
  t.responses = std::move(responses);
  return t;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool same_trials(const std::vector<TrialRow>& a, const std::vector<TrialRow>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].stimulus_id != b[i].stimulus_id || a[i].repeat_index != b[i].repeat_index ||
        a[i].valid != b[i].valid || a[i].responses != b[i].responses) {
      return false;
    }
  }
  return true;
}

void require_same_stimuli(const std::vector<StimulusRow>& got, const std::vector<StimulusRow>& want,
                          int block_index) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].stimulus_id == want[i].stimulus_id);
    CHECK(got[i].block_index == block_index);
    CHECK(got[i].position == static_cast<int>(i));
    CHECK(got[i].origin == want[i].origin);
    CHECK(got[i].source_json == want[i].source_json);
    CHECK(got[i].image_sha256 == want[i].image_sha256);
    CHECK(got[i].predicted == want[i].predicted);  // bit for bit
  }
}

const char* const kBlockStimuli[] = {"k0", "k1", "k2", "k3"};

// A session "s" with one block of stimuli k0..k3 and 2 channels.
std::unique_ptr<SessionStore> store_with_block(const std::string& dir) {
  auto store = open_store(dir);
  REQUIRE(store->create_session("s", R"({"channels":2})").ok());
  auto index = store->add_block("s", make_block(*store, "b0", "k", 4, 2));
  INFO(index.status().to_string());
  REQUIRE(index.ok());
  return store;
}

}  // namespace

TEST_CASE("sessions are created, fetched, listed oldest first and closed", "[session_store]") {
  auto store = open_store(scratch_dir("session_store_sessions"));
  auto a = store->create_session("alpha", R"({"a":1})");
  REQUIRE(a.ok());
  CHECK(a->id == "alpha");
  CHECK(a->config_json == R"({"a":1})");
  CHECK_FALSE(a->closed);
  CHECK(a->closed_unix_ms == 0);
  CHECK(a->created_unix_ms > 1'600'000'000'000);
  REQUIRE(store->create_session("beta", "{}").ok());
  REQUIRE(store->create_session("0-first-by-name", "{}").ok());

  const auto all = store->list_sessions();
  REQUIRE(all.size() == 3);
  CHECK(all[0].id == "alpha");
  CHECK(all[1].id == "beta");
  CHECK(all[2].id == "0-first-by-name");

  auto got = store->get_session("beta");
  REQUIRE(got.ok());
  CHECK(got->config_json == "{}");
  CHECK(got->blocks == 0);
  CHECK(got->trials == 0);
  require_error(store->get_session("gamma").status(), StatusCode::kNotFound, "'gamma'");

  auto closed = store->close_session("alpha");
  REQUIRE(closed.ok());
  CHECK(closed->closed);
  CHECK(closed->closed_unix_ms >= closed->created_unix_ms);
  auto again = store->close_session("alpha");  // idempotent: the first close time stays
  REQUIRE(again.ok());
  CHECK(again->closed_unix_ms == closed->closed_unix_ms);
  CHECK(store->get_session("alpha")->closed);
  CHECK_FALSE(store->get_session("beta")->closed);
  require_error(store->close_session("gamma").status(), StatusCode::kNotFound, "'gamma'");
  require_error(store->create_session("", "{}").status(), StatusCode::kInvalidArgument,
                "session id");
}

TEST_CASE("create_session returns the existing session for the same configuration only",
          "[session_store]") {
  auto store = open_store(scratch_dir("session_store_idempotent_create"));
  auto first = store->create_session("s", R"({"channels":3})");
  REQUIRE(first.ok());
  auto retry = store->create_session("s", R"({"channels":3})");
  REQUIRE(retry.ok());
  CHECK(retry->created_unix_ms == first->created_unix_ms);
  CHECK(store->list_sessions().size() == 1);

  require_error(store->create_session("s", R"({"channels":4})").status(),
                StatusCode::kFailedPrecondition, "exists with another configuration");
  CHECK(store->get_session("s")->config_json == R"({"channels":3})");

  // A hostile id is echoed truncated, never in full.
  const std::string long_id(250, 'x');
  REQUIRE(store->create_session(long_id, "{}").ok());
  const Status conflict = store->create_session(long_id, "{ }").status();
  require_error(conflict, StatusCode::kFailedPrecondition, std::string(100, 'x') + "...");
  CHECK_THAT(conflict.message(), !Contains(long_id));
}

TEST_CASE("blocks and stimuli round trip and find_block returns a block again", "[session_store]") {
  auto store = open_store(scratch_dir("session_store_blocks"));
  REQUIRE(store->create_session("s", "{}").ok());
  const BlockRow b0 = make_block(*store, "req-0", "a", 3, 2);
  const BlockRow b1 = make_block(*store, "req-1", "b", 5, 2);
  auto i0 = store->add_block("s", b0);
  auto i1 = store->add_block("s", b1);
  REQUIRE(i0.ok());
  REQUIRE(i1.ok());
  CHECK(*i0 == 0);
  CHECK(*i1 == 1);

  auto found = store->find_block("s", "req-1");
  REQUIRE(found.ok());
  REQUIRE(found->has_value());
  const BlockRow& got = **found;
  CHECK(got.block_id == "req-1");
  CHECK(got.block_index == 1);
  CHECK(got.strategy_json == b1.strategy_json);
  require_same_stimuli(got.stimuli, b1.stimuli, 1);

  auto missing = store->find_block("s", "req-9");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());
  require_error(store->find_block("nope", "req-0").status(), StatusCode::kNotFound, "'nope'");

  const auto all = store->stimuli("s");
  REQUIRE(all.size() == 8);
  require_same_stimuli({all.begin(), all.begin() + 3}, b0.stimuli, 0);
  require_same_stimuli({all.begin() + 3, all.end()}, b1.stimuli, 1);
  CHECK(store->get_session("s")->blocks == 2);
  CHECK(store->get_session("s")->stimuli == 8);

  // A retried add_block with the same key and contents is the same block; with other contents,
  // a conflict.
  auto retry = store->add_block("s", b0);
  REQUIRE(retry.ok());
  CHECK(*retry == 0);
  BlockRow changed = b0;
  changed.stimuli[1].predicted[0] += 1;
  require_error(store->add_block("s", changed).status(), StatusCode::kFailedPrecondition,
                "'req-0'");
  CHECK(store->get_session("s")->blocks == 2);
  CHECK(store->stimuli("s").size() == 8);
}

TEST_CASE("add_block refuses bad stimuli and stores none of the block", "[session_store]") {
  auto store = open_store(scratch_dir("session_store_bad_blocks"));
  REQUIRE(store->create_session("s", "{}").ok());
  REQUIRE(store->add_block("s", make_block(*store, "b0", "x", 2, 1)).ok());
  BlockRow block = make_block(*store, "b1", "y", 3, 1);

  SECTION("a stimulus id used by an earlier block") {
    block.stimuli[1].stimulus_id = "x0";
    require_error(store->add_block("s", block).status(), StatusCode::kInvalidArgument,
                  "stimuli[1].stimulus_id 'x0' is already used");
  }
  SECTION("a stimulus id twice in the block") {
    block.stimuli[2].stimulus_id = "y0";
    require_error(store->add_block("s", block).status(), StatusCode::kInvalidArgument,
                  "stimuli[2].stimulus_id");
  }
  SECTION("an image that was never put") {
    block.stimuli[2].image_sha256 = sha256_hex(image_bytes(-1));
    require_error(store->add_block("s", block).status(), StatusCode::kInvalidArgument,
                  "stimuli[2].image_sha256");
  }
  SECTION("an image digest that is a path") {
    block.stimuli[0].image_sha256 = "../../sessions.sqlite3";
    require_error(store->add_block("s", block).status(), StatusCode::kInvalidArgument,
                  "stimuli[0].image_sha256");
  }
  SECTION("a non-finite prediction") {
    block.stimuli[1].predicted[0] = std::numeric_limits<double>::quiet_NaN();
    require_error(store->add_block("s", block).status(), StatusCode::kInvalidArgument,
                  "stimuli[1].predicted[0]");
  }
  SECTION("no stimuli") {
    block.stimuli.clear();
    require_error(store->add_block("s", block).status(), StatusCode::kInvalidArgument,
                  "no stimuli");
  }
  SECTION("an unknown session") {
    require_error(store->add_block("t", block).status(), StatusCode::kNotFound, "'t'");
  }
  CHECK(store->get_session("s")->blocks == 1);
  CHECK(store->stimuli("s").size() == 2);
  auto found = store->find_block("s", "b1");
  REQUIRE(found.ok());
  CHECK_FALSE(found->has_value());
  // The same block, repaired, gets the next index: nothing of the refused one was kept.
  auto index = store->add_block("s", make_block(*store, "b1", "y", 3, 1));
  REQUIRE(index.ok());
  CHECK(*index == 1);
}

TEST_CASE("add_trials stores all trials of a call or none", "[session_store]") {
  auto store = store_with_block(scratch_dir("session_store_all_or_none"));
  const std::vector<TrialRow> first = {trial("k0", 0, {1.0, 2.0}), trial("k1", 0, {0.0, 0.5})};
  REQUIRE(store->add_trials("s", 2, first).ok());
  const auto before = store->trials("s");
  REQUIRE(before.size() == 2);

  // Two good new trials, then the bad one at index 2: the good ones must not be stored either.
  std::vector<TrialRow> batch = {trial("k2", 0, {1, 1}), trial("k3", 0, {2, 2}),
                                 trial("k0", 1, {3, 3})};
  const double inf = std::numeric_limits<double>::infinity();
  SECTION("an unknown stimulus id") {
    batch[2].stimulus_id = "k9";
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2].stimulus_id 'k9'");
  }
  SECTION("a response count different from the channels") {
    batch[2].responses = {1, 2, 3};
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2].responses");
  }
  SECTION("a NaN response") {
    batch[2].responses[1] = std::nan("");
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2].responses[1]");
  }
  SECTION("an infinite response") {
    batch[2].responses[0] = inf;
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2].responses[0]");
  }
  SECTION("a negative response") {
    batch[2].responses[1] = -0.25;
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2].responses[1]");
  }
  SECTION("a negative repeat index") {
    batch[2].repeat_index = -1;
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2].repeat_index");
  }
  SECTION("the same key twice in the call") {
    batch[2] = batch[0];
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kInvalidArgument,
                  "trials[2] repeats");
  }
  SECTION("a stored key with other values") {
    batch[2] = trial("k1", 0, {0.0, 0.75});
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kFailedPrecondition,
                  "trials[2]");
  }
  SECTION("a stored key with another valid flag") {
    batch[2] = trial("k1", 0, {0.0, 0.5}, /*valid=*/false);
    require_error(store->add_trials("s", 2, batch).status(), StatusCode::kFailedPrecondition,
                  "trials[2]");
  }
  SECTION("an unknown session") {
    require_error(store->add_trials("t", 2, batch).status(), StatusCode::kNotFound, "'t'");
  }
  CHECK(same_trials(store->trials("s"), before));
  CHECK(store->get_session("s")->trials == 2);
  // The batch, repaired, is then stored whole.
  batch[2] = trial("k0", 1, {3, 3});
  auto outcome = store->add_trials("s", 2, batch);
  REQUIRE(outcome.ok());
  CHECK(outcome->stored == 3);
  CHECK(store->trials("s").size() == 5);
}

TEST_CASE("retried trials count as duplicates and are stored once", "[session_store]") {
  auto store = store_with_block(scratch_dir("session_store_duplicates"));
  const std::vector<TrialRow> first = {trial("k0", 0, {1.5, 2.5}),
                                       trial("k1", 0, {0.0, 0.0}, /*valid=*/false),
                                       trial("k0", 1, {1e-300, 7.0})};
  auto a = store->add_trials("s", 2, first);
  REQUIRE(a.ok());
  CHECK(a->stored == 3);
  CHECK(a->duplicates == 0);
  const auto stored = store->trials("s");
  REQUIRE(same_trials(stored, first));
  CHECK_FALSE(stored[1].valid);
  CHECK(stored[0].received_unix_ms > 1'600'000'000'000);

  std::vector<TrialRow> retry = first;
  retry.push_back(trial("k2", 0, {4, 4}));
  retry.insert(retry.begin(), trial("k3", 5, {0.5, 0.5}));
  auto b = store->add_trials("s", 2, retry);
  REQUIRE(b.ok());
  CHECK(b->stored == 2);
  CHECK(b->duplicates == 3);
  const auto after = store->trials("s");
  REQUIRE(after.size() == 5);
  CHECK(after[0].received_unix_ms == stored[0].received_unix_ms);  // the original row, kept
  CHECK(after[3].stimulus_id == "k3");                             // storage order
  CHECK(after[4].stimulus_id == "k2");
  CHECK(store->get_session("s")->trials == 5);

  auto empty = store->add_trials("s", 2, {});
  REQUIRE(empty.ok());
  CHECK(empty->stored == 0);
}

TEST_CASE("a closed session refuses blocks and trials", "[session_store]") {
  auto store = store_with_block(scratch_dir("session_store_closed"));
  const std::vector<TrialRow> one = {trial("k0", 0, {1, 1})};
  REQUIRE(store->add_trials("s", 2, one).ok());
  REQUIRE(store->close_session("s").ok());
  const std::vector<TrialRow> more = {trial("k1", 0, {1, 1})};
  require_error(store->add_trials("s", 2, more).status(), StatusCode::kFailedPrecondition,
                "closed");
  require_error(store->add_block("s", make_block(*store, "b1", "z", 1, 2)).status(),
                StatusCode::kFailedPrecondition, "closed");
  CHECK(store->trials("s").size() == 1);
  CHECK(store->get_session("s")->blocks == 1);
  CHECK(store->stimuli("s").size() == 4);
}

TEST_CASE("images are content-addressed and a damaged one is DATA_LOSS", "[session_store]") {
  const std::string dir = scratch_dir("session_store_images");
  auto store = open_store(dir);
  const auto bytes = image_bytes(7);
  auto sha = store->put_image(bytes);
  REQUIRE(sha.ok());
  CHECK(*sha == sha256_hex(bytes));
  const fs::path file = fs::path(dir) / "images" / sha->substr(0, 2) / (*sha + ".png");
  REQUIRE(fs::is_regular_file(file));
  CHECK(fs::file_size(file) == bytes.size());
  auto again = store->put_image(bytes);
  REQUIRE(again.ok());
  CHECK(*again == *sha);
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(dir) / "images")) {
    CHECK(entry.path().filename().string().rfind(".tmp-", 0) == std::string::npos);
  }

  auto got = store->get_image(*sha);
  REQUIRE(got.ok());
  CHECK(*got == bytes);

  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('!');
  }
  require_error(store->get_image(*sha).status(), StatusCode::kDataLoss, file.string());
  // Putting the same bytes again repairs the damaged copy.
  REQUIRE(store->put_image(bytes).ok());
  REQUIRE(store->get_image(*sha).ok());

  require_error(store->get_image(sha256_hex(image_bytes(8))).status(), StatusCode::kNotFound,
                "not found");
  require_error(store->get_image("../sessions.sqlite3").status(), StatusCode::kInvalidArgument,
                "SHA-256");
  require_error(store->put_image({}).status(), StatusCode::kInvalidArgument, "empty");
}

TEST_CASE("a stale temporary image is swept at open, a fresh one kept", "[session_store]") {
  const std::string dir = scratch_dir("session_store_sweep");
  open_store(dir);
  const fs::path sub = fs::path(dir) / "images" / "ab";
  fs::create_directories(sub);
  std::ofstream(sub / ".tmp-old") << "partial";
  std::ofstream(sub / ".tmp-new") << "partial";
  fs::last_write_time(sub / ".tmp-old", fs::file_time_type::clock::now() - std::chrono::hours(2));
  open_store(dir);
  CHECK_FALSE(fs::exists(sub / ".tmp-old"));
  CHECK(fs::exists(sub / ".tmp-new"));
}

TEST_CASE("a file that is not a stimloop session database is DATA_LOSS", "[session_store]") {
  const std::string dir = scratch_dir("session_store_foreign");
  const std::string db_path = dir + "/sessions.sqlite3";

  SECTION("a text file") {
    std::ofstream(db_path) << "these are my lab notes, not a database\n";
    require_error(SessionStore::open(dir).status(), StatusCode::kDataLoss, db_path);
  }
  SECTION("another program's SQLite database, left untouched") {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE notes(t TEXT); INSERT INTO notes VALUES ('x');", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    const std::string before = file_bytes(db_path);
    require_error(SessionStore::open(dir).status(), StatusCode::kDataLoss, db_path);
    CHECK(file_bytes(db_path) == before);
  }
  SECTION("a data directory that is a file") {
    const std::string file = dir + "/plain";
    std::ofstream(file) << "x";
    require_error(SessionStore::open(file).status(), StatusCode::kFailedPrecondition, file);
  }
}

TEST_CASE("an unwritable data directory is PERMISSION_DENIED", "[session_store]") {
  if (::geteuid() == 0) {
    WARN("skipped: running as root, which may write anywhere");
    return;
  }
  const std::string dir = scratch_dir("session_store_readonly");
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  const Status status = SessionStore::open(dir).status();
  fs::permissions(dir, fs::perms::owner_all);
  require_error(status, StatusCode::kPermissionDenied, dir);
}

TEST_CASE("a reopened store sees everything that was stored", "[session_store]") {
  const std::string dir = scratch_dir("session_store_reopen");
  std::vector<StimulusRow> stimuli;
  std::vector<TrialRow> trials;
  std::string sha;
  {
    auto store = store_with_block(dir);
    REQUIRE(store->create_session("other", R"({"x":true})").ok());
    REQUIRE(store->close_session("other").ok());
    trials = {trial("k0", 0, {1, 2}), trial("k3", 2, {0.125, 3e7}, false)};
    REQUIRE(store->add_trials("s", 2, trials).ok());
    const std::vector<FitRow> fits = {{1, "ch0", R"({"cv_r":0.5})", 0},
                                      {1, "ch1", R"({"cv_r":0.25})", 0}};
    REQUIRE(store->add_fits("s", fits).ok());
    stimuli = store->stimuli("s");
    auto put = store->put_image(image_bytes(99));
    REQUIRE(put.ok());
    sha = *put;
  }
  auto store = open_store(dir);
  const auto sessions = store->list_sessions();
  REQUIRE(sessions.size() == 2);
  CHECK(sessions[0].id == "s");
  CHECK(sessions[0].blocks == 1);
  CHECK(sessions[0].stimuli == 4);
  CHECK(sessions[0].trials == 2);
  CHECK_FALSE(sessions[0].closed);
  CHECK(sessions[1].id == "other");
  CHECK(sessions[1].closed);
  CHECK(sessions[1].config_json == R"({"x":true})");
  require_same_stimuli(store->stimuli("s"), stimuli, 0);
  CHECK(same_trials(store->trials("s"), trials));
  const auto fits = store->fits("s");
  REQUIRE(fits.size() == 2);
  CHECK(fits[1].channel_id == "ch1");
  CHECK(fits[1].summary_json == R"({"cv_r":0.25})");
  CHECK(fits[1].created_unix_ms > 0);
  REQUIRE(store->get_image(sha).ok());
  CHECK(store->get_image(sha)->size() == image_bytes(99).size());
  // Opening again while this store is open works too (another process's view).
  auto second = open_store(dir);
  CHECK(second->trials("s").size() == 2);
}

TEST_CASE("fits are stored once per version and channel", "[session_store]") {
  auto store = store_with_block(scratch_dir("session_store_fits"));
  const std::vector<FitRow> v1 = {{1, "ch0", "{}", 0}, {1, "ch1", "{}", 0}};
  REQUIRE(store->add_fits("s", v1).ok());
  REQUIRE(store->add_fits("s", v1).ok());  // a retry
  CHECK(store->fits("s").size() == 2);
  const std::vector<FitRow> conflict = {{2, "ch0", "{}", 0}, {1, "ch1", R"({"x":1})", 0}};
  require_error(store->add_fits("s", conflict), StatusCode::kFailedPrecondition, "fits[1]");
  const std::vector<FitRow> bad = {{0, "ch0", "{}", 0}};
  require_error(store->add_fits("s", bad), StatusCode::kInvalidArgument, "fits[0].version");
  CHECK(store->fits("s").size() == 2);
  require_error(store->add_fits("t", v1), StatusCode::kNotFound, "'t'");
}

TEST_CASE("concurrent add_trials lose and double nothing", "[session_store]") {
  auto store = store_with_block(scratch_dir("session_store_threads"));
  constexpr int kThreads = 6, kCalls = 20, kShared = 10;
  std::vector<int> stored(kThreads, 0), duplicates(kThreads, 0);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCalls; ++c) {
        // One trial of this thread's own, and one that every thread reports identically.
        const std::vector<TrialRow> batch = {
            trial(kBlockStimuli[t % 4], 1000 * (t + 1) + c, {1.0 * t, 1.0 * c}),
            trial("k0", c % kShared, {0.5, 1.0 * (c % kShared)})};
        auto outcome = store->add_trials("s", 2, batch);
        if (!outcome.ok()) {
          errors[t] = outcome.status().to_string();
          return;
        }
        stored[t] += outcome->stored;
        duplicates[t] += outcome->duplicates;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& e : errors) CHECK(e.empty());
  int total_stored = 0, total_duplicates = 0;
  for (int t = 0; t < kThreads; ++t) {
    total_stored += stored[t];
    total_duplicates += duplicates[t];
  }
  CHECK(total_stored == kThreads * kCalls + kShared);
  CHECK(total_duplicates == kThreads * kCalls - kShared);
  const auto rows = store->trials("s");
  CHECK(rows.size() == static_cast<std::size_t>(kThreads * kCalls + kShared));
  std::set<std::pair<std::string, int>> keys;
  for (const auto& r : rows) keys.emplace(r.stimulus_id, r.repeat_index);
  CHECK(keys.size() == rows.size());
}

namespace {

// The child of the kill -9 test: one trial per call, each acknowledged on `ack_fd` only after
// add_trials returned OK. Never returns: it runs until killed, or _exits with a code saying what
// went wrong.
[[noreturn]] void killed_writer(const std::string& dir, int cycle, int ack_fd) {
  auto store = SessionStore::open(dir);
  if (!store.ok()) _exit(3);
  for (int j = 0; j < 100000; ++j) {
    const std::vector<TrialRow> one = {
        trial(kBlockStimuli[j % 4], cycle * 100000 + j, {1.0 * j, 1.0 * cycle})};
    auto outcome = (*store)->add_trials("s", 2, one);
    if (!outcome.ok() || outcome->stored != 1) _exit(4);
    const std::int32_t ack[2] = {cycle, j};
    if (::write(ack_fd, ack, sizeof ack) != sizeof ack) _exit(5);
  }
  _exit(6);
}

// Reads one acknowledgement; false at end of file.
bool read_ack(int fd, std::int32_t (&ack)[2]) {
  auto* p = reinterpret_cast<char*>(ack);
  std::size_t got = 0;
  while (got < sizeof ack) {
    const ssize_t n = ::read(fd, p + got, sizeof ack - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

std::string integrity_check(const std::string& path) {
  sqlite3* db = nullptr;
  std::string result = "cannot open";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_exec(
        db, "PRAGMA integrity_check",
        [](void* out, int, char** values, char**) {
          *static_cast<std::string*>(out) = values[0] ? values[0] : "";
          return 0;
        },
        &result, nullptr);
  }
  sqlite3_close(db);
  return result;
}

}  // namespace

TEST_CASE("a writer killed with SIGKILL loses no acknowledged trial", "[session_store]") {
  const std::string dir = scratch_dir("session_store_kill9");
  store_with_block(dir).reset();
  const unsigned seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::map<int, int> stored_per_cycle;  // cycle -> trials found stored after its kill

  for (int cycle = 0; cycle < 10; ++cycle) {
    INFO("cycle " << cycle);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      killed_writer(dir, cycle, fds[1]);
    }
    ::close(fds[1]);
    const int kill_after = std::uniform_int_distribution<int>(2, 25)(rng);
    int acked = 0;
    std::int32_t ack[2];
    while (acked < kill_after && read_ack(fds[0], ack)) ++acked;
    // Somewhere inside the next call: before, during or after its commit. Every other cycle
    // kills at once, while the call after the last acknowledged one has barely begun.
    if (cycle % 2 == 1) {
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng)));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("child exit code " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    while (read_ack(fds[0], ack)) ++acked;  // acknowledged before the kill landed
    ::close(fds[0]);
    REQUIRE(acked >= kill_after);

    auto store = open_store(dir);
    std::map<int, std::set<int>> found;  // cycle -> trial numbers
    const auto rows = store->trials("s");
    for (const auto& r : rows) found[r.repeat_index / 100000].insert(r.repeat_index % 100000);
    std::size_t unique = 0;
    for (const auto& [c, js] : found) unique += js.size();
    CHECK(unique == rows.size());  // no key twice
    // This cycle: exactly the first n trials, n being the acknowledged ones or one more (the
    // call in flight may have committed before its acknowledgement was written).
    const auto& mine = found[cycle];
    INFO("acknowledged " << acked << ", stored " << mine.size());
    CHECK((mine.size() == static_cast<std::size_t>(acked) ||
           mine.size() == static_cast<std::size_t>(acked) + 1));
    CHECK((mine.empty() || *mine.rbegin() == static_cast<int>(mine.size()) - 1));
    stored_per_cycle[cycle] = static_cast<int>(mine.size());
    for (const auto& [c, n] : stored_per_cycle)
      CHECK(found[c].size() == static_cast<std::size_t>(n));
    CHECK(store->get_session("s")->trials == static_cast<int>(rows.size()));
  }
  CHECK(integrity_check(dir + "/sessions.sqlite3") == "ok");
}

// ModelRepository: ids are the stems of the .keras files of one directory, in natural order;
// nothing typed as an id can reach a file outside it; 'demo' always resolves; a corrupt file is
// reported by name.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>

#include "models/demo_model.h"
#include "models/keras_import.h"
#include "models/model_repository.h"
#include "tests/support/keras_writer.h"
#include "tests/support/test_data.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using namespace stimloop;
using namespace stimloop::test;

namespace {

void write_model(const std::string& path) {
  static const KerasGraph graph = small_keras_graph();
  REQUIRE(write_keras_file(path, graph).ok());
}

std::unique_ptr<ModelRepository> open_repository(const std::string& dir) {
  auto repo = ModelRepository::open(dir);
  INFO(repo.status().to_string());
  REQUIRE(repo.ok());
  return std::move(repo).value();
}

// Sets an environment variable for one scope, restoring the previous value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("repository ids are .keras file stems in natural order", "[repository]") {
  const std::string root = scratch_dir("repository_listing");
  const std::string dir = root + "/models";
  fs::create_directories(dir);
  for (const char* name : {"neuron10", "neuron2", "neuron1", "alpha", "Beta"}) {
    write_model(dir + "/" + name + ".keras");
  }
  // Ignored: other extensions, upper-case extension, a hidden ".keras", a directory named
  // like a model, and a file in a subdirectory.
  REQUIRE(write_bytes(dir + "/notes.txt", to_bytes("hello")).ok());
  write_model(dir + "/weights.h5");
  write_model(dir + "/shout.KERAS");
  write_model(dir + "/.keras");
  write_model(dir + "/model.keras.bak");
  fs::create_directories(dir + "/folder.keras");
  fs::create_directories(dir + "/sub");
  write_model(dir + "/sub/nested.keras");

  auto repo = open_repository(dir);
  CHECK(repo->directory() == dir);
  CHECK(repo->ids() == std::vector<std::string>{"Beta", "alpha", "neuron1", "neuron2", "neuron10"});

  auto model = repo->get("neuron10");
  INFO(model.status().to_string());
  REQUIRE(model.ok());
  CHECK((*model)->info.id == "neuron10");
  CHECK((*model)->info.source == dir + "/neuron10.keras");
  CHECK_FALSE((*model)->info.demo);
  // Cached: the same object comes back.
  auto again = repo->get("neuron10");
  REQUIRE(again.ok());
  CHECK(again->get() == model->get());

  auto all = repo->load_all();
  INFO(all.status().to_string());
  REQUIRE(all.ok());
  REQUIRE(all->size() == repo->ids().size());
  for (std::size_t i = 0; i < all->size(); ++i) CHECK((*all)[i]->info.id == repo->ids()[i]);

  for (const char* ignored : {"notes", "weights", "shout", "model.keras", "folder", "nested",
                              "sub/nested", ".keras", ""}) {
    INFO("id '" << ignored << "'");
    auto r = repo->get(ignored);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kNotFound);
  }
}

TEST_CASE("no id reaches a file outside the model directory", "[repository]") {
  const std::string root = scratch_dir("repository_escape");
  const std::string dir = root + "/models";
  fs::create_directories(dir + "/a");
  write_model(root + "/x.keras");   // next to the directory, not in it
  write_model(dir + "/a/b.keras");  // below it
  write_model(dir + "/inside.keras");
  auto repo = open_repository(dir);
  REQUIRE(repo->ids() == std::vector<std::string>{"inside"});

  const std::string absolute_outside = fs::absolute(root + "/x.keras").string();
  const std::string absolute_outside_stem = fs::absolute(root + "/x").string();
  for (const std::string& id :
       {std::string("../x"), std::string("../x.keras"), std::string("/etc/passwd"),
        std::string("a/b"), std::string("a/b.keras"), std::string(""), std::string("demo.keras"),
        std::string("inside.keras"), std::string("./inside"), std::string("models/../inside"),
        std::string("x"), std::string(".."), std::string("."), absolute_outside,
        absolute_outside_stem, std::string("inside\0", 7), std::string("INSIDE")}) {
    INFO("id '" << id << "'");
    auto r = repo->get(id);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kNotFound);
    CHECK_THAT(r.status().message(), Contains("unknown model id"));
  }
  CHECK(repo->get("inside").ok());
}

TEST_CASE("'demo' always resolves to the built-in model", "[repository]") {
  const std::string root = scratch_dir("repository_demo");
  const std::string dir = root + "/models";
  fs::create_directories(dir);
  write_model(dir + "/neuron1.keras");
  write_model(dir + "/demo.keras");  // cannot shadow the built-in demo

  SECTION("with a model directory") {
    auto repo = open_repository(dir);
    CHECK(repo->ids() == std::vector<std::string>{"neuron1"});
    auto demo = repo->get("demo");
    REQUIRE(demo.ok());
    CHECK((*demo)->info.demo);
    CHECK(demo->get() == demo_model().get());
    auto resolved = resolve_model("demo", *repo);
    REQUIRE(resolved.ok());
    CHECK(resolved->get() == demo_model().get());
  }
  SECTION("without a model directory") {
    auto repo = open_repository("");
    CHECK(repo->directory().empty());
    CHECK(repo->ids() == std::vector<std::string>{"demo", "demo_population"});
    auto demo = repo->get("demo");
    REQUIRE(demo.ok());
    CHECK((*demo)->info.demo);
    auto all = repo->load_all();
    REQUIRE(all.ok());
    REQUIRE(all->size() == 2);
    CHECK((*all)[0]->info.demo);
    CHECK((*all)[1]->info.demo);
    CHECK((*all)[1]->info.num_outputs == 4);
    auto unknown = repo->get("neuron1");
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.status().code() == StatusCode::kNotFound);
    CHECK_THAT(unknown.status().message(), Contains("STIMLOOP_MODELS"));
  }
}

TEST_CASE("resolve_model takes a .keras path, 'demo' or an id", "[repository]") {
  const std::string root = scratch_dir("repository_resolve");
  const std::string dir = root + "/models";
  fs::create_directories(dir);
  write_model(dir + "/neuron3.keras");
  write_model(root + "/elsewhere.keras");
  auto repo = open_repository(dir);

  SECTION("a path to a .keras file, inside or outside the directory") {
    auto outside = resolve_model(root + "/elsewhere.keras", *repo);
    INFO(outside.status().to_string());
    REQUIRE(outside.ok());
    CHECK((*outside)->info.id == "elsewhere");
    CHECK((*outside)->info.source == root + "/elsewhere.keras");
    auto inside = resolve_model(dir + "/neuron3.keras", *repo);
    REQUIRE(inside.ok());
    CHECK((*inside)->info.id == "neuron3");
  }
  SECTION("an id") {
    auto by_id = resolve_model("neuron3", *repo);
    REQUIRE(by_id.ok());
    CHECK((*by_id)->info.id == "neuron3");
  }
  SECTION("misses") {
    for (const std::string& spec :
         {std::string("nope"), std::string("nope.keras"), root + "/nope.keras", std::string("")}) {
      INFO("spec '" << spec << "'");
      auto r = resolve_model(spec, *repo);
      REQUIRE_FALSE(r.ok());
      CHECK((r.status().code() == StatusCode::kNotFound ||
             r.status().code() == StatusCode::kInvalidArgument));
    }
  }
  SECTION("a path to a corrupt file names it") {
    const std::string bad = root + "/broken.keras";
    REQUIRE(write_bytes(bad, to_bytes("not a zip")).ok());
    auto r = resolve_model(bad, *repo);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Contains(bad));
  }
}

TEST_CASE("STIMLOOP_MODELS gives the default model directory", "[repository]") {
  SECTION("the flag wins") {
    ScopedEnv env("STIMLOOP_MODELS", "/from/env");
    CHECK(default_models_directory("/from/flag") == "/from/flag");
  }
  SECTION("else the environment") {
    ScopedEnv env("STIMLOOP_MODELS", "/from/env");
    CHECK(default_models_directory("") == "/from/env");
  }
  SECTION("else none: demo only") {
    ScopedEnv env("STIMLOOP_MODELS", nullptr);
    CHECK(default_models_directory("").empty());
    auto repo = open_repository(default_models_directory(""));
    CHECK(repo->ids() == std::vector<std::string>{"demo", "demo_population"});
  }
  SECTION("the environment's directory is the one opened") {
    const std::string dir = scratch_dir("repository_env");
    write_model(dir + "/from_env.keras");
    ScopedEnv env("STIMLOOP_MODELS", dir.c_str());
    auto repo = open_repository(default_models_directory(""));
    CHECK(repo->ids() == std::vector<std::string>{"from_env"});
    CHECK(repo->get("from_env").ok());
  }
}

TEST_CASE("a corrupt model file is reported by name", "[repository]") {
  const std::string dir = scratch_dir("repository_corrupt");
  write_model(dir + "/good1.keras");
  REQUIRE(write_bytes(dir + "/good2.keras", to_bytes("definitely not a zip archive")).ok());
  write_model(dir + "/good3.keras");
  auto repo = open_repository(dir);
  REQUIRE(repo->ids() == std::vector<std::string>{"good1", "good2", "good3"});

  // The listing works without loading anything; good files still load.
  CHECK(repo->get("good1").ok());
  CHECK(repo->get("good3").ok());

  auto bad = repo->get("good2");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kDataLoss);
  CHECK_THAT(bad.status().message(), Contains("good2.keras"));
  CHECK_THAT(bad.status().message(), Contains("not a valid .keras (zip) archive"));
  // Failures are not cached as successes, and stay failures.
  CHECK_FALSE(repo->get("good2").ok());

  auto all = repo->load_all();
  REQUIRE_FALSE(all.ok());
  CHECK_THAT(all.status().message(), Contains("good2.keras"));
}

TEST_CASE("a missing model directory is NOT_FOUND", "[repository]") {
  const std::string root = scratch_dir("repository_missing");
  auto missing = ModelRepository::open(root + "/does_not_exist");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK_THAT(missing.status().message(), Contains(root + "/does_not_exist"));

  // A regular file is not a directory either, and is reported as what it is.
  write_model(root + "/file.keras");
  auto file = ModelRepository::open(root + "/file.keras");
  REQUIRE_FALSE(file.ok());
  CHECK(file.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(file.status().message(), Contains("is not a directory"));

  // An empty directory is fine and lists nothing (demo still resolves).
  fs::create_directories(root + "/empty");
  auto empty = open_repository(root + "/empty");
  CHECK(empty->ids().empty());
  CHECK(empty->get("demo").ok());
  auto all = empty->load_all();
  REQUIRE(all.ok());
  CHECK(all->empty());
}

namespace {

// Runs `body` in a child process that cannot bypass file permissions (root drops to nobody),
// returning the child's exit status.
int exit_status_unprivileged(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(100);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 101;
}

// A directory holding `good` model files plus one odd entry made by `make_odd`.
std::unique_ptr<ModelRepository> repository_with(const std::string& dir, int good,
                                                 const std::function<void()>& make_odd) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (int i = 0; i < good; ++i) write_model(dir + "/good" + std::to_string(i) + ".keras");
  make_odd();
  return open_repository(dir);
}

}  // namespace

TEST_CASE("odd entries are skipped with a warning naming them, whatever the listing order",
          "[repository]") {
  const std::string root = scratch_dir("repository_odd_entries");
  struct Odd {
    std::string name;     // the entry's file name
    std::string problem;  // what the warning says about it
    std::function<void(const std::string& path)> make;
  };
  const std::vector<Odd> odd = {
      {"z.keras", "dangling", [](const std::string& p) { fs::create_symlink("missing.keras", p); }},
      {"a.keras", "dangling", [](const std::string& p) { fs::create_symlink("missing.keras", p); }},
      {"loop.keras", "loops", [](const std::string& p) { fs::create_symlink(p, p); }},
      {"folder.keras", "a directory", [](const std::string& p) { fs::create_directories(p); }},
      {"UP.KERAS", "lower-case", [](const std::string& p) { write_model(p); }},
      {".keras", "no name", [](const std::string& p) { write_model(p); }},
      {"demo.keras", "built-in", [](const std::string& p) { write_model(p); }},
  };
  for (const Odd& o : odd) {
    // Alone in its directory (so listed both first and last), and among good models.
    for (int good : {0, 1, 5}) {
      INFO(o.name << " with " << good << " good models");
      const std::string dir = root + "/" + std::to_string(good);
      auto repo = repository_with(dir, good, [&] { o.make(dir + "/" + o.name); });
      CHECK(repo->ids().size() == static_cast<std::size_t>(good));
      REQUIRE_FALSE(repo->warnings().empty());
      CHECK_THAT(repo->warnings().front(), Contains(dir + "/" + o.name));
      CHECK_THAT(repo->warnings().front(), Contains(o.problem));
      CHECK_THAT(repo->warnings().front(), Contains("skipped"));
      if (good == 0) {
        REQUIRE(repo->warnings().size() == 2);
        CHECK_THAT(repo->warnings().back(), Contains("holds no .keras models"));
      } else {
        CHECK(repo->warnings().size() == 1);
        CHECK(repo->load_all().ok());
      }
    }
  }
}

TEST_CASE("an empty model directory warns", "[repository]") {
  const std::string dir = scratch_dir("repository_empty_warns");
  auto repo = open_repository(dir);
  REQUIRE(repo->warnings().size() == 1);
  CHECK_THAT(repo->warnings().front(), Contains("holds no .keras models"));
  write_model(dir + "/m.keras");
  CHECK(open_repository(dir)->warnings().empty());
}

TEST_CASE("an unreadable model file is a permission error", "[repository]") {
  const std::string dir = scratch_dir("repository_unreadable");
  write_model(dir + "/secret.keras");
  fs::permissions(dir + "/secret.keras", fs::perms::none);
  const int code = exit_status_unprivileged([&] {
    auto repo = ModelRepository::open(dir);
    if (!repo.ok()) return 10;
    auto model = (*repo)->get("secret");
    if (model.ok()) return 11;
    if (model.status().message().find("secret.keras") == std::string::npos) return 12;
    return model.status().code() == StatusCode::kPermissionDenied ? 0 : 13;
  });
  CHECK(code == 0);
  fs::permissions(dir + "/secret.keras", fs::perms::owner_all);
}

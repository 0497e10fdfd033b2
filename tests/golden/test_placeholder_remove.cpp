#include <catch2/catch.hpp>

#include "models/demo_model.h"

TEST_CASE("golden placeholder (replaced by golden tests)", "[demo]") {
  const auto model = stimloop::demo_model();
  CHECK(model->info.demo);
  CHECK(model->info.num_outputs == 1);
  CHECK(model->info.filters == std::vector<int>{16, 8, 4, 2, 2});
}

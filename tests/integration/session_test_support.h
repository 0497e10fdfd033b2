// Requests and responses the session tests share: a pool of seeded images, an open request for a
// two-channel demo session, block requests, trials, and a rig whose two "neurons" answer the mean
// red and mean blue of each image (so calibration has something learnable).
#pragma once

#include <unistd.h>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "client/lib/stimloop_client.h"
#include "common/image_io.h"
#include "tests/support/test_data.h"

namespace stimloop::testing {

// A pool of 24 seeded 112x112 images.
inline std::string make_session_pool(const std::string& name) {
  const std::string dir = test::scratch_dir(name + "-" + std::to_string(getpid()));
  for (int i = 0; i < 24; ++i) {
    Rgb8Image img{112, 112, test_pixels(i)};
    REQUIRE(write_png(dir + "/img" + std::to_string(i) + ".png", img).ok());
  }
  return dir;
}

inline v1::OpenSessionRequest open_request(const std::string& id) {
  v1::OpenSessionRequest r;
  r.set_session_id(id);
  r.set_rig("test rig");
  for (int c = 0; c < 2; ++c) r.add_channels()->set_id("ch" + std::to_string(c));
  r.set_base_model("demo_population");
  r.set_pool("demo");
  r.mutable_calibration()->set_min_stimuli(6);
  return r;
}

inline v1::NextBlockRequest block_request(const std::string& session, int count,
                                          const std::string& id) {
  v1::NextBlockRequest r;
  r.set_session_id(session);
  r.set_count(count);
  r.set_block_id(id);
  return r;
}

inline v1::Trial trial(const std::string& stimulus, int repeat, std::vector<double> responses) {
  v1::Trial t;
  t.set_stimulus_id(stimulus);
  t.set_repeat_index(repeat);
  for (double r : responses) t.add_responses(r);
  return t;
}

// One trial per stimulus of the block: channel 0 answers the image's mean red / 10, channel 1
// its mean blue / 10.
inline v1::ReportResponsesRequest color_report(const std::string& session, const v1::Block& block) {
  v1::ReportResponsesRequest report;
  report.set_session_id(session);
  for (const auto& st : block.stimuli()) {
    auto img =
        decode_image(std::vector<std::uint8_t>(st.image().data().begin(), st.image().data().end()));
    REQUIRE(img.ok());
    double red = 0, blue = 0;
    for (std::size_t i = 0; i < img->pixels.size(); i += 3) {
      red += img->pixels[i], blue += img->pixels[i + 2];
    }
    const double n = img->pixels.size() / 3.0;
    *report.add_trials() = trial(st.stimulus_id(), 0, {red / n / 10, blue / n / 10});
  }
  return report;
}

}  // namespace stimloop::testing

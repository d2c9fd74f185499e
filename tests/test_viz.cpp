// viz: image grids (PNG), line plots (PLplot pngcairo), progress bars, model DAGs (Graphviz).
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "ppl/ppl.h"
#include "viz/image_grid.h"
#include "viz/model_graph.h"
#include "viz/plot.h"
#include "viz/progress.h"

// Decode PNGs with Debian's stb_image to check what was written.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

using namespace ember;
using namespace ember::viz;

namespace {

/// Files in a per-process folder that outlives the test, so the pictures can be looked at.
std::string out_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "ember-tests" / ("viz-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// A decoded PNG.
struct Decoded {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> pixels;
  const unsigned char* at(int x, int y) const { return &pixels[(size_t(y) * width + x) * channels]; }
};

Decoded decode_file(const std::string& path) {
  Decoded d;
  unsigned char* p = stbi_load(path.c_str(), &d.width, &d.height, &d.channels, 0);
  REQUIRE_MESSAGE(p != nullptr, "stb_image cannot decode ", path, ": ", stbi_failure_reason());
  d.pixels.assign(p, p + size_t(d.width) * d.height * d.channels);
  stbi_image_free(p);
  return d;
}

/// Digit-like test images: rings of growing radius, [n, 28, 28] in [0, 1].
torch::Tensor rings(int64_t n) {
  auto c = torch::arange(28, torch::kFloat32) - 13.5;
  auto r = torch::sqrt(c.view({28, 1}).pow(2) + c.view({1, 28}).pow(2));
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; ++i) {
    double r0 = 3.0 + 9.0 * double(i) / std::max<int64_t>(n - 1, 1);
    out.push_back(torch::exp(-(r - r0).pow(2) / 2.0));
  }
  return torch::stack(out);
}

}  // namespace

// ------------------------------------------------------------------------- image grids

TEST_CASE("image grid: layout, padding and grey values") {
  // Three flat 4x4 images, constant 0, 0.5 and 1, in one row with 1 pixel of padding.
  auto images = torch::stack({torch::zeros(16), torch::full({16}, 0.5), torch::ones(16)});
  auto grid = make_image_grid(images, ImageGridOptions().rows(1).padding(1));
  CHECK((grid.scalar_type() == torch::kUInt8));
  REQUIRE(grid.sizes() == torch::IntArrayRef({6, 16}));
  auto a = grid.accessor<uint8_t, 2>();
  CHECK(a[0][0] == 255);  // padding: white
  CHECK(a[1][1] == 0);    // image 0
  CHECK(a[4][4] == 0);
  CHECK(a[1][5] == 255);  // padding between images
  CHECK(a[1][6] == 128);  // image 1: round(0.5 * 255)
  CHECK(a[2][11] == 255); // image 2
  CHECK(a[5][15] == 255);
  // Automatic grid: 10 images -> 4 columns, 3 rows; empty cells stay background.
  auto auto_grid = make_image_grid(torch::zeros({10, 2, 2}), ImageGridOptions().padding(0).background(0.5));
  CHECK(auto_grid.sizes() == torch::IntArrayRef({6, 8}));
  CHECK(auto_grid[5][7].item<int>() == 128);
  CHECK(auto_grid[4][3].item<int>() == 0);
  // rows only / cols only.
  CHECK(make_image_grid(torch::zeros({10, 2, 2}), ImageGridOptions().rows(2).padding(0)).sizes() == torch::IntArrayRef({4, 10}));
  CHECK(make_image_grid(torch::zeros({10, 2, 2}), ImageGridOptions().cols(3).padding(0)).sizes() == torch::IntArrayRef({8, 6}));
  // Non-square flat images through image_size.
  auto wide = make_image_grid(torch::ones({2, 6}), ImageGridOptions().image_size(2, 3).padding(0).cols(2));
  CHECK(wide.sizes() == torch::IntArrayRef({2, 6}));
}

TEST_CASE("image grid: [N, 784], [N, 28, 28] and [N, 1, 28, 28] give the same picture") {
  auto images = rings(6);
  auto a = make_image_grid(images.reshape({6, 784}), ImageGridOptions().cols(3));
  auto b = make_image_grid(images, ImageGridOptions().cols(3));
  auto c = make_image_grid(images.unsqueeze(1), ImageGridOptions().cols(3));
  auto d = make_image_grid(images.to(torch::kFloat64), ImageGridOptions().cols(3));
  CHECK(torch::equal(a, b));
  CHECK(torch::equal(a, c));
  CHECK(torch::equal(a, d));
  if (torch::cuda::is_available()) {
    CHECK(torch::equal(a, make_image_grid(images.to(torch::Device(torch::kCUDA, 0)), ImageGridOptions().cols(3))));
  }
}

TEST_CASE("image grid: PNG written, decodable, with the right size and pixels") {
  auto images = rings(10);
  auto path = out_path("rings.png");
  write_image_grid(path, images.reshape({10, 784}), ImageGridOptions().rows(2).cols(5).upscale(3));
  auto png = decode_file(path);
  CHECK(png.channels == 1);
  CHECK(png.height == (2 + 2 * (28 + 2)) * 3);
  CHECK(png.width == (2 + 5 * (28 + 2)) * 3);
  CHECK(*png.at(0, 0) == 255);
  // Centre pixel of image 0 (ring of radius 3: dark centre) and a pixel on its ring.
  auto expected = make_image_grid(images, ImageGridOptions().rows(2).cols(5));
  for (int y = 0; y < png.height; y += 7) {
    for (int x = 0; x < png.width; x += 5) {
      REQUIRE(*png.at(x, y) == expected[y / 3][x / 3].item<int>());
    }
  }
  int64_t cy = 2 + 14, cx = 2 + 14;  // image 0's centre, before upscaling
  CHECK(*png.at(int(cx * 3), int(cy * 3)) == int(std::lround(255 * images[0][14][14].item<float>())));
  // No temporary files are left beside it.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    files += e.path().filename().string().rfind("rings.png", 0) == 0;
  }
  CHECK(files == 1);
  // Overwriting replaces the picture atomically.
  write_image_grid(path, images.reshape({10, 784}), ImageGridOptions().rows(2).cols(5));
  CHECK(decode_file(path).width == 2 + 5 * 30);
}

TEST_CASE("image grid: row and column labels") {
  auto images = rings(6);
  auto opts = ImageGridOptions().rows(2).cols(3).upscale(3).row_labels({"hand", "typed"}).col_labels({"0", "1", "2"});
  auto grid = make_image_grid(images, opts);
  auto plain = make_image_grid(images, ImageGridOptions().rows(2).cols(3).upscale(3));
  CHECK(grid.size(0) > plain.size(0));  // a top margin
  CHECK(grid.size(1) > plain.size(1));  // a left margin
  // Labels are dark ink inside the margins.
  int64_t left = (grid.size(1) - plain.size(1)), top = (grid.size(0) - plain.size(0));
  CHECK(grid.narrow(1, 0, left).lt(128).sum().item<int64_t>() > 50);
  CHECK(grid.narrow(0, 0, top).lt(128).sum().item<int64_t>() > 20);
  // The images themselves sit unchanged at the margin offset.
  CHECK(torch::equal(grid.narrow(0, top, plain.size(0)).narrow(1, left, plain.size(1)), plain));
  write_image_grid(out_path("labelled.png"), images, opts);
  CHECK(decode_file(out_path("labelled.png")).width == grid.size(1));

  // The layout issue 7's `generate` uses: 2 styles x 10 digits.
  auto generated = out_path("generated.png");
  write_image_grid(generated, rings(20).reshape({20, 784}),
                   ImageGridOptions().rows(2).cols(10).upscale(2).row_labels({"hand", "typed"})
                       .col_labels({"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
  CHECK(decode_file(generated).height > 2 * (2 + 2 * 30));

  CHECK_THROWS_AS(make_image_grid(images, ImageGridOptions().rows(2).row_labels({"one"})), ValueError);
  CHECK_THROWS_AS(make_image_grid(images, ImageGridOptions().rows(2).col_labels({"a", "b"})), ValueError);
  CHECK_THROWS_AS(make_image_grid(images, ImageGridOptions().rows(2).row_labels({"tab\there", "x"})), ValueError);
}

TEST_CASE("image grid: bad input names the shape, value or path") {
  SUBCASE("flat images that are not square") {
    auto msg = error_of([] { make_image_grid(torch::rand({10, 783})); });
    CHECK_THROWS_AS(make_image_grid(torch::rand({10, 783})), ShapeError);
    CHECK(msg.find("[10, 783]") != std::string::npos);
    CHECK(msg.find("image_size") != std::string::npos);
  }
  SUBCASE("wrong rank or channels") {
    CHECK_THROWS_AS(make_image_grid(torch::rand({784})), ShapeError);
    auto msg = error_of([] { make_image_grid(torch::rand({2, 3, 28, 28})); });
    CHECK(msg.find("[2, 3, 28, 28]") != std::string::npos);
    CHECK_THROWS_AS(make_image_grid(torch::rand({2, 3, 28, 28})), ShapeError);
    CHECK_THROWS_AS(make_image_grid(torch::rand({0, 28, 28})), ShapeError);
    CHECK_THROWS_AS(make_image_grid(torch::rand({2, 6}), ImageGridOptions().image_size(2, 2)), ShapeError);
  }
  SUBCASE("too many images for rows x cols") {
    auto msg = error_of([] { make_image_grid(torch::rand({7, 28, 28}), ImageGridOptions().rows(2).cols(3)); });
    CHECK(msg.find("7 images") != std::string::npos);
    CHECK(msg.find("[7, 28, 28]") != std::string::npos);
    CHECK_THROWS_AS(make_image_grid(torch::rand({7, 28, 28}), ImageGridOptions().rows(2).cols(3)), ShapeError);
  }
  SUBCASE("values outside [0, 1], NaN, integer dtype") {
    auto x = torch::rand({4, 784});
    x[2][100] = 1.5;
    auto msg = error_of([&] { make_image_grid(x); });
    CHECK_THROWS_AS(make_image_grid(x), ValueError);
    CHECK(msg.find("[4, 784]") != std::string::npos);
    CHECK(msg.find("image 2 pixel (3, 16) is 1.5") != std::string::npos);
    x[2][100] = std::nanf("");
    CHECK_THROWS_AS(make_image_grid(x), ValueError);
    CHECK_THROWS_AS(make_image_grid(-torch::rand({1, 4, 4}) - 0.1), ValueError);
    msg = error_of([] { make_image_grid(torch::zeros({2, 4, 4}, torch::kUInt8)); });
    CHECK(msg.find("[2, 4, 4]") != std::string::npos);
    CHECK_THROWS_AS(make_image_grid(torch::zeros({2, 4, 4}, torch::kUInt8)), ValueError);
  }
  SUBCASE("bad options") {
    CHECK_THROWS_AS(make_image_grid(torch::rand({2, 4, 4}), ImageGridOptions().upscale(0)), ValueError);
    CHECK_THROWS_AS(make_image_grid(torch::rand({2, 4, 4}), ImageGridOptions().padding(-1)), ValueError);
    CHECK_THROWS_AS(make_image_grid(torch::rand({2, 4, 4}), ImageGridOptions().background(2)), ValueError);
  }
  SUBCASE("unwritable path") {
    std::string path = "/nonexistent-ember-dir/grid.png";
    auto msg = error_of([&] { write_image_grid(path, torch::rand({2, 4, 4})); });
    CHECK_THROWS_AS(write_image_grid(path, torch::rand({2, 4, 4})), IOError);
    CHECK(msg.find("'" + path + "'") != std::string::npos);
  }
  SUBCASE("a failed write keeps the previous file") {
    auto path = out_path("kept.png");
    write_image_grid(path, torch::zeros({1, 4, 4}));
    auto before = decode_file(path);
    CHECK_THROWS(write_image_grid(path, torch::full({1, 4, 4}, 2.0)));
    CHECK(decode_file(path).pixels == before.pixels);
  }
}

// ------------------------------------------------------------------------- plots

namespace {

/// Pixels within `tol` of an RGB colour.
int count_colour(const Decoded& d, int r, int g, int b, int tol = 40) {
  int n = 0;
  if (d.channels < 3) return 0;
  for (int y = 0; y < d.height; ++y) {
    for (int x = 0; x < d.width; ++x) {
      auto* p = d.at(x, y);
      n += std::abs(p[0] - r) <= tol && std::abs(p[1] - g) <= tol && std::abs(p[2] - b) <= tol;
    }
  }
  return n;
}

std::vector<Series> loss_curves(int epochs) {
  Series train{"train", {}, {}}, test{"test", {}, {}};
  for (int e = 1; e <= epochs; ++e) {
    train.x.push_back(e);
    train.y.push_back(100.0 + 120.0 / e);
    test.x.push_back(e);
    test.y.push_back(105.0 + 110.0 / e + (e > 12 ? (e - 12) * 1.5 : 0));
  }
  return {train, test};
}

}  // namespace

TEST_CASE("plot: loss curves rendered to a decodable PNG with both series' colours") {
  auto path = out_path("loss.png");
  write_line_plot(path, loss_curves(20),
                  PlotOptions().title("Causal VAE #1: loss").x_label("epoch").y_label("-ELBO per image"));
  auto png = decode_file(path);
  CHECK(png.width == 800);
  CHECK(png.height == 600);
  REQUIRE(png.channels >= 3);
  auto* corner = png.at(2, 2);
  CHECK((corner[0] == 255 && corner[1] == 255 && corner[2] == 255));
  CHECK(count_colour(png, 31, 119, 180) > 300);  // train: blue
  CHECK(count_colour(png, 255, 127, 14) > 300);  // test: orange
  CHECK(count_colour(png, 0, 0, 0, 60) > 500);    // axes, ticks, text
}

TEST_CASE("plot: options, a single point, log axis, many series") {
  write_line_plot(out_path("one.png"), {{"only", {3}, {42}}}, PlotOptions().size(320, 240).markers(1));
  auto png = decode_file(out_path("one.png"));
  CHECK(png.width == 320);
  CHECK(png.height == 240);
  CHECK(count_colour(png, 31, 119, 180) > 10);

  std::vector<Series> many;
  for (int k = 0; k < 12; ++k) many.push_back({"s" + std::to_string(k), {0, 1, 2}, {double(k + 1), double(k + 2), double(k + 4)}});
  write_line_plot(out_path("log.png"), many, PlotOptions().log_y(true).markers(0).title("log"));
  CHECK(decode_file(out_path("log.png")).width == 800);
}

TEST_CASE("plot: bad input is an error before PLplot runs") {
  CHECK_THROWS_AS(render_line_plot_png({}), ValueError);
  auto msg = error_of([] { render_line_plot_png({{"train", {1, 2}, {1}}}); });
  CHECK(msg.find("'train'") != std::string::npos);
  CHECK_THROWS_AS(render_line_plot_png({{"train", {1, 2}, {1}}}), ValueError);
  CHECK_THROWS_AS(render_line_plot_png({{"empty", {}, {}}}), ValueError);
  msg = error_of([] { render_line_plot_png({{"test", {1, 2, 3}, {1, NAN, 2}}}); });
  CHECK(msg.find("series 'test' point 1") != std::string::npos);
  CHECK_THROWS_AS(render_line_plot_png({{"test", {1, 2}, {1, 0}}}, PlotOptions().log_y(true)), ValueError);
  CHECK_THROWS_AS(render_line_plot_png({{"a", {1}, {1}}}, PlotOptions().size(10, 10)), ValueError);
  std::string path = "/nonexistent-ember-dir/loss.png";
  msg = error_of([&] { write_line_plot(path, loss_curves(3)); });
  CHECK(msg.find("'" + path + "'") != std::string::npos);
  CHECK_THROWS_AS(write_line_plot(path, loss_curves(3)), IOError);
}

TEST_CASE("plot: a band is drawn as a light fill behind its curve, on log axes too") {
  Series banded{"causal", {1, 10, 100, 1000}, {-4.8, -4.6, -4.1, -3.9}};
  banded.lower = {-5.0, -4.8, -4.3, -4.0};
  banded.upper = {-4.6, -4.4, -3.9, -3.8};
  Series plain{"anti-causal", {1, 10, 100, 1000}, {-4.8, -4.7, -4.5, -4.2}};
  write_line_plot(out_path("band.png"), {banded, plain}, PlotOptions().log_x(true));
  auto png = decode_file(out_path("band.png"));
  // The band's tint: blue (31, 119, 180) at 25% over white.
  CHECK(count_colour(png, 255 - (255 - 31) / 4, 255 - (255 - 119) / 4, 255 - (255 - 180) / 4, 2) > 2000);
  CHECK(count_colour(png, 31, 119, 180) > 300);
  CHECK(count_colour(png, 255, 127, 14) > 300);
  // Without the band no tint is drawn.
  write_line_plot(out_path("no-band.png"), {plain}, PlotOptions().log_x(true));
  CHECK(count_colour(decode_file(out_path("no-band.png")), 255 - (255 - 31) / 4, 255 - (255 - 119) / 4, 255 - (255 - 180) / 4, 2) < 200);

  Series bad = banded;
  bad.upper.pop_back();
  auto msg = error_of([&] { render_line_plot_png({bad}); });
  CHECK(msg.find("'causal' has 4 points but a band of 4 lower and 3 upper") != std::string::npos);
  bad = banded;
  bad.lower[2] = -3.0;  // above upper
  msg = error_of([&] { render_line_plot_png({bad}); });
  CHECK(msg.find("band at point 2") != std::string::npos);
  msg = error_of([&] { render_line_plot_png({{"zero", {0, 1}, {1, 2}}}, PlotOptions().log_x(true)); });
  CHECK(msg.find("x = 0 <= 0 on a log axis") != std::string::npos);
  CHECK_THROWS_AS(render_line_plot_png({banded}, PlotOptions().log_y(true)), ValueError);  // negative band on log y
}

TEST_CASE("plot: concurrent plots from several threads (PLplot is serialised)") {
  std::vector<std::string> pngs(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&pngs, i] { pngs[i] = render_line_plot_png(loss_curves(5 + i), PlotOptions().size(200, 150)); });
  }
  for (auto& t : threads) t.join();
  for (auto& p : pngs) {
    int w = 0, h = 0, c = 0;
    unsigned char* data = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(p.data()), int(p.size()), &w, &h, &c, 0);
    REQUIRE(data != nullptr);
    stbi_image_free(data);
    CHECK(w == 200);
    CHECK(h == 150);
  }
}

// ------------------------------------------------------------------------- progress

TEST_CASE("progress: plain lines every N percent when not a TTY, with loss, rate and ETA") {
  double t = 0;
  std::ostringstream os;
  {
    ProgressBar bar(ProgressOptions().epochs(2).steps_per_epoch(100).every_percent(25).stream(os).clock([&] { return t; }));
    CHECK_FALSE(bar.is_tty());
    bar.start_epoch(1);
    for (int s = 1; s <= 100; ++s) {
      t += 1.0;  // one step per second
      bar.update(s, 200.0 - s);
      if (s == 25) CHECK(bar.line().find("ETA 1:15 (run 2:55)") != std::string::npos);
    }
    bar.finish_epoch(150.5);
  }
  std::string out = os.str();
  CAPTURE(out);
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  REQUIRE(lines.size() == 4);  // 25%, 50%, 75%, final
  CHECK(lines[0].find("epoch 1/2") == 0);
  CHECK(lines[0].find("25/100  25%") != std::string::npos);
  CHECK(lines[0].find("loss 175") != std::string::npos);
  CHECK(lines[0].find("1 it/s") != std::string::npos);
  CHECK(lines[1].find("50/100") != std::string::npos);
  CHECK(lines[3].find("100/100 100%") != std::string::npos);
  CHECK(lines[3].find("loss 150.5") != std::string::npos);
  CHECK(lines[3].find("| 1:40") != std::string::npos);  // epoch time
  CHECK(out.find('\r') == std::string::npos);
  CHECK(out.find('\x1b') == std::string::npos);
}

TEST_CASE("progress: one redrawn line on a TTY, throttled") {
  double t = 0;
  std::ostringstream os;
  ProgressBar bar(ProgressOptions().steps_per_epoch(10).stream(os).tty(true).redraw_seconds(1.0).label("train").clock([&] { return t; }));
  bar.start_epoch(1);
  for (int s = 1; s <= 10; ++s) {
    t += 0.25;
    bar.update(s, 1.0);
  }
  bar.finish_epoch();
  std::string out = os.str();
  CAPTURE(out);
  // Draws at t=0.25, 1.25, 2.25 and the last step (throttled), then the final line.
  CHECK(std::count(out.begin(), out.end(), '\r') == 5);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  CHECK(out.back() == '\n');
  CHECK(out.find("\rtrain epoch 1 [") != std::string::npos);
  CHECK(out.find("\x1b[K") != std::string::npos);
}

TEST_CASE("progress: errors and durations") {
  std::ostringstream os;
  CHECK_THROWS_AS(ProgressBar(ProgressOptions().steps_per_epoch(0).stream(os)), ValueError);
  CHECK_THROWS_AS(ProgressBar(ProgressOptions().steps_per_epoch(5).every_percent(0).stream(os)), ValueError);
  ProgressBar bar(ProgressOptions().steps_per_epoch(5).epochs(1).stream(os));
  CHECK_THROWS_AS(bar.update(1, 0.0), ValueError);
  CHECK_THROWS_AS(bar.start_epoch(2), ValueError);
  bar.start_epoch(1);
  CHECK_THROWS_AS(bar.update(6, 0.0), ValueError);
  bar.update(3, 0.0);
  CHECK_THROWS_AS(bar.update(2, 0.0), ValueError);
  CHECK(format_duration(0) == "0:00");
  CHECK(format_duration(75) == "1:15");
  CHECK(format_duration(3725) == "1:02:05");
  CHECK(format_duration(-1) == "?");
  CHECK(format_duration(NAN) == "?");
}

// ---------------------------------------------------------------- model DAGs

namespace {

// u confounds x and y; y is observed; x and y live in plate "data".
ModelGraph confounded_graph() {
  auto model = [](const torch::Tensor& y) {
    auto u = sample("u", dist::Normal(0., 1.));
    auto data = plate("data", y.size(0));
    auto x = sample("x", dist::Normal(u, 1.));
    sample("y", dist::Normal(u + 2 * x, 1.), y);
  };
  return get_model_graph(model, torch::zeros({5}));
}

}  // namespace

TEST_CASE("model graph: DOT text with plate clusters, grey observed nodes, edges, distributions") {
  auto g = confounded_graph();
  CHECK(model_graph_dot(g) ==
        "digraph {\n"
        "  ordering=in;\n"
        "  \"u\" [label=\"u\" shape=ellipse style=filled fillcolor=white];\n"
        "  subgraph \"cluster_data\" {\n"
        "    label=\"data (size 5)\" labeljust=r labelloc=b;\n"
        "    \"x\" [label=\"x\" shape=ellipse style=filled fillcolor=white];\n"
        "    \"y\" [label=\"y\" shape=ellipse style=filled fillcolor=gray];\n"
        "  }\n"
        "  \"u\" -> \"x\";\n"
        "  \"u\" -> \"y\";\n"
        "  \"x\" -> \"y\";\n"
        "}\n");
  auto with_dists = model_graph_dot(g, RenderModelOptions().render_distributions(true));
  CHECK(with_dists.find("\"distribution_description_node\" [label=\"u ~ Normal\\lx ~ Normal\\ly ~ Normal\\l\" "
                        "shape=plaintext];") != std::string::npos);
}

TEST_CASE("model graph: text form") {
  CHECK(model_graph_text(confounded_graph()) ==
        "plates:\n"
        "  data (size 5): x, y\n"
        "sites:\n"
        "  u ~ Normal\n"
        "  x ~ Normal <- u\n"
        "  y ~ Normal (observed) <- u, x\n");
}

TEST_CASE("model graph: nested plates nest as clusters, deterministic sites are dashed, names are quoted") {
  auto model = [] {
    auto outer = plate("outer", 3);
    auto a = sample("a \"quoted\"", dist::Normal(0., 1.));
    auto inner = plate("inner", 2);
    deterministic("d", a * 2);
  };
  auto dot = model_graph_dot(get_model_graph(model));
  CHECK(dot ==
        "digraph {\n"
        "  ordering=in;\n"
        "  subgraph \"cluster_outer\" {\n"
        "    label=\"outer (size 3)\" labeljust=r labelloc=b;\n"
        "    \"a \\\"quoted\\\"\" [label=\"a \\\"quoted\\\"\" shape=ellipse style=filled fillcolor=white];\n"
        "    subgraph \"cluster_outer_inner\" {\n"
        "      label=\"inner (size 2)\" labeljust=r labelloc=b;\n"
        "      \"d\" [label=\"d\" shape=ellipse style=\"filled,dashed\" fillcolor=white];\n"
        "    }\n"
        "  }\n"
        "  \"a \\\"quoted\\\"\" -> \"d\";\n"
        "}\n");
}

TEST_CASE("model graph: PNG through Graphviz is a decodable picture with the grey observed node") {
  auto path = out_path("confounded.png");
  std::filesystem::remove(path);
  write_model_graph_png(confounded_graph(), path, RenderModelOptions().render_distributions(true));
  REQUIRE(std::filesystem::file_size(path) > 0);
  auto png = decode_file(path);
  CHECK(png.width > 50);
  CHECK(png.height > 100);  // three ranks: u, x, y
  int grey = 0;             // Graphviz's "gray" is #c0c0c0
  for (int y = 0; y < png.height; ++y)
    for (int x = 0; x < png.width; ++x) {
      const unsigned char* p = png.at(x, y);
      if (p[0] == 192 && p[1] == 192 && p[2] == 192) ++grey;
    }
  CHECK(grey > 100);

  auto dot_path = out_path("confounded.dot");
  write_model_graph_dot(confounded_graph(), dot_path);
  std::ifstream in(dot_path);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str() == model_graph_dot(confounded_graph()));
  CHECK(error_of([&] { write_model_graph_png(confounded_graph(), "/nonexistent-dir/x.png"); }).find("x.png") !=
        std::string::npos);
}

TEST_CASE("model graph: plates that overlap without nesting draw as one box per nesting path") {
  auto model = [] {
    {
      auto a = plate("a", 2);
      sample("x", dist::Normal(0., 1.));
    }
    {
      auto b = plate("b", 3);
      sample("y", dist::Normal(0., 1.));
      auto a = plate("a", 2);
      sample("z", dist::Normal(0., 1.));
    }
    auto odd = plate("b_a", 4);  // its cluster id would collide with that of b > a
    sample("w", dist::Normal(0., 1.));
  };
  auto dot = model_graph_dot(get_model_graph(model));
  CHECK(dot.find("subgraph \"cluster_a\" {") != std::string::npos);
  CHECK(dot.find("subgraph \"cluster_b\" {") != std::string::npos);
  CHECK(dot.find("subgraph \"cluster_b_a\" {\n      label=\"a (size 2)\"") != std::string::npos);
  CHECK_MESSAGE(dot.find("subgraph \"cluster_b_a#2\" {\n    label=\"b_a (size 4)\"") != std::string::npos, dot);
  auto path = out_path("overlapping.png");
  write_model_graph_png(get_model_graph(model), path);
  CHECK(decode_file(path).width > 0);
}

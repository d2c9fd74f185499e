// The param store and the tensor archive it saves to.
#include "ppl/param_store.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>

#include "core/error.h"

namespace ember {

// ---------------------------------------------------------------- atomic files

namespace {
thread_local std::function<void(const std::string&)> t_atomic_write_hook;
}

void set_atomic_write_hook(std::function<void(const std::string& temp_path)> hook) {
  t_atomic_write_hook = std::move(hook);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  const std::string tmp = cat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw IOError(cat("cannot write '", tmp, "': ", std::strerror(errno)));
  const char* p = contents.data();
  size_t left = contents.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw IOError(cat("cannot write '", tmp, "': ", std::strerror(err)));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IOError(cat("cannot flush '", tmp, "': ", std::strerror(err)));
  }
  if (t_atomic_write_hook) {
    try {
      t_atomic_write_hook(tmp);
    } catch (const std::exception& e) {
      ::unlink(tmp.c_str());
      throw IOError(cat("cannot rename '", tmp, "' to '", path, "': ", e.what()));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IOError(cat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err)));
  }
}

// ---------------------------------------------------------------- tensor archive

namespace {

constexpr char kMagic[8] = {'E', 'M', 'B', 'E', 'R', 'T', 'A', '1'};

const char* dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kLong: return "int64";
    case torch::kInt: return "int32";
    case torch::kShort: return "int16";
    case torch::kChar: return "int8";
    case torch::kByte: return "uint8";
    case torch::kBool: return "bool";
    default: throw ValueError(cat("tensor archive: unsupported dtype ", c10::toString(t)));
  }
}

std::optional<torch::ScalarType> dtype_from_name(const std::string& s) {
  static const std::pair<const char*, torch::ScalarType> table[] = {
      {"float32", torch::kFloat}, {"float64", torch::kDouble}, {"float16", torch::kHalf}, {"bfloat16", torch::kBFloat16},
      {"int64", torch::kLong},    {"int32", torch::kInt},      {"int16", torch::kShort},  {"int8", torch::kChar},
      {"uint8", torch::kByte},    {"bool", torch::kBool}};
  for (const auto& [name, type] : table)
    if (s == name) return type;
  return std::nullopt;
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_u64(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<size_t>(i)]);
  return v;
}

}  // namespace

const ArchiveEntry* TensorArchive::find(const std::string& name) const {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

void write_tensor_archive(const std::string& path, const TensorArchive& archive) {
  nlohmann::json header;
  header["format"] = "ember-tensor-archive";
  header["version"] = 1;
  header["meta"] = archive.meta;
  header["tensors"] = nlohmann::json::array();
  std::string blob;
  for (const auto& e : archive.entries) {
    auto t = e.tensor.detach().to(torch::kCPU).contiguous();
    const auto nbytes = static_cast<size_t>(t.numel()) * t.element_size();
    const auto* bytes = static_cast<const char*>(t.data_ptr());
    nlohmann::json j;
    j["name"] = e.name;
    j["dtype"] = dtype_name(t.scalar_type());
    j["shape"] = t.sizes().vec();
    j["offset"] = blob.size();
    j["nbytes"] = nbytes;
    j["crc32"] = ::crc32(0L, reinterpret_cast<const Bytef*>(bytes), static_cast<uInt>(nbytes));
    j["meta"] = e.meta;
    header["tensors"].push_back(std::move(j));
    blob.append(bytes, nbytes);
  }
  const std::string h = header.dump();
  std::string out(kMagic, sizeof kMagic);
  put_u64(out, h.size());
  out += h;
  out += blob;
  write_file_atomic(path, out);
}

TensorArchive read_tensor_archive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IOError(cat("cannot open '", path, "': ", std::strerror(errno)));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 16 || std::memcmp(data.data(), kMagic, 8) != 0)
    throw IOError(cat("'", path, "' is not an Ember tensor archive (bad magic bytes at offset 0)"));
  const uint64_t hlen = get_u64(data, 8);
  if (hlen > data.size() - 16) throw IOError(cat("'", path, "' is truncated: header of ", hlen, " bytes at offset 16 is incomplete"));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data.substr(16, hlen));
  } catch (const nlohmann::json::exception& e) {
    throw IOError(cat("'", path, "': corrupt header (bytes 16..", 16 + hlen, "): ", e.what()));
  }
  TensorArchive archive;
  const size_t base = 16 + hlen;
  try {
    archive.meta = header.at("meta");
    for (const auto& j : header.at("tensors")) {
      ArchiveEntry e;
      e.name = j.at("name").get<std::string>();
      auto dtype = dtype_from_name(j.at("dtype").get<std::string>());
      if (!dtype) throw IOError(cat("'", path, "': tensor '", e.name, "' has unknown dtype ", j.at("dtype").dump()));
      auto shape = j.at("shape").get<std::vector<int64_t>>();
      const auto offset = j.at("offset").get<uint64_t>(), nbytes = j.at("nbytes").get<uint64_t>();
      auto t = torch::empty(shape, torch::TensorOptions().dtype(*dtype));
      if (nbytes != static_cast<uint64_t>(t.numel()) * t.element_size())
        throw IOError(cat("'", path, "': tensor '", e.name, "' claims ", nbytes, " bytes for shape ", shape_str(shape)));
      if (base + offset + nbytes > data.size())
        throw IOError(cat("'", path, "' is truncated: tensor '", e.name, "' needs bytes ", base + offset, "..", base + offset + nbytes,
                          " of a ", data.size(), "-byte file"));
      const auto* src = data.data() + base + offset;
      if (::crc32(0L, reinterpret_cast<const Bytef*>(src), static_cast<uInt>(nbytes)) != j.at("crc32").get<uint64_t>())
        throw IOError(cat("'", path, "': tensor '", e.name, "' is corrupt (CRC-32 mismatch at byte offset ", base + offset, ")"));
      std::memcpy(t.data_ptr(), src, nbytes);
      e.tensor = t;
      if (j.contains("meta")) e.meta = j["meta"];
      archive.entries.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& ex) {
    throw IOError(cat("'", path, "': malformed header: ", ex.what()));
  }
  return archive;
}

// ---------------------------------------------------------------- constraints by name

constraints::ConstraintPtr constraint_from_name(const std::string& name) {
  using namespace constraints;
  static const std::pair<const char*, ConstraintPtr (*)()> simple[] = {
      {"real", real},       {"simplex", simplex},       {"lower_cholesky", lower_cholesky},
      {"boolean", boolean}, {"integer", integer},       {"positive_definite", positive_definite},
      {"one_hot", one_hot}, {"nonnegative_integer_vector", nonnegative_integer_vector}};
  for (const auto& [n, f] : simple)
    if (name == n) return f();
  std::smatch m;
  static const std::regex gt(R"(greater_than\(([^)]+)\))"), ge(R"(greater_than_eq\(([^)]+)\))"),
      lt(R"(less_than\(([^)]+)\))"), iv(R"(([\[(])([^,]+), ([^\])]+)([\])]))"),
      ind(R"(independent\((.+), (\d+)\))");
  if (std::regex_match(name, m, ge)) return greater_than_eq(std::stod(m[1]));
  if (std::regex_match(name, m, gt)) return greater_than(std::stod(m[1]));
  if (std::regex_match(name, m, lt)) return less_than(std::stod(m[1]));
  if (std::regex_match(name, m, ind)) {
    auto base = constraint_from_name(m[1]);
    return base ? independent(base, std::stoll(m[2])) : nullptr;
  }
  if (std::regex_match(name, m, iv))
    return std::make_shared<Interval>(std::stod(m[2]), std::stod(m[3]), m[1] == "(", m[4] == ")");
  return nullptr;
}

// ---------------------------------------------------------------- param store

namespace {

// The entry's unconstrained tensor in today's layout (`transform_to(c)`, Pyro's). Files
// without a "transform" key were written when the store used `biject_to(c)`; they differ
// only for the simplex (stick-breaking over K - 1 values, now softmax over K values), and
// are converted through the constrained value.
torch::Tensor unconstrained_for_load(const ArchiveEntry& e, const constraints::ConstraintPtr& c, const std::string& source) {
  const auto current = transforms::transform_to(c);
  const bool before_transform_key = !e.meta.contains("transform");
  // Only the simplex's layout changed; every other constraint kept its transform.
  if (before_transform_key && c->name().find("simplex") == std::string::npos) return e.tensor;
  const std::string written_by =
      before_transform_key ? transforms::biject_to(c)->name() : e.meta.at("transform").get<std::string>();
  if (written_by == current->name()) return e.tensor;
  const auto legacy = transforms::biject_to(c);
  if (written_by != legacy->name())
    throw IOError(cat("'", source, "': param '", e.name, "' was saved through transform ", written_by,
                      ", which Ember cannot convert to ", current->name(), " (constraint ", c->name(), ")"));
  torch::NoGradGuard no_grad;
  return current->inverse(legacy->forward(e.tensor)).contiguous();
}

ParamStore& global_store() {
  static ParamStore store;
  return store;
}
thread_local ParamStore* t_current = nullptr;
}  // namespace

ParamStore& get_param_store() { return t_current ? *t_current : global_store(); }
void clear_param_store() { get_param_store().clear(); }

ParamStoreScope::ParamStoreScope(ParamStore& store) : previous_(t_current) { t_current = &store; }
ParamStoreScope::~ParamStoreScope() { t_current = previous_; }

torch::Tensor ParamStore::constrained(const Entry& e) const {
  return e.constraint == constraints::real() ? e.unconstrained : e.transform->forward(e.unconstrained);
}

ParamStore::Entry& ParamStore::create(const std::string& name, const torch::Tensor& init, const constraints::ConstraintPtr& c,
                                      bool bind) {
  if (!init.defined())
    throw RuntimeError(cat("param '", name, "' is not in the param store and no initial value was given"));
  Entry e;
  e.constraint = c ? c : constraints::real();
  e.transform = transforms::transform_to(e.constraint);
  e.is_module = bind;
  if (bind) {
    e.unconstrained = init;
  } else {
    if (!e.constraint->check(init.detach()).all().item<bool>())
      throw ValueError(cat("param '", name, "': initial value of shape ", shape_str(init.sizes()), " does not satisfy its constraint ",
                           e.constraint->name()));
    torch::NoGradGuard no_grad;
    e.unconstrained = e.transform->inverse(init.detach()).contiguous().clone();
    e.unconstrained.set_requires_grad(true);
  }
  order_.push_back(name);
  return params_.emplace(name, std::move(e)).first->second;
}

torch::Tensor ParamStore::get_or_create(const std::string& name, const torch::Tensor& init,
                                        const constraints::ConstraintPtr& constraint, bool bind) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = params_.find(name);
  if (it == params_.end()) return constrained(create(name, init, constraint, bind));
  Entry& e = it->second;
  if (bind && !e.unconstrained.is_same(init)) {
    // A loaded value (or another module instance registered under this name) flows into
    // the module's own parameter, which then becomes the stored tensor.
    if (e.unconstrained.sizes() != init.sizes())
      throw ShapeError(cat("module parameter '", name, "' has shape ", shape_str(init.sizes()),
                           " but the param store holds shape ", shape_str(e.unconstrained.sizes())));
    {
      torch::NoGradGuard no_grad;
      init.copy_(e.unconstrained);
    }
    e.unconstrained = init;
    e.is_module = true;
  }
  return constrained(e);
}

torch::Tensor ParamStore::get_or_create(const std::string& name, const std::function<torch::Tensor()>& init,
                                        const constraints::ConstraintPtr& constraint) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = params_.find(name);
    if (it != params_.end()) return constrained(it->second);
  }
  return get_or_create(name, init ? init() : torch::Tensor(), constraint, false);
}

bool ParamStore::contains(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return params_.count(name) > 0;
}

namespace {
template <class Map>
auto& find_param(Map& params, const std::string& name) {
  auto it = params.find(name);
  if (it == params.end()) throw RuntimeError(cat("param '", name, "' is not in the param store"));
  return it->second;
}
}  // namespace

torch::Tensor ParamStore::get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return constrained(find_param(params_, name));
}

torch::Tensor ParamStore::unconstrained(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return find_param(params_, name).unconstrained;
}

constraints::ConstraintPtr ParamStore::constraint(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return find_param(params_, name).constraint;
}

void ParamStore::set(const std::string& name, const torch::Tensor& value, const constraints::ConstraintPtr& constraint) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = params_.find(name);
  if (it != params_.end() && it->second.is_module) {
    if (it->second.unconstrained.sizes() != value.sizes())
      throw ShapeError(cat("param '", name, "': cannot set shape ", shape_str(value.sizes()), " into a module parameter of shape ",
                           shape_str(it->second.unconstrained.sizes())));
    torch::NoGradGuard no_grad;
    it->second.unconstrained.copy_(value);
    return;
  }
  if (it != params_.end()) {
    params_.erase(it);
    order_.erase(std::find(order_.begin(), order_.end(), name));
  }
  create(name, value, constraint, false);
}

void ParamStore::erase(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (params_.erase(name)) order_.erase(std::find(order_.begin(), order_.end(), name));
}

void ParamStore::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  params_.clear();
  order_.clear();
}

std::vector<std::string> ParamStore::names() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return order_;
}

size_t ParamStore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return params_.size();
}

nlohmann::json ParamStore::manifest() const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json j = nlohmann::json::array();
  for (const auto& name : order_) {
    const Entry& e = params_.at(name);
    j.push_back({{"name", name},
                 {"shape", e.unconstrained.sizes().vec()},
                 {"dtype", c10::toString(e.unconstrained.scalar_type())},
                 {"constraint", e.constraint->name()},
                 {"module", e.is_module}});
  }
  return j;
}

std::vector<ArchiveEntry> ParamStore::to_archive_entries() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ArchiveEntry> out;
  for (const auto& name : order_) {
    const Entry& e = params_.at(name);
    out.push_back({name, e.unconstrained.detach(),
                   {{"constraint", e.constraint->name()}, {"transform", e.transform->name()}, {"module", e.is_module}}});
  }
  return out;
}

void ParamStore::save(const std::string& path) const {
  TensorArchive a;
  a.entries = to_archive_entries();
  a.meta = {{"kind", "ember-param-store"}, {"params", manifest()}};
  write_tensor_archive(path, a);
}

void ParamStore::load(const std::string& path) { load_archive_entries(read_tensor_archive(path).entries, path); }

void ParamStore::load_archive_entries(const std::vector<ArchiveEntry>& entries, const std::string& source) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Check everything first so that a bad file changes nothing.
  std::unordered_map<std::string, const ArchiveEntry*> by_name;
  std::vector<constraints::ConstraintPtr> constraints_of(entries.size());
  std::vector<torch::Tensor> values(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    by_name[e.name] = &e;
    const std::string cname = e.meta.value("constraint", std::string("real"));
    constraints_of[i] = constraint_from_name(cname);
    if (!constraints_of[i])
      throw IOError(cat("'", source, "': param '", e.name, "' has a constraint Ember cannot restore: ", cname));
    values[i] = unconstrained_for_load(e, constraints_of[i], source);
    auto it = params_.find(e.name);
    if (it != params_.end()) {
      const auto& have = it->second.unconstrained;
      if (have.sizes() != values[i].sizes())
        throw ShapeError(cat("'", source, "': param '", e.name, "' has shape ", shape_str(values[i].sizes()),
                             " in the file but ", shape_str(have.sizes()), " in the param store (registered model)"));
      if (it->second.constraint->name() != cname)
        throw ValueError(cat("'", source, "': param '", e.name, "' has constraint ", cname, " in the file but ",
                             it->second.constraint->name(), " in the param store"));
    }
  }
  for (const auto& name : order_)
    if (!by_name.count(name))
      throw ValueError(cat("'", source, "' has no value for param '", name, "', which the model registered"));
  // Apply.
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    auto it = params_.find(e.name);
    if (it != params_.end()) {
      auto& u = it->second.unconstrained;
      u.copy_(values[i].to(u.options()));
      continue;
    }
    Entry entry;
    entry.constraint = constraints_of[i];
    entry.transform = transforms::transform_to(entry.constraint);
    entry.unconstrained = values[i].clone().set_requires_grad(true);
    entry.is_module = false;  // bound when the module registers
    order_.push_back(e.name);
    params_.emplace(e.name, std::move(entry));
  }
}

}  // namespace ember

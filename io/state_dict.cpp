// Reader of torch.save's zip format: libzip for the archive, a minimal unpickler for data.pkl.
#include "io/state_dict.h"

#include <torch/torch.h>
#include <zip.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

#include "core/error.h"

namespace ember::io {
namespace {

// ---------------------------------------------------------------------------------------
// Zip archive access (libzip).

/// An open zip archive; closes (discarding nothing, it is read-only) on destruction.
class ZipArchive {
 public:
  explicit ZipArchive(const std::string& path) : path_(path) {
    int code = 0;
    zip_ = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
    if (!zip_) {
      zip_error_t err;
      zip_error_init_with_code(&err, code);
      std::string why = zip_error_strerror(&err);
      zip_error_fini(&err);
      if (code == ZIP_ER_NOZIP && looks_like_legacy_pickle(path)) {
        throw IOError(cat("state_dict '", path,
                          "': this is PyTorch's legacy (pre-1.6, non-zip) serialization format, which Ember "
                          "does not read; save it with torch.save's default (zip) format"));
      }
      if (code == ZIP_ER_NOZIP) why = "not a zip archive, or truncated: no zip central directory";
      throw IOError(cat("state_dict '", path, "': cannot open as a zip archive (", why,
                        "); expected a file written by torch.save (zip format, PyTorch >= 1.6)"));
    }
  }
  ~ZipArchive() {
    if (zip_) zip_discard(zip_);
  }
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  /// Name of entry `i`.
  std::string name(zip_uint64_t i) const {
    const char* n = zip_get_name(zip_, i, ZIP_FL_ENC_RAW);
    if (!n) throw IOError(cat("state_dict '", path_, "': cannot read the name of zip entry ", i, ": ", zip_strerror(zip_)));
    return n;
  }
  zip_int64_t size() const { return zip_get_num_entries(zip_, 0); }
  /// The index of `entry`; IOError if absent.
  zip_uint64_t locate(const std::string& entry) const {
    zip_int64_t index = zip_name_locate(zip_, entry.c_str(), ZIP_FL_ENC_RAW);
    if (index < 0) throw IOError(cat("state_dict '", path_, "': the archive has no entry '", entry, "'"));
    return zip_uint64_t(index);
  }
  bool contains(const std::string& entry) const { return zip_name_locate(zip_, entry.c_str(), ZIP_FL_ENC_RAW) >= 0; }

  /// The uncompressed size of `entry`.
  uint64_t entry_size(const std::string& entry) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_, locate(entry), 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
      throw IOError(cat("state_dict '", path_, "': cannot stat entry '", entry, "': ", zip_strerror(zip_)));
    }
    return st.size;
  }

  /// Reads all `size` bytes of `entry` (its size per entry_size()) into `dst`; libzip checks
  /// the entry's CRC.
  void read_into(const std::string& entry, void* dst, uint64_t size) const {
    zip_file_t* f = zip_fopen_index(zip_, locate(entry), 0);
    if (!f) throw IOError(cat("state_dict '", path_, "': cannot open entry '", entry, "': ", zip_strerror(zip_)));
    zip_int64_t got = size ? zip_fread(f, dst, size) : 0;
    std::string why = got < 0 ? zip_file_strerror(f) : "";
    // Reading past the end makes libzip compare the CRC of the whole entry.
    char extra;
    zip_int64_t tail = got == static_cast<zip_int64_t>(size) ? zip_fread(f, &extra, 1) : 0;
    if (tail < 0) why = zip_file_strerror(f);
    zip_fclose(f);
    if (got < 0 || tail < 0) throw IOError(cat("state_dict '", path_, "': entry '", entry, "' is corrupt (", why, ")"));
    if (got != static_cast<zip_int64_t>(size) || tail != 0) {
      throw IOError(cat("state_dict '", path_, "': entry '", entry, "' has ", got, " bytes, its header says ", size));
    }
  }

  /// The whole uncompressed contents of `entry`.
  std::string read(const std::string& entry) const {
    std::string out(entry_size(entry), '\0');
    read_into(entry, out.data(), out.size());
    return out;
  }

 private:
  static bool looks_like_legacy_pickle(const std::string& path) {
    // Legacy torch.save files start with a protocol-2 pickle of a magic number (LONG1).
    std::ifstream in(path, std::ios::binary);
    char head[3] = {0, 0, 0};
    in.read(head, 3);
    return in && static_cast<unsigned char>(head[0]) == 0x80 && head[1] == 2 && static_cast<unsigned char>(head[2]) == 0x8a;
  }

  std::string path_;
  zip_t* zip_ = nullptr;
};

// ---------------------------------------------------------------------------------------
// Pickle values: only what torch.save's state_dicts contain.

struct Value;
using ValuePtr = std::shared_ptr<Value>;

/// A Python global such as `collections.OrderedDict`.
struct Global {
  std::string module, name;
  std::string full() const { return module + "." + name; }
};
/// A storage loaded through a persistent id: a flat tensor of its dtype.
struct Storage {
  torch::Tensor flat;
};
struct Tuple {
  std::vector<ValuePtr> items;
};
struct List {
  std::vector<ValuePtr> items;
};
/// An ordered dict (insertion order kept, as Python's dict and OrderedDict do).
struct Dict {
  std::vector<std::pair<ValuePtr, ValuePtr>> items;
};
struct None {};

struct Value {
  std::variant<None, bool, int64_t, double, std::string, Tuple, List, Dict, Global, Storage, torch::Tensor> v;
};

const char* kind_name(const Value& x) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "tuple", "list", "dict", "global", "storage", "tensor"};
  return names[x.v.index()];
}

ValuePtr make(decltype(Value::v) v) {
  auto p = std::make_shared<Value>();
  p->v = std::move(v);
  return p;
}

/// The dtype of a `torch.<Name>Storage` global, or nullopt.
std::optional<torch::Dtype> storage_dtype(const Global& g) {
  if (g.module != "torch") return std::nullopt;
  static const std::map<std::string, torch::Dtype> table = {
      {"FloatStorage", torch::kFloat32},   {"DoubleStorage", torch::kFloat64},
      {"HalfStorage", torch::kFloat16},    {"BFloat16Storage", torch::kBFloat16},
      {"ComplexFloatStorage", torch::kComplexFloat}, {"ComplexDoubleStorage", torch::kComplexDouble},
      {"LongStorage", torch::kInt64},      {"IntStorage", torch::kInt32},
      {"ShortStorage", torch::kInt16},     {"CharStorage", torch::kInt8},
      {"ByteStorage", torch::kUInt8},      {"BoolStorage", torch::kBool},
  };
  auto it = table.find(g.name);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

/// Runs the pickle in `data` (the contents of `<prefix>/data.pkl`), loading storages from the
/// archive through persistent ids. Errors name the file, the byte offset and the opcode.
class Unpickler {
 public:
  Unpickler(const std::string& path, const std::string& data, const ZipArchive& zip, std::string prefix)
      : path_(path), data_(data), zip_(zip), prefix_(std::move(prefix)) {}

  ValuePtr run() {
    while (true) {
      op_pos_ = pos_;
      uint8_t op = u8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t proto = u8();
          if (proto > 5) fail(cat("unsupported pickle protocol ", int(proto)));
          break;
        }
        case 0x95: skip(8); break;  // FRAME (protocol 4): framing only
        case '.':                   // STOP
          if (stack_.size() != 1 || is_mark(stack_.back())) fail("the pickle ends with a malformed stack");
          return stack_.back();
        case '(': stack_.push_back(mark_); break;  // MARK
        case 'N': push(None{}); break;
        case 0x88: push(true); break;   // NEWTRUE
        case 0x89: push(false); break;  // NEWFALSE
        case 'K': push(int64_t(u8())); break;  // BININT1
        case 'M': push(int64_t(uint16_t(le(2)))); break;  // BININT2
        case 'J': push(int64_t(int32_t(uint32_t(le(4))))); break;  // BININT
        case 0x8a: {  // LONG1
          uint8_t n = u8();
          if (n > 8) fail(cat("integer of ", int(n), " bytes does not fit 64 bits"));
          uint64_t v = n ? le(n) : 0;
          if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);  // sign-extend
          push(int64_t(v));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | u8();
          double d;
          std::memcpy(&d, &bits, 8);
          push(d);
          break;
        }
        case 'X': push(bytes(uint32_t(le(4)))); break;  // BINUNICODE
        case 0x8c: push(bytes(u8())); break;            // SHORT_BINUNICODE
        case 0x8d: push(bytes(le(8))); break;           // BINUNICODE8
        case 'T': push(bytes(uint32_t(le(4)))); break;  // BINSTRING
        case 'U': push(bytes(u8())); break;             // SHORT_BINSTRING
        case 'c': {  // GLOBAL
          std::string module = line(), name = line();
          push(Global{module, name});
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          auto name = pop(), module = pop();
          push(Global{str(*module, "STACK_GLOBAL module"), str(*name, "STACK_GLOBAL name")});
          break;
        }
        case 'q': memo_[u8()] = top(); break;               // BINPUT
        case 'r': memo_[uint32_t(le(4))] = top(); break;    // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;      // MEMOIZE
        case 'h': stack_.push_back(memo_get(u8())); break;  // BINGET
        case 'j': stack_.push_back(memo_get(uint32_t(le(4)))); break;  // LONG_BINGET
        case ')': push(Tuple{}); break;                     // EMPTY_TUPLE
        case 0x85: tuple_of(1); break;                      // TUPLE1
        case 0x86: tuple_of(2); break;                      // TUPLE2
        case 0x87: tuple_of(3); break;                      // TUPLE3
        case 't': push(Tuple{pop_to_mark()}); break;        // TUPLE
        case ']': push(List{}); break;                      // EMPTY_LIST
        case 'a': {                                         // APPEND
          auto v = pop();
          as_list(top()).items.push_back(v);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_to_mark();
          auto& l = as_list(top()).items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case '}': push(Dict{}); break;  // EMPTY_DICT
        case 's': {                     // SETITEM
          auto v = pop(), k = pop();
          as_dict(top()).items.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_to_mark();
          if (items.size() % 2) fail("SETITEMS with an odd number of items");
          auto& d = as_dict(top()).items;
          for (size_t i = 0; i < items.size(); i += 2) d.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'Q': {  // BINPERSID
          auto pid = pop();
          stack_.push_back(persistent_load(*pid));
          break;
        }
        case 'R': {  // REDUCE
          auto args = pop(), fn = pop();
          stack_.push_back(reduce(*fn, *args));
          break;
        }
        case 'b': {  // BUILD
          auto state = pop();
          auto& obj = *top();
          // state_dict() sets `_metadata` (per-module versions) on its OrderedDict: not data.
          if (!std::holds_alternative<Dict>(obj.v)) {
            fail(cat("BUILD on a ", kind_name(obj), " (only the state_dict's OrderedDict is expected)"));
          }
          break;
        }
        case 0x81: {  // NEWOBJ: a pickled Python object, e.g. torch.save(model) instead of its state_dict
          pop();
          auto cls = pop();
          auto* g = std::get_if<Global>(&cls->v);
          fail(cat("holds a pickled Python object of class '", g ? g->full() : kind_name(*cls),
                   "', not a state_dict (save model.state_dict(), not the model)"));
        }
        default:
          fail(cat("unsupported pickle opcode 0x", hex(op),
                   " (Ember reads the opcodes torch.save emits for a state_dict of tensors)"));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw IOError(cat("state_dict '", path_, "': ", prefix_, "data.pkl at byte ", op_pos_, ": ", what));
  }
  static std::string hex(unsigned v) {
    const char* digits = "0123456789abcdef";
    return {digits[(v >> 4) & 15], digits[v & 15]};
  }

  uint8_t u8() {
    if (pos_ >= data_.size()) fail("unexpected end of the pickle (truncated file?)");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  void skip(size_t n) {
    if (data_.size() - pos_ < n) fail("unexpected end of the pickle (truncated file?)");
    pos_ += n;
  }
  uint64_t le(int n) {
    if (data_.size() - pos_ < size_t(n)) fail("unexpected end of the pickle (truncated file?)");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }
  std::string bytes(uint64_t n) {
    if (data_.size() - pos_ < n) fail(cat("string of ", n, " bytes runs past the end of the pickle"));
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string line() {
    size_t end = data_.find('\n', pos_);
    if (end == std::string::npos) fail("unterminated GLOBAL name");
    std::string s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  bool is_mark(const ValuePtr& v) const { return v == mark_; }
  void push(decltype(Value::v) v) { stack_.push_back(make(std::move(v))); }
  ValuePtr pop() {
    if (stack_.empty() || is_mark(stack_.back())) fail("pop from an empty stack");
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  const ValuePtr& top() const {
    if (stack_.empty() || is_mark(stack_.back())) fail("the stack is empty");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark() {
    size_t i = stack_.size();
    while (i > 0 && !is_mark(stack_[i - 1])) --i;
    if (i == 0) fail("no MARK on the stack");
    std::vector<ValuePtr> items(stack_.begin() + i, stack_.end());
    stack_.resize(i - 1);
    return items;
  }
  void tuple_of(size_t n) {
    std::vector<ValuePtr> items(n);
    for (size_t i = n; i > 0; --i) items[i - 1] = pop();
    push(Tuple{std::move(items)});
  }
  ValuePtr memo_get(uint32_t key) const {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail(cat("memo entry ", key, " is read before it is written"));
    return it->second;
  }
  List& as_list(const ValuePtr& v) const {
    if (auto* l = std::get_if<List>(&v->v)) return *l;
    fail(cat("APPEND to a ", kind_name(*v)));
  }
  Dict& as_dict(const ValuePtr& v) const {
    if (auto* d = std::get_if<Dict>(&v->v)) return *d;
    fail(cat("SETITEM on a ", kind_name(*v)));
  }
  std::string str(const Value& v, const char* what) const {
    if (auto* s = std::get_if<std::string>(&v.v)) return *s;
    fail(cat(what, " is a ", kind_name(v), ", expected a str"));
  }
  int64_t integer(const Value& v, const char* what) const {
    if (auto* i = std::get_if<int64_t>(&v.v)) return *i;
    fail(cat(what, " is a ", kind_name(v), ", expected an int"));
  }
  std::vector<int64_t> ints(const Value& v, const char* what) const {
    auto* t = std::get_if<Tuple>(&v.v);
    if (!t) fail(cat(what, " is a ", kind_name(v), ", expected a tuple of ints"));
    std::vector<int64_t> out;
    for (auto& x : t->items) out.push_back(integer(*x, what));
    return out;
  }

  /// ('storage', torch.<T>Storage, key, location, numel) -> the storage's bytes as a flat tensor.
  ValuePtr persistent_load(const Value& pid) {
    auto* t = std::get_if<Tuple>(&pid.v);
    if (!t || t->items.size() != 5 || str(*t->items[0], "persistent id tag") != "storage") {
      fail("persistent id is not ('storage', type, key, location, numel)");
    }
    auto* g = std::get_if<Global>(&t->items[1]->v);
    if (!g) fail("persistent id's storage type is not a global");
    auto dtype = storage_dtype(*g);
    if (!dtype) fail(cat("unsupported storage type '", g->full(), "'"));
    std::string key = str(*t->items[2], "storage key");
    int64_t numel = integer(*t->items[4], "storage size");
    if (numel < 0) fail(cat("storage '", key, "' has negative size ", numel));
    auto cached = storages_.find(key);
    if (cached != storages_.end()) {
      const auto& s = std::get<Storage>(cached->second->v);
      if (s.flat.scalar_type() != *dtype || s.flat.numel() != numel) {
        fail(cat("storage '", key, "' is used with two different types or sizes"));
      }
      return cached->second;
    }
    std::string entry = prefix_ + "data/" + key;
    const uint64_t bytes = zip_.entry_size(entry);
    const uint64_t item = c10::elementSize(*dtype);
    if (bytes % item != 0 || bytes / item != static_cast<uint64_t>(numel)) {
      throw IOError(cat("state_dict '", path_, "': entry '", entry, "' has ", bytes, " bytes; the pickle says ", numel,
                        " elements of ", c10::toString(*dtype), " (", numel, " x ", item, " bytes)"));
    }
    // Straight from the archive into the tensor's memory.
    auto flat = torch::empty({numel}, torch::TensorOptions().dtype(*dtype));
    zip_.read_into(entry, flat.data_ptr(), bytes);
    auto v = make(Storage{flat});
    storages_.emplace(key, v);
    return v;
  }

  ValuePtr reduce(const Value& fn, const Value& args_v) {
    auto* g = std::get_if<Global>(&fn.v);
    if (!g) fail(cat("REDUCE calls a ", kind_name(fn), ", not a global"));
    auto* args_t = std::get_if<Tuple>(&args_v.v);
    if (!args_t) fail(cat("REDUCE arguments of '", g->full(), "' are a ", kind_name(args_v), ", not a tuple"));
    const auto& args = args_t->items;
    std::string name = g->full();
    if (name == "collections.OrderedDict") {
      if (!args.empty()) fail("collections.OrderedDict called with arguments");
      return make(Dict{});
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() < 6 || args.size() > 7) fail(cat(name, " called with ", args.size(), " arguments"));
      auto* s = std::get_if<Storage>(&args[0]->v);
      if (!s) fail(cat(name, ": first argument is a ", kind_name(*args[0]), ", not a storage"));
      int64_t offset = integer(*args[1], "storage offset");
      auto size = ints(*args[2], "tensor size");
      auto stride = ints(*args[3], "tensor stride");
      if (size.size() != stride.size()) fail(cat(name, ": size ", shape_str(size), " and stride ", shape_str(stride), " differ in rank"));
      // The furthest element the view reaches must lie inside the storage (overflow-checked:
      // the numbers come from the file).
      bool empty = false, overflow = false;
      int64_t last = offset, numel = 1;
      for (size_t i = 0; i < size.size(); ++i) {
        if (size[i] < 0 || stride[i] < 0) fail(cat(name, ": negative size or stride ", shape_str(size), " / ", shape_str(stride)));
        if (size[i] == 0) {
          empty = true;
          continue;
        }
        int64_t reach = 0;
        overflow |= __builtin_mul_overflow(size[i] - 1, stride[i], &reach);
        overflow |= __builtin_add_overflow(last, reach, &last);
        overflow |= __builtin_mul_overflow(numel, size[i], &numel);
      }
      if (overflow && !empty) fail(cat(name, ": size ", shape_str(size), " and stride ", shape_str(stride), " overflow 64 bits"));
      if (offset < 0 || (!empty && last >= s->flat.numel())) {
        fail(cat(name, ": a view of size ", shape_str(size), ", stride ", shape_str(stride), " at offset ", offset,
                 " reaches past its storage of ", s->flat.numel(), " elements"));
      }
      torch::Tensor t = empty ? torch::empty(size, s->flat.options())
                              : s->flat.as_strided(size, stride, offset).clone(at::MemoryFormat::Contiguous);
      return make(t);
    }
    if (name == "torch._utils._rebuild_parameter") {  // state_dict(keep_vars=True): (data, requires_grad, hooks)
      if (args.size() != 3 || !std::holds_alternative<torch::Tensor>(args[0]->v)) fail(cat(name, ": expected (tensor, bool, hooks)"));
      return args[0];
    }
    fail(cat("unsupported Python callable '", name,
             "' (Ember reads state_dicts of plain tensors: save model.state_dict(), not the model)"));
  }

  const std::string& path_;
  const std::string& data_;
  const ZipArchive& zip_;
  std::string prefix_;  // "<stem>/"
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::unordered_map<uint32_t, ValuePtr> memo_;
  std::unordered_map<std::string, ValuePtr> storages_;
  const ValuePtr mark_ = std::make_shared<Value>();
};

}  // namespace

NamedTensors load_torch_state_dict(const std::string& path) {
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw IOError(cat("state_dict '", path, "': cannot open the file for reading: ", std::strerror(errno)));
  }
  ZipArchive zip(path);
  if (zip.size() <= 0) throw IOError(cat("state_dict '", path, "': the zip archive is empty"));
  // Like PyTorch's reader: the archive's folder is the first entry's first path component.
  std::string first = zip.name(0);
  size_t slash = first.find('/');
  if (slash == std::string::npos) {
    throw IOError(cat("state_dict '", path, "': first zip entry '", first, "' is not in a folder; not a torch.save archive"));
  }
  std::string prefix = first.substr(0, slash + 1);
  if (!zip.contains(prefix + "data.pkl")) {
    throw IOError(cat("state_dict '", path, "': no '", prefix, "data.pkl' in the zip archive; not a torch.save file",
                      zip.contains(prefix + "constants.pkl") ? " (this looks like a TorchScript archive from torch.jit.save)" : ""));
  }
  if (zip.contains(prefix + "byteorder")) {
    std::string order = zip.read(prefix + "byteorder");
    if (order != "little") throw IOError(cat("state_dict '", path, "': byte order '", order, "' is not supported (only little)"));
  }
  std::string pickle = zip.read(prefix + "data.pkl");
  Unpickler unpickler(path, pickle, zip, prefix);
  ValuePtr root = unpickler.run();
  auto* dict = std::get_if<Dict>(&root->v);
  if (!dict) throw IOError(cat("state_dict '", path, "': holds a ", kind_name(*root), ", not a dict of tensors"));
  NamedTensors out;
  std::set<std::string> seen;
  for (auto& [k, v] : dict->items) {
    auto* key = std::get_if<std::string>(&k->v);
    if (!key) throw IOError(cat("state_dict '", path, "': has a key of type ", kind_name(*k), ", expected str"));
    auto* t = std::get_if<torch::Tensor>(&v->v);
    if (!t) throw IOError(cat("state_dict '", path, "': entry '", *key, "' is a ", kind_name(*v), ", not a tensor"));
    if (!seen.insert(*key).second) throw IOError(cat("state_dict '", path, "': key '", *key, "' appears twice"));
    out.emplace_back(*key, *t);
  }
  return out;
}

void load_state_dict_into(torch::nn::Module& module, const NamedTensors& tensors, const std::string& source,
                          const LoadStateDictOptions& options) {
  // The module's tensors, parameters then buffers, by dotted name.
  std::map<std::string, torch::Tensor> targets;
  std::vector<std::string> order;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    targets.emplace(item.key(), item.value());
    order.push_back(item.key());
  }
  for (auto& item : module.named_buffers(/*recurse=*/true)) {
    if (targets.emplace(item.key(), item.value()).second) order.push_back(item.key());
  }
  const auto& map = options.key_map();
  const std::string& prefix = options.prefix();
  // Key maps naming keys the file lacks are mistakes, not options.
  for (auto& [from, to] : map) {
    bool found = false;
    for (auto& [key, t] : tensors) {
      if (key.compare(0, prefix.size(), prefix) == 0 && key.substr(prefix.size()) == from) found = true;
    }
    if (!found) throw ValueError(cat("state_dict '", source, "': key map renames '", from, "' -> '", to, "', but the file has no key '", prefix, from, "'"));
  }

  // Check everything first and report every problem at once; copy only when all pass.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  std::map<std::string, std::string> assigned;                  // module name -> file key
  std::vector<std::string> unexpected, mismatched, missing;
  for (auto& [key, t] : tensors) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    std::string name = key.substr(prefix.size());
    if (auto it = map.find(name); it != map.end()) name = it->second;
    auto target = targets.find(name);
    if (target == targets.end()) {
      unexpected.push_back(cat("unexpected key '", key, "' ", shape_str(t.sizes()),
                               name != key ? cat(" (as '", name, "')") : std::string(),
                               " matches no parameter or buffer of the module"));
      continue;
    }
    if (auto prev = assigned.find(name); prev != assigned.end()) {
      throw ValueError(cat("state_dict '", source, "': keys '", prev->second, "' and '", key, "' both map to parameter '", name, "'"));
    }
    assigned.emplace(name, key);
    if (target->second.sizes() != t.sizes()) {
      mismatched.push_back(cat("parameter '", name, "' has shape ", shape_str(target->second.sizes()), " but key '", key,
                               "' holds shape ", shape_str(t.sizes())));
      continue;
    }
    if (t.is_complex() && !target->second.is_complex()) {
      throw ValueError(cat("state_dict '", source, "': key '", key, "' is complex, parameter '", name, "' is not"));
    }
    copies.emplace_back(target->second, t);
  }
  for (auto& name : order) {
    if (!assigned.count(name)) {
      missing.push_back(cat("missing key for parameter '", name, "' ", shape_str(targets.at(name).sizes()),
                            prefix.empty() ? "" : cat(" (looked for '", prefix, name, "')")));
    }
  }
  if (!unexpected.empty() || !mismatched.empty() || !missing.empty()) {
    std::string problems;
    for (const auto* list : {&missing, &unexpected, &mismatched})
      for (const auto& p : *list) problems += cat(problems.empty() ? "" : "; ", p);
    throw ValueError(cat("state_dict '", source, "' does not fit the module: ", problems));
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

void load_state_dict_into(torch::nn::Module& module, const std::string& path, const std::map<std::string, std::string>& key_map) {
  load_state_dict_into(module, load_torch_state_dict(path), path, LoadStateDictOptions().key_map(key_map));
}

void load_state_dict_into(torch::nn::Module& module, const std::string& path, const LoadStateDictOptions& options) {
  load_state_dict_into(module, load_torch_state_dict(path), path, options);
}

}  // namespace ember::io

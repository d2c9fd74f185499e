// Data-parallel SVI on c10d: rendezvous through TCPStore, collectives through ProcessGroupGloo.
// Only the c10d API that LibTorch 1.13 and 2.x share is used (TCPStoreOptions, PrefixStore,
// ProcessGroupGloo's constructor, Options::create, createDeviceFor*, allreduce, broadcast,
// barrier, Work::wait); ProcessGroupGloo derives from ProcessGroup in 1.13 and from Backend in
// 2.x, which this file never names.
#include "distributed/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "ppl/param_store.h"

namespace ember::distributed {

namespace {

using Clock = std::chrono::steady_clock;

std::string first_line(const std::string& s) {
  const auto end = s.find('\n');
  return end == std::string::npos ? s : s.substr(0, end);
}

// c10::Error's what() carries a C++ backtrace in LibTorch 1.13: keep the message.
std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return first_line(c->what_without_backtrace());
  return first_line(e.what());
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

std::string bytes_to_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
std::vector<uint8_t> string_to_bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

bool is_loopback(const std::string& addr) {
  return addr.rfind("127.", 0) == 0 || addr == "localhost" || addr == "::1";
}

int64_t parse_int(const std::string& text, const std::string& what) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw ValueError(cat(what, " '", text, "' is not an integer"));
  return v;
}

// 64-bit FNV-1a: the same on every machine and standard library (std::hash is not).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

// ------------------------------------------------------------------ options

GroupOptions group_options_from_env(GroupOptions o) {
  if (const char* v = std::getenv("MASTER_ADDR"); v && *v) o.master_addr(v);
  if (const char* v = std::getenv("MASTER_PORT"); v && *v) o.master_port(parse_int(v, "MASTER_PORT"));
  if (const char* v = std::getenv("RANK"); v && *v) o.rank(parse_int(v, "RANK"));
  if (const char* v = std::getenv("WORLD_SIZE"); v && *v) o.world_size(parse_int(v, "WORLD_SIZE"));
  return o;
}

bool launched_by_env() {
  const char* v = std::getenv("WORLD_SIZE");
  return v && *v;
}

void parse_master(const std::string& spec, GroupOptions& o, const std::string& flag) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
    throw ValueError(cat(flag, " '", spec, "': expected ADDR:PORT, e.g. 10.0.0.1:29500"));
  o.master_addr(spec.substr(0, colon));
  o.master_port(parse_int(spec.substr(colon + 1), cat(flag, " port")));
}

// ------------------------------------------------------------------ process group

struct ProcessGroup::Impl {
  GroupOptions options;
  // Collectives time out a little before options.timeout: the rest is the grace period in which
  // a failing rank learns from the store which other ranks are still there.
  std::chrono::milliseconds collective_timeout{0}, grace{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;

  std::string me() const { return cat("rank ", options.rank(), " of ", options.world_size()); }
  std::string master() const { return cat(options.master_addr(), ":", options.master_port()); }

  // Stops this rank with a message naming it, what it was doing and why, and which other
  // ranks reported a failure (and theirs) or stayed silent (stopped or hanging).
  [[noreturn]] void fail(const std::string& what, const std::string& cause) {
    std::string others;
    try {
      store->set(cat("ember/failed/", options.rank()), string_to_bytes(cat("it stopped while ", what)));
      const auto deadline = Clock::now() + grace;
      std::vector<int64_t> silent;
      for (;;) {
        silent.clear();
        for (int64_t q = 0; q < options.world_size(); ++q)
          if (q != options.rank() && !store->check({cat("ember/failed/", q)})) silent.push_back(q);
        if (silent.empty() || Clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (int64_t q = 0; q < options.world_size(); ++q) {
        if (q == options.rank() || std::find(silent.begin(), silent.end(), q) != silent.end()) continue;
        others += cat(" Rank ", q, " reported: ", bytes_to_string(store->get(cat("ember/failed/", q))), ".");
      }
      for (int64_t q : silent)
        others += cat(" Rank ", q, " did not report within ", grace.count() / 1000.0,
                      " s: it has stopped (crashed, killed, lost its network) or hangs.");
    } catch (const std::exception& e) {
      others = cat(" The rendezvous store on ", master(), " (served by rank 0) is unreachable as well: rank 0 has stopped.");
    }
    throw CommunicationError(cat(me(), ": ", what, " failed: ", cause, ".", others));
  }

  // Waits for every work; the first failure stops this rank.
  void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const std::string& what) {
    try {
      for (auto& w : works) w->wait();
    } catch (const std::exception& e) {
      fail(what, message_of(e));
    }
  }
};

ProcessGroup::ProcessGroup(GroupOptions o) : impl_(std::make_unique<Impl>()) {
  if (o.world_size() < 1) throw ValueError(cat("world size must be >= 1, got ", o.world_size()));
  if (o.rank() < 0 || o.rank() >= o.world_size())
    throw ValueError(cat("rank must be in 0 .. ", o.world_size() - 1, " for world size ", o.world_size(), ", got ", o.rank()));
  if (o.master_port() < 1 || o.master_port() > 65535)
    throw ValueError(cat("master port must be in 1 .. 65535, got ", o.master_port()));
  if (!(o.timeout() > 0)) throw ValueError(cat("timeout must be > 0 seconds, got ", o.timeout()));
  // A peer that died must give an error on the socket, not SIGPIPE this process.
  std::signal(SIGPIPE, SIG_IGN);
  Impl& m = *impl_;
  m.options = o;
  m.grace = std::min(std::chrono::milliseconds(3000), to_ms(o.timeout() / 10));
  m.collective_timeout = to_ms(o.timeout()) - m.grace;
  const int64_t rank = o.rank(), world = o.world_size();

  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(o.master_port());
  so.isServer = rank == 0;
  so.numWorkers = static_cast<size_t>(world);
  so.waitWorkers = false;  // joining is checked below, with messages that name the rank
  so.timeout = to_ms(o.timeout());
  try {
    m.store = c10::make_intrusive<c10d::TCPStore>(o.master_addr(), so);
  } catch (const std::exception& e) {
    if (rank == 0)
      throw CommunicationError(cat(m.me(), ": cannot serve the rendezvous store on ", m.master(), " (", message_of(e),
                                   "); is another job using that port? Choose a free one with --master ADDR:PORT or MASTER_PORT"));
    throw CommunicationError(cat(m.me(), ": cannot reach the master ", m.master(), " within ", o.timeout(), " s (",
                                 message_of(e), "); is rank 0 running there, and was every rank given the same --master?"));
  }

  // Rendezvous: every rank announces its world size; rank 0 checks them all and says whether
  // the group may start.
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  const nlohmann::json hello = {{"world_size", world}, {"pid", static_cast<int64_t>(::getpid())}, {"host", host}};
  try {
    if (m.store->add(cat("ember/rank/", rank), 1) > 1)
      throw CommunicationError(cat(m.me(), ": another process has already joined as rank ", rank, " at ", m.master(),
                                   "; give each process its own --rank"));
    m.store->set(cat("ember/hello/", rank), string_to_bytes(hello.dump()));
    if (rank == 0) {
      std::string problem;
      for (int64_t q = 1; q < world && problem.empty(); ++q) {
        const std::string key = cat("ember/hello/", q);
        try {
          m.store->wait({key}, to_ms(o.timeout()));
        } catch (const std::exception&) {
          problem = cat("rank ", q, " did not join within ", o.timeout(), " s (is it running, with --master ", m.master(), "?)");
          break;
        }
        const auto theirs = nlohmann::json::parse(bytes_to_string(m.store->get(key)));
        if (theirs.at("world_size").get<int64_t>() != world)
          problem = cat("rank ", q, " (", theirs.at("host").get<std::string>(), ", pid ", theirs.at("pid").get<int64_t>(),
                        ") was started with world size ", theirs.at("world_size").get<int64_t>(), " but rank 0 with ", world,
                        "; give every rank the same --world-size");
      }
      m.store->set("ember/ready", string_to_bytes(problem.empty() ? std::string("ok") : problem));
      if (!problem.empty()) {
        // Keep the store up until the ranks that joined have read why (or the grace period ends).
        const auto deadline = Clock::now() + m.grace;
        int64_t joined = 0;
        for (int64_t q = 1; q < world; ++q) joined += m.store->check({cat("ember/hello/", q)}) ? 1 : 0;
        while (m.store->add("ember/read", 0) < joined && Clock::now() < deadline)
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        throw CommunicationError(cat(m.me(), ": the rendezvous failed: ", problem));
      }
    } else {
      // Acknowledge rank 0's verdict (or this rank's own finding) before leaving, so rank 0
      // keeps the store up until then.
      struct Ack {
        c10d::Store& store;
        ~Ack() {
          try {
            store.add("ember/read", 1);
          } catch (...) {
            // rank 0 is gone already
          }
        }
      } ack{*m.store};
      const auto zero = nlohmann::json::parse(bytes_to_string(m.store->get("ember/hello/0")));
      if (zero.at("world_size").get<int64_t>() != world)
        throw CommunicationError(cat(m.me(), ": this rank was started with world size ", world, " but rank 0 (",
                                     zero.at("host").get<std::string>(), ") with ", zero.at("world_size").get<int64_t>(),
                                     "; give every rank the same --world-size"));
      try {
        m.store->wait({"ember/ready"}, to_ms(o.timeout()));
      } catch (const std::exception&) {
        throw CommunicationError(cat(m.me(), ": rank 0 did not complete the rendezvous within ", o.timeout(),
                                     " s: not every rank of ", world, " joined"));
      }
      const std::string ready = bytes_to_string(m.store->get("ember/ready"));
      if (ready != "ok") throw CommunicationError(cat(m.me(), ": the rendezvous failed: ", ready));
    }
  } catch (const CommunicationError&) {
    throw;
  } catch (const std::exception& e) {
    throw CommunicationError(cat(m.me(), ": the rendezvous through ", m.master(), " failed: ", message_of(e)));
  }

  try {
    auto gopts = c10d::ProcessGroupGloo::Options::create(m.collective_timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(o.master_addr())) gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else gopts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", m.store);
    m.gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, static_cast<int>(rank), static_cast<int>(world), gopts);
  } catch (const std::exception& e) {
    m.fail("connecting to the other ranks (Gloo over TCP)", message_of(e));
  }
}

ProcessGroup::~ProcessGroup() = default;

int64_t ProcessGroup::rank() const { return impl_->options.rank(); }
int64_t ProcessGroup::world_size() const { return impl_->options.world_size(); }
const GroupOptions& ProcessGroup::options() const { return impl_->options; }

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    // One collective per tensor: Gloo reads several tensors of one call as one rank's copies.
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      works.push_back(impl_->gloo->allreduce(one));
    }
  } catch (const std::exception& e) {
    impl_->fail(what, message_of(e));
  }
  impl_->wait_all(works, what);
}

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors, const std::string& what) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      c10d::BroadcastOptions bo;
      bo.rootRank = 0;
      works.push_back(impl_->gloo->broadcast(one, bo));
    }
  } catch (const std::exception& e) {
    impl_->fail(what, message_of(e));
  }
  impl_->wait_all(works, what);
}

void ProcessGroup::broadcast_bytes(std::string& bytes, const std::string& what) {
  std::vector<torch::Tensor> size{torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kLong)};
  broadcast(size, what);
  const int64_t n = size[0].item<int64_t>();
  std::vector<torch::Tensor> data{torch::empty({n}, torch::kUInt8)};
  if (rank() == 0 && n > 0) std::memcpy(data[0].data_ptr<uint8_t>(), bytes.data(), static_cast<size_t>(n));
  if (n > 0) broadcast(data, what);
  if (rank() != 0) bytes.assign(reinterpret_cast<const char*>(data[0].data_ptr<uint8_t>()), static_cast<size_t>(n));
}

void ProcessGroup::barrier(const std::string& what) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    works.push_back(impl_->gloo->barrier());
  } catch (const std::exception& e) {
    impl_->fail(what, message_of(e));
  }
  impl_->wait_all(works, what);
}

std::vector<std::string> ProcessGroup::exchange(const std::string& key, const std::string& mine, const std::string& what) {
  std::vector<std::string> all(static_cast<size_t>(world_size()));
  try {
    impl_->store->set(cat("ember/exchange/", key, "/", rank()), string_to_bytes(mine));
    for (int64_t q = 0; q < world_size(); ++q) all[static_cast<size_t>(q)] = bytes_to_string(impl_->store->get(cat("ember/exchange/", key, "/", q)));
  } catch (const std::exception& e) {
    impl_->fail(what, message_of(e));
  }
  return all;
}

void ProcessGroup::report_failure(const std::string& reason) noexcept {
  try {
    impl_->store->set(cat("ember/failed/", rank()), string_to_bytes(reason));
  } catch (...) {
    // The store (rank 0) is gone: the other ranks find out by themselves.
  }
}

// ------------------------------------------------------------------ shards

std::pair<int64_t, int64_t> shard_range(int64_t n, int64_t rank, int64_t world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw ValueError(cat("shard_range: rank ", rank, " is not in a world of size ", world_size));
  if (n < 0) throw ValueError(cat("shard_range: negative size ", n));
  const int64_t base = n / world_size, extra = n % world_size;
  const int64_t begin = rank * base + std::min(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

torch::Tensor shard_rows(const torch::Tensor& rows, int64_t rank, int64_t world_size) {
  if (rows.dim() != 1) throw ShapeError(cat("shard_rows: expected a 1-D tensor of rows, got shape ", shape_str(rows.sizes())));
  const auto [begin, end] = shard_range(rows.size(0), rank, world_size);
  return rows.narrow(0, begin, end - begin);
}

ShardMessenger::ShardMessenger(std::string plate, int64_t local_size, int64_t global_size, int64_t world_size)
    : plate_(std::move(plate)), local_size_(local_size), global_size_(global_size), world_size_(world_size) {
  if (world_size < 1 || local_size < 0 || global_size < local_size || (global_size == 0 && world_size > 0 && local_size > 0))
    throw ValueError(cat("shard of plate '", plate_, "': local size ", local_size, ", global size ", global_size,
                         " and world size ", world_size, " do not fit (0 <= local <= global, world >= 1)"));
  enter();
}

ShardMessenger::~ShardMessenger() = default;

void ShardMessenger::process(Message& msg) {
  if (msg.type != SiteType::sample || msg.infer.is_subsample) return;
  for (const auto& frame : msg.cond_indep_stack) {
    if (frame.name != plate_ || frame.world) continue;
    if (frame.size != local_size_)
      throw ShapeError(cat("site '", msg.name, "': plate '", plate_, "' holds ", frame.size, " units, but this rank's shard of the ",
                           global_size_, " units of the global batch has ", local_size_));
    if (global_size_ == 0) return;
    const double w = static_cast<double>(world_size_);
    msg.scale *= frame.full_size == frame.size ? w : w * static_cast<double>(local_size_) / static_cast<double>(global_size_);
    return;
  }
}

// ------------------------------------------------------------------ data parallel

DataParallel::DataParallel(ProcessGroup& group, DataParallelOptions options) : group_(group), options_(options) {
  if (options_.bucket_bytes() < 1) throw ValueError(cat("DataParallel: bucket_bytes must be >= 1, got ", options_.bucket_bytes()));
}

infer::GradientHook DataParallel::hook() {
  return [this](const std::vector<std::string>& params, double loss) { return after_backward(params, loss); };
}

ShardMessenger DataParallel::shard_plate(const std::string& plate, int64_t local_size, int64_t global_size) const {
  return ShardMessenger(plate, local_size, global_size, group_.world_size());
}

namespace {

struct Slot {
  std::string name;
  torch::Tensor param;  // the store's unconstrained leaf
};

std::string signature(const Slot& s) {
  return cat(s.name, " ", shape_str(s.param.sizes()), " ", s.param.dtype(), " ", s.param.device());
}

// Which params differ between ranks, from each rank's sorted signature lines.
std::string describe_mismatch(const std::vector<std::string>& per_rank) {
  std::map<std::string, std::map<int64_t, std::string>> where;  // name -> rank -> "shape dtype device"
  for (size_t r = 0; r < per_rank.size(); ++r) {
    std::istringstream in(per_rank[r]);
    std::string line;
    while (std::getline(in, line)) {
      const auto space = line.find(' ');
      where[line.substr(0, space)][static_cast<int64_t>(r)] = space == std::string::npos ? "" : line.substr(space + 1);
    }
  }
  std::string out;
  for (const auto& [name, ranks] : where) {
    if (ranks.size() != per_rank.size()) {
      std::string on, off;
      for (size_t r = 0; r < per_rank.size(); ++r) {
        std::string& list = ranks.count(static_cast<int64_t>(r)) ? on : off;
        list += cat(list.empty() ? "" : ", ", r);
      }
      out += cat("; param '", name, "' exists on rank(s) ", on, " but not on rank(s) ", off);
      continue;
    }
    const std::string& first = ranks.begin()->second;
    for (const auto& [r, sig] : ranks)
      if (sig != first) {
        out += cat("; param '", name, "' is ", first, " on rank ", ranks.begin()->first, " but ", sig, " on rank ", r);
        break;
      }
  }
  return out;
}

}  // namespace

std::optional<double> DataParallel::after_backward(const std::vector<std::string>& params, double loss) {
  ParamStore& store = get_param_store();
  const int64_t world = group_.world_size();
  const int64_t step = stats_.steps + 1;
  std::vector<Slot> slots;
  for (const auto& n : params)
    if (store.contains(n)) slots.push_back({n, store.unconstrained(n)});
  std::vector<std::string> lines;
  for (const auto& s : slots) lines.push_back(signature(s));
  std::sort(lines.begin(), lines.end());
  std::string joined;
  for (const auto& l : lines) joined += l + "\n";

  torch::NoGradGuard no_grad;
  double seconds = 0;
  int64_t bytes = 0, calls = 0;
  auto reduce = [&](std::vector<torch::Tensor>& ts, const std::string& what) {
    const auto t0 = Clock::now();
    group_.all_reduce_sum(ts, what);
    seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    for (const auto& t : ts) bytes += static_cast<int64_t>(t.numel() * t.element_size());
    calls += static_cast<int64_t>(ts.size());
  };

  // 1. The loss and a fingerprint of the params touched, summed: two 20-bit parts h of the
  //    fingerprint and their squares; the sums equal world * h and world * h^2 only if every
  //    rank has the same h (exact in float64). Fixed size, so it cannot mismatch itself.
  const uint64_t h = fnv1a(joined);
  const double h1 = static_cast<double>(h & 0xFFFFF), h2 = static_cast<double>((h >> 20) & 0xFFFFF);
  std::vector<torch::Tensor> check{torch::tensor({loss, h1, h1 * h1, h2, h2 * h2}, torch::kDouble)};
  reduce(check, cat("the all-reduce of step ", step, "'s loss and param check"));
  const auto c = check[0].accessor<double, 1>();
  const double w = static_cast<double>(world);
  if (c[1] != w * h1 || c[2] != w * h1 * h1 || c[3] != w * h2 || c[4] != w * h2 * h2) {
    const auto all = group_.exchange(cat("params/", step), joined, cat("comparing step ", step, "'s params across ranks"));
    throw DataParallelError(cat("data-parallel step ", step, ": the ranks' params differ", describe_mismatch(all),
                         ". Every rank must create the same params (e.g. not a param created lazily on one rank only)"));
  }

  // 2. Params seen for the first time take rank 0's values; if any rank's differed, the
  //    gradients were computed at the wrong point and the step runs again.
  std::vector<size_t> fresh;
  for (size_t i = 0; i < slots.size(); ++i)
    if (!synced_.count(slots[i].name)) fresh.push_back(i);
  if (!fresh.empty()) {
    bool differs = false;
    std::map<std::pair<c10::ScalarType, std::string>, std::vector<size_t>> groups;
    for (size_t i : fresh) groups[{slots[i].param.scalar_type(), slots[i].param.device().str()}].push_back(i);
    for (const auto& [key, members] : groups) {
      std::vector<torch::Tensor> parts;
      for (size_t i : members) parts.push_back(slots[i].param.detach().reshape(-1).cpu());
      std::vector<torch::Tensor> flat{torch::cat(parts)};
      const torch::Tensor mine = flat[0].clone();
      group_.broadcast(flat, cat("the broadcast of rank 0's values of ", members.size(), " new param(s) in step ", step));
      if (!torch::equal(mine, flat[0])) differs = true;
      int64_t offset = 0;
      for (size_t i : members) {
        auto& p = slots[i].param;
        p.copy_(flat[0].narrow(0, offset, p.numel()).view_as(p));
        offset += p.numel();
      }
    }
    std::vector<torch::Tensor> any{torch::tensor({differs ? 1.0 : 0.0}, torch::kDouble)};
    reduce(any, cat("agreeing on step ", step, "'s new params"));
    for (size_t i : fresh) synced_.insert(slots[i].name);
    if (any[0].item<double>() > 0) {
      for (size_t i : fresh) slots[i].param.mutable_grad() = torch::Tensor();
      for (auto& s : slots)
        if (s.param.grad().defined()) s.param.mutable_grad().zero_();
      ++stats_.recomputed_steps;
      stats_.communication_seconds += seconds;
      return std::nullopt;
    }
  }

  // 3. Gradients, flattened into buckets per dtype and device; each bucket ends with one flag
  //    per param (1 where this rank has a gradient), so a param without a gradient on every
  //    rank keeps none, as it would in one process.
  std::map<std::pair<c10::ScalarType, std::string>, std::vector<size_t>> groups;
  for (size_t i = 0; i < slots.size(); ++i) groups[{slots[i].param.scalar_type(), slots[i].param.device().str()}].push_back(i);
  std::vector<std::vector<size_t>> buckets;
  for (const auto& [key, members] : groups) {
    buckets.emplace_back();
    int64_t filled = 0;
    for (size_t i : members) {
      const int64_t nbytes = slots[i].param.numel() * static_cast<int64_t>(slots[i].param.element_size());
      if (!buckets.back().empty() && filled + nbytes > options_.bucket_bytes()) {
        buckets.emplace_back();
        filled = 0;
      }
      buckets.back().push_back(i);
      filled += nbytes;
    }
  }
  std::vector<torch::Tensor> flats;
  for (const auto& members : buckets) {
    std::vector<torch::Tensor> parts;
    const auto& first = slots[members.front()].param;
    auto flags = torch::zeros({static_cast<int64_t>(members.size())}, first.options().device(torch::kCPU));
    for (size_t k = 0; k < members.size(); ++k) {
      const auto& p = slots[members[k]].param;
      if (p.grad().defined()) {
        parts.push_back(p.grad().reshape(-1).cpu());
        flags[static_cast<int64_t>(k)] = 1;
      } else {
        parts.push_back(torch::zeros({p.numel()}, first.options().device(torch::kCPU)));
      }
    }
    parts.push_back(flags);
    flats.push_back(torch::cat(parts));
  }
  reduce(flats, cat("the all-reduce of step ", step, "'s gradients (", flats.size(), " bucket(s))"));
  for (size_t b = 0; b < buckets.size(); ++b) {
    const auto& members = buckets[b];
    int64_t total = 0;
    for (size_t i : members) total += slots[i].param.numel();
    int64_t offset = 0;
    for (size_t k = 0; k < members.size(); ++k) {
      auto& p = slots[members[k]].param;
      const bool has_grad = flats[b][total + static_cast<int64_t>(k)].item<double>() > 0;
      if (has_grad) {
        auto g = flats[b].narrow(0, offset, p.numel()).view_as(p).div(w).to(p.device());
        if (p.grad().defined()) p.mutable_grad().copy_(g);
        else p.mutable_grad() = g;
      }
      offset += p.numel();
    }
  }

  ++stats_.steps;
  stats_.communication_seconds += seconds;
  stats_.bytes_all_reduced += bytes;
  stats_.all_reduce_calls += calls;
  stats_.last_step_buckets = static_cast<int64_t>(buckets.size());
  stats_.last_step_bytes = bytes;
  return c[0] / w;
}

DataParallel::ReceivedCheckpoint::~ReceivedCheckpoint() {
  if (temporary) {
    std::error_code ignored;  // a copy left in the temporary folder is harmless
    std::filesystem::remove(path, ignored);
  }
}

DataParallel::ReceivedCheckpoint DataParallel::receive_checkpoint(const std::string& path) {
  // Rank 0 sends the file's bytes, or, if it cannot read them, a marker every rank throws on.
  constexpr const char* kUnreadable = "!ember: rank 0 cannot read the checkpoint";
  std::string bytes;
  const bool root = group_.rank() == 0;
  if (root) {
    std::ifstream in(path, std::ios::binary);
    if (in.is_open()) bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    else bytes = kUnreadable;
  }
  group_.broadcast_bytes(bytes, cat("sending rank 0's checkpoint ", path));
  if (bytes == kUnreadable) throw IOError(cat("rank 0 cannot read the checkpoint '", path, "'"));
  ReceivedCheckpoint local;
  if (root) {
    local.path = path;
    return local;
  }
  local.path = (std::filesystem::temp_directory_path() / cat("ember-checkpoint-rank", group_.rank(), "-", ::getpid(), ".ember")).string();
  local.temporary = true;
  std::ofstream out(local.path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw IOError(cat("cannot write rank 0's checkpoint to '", local.path, "'"));
  return local;
}

void DataParallel::mark_store_synced() {
  for (const auto& n : get_param_store().names()) synced_.insert(n);
}

}  // namespace ember::distributed

// Drawing a model's DAG: DOT text, a text form, and PNG through Graphviz's library.
#include "viz/model_graph.h"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace ember::viz {

namespace {

// A DOT double-quoted string.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string plate_label(const ModelGraphPlate& p) { return cat(p.name, " (size ", p.size, ")"); }

// Plates nest as the program nests them: one cluster per distinct path of enclosing plates,
// so two plates that overlap without nesting still draw as a tree (as Pyro's __CLONE does).
struct Cluster {
  std::string plate;                        // "" for the root
  std::vector<std::string> path;            // enclosing plates, outermost first
  std::vector<const ModelGraphNode*> nodes;  // sites directly inside
  std::vector<std::unique_ptr<Cluster>> children;

  Cluster& child(const std::string& name) {
    for (auto& c : children)
      if (c->plate == name) return *c;
    auto c = std::make_unique<Cluster>();
    c->plate = name;
    c->path = path;
    c->path.push_back(name);
    children.push_back(std::move(c));
    return *children.back();
  }
};

std::string node_statement(const ModelGraphNode& n) {
  std::string style = n.is_deterministic ? "\"filled,dashed\"" : "filled";
  return cat(quoted(n.name), " [label=", quoted(n.name), " shape=ellipse style=", style,
             " fillcolor=", n.is_observed ? "gray" : "white", "]");
}

void emit(const Cluster& c, const ModelGraph& g, int depth, std::set<std::string>& ids, std::ostringstream& out) {
  const std::string indent(static_cast<size_t>(2 * depth), ' ');
  for (const auto* n : c.nodes) out << indent << node_statement(*n) << ";\n";
  for (const auto& child : c.children) {
    std::string id = "cluster";
    for (const auto& p : child->path) id += "_" + p;
    // Graphviz merges subgraphs of one name: keep ids unique even for odd plate names.
    const std::string base = id;
    for (int k = 2; ids.count(id); ++k) id = cat(base, "#", k);
    ids.insert(id);
    out << indent << "subgraph " << quoted(id) << " {\n";
    out << indent << "  label=" << quoted(plate_label(g.plate(child->plate))) << " labeljust=r labelloc=b;\n";
    emit(*child, g, depth + 1, ids, out);
    out << indent << "}\n";
  }
}

// Graphviz reports errors through a callback; collect them for the exception.
std::string& graphviz_messages() {
  static std::string messages;
  return messages;
}
int collect_graphviz_message(char* message) {
  graphviz_messages() += message;
  return 0;
}

}  // namespace

std::string model_graph_dot(const ModelGraph& graph, const RenderModelOptions& options) {
  Cluster root;
  for (const auto& n : graph.nodes) {
    Cluster* c = &root;
    for (const auto& p : n.plates) c = &c->child(p);
    c->nodes.push_back(&n);
  }
  std::ostringstream out;
  out << "digraph {\n";
  out << "  ordering=in;\n";  // parents left to right in program order
  std::set<std::string> cluster_ids;
  emit(root, graph, 1, cluster_ids, out);
  for (const auto& [parent, child] : graph.edges()) out << "  " << quoted(parent) << " -> " << quoted(child) << ";\n";
  if (options.render_distributions()) {
    std::string label;
    for (const auto& n : graph.nodes) label += cat(n.name, " ~ ", n.distribution, "\\l");
    // The label's \l escapes are DOT's left-justified line ends: write it unescaped.
    out << "  \"distribution_description_node\" [label=\"" << label << "\" shape=plaintext];\n";
  }
  out << "}\n";
  return out.str();
}

std::string model_graph_text(const ModelGraph& graph) {
  std::ostringstream out;
  if (!graph.plates.empty()) {
    out << "plates:\n";
    for (const auto& p : graph.plates) {
      out << "  " << plate_label(p) << (p.vectorized ? "" : ", sequential") << ":";
      std::string sep = " ";
      for (const auto& n : graph.nodes)
        if (std::find(n.plates.begin(), n.plates.end(), p.name) != n.plates.end()) {
          out << sep << n.name;
          sep = ", ";
        }
      out << "\n";
    }
  }
  out << "sites:\n";
  for (const auto& n : graph.nodes) {
    out << "  " << n.name << " ~ " << n.distribution;
    if (n.is_observed) out << " (observed)";
    if (n.is_deterministic) out << " (deterministic)";
    if (!n.parents.empty()) {
      out << " <-";
      std::string sep = " ";
      for (const auto& p : n.parents) {
        out << sep << p;
        sep = ", ";
      }
    }
    out << "\n";
  }
  return out.str();
}

void write_model_graph_dot(const ModelGraph& graph, const std::string& path, const RenderModelOptions& options) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw IOError(cat("write_model_graph_dot: cannot open '", path, "' for writing"));
  out << model_graph_dot(graph, options);
  out.close();
  if (!out) throw IOError(cat("write_model_graph_dot: writing '", path, "' failed"));
}

void write_model_graph_png(const ModelGraph& graph, const std::string& path, const RenderModelOptions& options) {
  const std::string dot = model_graph_dot(graph, options);
  // Graphviz keeps global state (error callback, plugin tables): one drawing at a time.
  static std::mutex graphviz_mutex;
  std::lock_guard<std::mutex> lock(graphviz_mutex);
  graphviz_messages().clear();
  agusererrf previous = agseterrf(collect_graphviz_message);
  struct Restore {
    agusererrf f;
    ~Restore() { agseterrf(f); }
  } restore{previous};

  std::unique_ptr<GVC_t, int (*)(GVC_t*)> gvc(gvContext(), gvFreeContext);
  if (!gvc) throw RuntimeError("write_model_graph_png: Graphviz's gvContext() failed");
  std::unique_ptr<Agraph_t, int (*)(Agraph_t*)> g(agmemread(dot.c_str()), agclose);
  if (!g) throw RuntimeError(cat("write_model_graph_png: Graphviz cannot parse the DOT text: ", graphviz_messages()));
  if (gvLayout(gvc.get(), g.get(), "dot") != 0)
    throw RuntimeError(cat("write_model_graph_png: Graphviz's dot layout failed: ", graphviz_messages()));
  const int rendered = gvRenderFilename(gvc.get(), g.get(), "png", path.c_str());
  gvFreeLayout(gvc.get(), g.get());
  if (rendered != 0)
    throw RuntimeError(cat("write_model_graph_png: Graphviz cannot render '", path, "' as PNG (", graphviz_messages(),
                           "); the PNG renderer plugin comes with Debian's libgvc6 (libgraphviz-dev)"));
  if (!std::filesystem::exists(path) || std::filesystem::file_size(path) == 0)
    throw IOError(cat("write_model_graph_png: Graphviz wrote nothing to '", path, "'"));
}

}  // namespace ember::viz

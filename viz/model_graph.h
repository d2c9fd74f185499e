#pragma once
/// \file Drawing a model's DAG (ppl/model_graph.h): Graphviz DOT, a text form, and PNG.
///
///     ModelGraph g = get_model_graph(model, data);
///     auto opts = viz::RenderModelOptions().render_distributions(true);
///     std::cout << viz::model_graph_text(g);
///     viz::write_model_graph_dot(g, "model.dot", opts);
///     viz::write_model_graph_png(g, "model.png", opts);
///
/// The drawing follows Pyro's `render_model`: one ellipse per sample site, observed sites
/// filled grey, an arrow from each parent, plates as boxes (Graphviz clusters) labelled with
/// the plate's name and size in the bottom right corner, nested as the program nests them.
/// Deterministic sites are dashed. PNGs are laid out and rendered in-process by Graphviz's
/// library (Debian: libgraphviz-dev; its plugins come with libgvc6).

#include <torch/arg.h>

#include <string>

#include "ppl/model_graph.h"

namespace ember::viz {

/// What the drawing shows.
struct RenderModelOptions {
  /// List each site's distribution ("x ~ Normal") beside the graph (Pyro's render_distributions).
  TORCH_ARG(bool, render_distributions) = false;
};

/// The graph as Graphviz DOT text.
std::string model_graph_dot(const ModelGraph& graph, const RenderModelOptions& options = {});

/// A plain text form: the plates with their sites, then one line per site
/// (`img ~ Bernoulli (observed) <- Z, digit, is_handwritten`).
std::string model_graph_text(const ModelGraph& graph);

/// Writes `model_graph_dot` to `path`; throws IOError if the file cannot be written.
void write_model_graph_dot(const ModelGraph& graph, const std::string& path, const RenderModelOptions& options = {});

/// Lays the graph out with Graphviz's dot and writes a PNG to `path`; throws RuntimeError
/// with Graphviz's message if the layout or the PNG renderer fails.
void write_model_graph_png(const ModelGraph& graph, const std::string& path, const RenderModelOptions& options = {});

}  // namespace ember::viz

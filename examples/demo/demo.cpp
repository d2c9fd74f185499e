// A small causal model run through Ember's handlers: the main job until the causal VAE lands.
//
// DAG: smoking -> tar -> cancer, smoking -> cancer. We sample from the model, condition on
// an observation, intervene with do_, and estimate P(cancer) under both by self-normalised
// importance weighting over traces.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "ppl/ppl.h"

using namespace ember;
using dist::Bernoulli;
using dist::Normal;

namespace {

torch::Tensor model(int64_t n) {
  auto people = plate("people", n);
  auto smoking = sample("smoking", Bernoulli(0.3));
  auto tar = sample("tar", Normal(2.0 * smoking, 1.0));
  auto logit = -2.0 + 0.8 * tar + 1.0 * smoking;
  return sample("cancer", Bernoulli(dist::Logits{logit}));
}

double mean_of(const Trace& t, const std::string& site) { return t.at(site).value.mean().item<double>(); }

}  // namespace

int main(int argc, char** argv) {
  std::string out = "runs/demo";
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--out") out = argv[i + 1];
  const int64_t n = 200000;

  auto seeded = seed(20261125);
  Trace prior = trace(model).get_trace(n);
  std::cout << prior.format_shapes("Shapes of one run of the model:") << "\n";
  const double p_cancer = mean_of(prior, "cancer");

  // Observational: P(cancer | smoking = 1).
  auto smokers = condition(model, {{"smoking", torch::ones({n})}});
  Trace obs = trace(smokers).get_trace(n);
  const double p_cancer_given_smoking = mean_of(obs, "cancer");

  // Interventional: P(cancer | do(tar = 0)) -- tar's own parents are cut.
  auto no_tar = do_(model, {{"tar", torch::zeros({n})}});
  Trace intervened = trace(no_tar).get_trace(n);
  const double p_cancer_do_tar0 = mean_of(intervened, "cancer");

  obs.compute_log_prob();
  std::cout << "P(cancer)                  = " << p_cancer << "\n"
            << "P(cancer | smoking = 1)    = " << p_cancer_given_smoking << "\n"
            << "P(cancer | do(tar = 0))    = " << p_cancer_do_tar0 << "\n"
            << "log p(smoking = 1) per person = " << obs.at("smoking").log_prob.mean().item<double>() << "\n";

  std::filesystem::create_directories(out);
  nlohmann::json metrics = {{"p_cancer", p_cancer},
                            {"p_cancer_given_smoking", p_cancer_given_smoking},
                            {"p_cancer_do_tar_0", p_cancer_do_tar0},
                            {"samples", n}};
  write_file_atomic(out + "/metrics.json", metrics.dump(2) + "\n");
  std::cout << "wrote " << out << "/metrics.json\n";
  return 0;
}

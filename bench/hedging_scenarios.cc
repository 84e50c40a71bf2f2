#include "hedging_scenarios.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace crucible::bench {
namespace {

Component lognormal(double weight, double median, double sigma, double offset = 0) {
  return Component{weight, "lognormal", median, sigma, offset};
}
Component pareto(double weight, double xm, double alpha) { return Component{weight, "pareto", xm, alpha, 0}; }
Component uniform(double weight, double lo, double hi, double offset = 0) {
  return Component{weight, "uniform", lo, hi, offset};
}

Scenario iid(std::string id, std::string description, std::vector<Component> c, size_t n) {
  Scenario s;
  s.id = std::move(id);
  s.description = std::move(description);
  s.components = std::move(c);
  s.requests = n;
  return s;
}

}  // namespace

Json Scenario::to_json() const {
  Json comps = Json::array();
  for (const Component& c : components) {
    comps.push_back({{"weight", c.weight}, {"type", c.type}, {"a", c.a}, {"b", c.b}, {"offset", c.offset}});
  }
  return Json{{"id", id},
              {"description", description},
              {"kind", kind},
              {"components", comps},
              {"straggler_p", straggler_p},
              {"straggler_factor", straggler_factor},
              {"requests", requests},
              {"max_hedges", max_hedges},
              {"load", load},
              {"correlated", correlated},
              {"score", score}};
}

namespace {

// Independent latency draws: stragglers, heavy tails, provider-like bodies, sizes, drift, bursts.
void add_latency_scenarios(std::vector<Scenario>& out, size_t n) {
  out.push_back(iid("control", "lognormal median 10 ms, sigma 0.25: nothing to gain", {lognormal(1, 10, 0.25)}, n));
  Scenario s10 = iid("strag10", "control with 1% of attempts x10 (GC, compaction)", {lognormal(1, 10, 0.25)}, n);
  s10.straggler_p = 0.01;
  s10.straggler_factor = 10;
  out.push_back(s10);
  Scenario s30 = s10;
  s30.id = "strag30";
  s30.description = "control with 1% of attempts x30";
  s30.straggler_factor = 30;
  out.push_back(s30);
  Scenario par = iid("pareto", "98% lognormal(10, 0.5) + 2% Pareto(50 ms, 1.5): a log-convex tail",
                     {lognormal(0.98, 10, 0.5), pareto(0.02, 50, 1.5)}, n);
  par.score = "p99";
  out.push_back(par);
  Scenario grpc =
      iid("grpcex", "grpc-java's example: 84% U(0,1) ms, 10% +2 s, 5% +5 s, 1% +10 s; 3 attempts",
          {uniform(0.84, 0, 1), uniform(0.10, 0, 1, 2000), uniform(0.05, 0, 1, 5000), uniform(0.01, 0, 1, 10000)}, n);
  grpc.max_hedges = 2;
  grpc.score = "p99";
  out.push_back(grpc);
  out.push_back(
      iid("llm-light", "lognormal median 0.23 s, sigma 0.3 (a steady provider's TTFT)", {lognormal(1, 230, 0.3)}, n));
  Scenario heavy = iid("llm-heavy", "87% lognormal(1.15 s, 0.4) + 13% lognormal(20 s, 0.8) (a bimodal provider)",
                       {lognormal(0.87, 1150, 0.4), lognormal(0.13, 20000, 0.8)}, n);
  heavy.score = "p99";
  out.push_back(heavy);
}

void add_changing_scenarios(std::vector<Scenario>& out, size_t n) {
  Scenario size =
      iid("size", "known sizes: lognormal sigma 1 around 10 ms, x e^N(0,0.2), 1% x10", {lognormal(1, 10, 1.0)}, n);
  size.kind = "size";
  size.straggler_p = 0.01;
  size.straggler_factor = 10;
  out.push_back(size);
  Scenario drift =
      iid("drift", "pareto, then every latency x3 from half-way", {lognormal(0.98, 10, 0.5), pareto(0.02, 50, 1.5)}, n);
  drift.score = "p99";
  drift.drift_at = 0.5;
  drift.drift_factor = 3;
  out.push_back(drift);
  Scenario burst = iid("burst", "strag10 plus 10% of 1 s windows where every attempt is x10 (correlated)",
                       {lognormal(1, 10, 0.25)}, n);
  burst.straggler_p = 0.01;
  burst.straggler_factor = 10;
  burst.burst_fraction = 0.1;
  burst.burst_factor = 10;
  out.push_back(burst);
}

// FIFO servers under load, with independent or correlated copies.
void add_queue_scenarios(std::vector<Scenario>& out, size_t n) {
  for (bool corr : {false, true}) {
    for (double rho : {0.5, 0.8, 0.95}) {
      Scenario q = iid(std::string(corr ? "queue-corr-" : "queue-iid-") + std::to_string(static_cast<int>(rho * 100)),
                       std::string("10 FIFO servers at load ") + std::to_string(rho).substr(0, 4) +
                           (corr ? ", copies share the job's size" : ", independent copies"),
                       {lognormal(1, 10, 0.25)}, n);
      q.kind = "queue";
      q.straggler_p = 0.01;
      q.straggler_factor = 10;
      q.load = rho;
      q.correlated = corr;
      q.score = "p99";
      out.push_back(q);
    }
  }
}

}  // namespace

std::vector<Scenario> builtin_scenarios(bool quick) {
  std::vector<Scenario> out;
  add_latency_scenarios(out, quick ? 40'000 : 200'000);
  add_changing_scenarios(out, quick ? 40'000 : 200'000);
  add_queue_scenarios(out, quick ? 20'000 : 100'000);
  return out;
}

double sample_component(const Scenario& s, double u_pick, double u1, double u2) {
  double total = 0;
  for (const Component& c : s.components) total += c.weight;
  double pick = u_pick * total;
  const Component* chosen = &s.components.back();
  for (const Component& c : s.components) {
    if (pick < c.weight) {
      chosen = &c;
      break;
    }
    pick -= c.weight;
  }
  const Component& c = *chosen;
  double x;
  if (c.type == "lognormal") {
    double z = std::sqrt(-2 * std::log(std::max(u1, 1e-300))) * std::cos(6.283185307179586 * u2);
    x = c.a * std::exp(c.b * z);
  } else if (c.type == "pareto") {
    x = c.a / std::pow(std::max(u1, 1e-300), 1.0 / c.b);
  } else {
    x = c.a + (c.b - c.a) * u1;
  }
  return x + c.offset;
}

namespace {

Result<Component> component_from_json(const Json& c, const std::string& where) {
  std::string type = c.value("type", "");
  Component comp;
  comp.weight = c.value("weight", 1.0);
  comp.type = type;
  comp.offset = c.value("offset", 0.0);
  if (type == "lognormal") {
    comp.a = c.value("median", 0.0);
    comp.b = c.value("sigma", 0.0);
  } else if (type == "pareto") {
    comp.a = c.value("xm", 0.0);
    comp.b = c.value("alpha", 0.0);
  } else if (type == "uniform") {
    comp.a = c.value("lo", 0.0);
    comp.b = c.value("hi", 0.0);
  } else {
    return make_error(ErrorCode::kInvalidArgument,
                      where + ".components: unknown type '" + type + "'; expected lognormal, pareto or uniform");
  }
  if (comp.weight <= 0 || (type != "uniform" && comp.a <= 0) || (type != "uniform" && comp.b <= 0)) {
    return make_error(ErrorCode::kInvalidArgument, where + ".components: weights and parameters must be positive");
  }
  return comp;
}

void read_shape(const Json& j, Scenario& s) {
  s.straggler_p = j.value("straggler_p", 0.0);
  s.straggler_factor = j.value("straggler_factor", 1.0);
  s.requests = j.value("requests", size_t{100'000});
  s.max_hedges = j.value("max_hedges", 1);
  s.drift_at = j.value("drift_at", -1.0);
  s.drift_factor = j.value("drift_factor", 1.0);
  s.burst_fraction = j.value("burst_fraction", 0.0);
  s.burst_factor = j.value("burst_factor", 1.0);
  s.servers = j.value("servers", 10);
  s.load = j.value("load", 0.0);
  s.correlated = j.value("correlated", false);
  s.score = j.value("score", "p99.9");
}

Status check_shape(const Scenario& s, const std::string& where) {
  if (s.requests < 1000 || s.requests > 5'000'000) {
    return make_error(ErrorCode::kInvalidArgument, where + ".requests: expected 1,000 to 5,000,000");
  }
  if (s.max_hedges < 1 || s.max_hedges > 4) {
    return make_error(ErrorCode::kInvalidArgument, where + ".max_hedges: expected 1 to 4");
  }
  if (s.kind == "queue" && (s.load <= 0 || s.load >= 1)) {
    return make_error(ErrorCode::kInvalidArgument, where + ".load: a queue scenario needs a load in (0, 1)");
  }
  if (s.score != "p99" && s.score != "p99.9") {
    return make_error(ErrorCode::kInvalidArgument, where + ".score: p99 or p99.9");
  }
  return {};
}

Result<Scenario> scenario_from_json(const Json& j, std::string where) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
    return make_error(ErrorCode::kInvalidArgument, where + ": needs a string \"id\"");
  }
  Scenario s;
  s.id = j["id"];
  where += " '" + s.id + "'";
  s.description = j.value("description", "");
  s.kind = j.value("kind", "iid");
  if (s.kind != "iid" && s.kind != "size" && s.kind != "queue") {
    return make_error(ErrorCode::kInvalidArgument, where + ".kind: expected iid, size or queue, got '" + s.kind + "'");
  }
  if (!j.contains("components") || !j["components"].is_array() || j["components"].empty()) {
    return make_error(ErrorCode::kInvalidArgument, where + ": needs a non-empty \"components\" list");
  }
  for (const Json& c : j["components"]) {
    CRUCIBLE_ASSIGN_OR_RETURN(Component comp, component_from_json(c, where));
    s.components.push_back(comp);
  }
  read_shape(j, s);
  CRUCIBLE_RETURN_IF_ERROR(check_shape(s, where));
  return s;
}

}  // namespace

Result<std::vector<Scenario>> load_scenarios(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot read scenario file '" + path + "'");
  std::stringstream buf;
  buf << in.rdbuf();
  auto doc = parse_json(buf.str());
  if (!doc) return make_error(ErrorCode::kInvalidArgument, path + ": " + doc.error().message());
  if (!doc->is_object() || !doc->contains("scenarios") || !(*doc)["scenarios"].is_array()) {
    return make_error(ErrorCode::kInvalidArgument, path + ": expected {\"scenarios\": [...]}");
  }
  std::vector<Scenario> out;
  size_t i = 0;
  for (const Json& j : (*doc)["scenarios"]) {
    CRUCIBLE_ASSIGN_OR_RETURN(Scenario s, scenario_from_json(j, path + ": scenarios[" + std::to_string(i++) + "]"));
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace crucible::bench

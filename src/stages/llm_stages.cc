#include "crucible/stages/llm_stages.h"

#include <cstdio>
#include <mutex>
#include <set>

#include "crucible/llm/models.h"
#include "crucible/workflow/expression.h"

namespace crucible {
namespace {

std::vector<OptionSpec> model_options() {
  return {option_spec("model", "string", true, "a name from the pipeline's models: section"),
          option_spec("max_tokens", "integer", false, "most tokens to generate", 1024),
          option_spec("temperature", "number", false, "sampling temperature (0-2)"),
          option_spec("system", "string", false, "system prompt; ${...} allowed")};
}

// Prints each offline notice once per process.
void notice_once(const std::string& text) {
  static std::mutex mu;
  static std::set<std::string> shown;
  std::lock_guard lock(mu);
  if (shown.insert(text).second) std::fprintf(stderr, "notice: %s\n", text.c_str());
}

struct Call {
  llm::Completion completion;
  bool offline = false;
};

Result<Call> call_model(ModelRegistry& models_registry, Context& ctx, const StageOptions& o, std::string system,
                        std::string prompt, std::stop_token stop) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto name, o.string("model"));
  if (ctx.services() == nullptr) {
    return make_error(ErrorCode::kFailedPrecondition, "llm stages call the models of a pipeline: run them in one");
  }
  const Json& models = ctx.services()->models();
  if (!models.is_object() || !models.contains(name)) {
    std::string known;
    if (models.is_object()) {
      for (const auto& [k, _] : models.items()) known += (known.empty() ? "" : ", ") + k;
    }
    return make_error(ErrorCode::kInvalidArgument, "option 'model': no model '" + name +
                                                       "' in the pipeline's models: section" +
                                                       (known.empty() ? " (it has none)" : " (it has: " + known + ")"));
  }
  auto config = render_templates(models[name], ctx);
  if (!config) return make_error(config.error().with_context("models." + name));
  std::string blob_dir =
      ctx.services()->blob_dir().empty() ? std::string(".crucible/blobs") : ctx.services()->blob_dir();
  CRUCIBLE_ASSIGN_OR_RETURN(auto handle, models_registry.resolve(name, *config, blob_dir));
  if (!handle.notice.empty()) notice_once(handle.notice);

  llm::RequestBuilder b;
  b.model(config->value("model", std::string("scripted"))).user(std::move(prompt));
  if (o.has("system")) system = o.string_or("system", system);
  if (!system.empty()) b.system(std::move(system));
  b.max_tokens(static_cast<int>(o.integer_or("max_tokens", 1024)));
  if (o.has("temperature")) b.temperature(o.number_or("temperature", 1.0));
  if (const Json* stops = o.get("stop"); stops != nullptr && stops->is_array()) {
    for (const Json& s : *stops) {
      if (s.is_string()) b.stop(s.get<std::string>());
    }
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto request, b.build());
  auto completion = o.boolean_or("stream", false) ? handle.provider->stream(request, nullptr, stop)
                                                  : handle.provider->complete(request, stop);
  if (!completion) return make_error(completion.error().with_context("model '" + name + "'"));
  return Call{std::move(*completion), handle.offline};
}

void record_usage(Context& ctx, const std::string& stage, const Call& call) {
  const llm::Usage& u = call.completion.usage;
  ctx.put_metric(stage + ".input_tokens", u.input_tokens);
  ctx.put_metric(stage + ".output_tokens", u.output_tokens);
  ctx.put_metric(stage + ".llm_tokens_used", u.total());
  const Json* total = ctx.get_metric("llm_tokens_used");
  ctx.put_metric("llm_tokens_used",
                 (total != nullptr && total->is_number_integer() ? total->get<int64_t>() : 0) + u.total());
  ctx.put_metric(stage + ".latency_ms", static_cast<double>(call.completion.latency.count()) / 1000.0);
  if (call.completion.cached) ctx.put_metric(stage + ".cached", true);
  if (call.offline) ctx.put_metric(stage + ".offline", true);
}

std::string stage_name(const Context& ctx, const char* fallback) {
  return ctx.current_stage().empty() ? std::string(fallback) : ctx.current_stage();
}

std::string text_of(const Json* v) {
  if (v == nullptr || v->is_null()) return "";
  return v->is_string() ? v->get<std::string>() : json_dump(*v);
}

// llm.complete ----------------------------------------------------------------------------------

// A stage that calls models through the registry the composition root handed in.
class ModelStage : public Stage {
 public:
  explicit ModelStage(std::shared_ptr<ModelRegistry> models) : models_(std::move(models)) {}

 protected:
  std::shared_ptr<ModelRegistry> models_;
};

class CompleteStage : public ModelStage {
 public:
  using ModelStage::ModelStage;

  StageDescription describe() const override {
    StageDescription d;
    d.name = "llm.complete";
    d.summary = "sends a prompt to a model and stores the answer as an artifact";
    d.options = model_options();
    d.options.push_back(option_spec("prompt", "string", true, "the prompt; ${...} allowed"));
    d.options.push_back(option_spec("output", "string", false, "artifact key for the text (default: the stage name)"));
    d.options.push_back(option_spec("stop", "array", false, "stop sequences"));
    d.options.push_back(option_spec("stream", "boolean", false, "receive the answer as a stream", false));
    d.outputs = {"artifact <output>: the text", "metrics <stage>.input_tokens, .output_tokens, .llm_tokens_used",
                 "metric llm_tokens_used (run total)"};
    d.idempotent = true;
    return d;
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    CRUCIBLE_ASSIGN_OR_RETURN(auto prompt, o.string("prompt"));
    CRUCIBLE_ASSIGN_OR_RETURN(auto call, call_model(*models_, ctx, o, "", prompt, stop));
    const std::string stage = stage_name(ctx, "llm.complete");
    ctx.put_artifact(o.string_or("output", stage), call.completion.content);
    record_usage(ctx, stage, call);
    return {};
  }
};

// llm.critique ----------------------------------------------------------------------------------

const char* kCritiqueSystem =
    "You review drafts against criteria. Reply with one JSON object and nothing else: "
    "{\"decision\": \"pass\" or \"revise\", \"critique\": \"what works and what does not\", "
    "\"feedback\": \"the concrete changes to make; empty when passing\"}.";

class CritiqueStage : public ModelStage {
 public:
  using ModelStage::ModelStage;

  StageDescription describe() const override {
    StageDescription d;
    d.name = "llm.critique";
    d.summary = "asks a model for a JSON verdict on a draft: pass or revise, with critique and feedback";
    d.options = model_options();
    d.options.push_back(option_spec("draft", "string", false, "the text to review (default: artifact draft)"));
    d.options.push_back(
        option_spec("criteria", "string", false, "what a good draft does", "clear, correct and complete"));
    d.options.push_back(option_spec("into", "string", false, "state key for the verdict", "critique"));
    d.options.push_back(option_spec("history", "string", false, "state key of the list of every verdict", "critiques"));
    d.outputs = {"state <into>: {decision, critique, feedback}", "state <history>: every verdict",
                 "metric <stage>.passed", "token metrics as llm.complete"};
    return d;
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    std::string draft = o.has("draft") ? o.string_or("draft", "") : text_of(ctx.get_artifact("draft"));
    if (draft.empty()) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "nothing to critique: option 'draft' is empty and there is no artifact 'draft'");
    }
    std::string prompt = "CRITIQUE the draft against the criteria.\n\nCriteria: " +
                         o.string_or("criteria", "clear, correct and complete") + "\n\nDraft:\n" + draft;
    CRUCIBLE_ASSIGN_OR_RETURN(auto call, call_model(*models_, ctx, o, kCritiqueSystem, prompt, stop));
    const std::string stage = stage_name(ctx, "llm.critique");
    record_usage(ctx, stage, call);
    CRUCIBLE_ASSIGN_OR_RETURN(auto verdict, parse_critique(call.completion.content));
    const std::string into = o.string_or("into", "critique"), history = o.string_or("history", "critiques");
    const Json* previous = ctx.get(history);
    Json all = previous != nullptr && previous->is_array() ? *previous : Json::array();
    all.push_back(verdict);
    ctx.assign(history, std::move(all));
    ctx.put_metric(stage + ".passed", verdict["decision"] == "pass");
    ctx.assign(into, std::move(verdict));
    return {};
  }
};

// llm.revise ------------------------------------------------------------------------------------

class ReviseStage : public ModelStage {
 public:
  using ModelStage::ModelStage;

  StageDescription describe() const override {
    StageDescription d;
    d.name = "llm.revise";
    d.summary = "rewrites a draft from feedback; fails once max_revisions revisions have been made";
    d.options = model_options();
    d.options.push_back(option_spec("draft", "string", false, "the text to revise (default: artifact draft)"));
    d.options.push_back(option_spec("feedback", "string", false, "what to change (default: state critique.feedback)"));
    d.options.push_back(option_spec("output", "string", false, "artifact key for the revised text", "draft"));
    d.options.push_back(option_spec("max_revisions", "integer", false, "revisions allowed before the run fails", 3));
    d.options.push_back(option_spec("counter", "string", false, "state key counting revisions", "revisions"));
    d.outputs = {"artifact <output>: the revised text", "state <counter>: revisions made",
                 "token metrics as llm.complete"};
    return d;
  }

  Status run(Context& ctx, const StageOptions& o, std::stop_token stop) override {
    const std::string counter = o.string_or("counter", "revisions");
    const int64_t max = o.integer_or("max_revisions", 3);
    const Json* done_json = ctx.get(counter);
    const int64_t done = done_json != nullptr && done_json->is_number_integer() ? done_json->get<int64_t>() : 0;
    std::string feedback = o.has("feedback") ? o.string_or("feedback", "") : "";
    if (!o.has("feedback")) {
      const Json* critique = ctx.get("critique");
      if (critique != nullptr && critique->is_object()) feedback = critique->value("feedback", "");
    }
    if (done >= max) {
      return make_error(ErrorCode::kOutOfRange,
                        "max_revisions (" + std::to_string(max) +
                            ") reached and the draft still needs "
                            "revising" +
                            (feedback.empty() ? std::string() : "; last feedback: " + feedback));
    }
    std::string draft = o.has("draft") ? o.string_or("draft", "") : text_of(ctx.get_artifact("draft"));
    if (draft.empty()) {
      return make_error(ErrorCode::kFailedPrecondition,
                        "nothing to revise: option 'draft' is empty and there is no artifact 'draft'");
    }
    std::string prompt = "REVISE the draft below using the feedback. Reply with the revised text only.\n\nFeedback:\n" +
                         (feedback.empty() ? std::string("(none given: improve it)") : feedback) + "\n\nDraft:\n" +
                         draft;
    CRUCIBLE_ASSIGN_OR_RETURN(
        auto call, call_model(*models_, ctx, o, "You revise drafts. Reply with the revised text only.", prompt, stop));
    const std::string stage = stage_name(ctx, "llm.revise");
    ctx.put_artifact(o.string_or("output", "draft"), call.completion.content);
    ctx.assign(counter, done + 1);
    record_usage(ctx, stage, call);
    return {};
  }
};

}  // namespace

std::optional<Json> first_json_object(std::string_view text) {
  for (size_t start = text.find('{'); start != std::string_view::npos; start = text.find('{', start + 1)) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = start; i < text.size(); ++i) {
      char c = text[i];
      if (in_string) {
        if (escaped)
          escaped = false;
        else if (c == '\\')
          escaped = true;
        else if (c == '"')
          in_string = false;
        continue;
      }
      if (c == '"')
        in_string = true;
      else if (c == '{')
        ++depth;
      else if (c == '}' && --depth == 0) {
        Json j = parse_json_or_discarded(text.substr(start, i - start + 1));
        if (j.is_object()) return j;
        break;
      }
    }
  }
  return std::nullopt;
}

Result<Json> parse_critique(std::string_view reply) {
  auto fail = [&](const std::string& why) {
    std::string raw(reply.substr(0, 2000));
    if (reply.size() > 2000) raw += "...";
    return make_error(ErrorCode::kInvalidArgument,
                      "the critique reply is not a valid verdict: " + why + "; raw reply: " + raw);
  };
  auto j = first_json_object(reply);
  if (!j) return fail("it contains no JSON object");
  const Json& d = j->value("decision", Json());
  if (!d.is_string() || (d != "pass" && d != "revise")) return fail("'decision' must be \"pass\" or \"revise\"");
  if (!j->contains("critique") || !(*j)["critique"].is_string()) return fail("'critique' must be text");
  const Json& f = j->value("feedback", Json(""));
  if (!f.is_string()) return fail("'feedback' must be text");
  if (d == "revise" && f.get<std::string>().empty()) return fail("a 'revise' decision needs 'feedback'");
  return Json{{"decision", d}, {"critique", (*j)["critique"]}, {"feedback", f}};
}

Status register_llm_stages(StageRegistry& r, std::shared_ptr<ModelRegistry> models) {
  CRUCIBLE_RETURN_IF_ERROR(
      r.register_stage("llm.complete", [models] { return std::make_unique<CompleteStage>(models); }));
  CRUCIBLE_RETURN_IF_ERROR(
      r.register_stage("llm.critique", [models] { return std::make_unique<CritiqueStage>(models); }));
  CRUCIBLE_RETURN_IF_ERROR(r.register_stage("llm.revise", [models] { return std::make_unique<ReviseStage>(models); }));
  return {};
}

}  // namespace crucible

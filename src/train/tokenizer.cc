#include "crucible/train/tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>

#include "spm_api.h"

namespace crucible::train {

namespace {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (char c : text) ids.push_back(static_cast<unsigned char>(c));
    return ids;
  }
  Result<std::string> decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == kEos) break;
      if (ids[i] < 0 || ids[i] > 255) {
        return make_error(ErrorCode::kInvalidArgument, "token " + std::to_string(ids[i]) + " at position " +
                                                           std::to_string(i) +
                                                           " is not a byte (0-255) or the end (256)");
      }
      out.push_back(static_cast<char>(ids[i]));
    }
    return out;
  }
  int vocab_size() const override { return 257; }
  int32_t eos_id() const override { return kEos; }
  std::string name() const override { return "bytes"; }

 private:
  static constexpr int32_t kEos = 256;
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// Sanitizer builds, where coverage is counted, never reach the plug-in; the plain build tests it.
// GCOVR_EXCL_START
// The plug-in, loaded once; CRUCIBLE_SPM_PLUGIN in the environment overrides where it is.
Result<const internal::SpmApi*> spm_api() {
  static const Result<const internal::SpmApi*> api = []() -> Result<const internal::SpmApi*> {
    if (kSanitized) {
      return make_error(ErrorCode::kUnavailable,
                        "SentencePiece is not available in a sanitizer build: its plug-in loads with "
                        "RTLD_DEEPBIND, which the sanitizers refuse");
    }
    const char* env = std::getenv("CRUCIBLE_SPM_PLUGIN");
    const std::string path = env && *env ? env : CRUCIBLE_SPM_PLUGIN;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!handle) {
      return make_error(ErrorCode::kUnavailable, "cannot load the SentencePiece plug-in: " + std::string(dlerror()));
    }
    auto entry = reinterpret_cast<const internal::SpmApi* (*)()>(dlsym(handle, "crucible_spm_api"));
    if (!entry) return make_error(ErrorCode::kUnavailable, "'" + path + "' is not the SentencePiece plug-in");
    return entry();
  }();
  return api;
}

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const internal::SpmApi* api, void* model, std::string path)
      : api_(api), model_(model), path_(std::move(path)), vocab_(api->vocab_size(model)), eos_(api->eos_id(model)) {}
  ~SentencePieceTokenizer() override { api_->close(model_); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    api_->encode(model_, text, &ids);
    return {ids.begin(), ids.end()};
  }
  Result<std::string> decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> in;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] == eos_) break;
      if (ids[i] < 0 || ids[i] >= vocab_) {
        return make_error(ErrorCode::kInvalidArgument, "token " + std::to_string(ids[i]) + " at position " +
                                                           std::to_string(i) + " is outside the vocabulary of " +
                                                           std::to_string(vocab_));
      }
      in.push_back(ids[i]);
    }
    std::string out, error;
    if (!api_->decode(model_, in, &out, &error)) {
      return make_error(ErrorCode::kInvalidArgument, "cannot decode: " + error);
    }
    return out;
  }
  int vocab_size() const override { return vocab_; }
  int32_t eos_id() const override { return eos_; }
  std::string name() const override { return "sentencepiece:" + path_; }

 private:
  const internal::SpmApi* api_;
  void* model_;
  std::string path_;
  int vocab_;
  int32_t eos_;
};

// GCOVR_EXCL_STOP

}  // namespace

std::unique_ptr<Tokenizer> byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

// GCOVR_EXCL_START
Result<std::unique_ptr<Tokenizer>> open_sentencepiece(const std::string& model_path) {
  CRUCIBLE_ASSIGN_OR_RETURN(const internal::SpmApi* api, spm_api());
  std::string error;
  void* model = api->open(model_path, &error);
  if (!model) {
    return make_error(ErrorCode::kInvalidArgument,
                      "tokenizer '" + model_path + "' is not a SentencePiece model: " + error);
  }
  return std::unique_ptr<Tokenizer>(std::make_unique<SentencePieceTokenizer>(api, model, model_path));
}

Status train_sentencepiece(const std::string& text, const std::string& prefix, int vocab_size,
                           const std::string& model_type) {
  CRUCIBLE_ASSIGN_OR_RETURN(const internal::SpmApi* api, spm_api());
  std::string error;
  if (!api->train(text, prefix, vocab_size, model_type, &error)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "training a SentencePiece model at '" + prefix + ".model' failed: " + error);
  }
  return {};
}

// GCOVR_EXCL_STOP

Result<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& spec) {
  if (spec.empty() || spec == "bytes") return byte_tokenizer();
  return open_sentencepiece(spec);
}

}  // namespace crucible::train

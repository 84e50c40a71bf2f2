// The SentencePiece plug-in's interface. Debian's libsentencepiece embeds its own protobuf, which
// clashes with the one libtorch loads, so the tokenizer reaches SentencePiece through a plug-in
// loaded apart (RTLD_LOCAL | RTLD_DEEPBIND): the plug-in and its library bind to their own copy.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace crucible::train::internal {

struct SpmApi {
  void* (*open)(const std::string& path, std::string* error);  // nullptr and *error on failure
  void (*close)(void* model);
  void (*encode)(void* model, std::string_view text, std::vector<int>* ids);
  bool (*decode)(void* model, const std::vector<int>& ids, std::string* text, std::string* error);
  int (*vocab_size)(void* model);
  int (*eos_id)(void* model);
  bool (*train)(const std::string& text, const std::string& prefix, int vocab_size, const std::string& model_type,
                std::string* error);
};

}  // namespace crucible::train::internal

extern "C" const crucible::train::internal::SpmApi* crucible_spm_api();

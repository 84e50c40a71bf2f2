// API keys: random secrets shown once, stored only as a BLAKE2b hash in the journal's shared
// state (so every server sharing a journal knows them), verified in constant time. A key reads
// crucible_<id>_<secret>: the id is public (it names the key in lists and logs), the secret is 32
// random bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crucible/core/clock.h"
#include "crucible/core/error.h"
#include "crucible/core/json.h"
#include "crucible/journal/journal.h"

namespace crucible::server {

// Each scope includes the ones below it: admin > write > read.
enum class KeyScope { kRead = 1, kWrite = 2, kAdmin = 3 };
std::string_view key_scope_name(KeyScope scope);
std::optional<KeyScope> parse_key_scope(std::string_view name);

struct ApiKeyInfo {
  std::string id;  // 12 hex digits, public
  std::string name;
  KeyScope scope = KeyScope::kRead;
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;  // 0: live
  bool revoked() const { return revoked_ms != 0; }
  // {"id","name","scope","created_ms","revoked_ms"}: never the hash.
  Json to_json() const;
};

struct NewApiKey {
  ApiKeyInfo info;
  std::string key;  // the whole key; it exists only here
};

// Thread-safe.
class ApiKeyStore {
 public:
  // Verified keys are cached this long, so a key revoked by another process stops working
  // within it; a revoke() here takes effect at once.
  static constexpr std::chrono::milliseconds kCacheTtl{1'000};

  ApiKeyStore(Journal& journal, Clock& clock);

  // kInvalidArgument for a name that is empty, longer than 64 or not [A-Za-z0-9_.-]; kAlreadyExists
  // when a live key has the name.
  [[nodiscard]] Result<NewApiKey> create(const std::string& name, KeyScope scope);
  // Every key, live and revoked, by creation time.
  [[nodiscard]] Result<std::vector<ApiKeyInfo>> list();
  // By id or by the name of a live key. kNotFound when there is none; revoking twice is harmless.
  [[nodiscard]] Result<ApiKeyInfo> revoke(const std::string& id_or_name);
  // The key's record, or kUnauthenticated for a malformed, unknown or revoked key. Messages never
  // contain the key.
  [[nodiscard]] Result<ApiKeyInfo> verify(std::string_view key);

 private:
  struct Stored {
    ApiKeyInfo info;
    std::string hash;  // raw 32 bytes
  };
  Result<std::optional<Stored>> load(const std::string& id);

  Journal& journal_;
  Clock& clock_;
  struct Cached {
    std::optional<Stored> stored;  // nullopt: no such key
    MonoTime fetched;
  };
  std::mutex mu_;
  std::map<std::string, Cached> cache_;  // guarded by mu_, by key id
};

}  // namespace crucible::server

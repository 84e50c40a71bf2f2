#include "crucible/server/api_keys.h"

#include <sodium.h>

#include <algorithm>

#include "crucible/core/enum_names.h"

namespace crucible::server {
namespace {

const EnumNames<KeyScope> kScopeNames = {
    {KeyScope::kRead, "read"}, {KeyScope::kWrite, "write"}, {KeyScope::kAdmin, "admin"}};

constexpr std::string_view kPrefix = "crucible_";
constexpr size_t kIdBytes = 6;
constexpr size_t kSecretBytes = 32;
constexpr const char* kKeyPrefix = "apikey/";
constexpr size_t kMaxCached = 4096;

std::string to_hex(const unsigned char* data, size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), data, n);
  out.resize(n * 2);
  return out;
}

std::string hash_secret(std::string_view secret) {
  std::string out(crypto_generichash_BYTES, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), nullptr, 0);
  return out;
}

bool valid_name(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-';
  });
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Error unauthenticated() {
  return Error(ErrorCode::kUnauthenticated, "the API key is not valid (unknown, revoked or malformed)");
}

Json stored_to_json(const ApiKeyInfo& info, const std::string& hash) {
  Json j = info.to_json();
  j["hash"] = to_hex(reinterpret_cast<const unsigned char*>(hash.data()), hash.size());
  return j;
}

}  // namespace

std::string_view key_scope_name(KeyScope scope) { return kScopeNames.name(scope); }
std::optional<KeyScope> parse_key_scope(std::string_view name) { return kScopeNames.parse(name); }

Json ApiKeyInfo::to_json() const {
  return Json{{"id", id},
              {"name", name},
              {"scope", key_scope_name(scope)},
              {"created_ms", created_ms},
              {"revoked_ms", revoked_ms}};
}

ApiKeyStore::ApiKeyStore(Journal& journal, Clock& clock) : journal_(journal), clock_(clock) {
  CRUCIBLE_CHECK(sodium_init() >= 0);
}

Result<NewApiKey> ApiKeyStore::create(const std::string& name, KeyScope scope) {
  if (!valid_name(name)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "a key's name must be 1 to 64 letters, digits, '_', '.' or '-', got '" + name + "'");
  }
  CRUCIBLE_ASSIGN_OR_RETURN(auto existing, list());
  for (const ApiKeyInfo& k : existing) {
    if (k.name == name && !k.revoked()) {
      return make_error(ErrorCode::kAlreadyExists,
                        "a live key is already named '" + name + "' (id " + k.id + "); revoke it first");
    }
  }
  unsigned char id_bytes[kIdBytes];
  unsigned char secret_bytes[kSecretBytes];
  randombytes_buf(id_bytes, sizeof(id_bytes));
  randombytes_buf(secret_bytes, sizeof(secret_bytes));
  char secret[sodium_base64_ENCODED_LEN(kSecretBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(secret, sizeof(secret), secret_bytes, sizeof(secret_bytes),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(secret_bytes, sizeof(secret_bytes));

  NewApiKey out;
  out.info.id = to_hex(id_bytes, sizeof(id_bytes));
  out.info.name = name;
  out.info.scope = scope;
  out.info.created_ms = clock_.now_ms();
  out.key = std::string(kPrefix) + out.info.id + "_" + secret;
  const std::string hash = hash_secret(secret);
  sodium_memzero(secret, sizeof(secret));
  CRUCIBLE_RETURN_IF_ERROR(journal_.put_value("", kKeyPrefix + out.info.id, stored_to_json(out.info, hash)));
  return out;
}

Result<std::vector<ApiKeyInfo>> ApiKeyStore::list() {
  CRUCIBLE_ASSIGN_OR_RETURN(auto values, journal_.list_values("", kKeyPrefix));
  std::vector<ApiKeyInfo> out;
  for (const auto& [key, value] : values) {
    ApiKeyInfo info;
    info.id = json_string(value, "id");
    info.name = json_string(value, "name");
    auto scope = parse_key_scope(json_string(value, "scope"));
    if (info.id.empty() || !scope) {
      return make_error(ErrorCode::kDataLoss, "the journal's API key record '" + key + "' is malformed");
    }
    info.scope = *scope;
    info.created_ms = value.value("created_ms", int64_t{0});
    info.revoked_ms = value.value("revoked_ms", int64_t{0});
    out.push_back(std::move(info));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const ApiKeyInfo& a, const ApiKeyInfo& b) { return a.created_ms < b.created_ms; });
  return out;
}

Result<ApiKeyInfo> ApiKeyStore::revoke(const std::string& id_or_name) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto keys, list());
  const ApiKeyInfo* found = nullptr;
  for (const ApiKeyInfo& k : keys) {
    if (k.id == id_or_name) found = &k;
  }
  for (const ApiKeyInfo& k : keys) {
    if (found == nullptr && k.name == id_or_name && !k.revoked()) found = &k;
  }
  if (found == nullptr) return make_error(ErrorCode::kNotFound, "no API key has the id or name '" + id_or_name + "'");
  CRUCIBLE_ASSIGN_OR_RETURN(auto stored, load(found->id));
  if (!stored) return make_error(ErrorCode::kNotFound, "API key " + found->id + " disappeared");
  if (!stored->info.revoked()) {
    stored->info.revoked_ms = clock_.now_ms();
    CRUCIBLE_RETURN_IF_ERROR(
        journal_.put_value("", kKeyPrefix + found->id, stored_to_json(stored->info, stored->hash)));
  }
  std::lock_guard lock(mu_);
  cache_.erase(found->id);
  return stored->info;
}

Result<std::optional<ApiKeyStore::Stored>> ApiKeyStore::load(const std::string& id) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto value, journal_.get_value("", kKeyPrefix + id));
  if (!value || value->is_null()) return std::optional<Stored>();
  Stored s;
  s.info.id = id;
  s.info.name = json_string(*value, "name");
  auto scope = parse_key_scope(json_string(*value, "scope"));
  const std::string hex = json_string(*value, "hash");
  s.hash.resize(crypto_generichash_BYTES);
  size_t len = 0;
  if (!scope ||
      sodium_hex2bin(reinterpret_cast<unsigned char*>(s.hash.data()), s.hash.size(), hex.data(), hex.size(), nullptr,
                     &len, nullptr) != 0 ||
      len != crypto_generichash_BYTES) {
    return make_error(ErrorCode::kDataLoss, "the journal's record of API key " + id + " is malformed");
  }
  s.info.scope = *scope;
  s.info.created_ms = value->value("created_ms", int64_t{0});
  s.info.revoked_ms = value->value("revoked_ms", int64_t{0});
  return std::optional<Stored>(std::move(s));
}

Result<ApiKeyInfo> ApiKeyStore::verify(std::string_view key) {
  const size_t secret_len = sodium_base64_ENCODED_LEN(kSecretBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1;
  if (key.size() != kPrefix.size() + kIdBytes * 2 + 1 + secret_len || key.substr(0, kPrefix.size()) != kPrefix ||
      key[kPrefix.size() + kIdBytes * 2] != '_') {
    return make_error(unauthenticated());
  }
  const std::string id(key.substr(kPrefix.size(), kIdBytes * 2));
  if (!is_hex(id)) return make_error(unauthenticated());
  const std::string hash = hash_secret(key.substr(kPrefix.size() + kIdBytes * 2 + 1));

  std::optional<Stored> stored;
  bool cached = false;
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(id); it != cache_.end() && clock_.monotonic() - it->second.fetched < kCacheTtl) {
      stored = it->second.stored;
      cached = true;
    }
  }
  if (!cached) {
    CRUCIBLE_ASSIGN_OR_RETURN(stored, load(id));
    std::lock_guard lock(mu_);
    if (cache_.size() >= kMaxCached) cache_.clear();
    cache_[id] = Cached{stored, clock_.monotonic()};
  }
  if (!stored || stored->info.revoked() ||
      sodium_memcmp(stored->hash.data(), hash.data(), crypto_generichash_BYTES) != 0) {
    return make_error(unauthenticated());
  }
  return stored->info;
}

}  // namespace crucible::server

// Content hashing (SHA-256) for spec hashes, config ids and the blob store.
#pragma once

#include <string>
#include <string_view>

namespace crucible {

// Lower-case hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view bytes);

}  // namespace crucible

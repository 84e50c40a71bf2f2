// The dashboard's files, compiled into the binary (cmake/embed_assets.cmake), with Debian's
// Chart.js. Private to the server module.
#pragma once

#include <string_view>
#include <vector>

namespace crucible::server {

struct Asset {
  std::string_view path;  // the URL path, e.g. /assets/app.js
  std::string_view content_type;
  std::string_view bytes;
};

const std::vector<Asset>& dashboard_assets();

}  // namespace crucible::server

// The `http.request` stage: one HTTP request through libcurl, aborted (connection closed) when
// the stage is cancelled, e.g. when it loses a hedge.
#pragma once

#include <memory>

#include "crucible/core/stage.h"

namespace crucible {

std::unique_ptr<Stage> make_http_request_stage();

// Canonical code for an HTTP status: 429 resource_exhausted, 5xx unavailable, 401
// unauthenticated, 403 permission_denied, 404 not_found, 408 deadline_exceeded, other 4xx
// invalid_argument. 2xx and 3xx are not errors (nullopt).
std::optional<ErrorCode> http_status_code(long status);

}  // namespace crucible

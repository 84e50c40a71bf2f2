// The `http.request` stage: one HTTP request through the shared HTTP client, aborted (connection
// closed) when the stage is cancelled, e.g. when it loses a hedge.
#pragma once

#include <memory>

#include "crucible/core/stage.h"
#include "crucible/http/client.h"

namespace crucible {

// Stages made by one factory share `client` and its connections; null gives the stage its own.
std::unique_ptr<Stage> make_http_request_stage(std::shared_ptr<http::Client> client = nullptr);

// Registers http.request, every instance sharing one client. kAlreadyExists if taken.
[[nodiscard]] Status register_http_stages(StageRegistry& registry);

}  // namespace crucible

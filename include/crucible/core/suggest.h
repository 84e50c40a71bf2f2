// "Did you mean": the closest of a set of names to a misspelled one.
#pragma once

#include <string>
#include <vector>

namespace crucible {

// The candidate closest to `word` by edit distance, when it is within 2 edits; else "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace crucible

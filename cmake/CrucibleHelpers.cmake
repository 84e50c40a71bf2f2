# Helpers shared by every module: one warnings target, one library per module, one test binary
# per module.

add_library(crucible_warnings INTERFACE)
target_compile_options(crucible_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion)
# GCC 12 reports false positives inside libstdc++'s std::string at -O2/-O3 (GCC bugs 105329,
# 105651); they say nothing about our code.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(crucible_warnings INTERFACE -Wno-restrict -Wno-maybe-uninitialized)
endif()
if(CRUCIBLE_WERROR)
  target_compile_options(crucible_warnings INTERFACE -Werror)
endif()
if(CRUCIBLE_TSAN)
  target_compile_options(crucible_warnings INTERFACE -fsanitize=thread)
  target_link_options(crucible_warnings INTERFACE -fsanitize=thread)
endif()
if(CRUCIBLE_ASAN)
  target_compile_options(crucible_warnings INTERFACE -fsanitize=address,undefined -fno-sanitize-recover=undefined
                                                     -fno-omit-frame-pointer)
  target_link_options(crucible_warnings INTERFACE -fsanitize=address,undefined)
endif()

if(CRUCIBLE_COVERAGE)
  # Atomic counters: the multithreaded tests otherwise corrupt them, and gcovr stops on
  # negative branch counts.
  target_compile_options(crucible_warnings INTERFACE --coverage -fprofile-update=atomic -O0)
  target_link_options(crucible_warnings INTERFACE --coverage)
endif()
if(CRUCIBLE_FUZZ)
  target_compile_options(crucible_warnings INTERFACE -fsanitize=fuzzer-no-link,address,undefined
                                                     -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(crucible_warnings INTERFACE -fsanitize=address,undefined)
endif()

# crucible_add_library(NAME SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Defines crucible_<NAME> with the alias crucible::<NAME>.
function(crucible_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(crucible_${name} STATIC ${ARG_SOURCES})
  add_library(crucible::${name} ALIAS crucible_${name})
  # A module's private headers sit beside its sources and are visible to it alone.
  target_include_directories(crucible_${name}
    PUBLIC ${PROJECT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(crucible_${name}
    PUBLIC ${ARG_PUBLIC_DEPS}
    PRIVATE crucible_warnings ${ARG_PRIVATE_DEPS})
endfunction()

# crucible_add_test(NAME SOURCES ... DEPS ... [TIMEOUT seconds])
# One test binary per module: <NAME>_test, discovered by ctest.
function(crucible_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS" ${ARGN})
  if(NOT CRUCIBLE_BUILD_TESTS)
    return()
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_executable(${name}_test ${ARG_SOURCES})
  target_include_directories(${name}_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name}_test PRIVATE ${ARG_DEPS} crucible_warnings
    GTest::gtest GTest::gmock GTest::gtest_main)
  set_target_properties(${name}_test PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  gtest_discover_tests(${name}_test
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES TIMEOUT ${ARG_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()

# CTest guard (cmake -P, -DTEST_DIR=...): doctest_discover_tests splits a test name at ";" and
# the pieces match no test case, so such a test would never run yet count as passed.
file(GLOB sources "${TEST_DIR}/*.cpp")
set(bad "")
foreach(source ${sources})
  file(STRINGS "${source}" lines REGEX "(TEST_CASE|SUBCASE)\\(\"[^\"]*[;]")
  if(lines)
    get_filename_component(name "${source}" NAME)
    string(APPEND bad "\n  ${name}")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "test names with ';' (CTest would skip them silently) in:${bad}")
endif()

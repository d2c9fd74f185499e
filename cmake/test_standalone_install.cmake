# CTest driver (cmake -P): installs this build into a fresh prefix, then configures, builds and
# runs examples/standalone against it, as a user's own project would.
# Inputs: EMBER_BUILD_DIR, EMBER_SOURCE_DIR, WORK_DIR, BUILD_TYPE, LAUNCHER (may be empty).
foreach(var EMBER_BUILD_DIR EMBER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "test_standalone_install.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run_step("cmake --install (every installed target must be built first)"
         ${CMAKE_COMMAND} --install "${EMBER_BUILD_DIR}" --prefix "${prefix}")

# Build-only pieces (the precompiled header, warnings, the ccache launcher) stay out of the package.
file(GLOB package_files "${prefix}/lib*/cmake/Ember/*.cmake")
if(NOT package_files)
  message(FATAL_ERROR "the install has no lib/cmake/Ember/*.cmake")
endif()
foreach(f ${package_files})
  file(READ "${f}" text)
  if(text MATCHES "ember_pch|ember_warnings|ccache|CMAKE_CXX_COMPILER_LAUNCHER")
    message(FATAL_ERROR "${f} mentions a build-only target or the ccache launcher (${CMAKE_MATCH_0})")
  endif()
endforeach()

set(configure_args -S "${EMBER_SOURCE_DIR}/examples/standalone" -B "${WORK_DIR}/build"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
if(BUILD_TYPE)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${BUILD_TYPE})
endif()
if(LAUNCHER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER})
endif()
run_step("configuring examples/standalone against ${prefix}" ${CMAKE_COMMAND} ${configure_args})

# The package must be the installed one, not this build tree.
file(STRINGS "${WORK_DIR}/build/CMakeCache.txt" ember_dir REGEX "^Ember_DIR:")
if(NOT ember_dir MATCHES "${prefix}")
  message(FATAL_ERROR "examples/standalone found Ember outside the fresh prefix: ${ember_dir}")
endif()

run_step("building examples/standalone" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run_step("running examples/standalone" "${WORK_DIR}/build/exercise")

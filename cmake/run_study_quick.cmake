# Runs a section 5.3 study with --quick into OUT (emptied first) and checks that it wrote
# each of FILES (comma-separated) with some content. Usage:
#   cmake -DBIN=<binary> -DOUT=<folder> -DFILES=a,b,c -P run_study_quick.cmake
file(REMOVE_RECURSE "${OUT}")
execute_process(COMMAND "${BIN}" --quick --out "${OUT}" RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${BIN} --quick --out ${OUT} failed with status ${status}")
endif()
string(REPLACE "," ";" files "${FILES}")
foreach(f IN LISTS files)
  if(NOT EXISTS "${OUT}/${f}")
    message(FATAL_ERROR "${BIN} --quick did not write ${OUT}/${f}")
  endif()
  file(SIZE "${OUT}/${f}" size)
  if(size LESS 100)
    message(FATAL_ERROR "${BIN} --quick wrote only ${size} bytes to ${OUT}/${f}")
  endif()
endforeach()
message(STATUS "${BIN} --quick wrote ${FILES} to ${OUT}")

# Tests: C units beside the engine (engine/test/test_*.c) and the cluster
# (cluster/test/test_*.c), one executable each, and the busted specs in
# spec/ (run under LuaJIT), all under ctest.

file(GLOB ENGINE_TESTS ${CMAKE_SOURCE_DIR}/engine/test/test_*.c)
foreach(src ${ENGINE_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  if(name STREQUAL "test_api")
    # The public API, linked as a host links it.
    target_link_libraries(${name} PRIVATE gleam_shared)
    target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine/test)
  else()
    target_link_libraries(${name} PRIVATE gleam_static PkgConfig::MSGPACK)
  endif()
  add_test(NAME c_${name} COMMAND ${name})
  set_tests_properties(c_${name} PROPERTIES ENVIRONMENT
    "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/lua/?/init.lua\;\;")
endforeach()

# The cluster's C units (cluster/test/test_*.c), over the engine's runner.
file(GLOB CLUSTER_TESTS ${CMAKE_SOURCE_DIR}/cluster/test/test_*.c)
foreach(src ${CLUSTER_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  # The whole engine, its symbols exported: a stage task runs Lua workers,
  # which find the engine through the FFI (ffi.C), as in the gleam executable.
  target_link_libraries(${name} PRIVATE gleam_cluster gleam_objects PkgConfig::MSGPACK ${CMAKE_DL_LIBS})
  set_target_properties(${name} PROPERTIES ENABLE_EXPORTS ON)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/engine/test)
  add_test(NAME c_${name} COMMAND ${name})
  set_tests_properties(c_${name} PROPERTIES ENVIRONMENT
    "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/lua/?/init.lua\;\;")
endforeach()

find_program(LUAJIT_BIN luajit REQUIRED)
set(SPEC_ENV
  "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/lua/?/init.lua\;${CMAKE_SOURCE_DIR}/spec/?.lua\;\;"
  "LUA_CPATH=${GLEAM_LUA_CPATH_DIR}/?.so\;\;"
  "GLEAM_BIN=$<TARGET_FILE:gleam>"
  "GLEAM_BUILD_DIR=${CMAKE_BINARY_DIR}"
  "GLEAM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
if(GLEAM_SANITIZE)
  # luajit itself is not instrumented: the runtime must come first, and
  # leaks are checked in the C tests and the gleam binary instead.
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
    OUTPUT_VARIABLE ASAN_LIB OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND SPEC_ENV "LD_PRELOAD=${ASAN_LIB}" "ASAN_OPTIONS=detect_leaks=0")
endif()

file(GLOB SPECS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec ${SPECS})
  get_filename_component(name ${spec} NAME_WE)
  add_test(NAME ${name}
    COMMAND ${LUAJIT_BIN} ${CMAKE_SOURCE_DIR}/spec/runner.lua --output=utfTerminal ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${SPEC_ENV}" TIMEOUT 600)
endforeach()
# The cluster on network namespaces needs root and `ip netns`; without
# them its one case is pending with a line ctest reports as a skip.
set_tests_properties(cluster_netns_spec PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED \\(cluster_netns_spec\\)")

# valgrind: no leaks and no memory errors in a whole run of the engine
# (the sanitizer build covers the rest; the two do not mix).
find_program(VALGRIND valgrind)
if(VALGRIND AND NOT GLEAM_SANITIZE)
  set(VALGRIND_RUN ${VALGRIND} --quiet --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=9 $<TARGET_FILE:gleam> run --workers 3)
  add_test(NAME valgrind_wordcount COMMAND ${VALGRIND_RUN} examples/wordcount.lua README.md examples/top.lua
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  add_test(NAME valgrind_sort COMMAND ${VALGRIND_RUN} examples/sort.lua README.md examples/top.lua
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  add_test(NAME valgrind_join COMMAND ${VALGRIND_RUN} examples/join.lua
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  add_test(NAME valgrind_pipe COMMAND ${VALGRIND_RUN} examples/pipe.lua README.md
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(valgrind_wordcount valgrind_sort valgrind_join valgrind_pipe PROPERTIES TIMEOUT 600)
endif()
if(VALGRIND AND NOT GLEAM_SANITIZE)
  # A failing run must exit 1 (the job failed), not 9 (valgrind found leaks).
  add_test(NAME valgrind_failed_run
    COMMAND sh -c "${VALGRIND} --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=9 $<TARGET_FILE:gleam> run --workers 3 spec/jobs/fails_midway.lua; test $? -eq 1"
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(valgrind_failed_run PROPERTIES TIMEOUT 600)
endif()

# The C API: 100 flows (and several engines) in one host process leak nothing.
if(VALGRIND AND NOT GLEAM_SANITIZE)
  add_test(NAME valgrind_api
    COMMAND ${VALGRIND} --quiet --leak-check=full --show-leak-kinds=definite,indirect
      --errors-for-leak-kinds=definite,indirect --error-exitcode=9 $<TARGET_FILE:test_api>)
  set_tests_properties(valgrind_api PROPERTIES TIMEOUT 900)
endif()

# Runs that spill: a budget of 64 KiB sends sort runs, join buckets and
# stage outputs through LMDB.
if(VALGRIND AND NOT GLEAM_SANITIZE)
  add_test(NAME valgrind_spill_sort COMMAND ${VALGRIND_RUN} --memory 64K examples/sort.lua README.md examples/*.lua
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  add_test(NAME valgrind_spill_wordcount COMMAND ${VALGRIND_RUN} --memory 64K examples/wordcount.lua --lua README.md
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(valgrind_spill_sort valgrind_spill_wordcount PROPERTIES TIMEOUT 600)
  # The store maps as much as the disk has free; valgrind cannot map tens of
  # GB, so under valgrind the map is capped (the knob store_lmdb.c reads).
  get_property(vtests DIRECTORY PROPERTY TESTS)
  foreach(t ${vtests})
    if(t MATCHES "^valgrind_")
      set_property(TEST ${t} APPEND PROPERTY ENVIRONMENT "GLEAM_LMDB_MAPSIZE=4294967296")
    endif()
  endforeach()
endif()

# The benchmark suite at size tiny: a smoke test that every implementation
# runs and gives the same answer (bench/run exits 1 on a mismatch).
add_test(NAME bench_tiny COMMAND ${CMAKE_SOURCE_DIR}/bench/run tiny WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(bench_tiny PROPERTIES ENVIRONMENT "GLEAM_BIN=$<TARGET_FILE:gleam>"
  LABELS bench TIMEOUT 300)

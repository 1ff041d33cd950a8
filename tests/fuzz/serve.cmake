# libFuzzer target for the inference-request parser. Include from
# tests/fuzz/CMakeLists.txt (built only with -DKILN_FUZZ=ON and clang):
#   include(${CMAKE_CURRENT_SOURCE_DIR}/serve.cmake)
# Run: build/tests/fuzz/fuzz_infer_request tests/fuzz/corpus/infer_request -max_total_time=60
add_executable(fuzz_infer_request ${CMAKE_CURRENT_LIST_DIR}/fuzz_infer_request.c)
target_include_directories(fuzz_infer_request PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_options(fuzz_infer_request PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_options(fuzz_infer_request PRIVATE -fsanitize=fuzzer,address,undefined)
target_link_libraries(fuzz_infer_request PRIVATE kiln)

# Copies libloom and the simulated plugin (as libloom_cuda.so) into one
# folder and runs the probe against that libloom: the plugin must be found
# beside it without LOOM_CUDA_LIBRARY.
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR})
file(COPY_FILE ${LIB} ${DIR}/${SONAME})
file(COPY_FILE ${PLUGIN} ${DIR}/libloom_cuda.so)
execute_process(COMMAND ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${DIR} LOOM_CUDA_LIBRARY=
  ${PROBE} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
if(NOT rc EQUAL 0 OR NOT out MATCHES "gpus=2\ngpu: 'simdev' backend from ${DIR}/libloom_cuda.so \\(2 devices\\)")
  message(FATAL_ERROR "the plugin beside libloom was not used (exit ${rc})")
endif()

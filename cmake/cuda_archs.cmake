# The CUDA architectures fer_edge compiles for when FER_EDGE_CUDA_ARCHS is not set: every
# architecture the found nvcc can target among those fer_edge supports, Jetson Orin (87) always
# included. A fixed list that names sm_100/sm_120 fails on JetPack 6's CUDA 12.2/12.6 (both need
# 12.8), and CUDA 13 no longer targets anything before Turing (so Xavier's 72 needs CUDA < 13).
#   script mode, for tests: cmake -DNVCC_VERSION=12.6 -P cmake/cuda_archs.cmake  -> prints the list
function(fer_edge_default_cuda_archs version out_archs out_reason)
  set(archs "")
  if(version VERSION_LESS 13.0)
    list(APPEND archs 72)                 # Jetson Xavier (JetPack 5)
  endif()
  list(APPEND archs 75 80)                # Turing, A100
  if(version VERSION_GREATER_EQUAL 11.1)
    list(APPEND archs 86)                 # Ampere consumer / A10
  endif()
  if(version VERSION_GREATER_EQUAL 11.4)
    list(APPEND archs 87)                 # Jetson Orin
  endif()
  if(version VERSION_GREATER_EQUAL 11.8)
    list(APPEND archs 89 90)              # Ada, Hopper
  endif()
  if(version VERSION_GREATER_EQUAL 12.8)
    list(APPEND archs 100 120)            # Blackwell
  endif()
  set(${out_archs} "${archs}" PARENT_SCOPE)
  set(${out_reason} "the architectures nvcc ${version} supports (FER_EDGE_CUDA_ARCHS overrides)" PARENT_SCOPE)
endfunction()

function(fer_edge_nvcc_version compiler out_version)
  execute_process(COMMAND "${compiler}" --version OUTPUT_VARIABLE text ERROR_QUIET RESULT_VARIABLE rc)
  string(REGEX MATCH "release ([0-9]+\\.[0-9]+)" _ "${text}")
  if(NOT rc EQUAL 0 OR NOT CMAKE_MATCH_1)
    message(FATAL_ERROR "fer_edge: could not read the CUDA compiler's version from '${compiler} --version'")
  endif()
  set(${out_version} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE AND DEFINED NVCC_VERSION)
  fer_edge_default_cuda_archs("${NVCC_VERSION}" archs reason)
  message("${archs}")
endif()

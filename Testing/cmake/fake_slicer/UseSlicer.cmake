# Stand-in UseSlicer.cmake (see SlicerConfig.cmake beside this file).
if(NOT CASEITERATOR_FAKE_SLICER_RECORD)
  message(FATAL_ERROR "set CASEITERATOR_FAKE_SLICER_RECORD to the file that records the calls")
endif()
set(BUILD_TESTING ON)
foreach(_var EXTENSION_NAME EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS
    EXTENSION_DESCRIPTION EXTENSION_DEPENDS)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "${_var} must be set before find_package(Slicer)")
  endif()
  file(APPEND "${CASEITERATOR_FAKE_SLICER_RECORD}" "set(RECORDED_${_var} \"${${_var}}\")\n")
endforeach()

macro(slicerMacroBuildScriptedModule)
  # The argument handling and checks of Slicer's macro (CMake/SlicerMacroBuildScriptedModule.cmake).
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME"
    "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()
  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "NAME is mandatory")
  endif()
  foreach(_kind SCRIPTS RESOURCES)
    foreach(_value ${MY_SLICER_${_kind}})
      if(IS_ABSOLUTE "${_value}")
        set(_abs "${_value}")
      else()
        set(_abs "${CMAKE_CURRENT_SOURCE_DIR}/${_value}")
      endif()
      if(NOT EXISTS "${_abs}" AND NOT EXISTS "${_abs}.py")
        message(FATAL_ERROR "slicerMacroBuildScriptedModule(${_kind}) given nonexistent file or directory '${_value}'")
      endif()
    endforeach()
  endforeach()
  file(APPEND "${CASEITERATOR_FAKE_SLICER_RECORD}"
    "list(APPEND RECORDED_MODULES \"${MY_SLICER_NAME}\")\n"
    "set(RECORDED_${MY_SLICER_NAME}_DIR \"${CMAKE_CURRENT_SOURCE_DIR}\")\n"
    "set(RECORDED_${MY_SLICER_NAME}_SCRIPTS \"${MY_SLICER_SCRIPTS}\")\n"
    "set(RECORDED_${MY_SLICER_NAME}_RESOURCES \"${MY_SLICER_RESOURCES}\")\n"
    "set(RECORDED_${MY_SLICER_NAME}_GENERIC_TESTS \"${MY_SLICER_WITH_GENERIC_TESTS}\")\n")
endmacro()

function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "SLICER_ARGS;TESTNAME_PREFIX" ${ARGN})
  if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT}")
    message(FATAL_ERROR "slicer_add_python_unittest: no ${MY_SCRIPT}")
  endif()
  file(APPEND "${CASEITERATOR_FAKE_SLICER_RECORD}"
    "list(APPEND RECORDED_UNITTESTS \"${MY_SCRIPT}\")\n")
endfunction()

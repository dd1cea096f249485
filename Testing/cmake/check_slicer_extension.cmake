# Check the 3D Slicer extension branch of CaseIterator's CMakeLists.txt without a Slicer build:
# configure it with -DSlicer_DIR pointing at the stand-in in fake_slicer/ (which has the
# argument checks of Slicer's slicerMacroBuildScriptedModule and records its calls), then check
# that each module is built from its entry file and every file of its Lib package, with its
# icon and its unit test (the visible module also with Slicer's generic tests), and that the
# shared resources are beside them.
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch folder> -P check_slicer_extension.cmake
cmake_minimum_required(VERSION 3.16)

foreach(_var SOURCE_DIR WORK_DIR)
  if(NOT ${_var})
    message(FATAL_ERROR "pass -D${_var}=...")
  endif()
endforeach()

set(_record "${WORK_DIR}/record.cmake")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/build"
    "-DSlicer_DIR=${CMAKE_CURRENT_LIST_DIR}/fake_slicer"
    "-DCASEITERATOR_FAKE_SLICER_RECORD=${_record}"
  RESULT_VARIABLE _rc
  OUTPUT_VARIABLE _out
  ERROR_VARIABLE _err
)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "configuring the extension failed (${_rc}):\n${_out}\n${_err}")
endif()
include("${_record}")

set(_errors)
if(NOT RECORDED_MODULES STREQUAL "CaseIteratorCore;CaseReader")
  list(APPEND _errors "modules built: '${RECORDED_MODULES}', expected CaseIteratorCore;CaseReader")
endif()
foreach(_module CaseIteratorCore CaseReader)
  set(_dir "${SOURCE_DIR}/Modules/Scripted/${_module}")
  if(NOT RECORDED_${_module}_DIR STREQUAL _dir)
    list(APPEND _errors "${_module} built from '${RECORDED_${_module}_DIR}', expected ${_dir}")
  endif()
  file(GLOB_RECURSE _expected RELATIVE "${_dir}" "${_dir}/${_module}Lib/*.py")
  list(FILTER _expected EXCLUDE REGEX "/__pycache__/")
  list(APPEND _expected "${_module}.py")
  foreach(_file IN LISTS _expected)
    if(NOT _file IN_LIST RECORDED_${_module}_SCRIPTS)
      list(APPEND _errors "${_module}: ${_file} is not among the module's SCRIPTS")
    endif()
  endforeach()
  if(NOT "Resources/Icons/${_module}.png" IN_LIST RECORDED_${_module}_RESOURCES)
    list(APPEND _errors "${_module}: its icon Resources/Icons/${_module}.png is not a RESOURCE")
  endif()
  # The generic tests select the module in Slicer's UI: for the visible module only.
  if(_module STREQUAL "CaseReader" AND NOT RECORDED_${_module}_GENERIC_TESTS)
    list(APPEND _errors "${_module}: built without WITH_GENERIC_TESTS")
  endif()
  if(NOT "${_module}.py" IN_LIST RECORDED_UNITTESTS)
    list(APPEND _errors "${_module}: no slicer_add_python_unittest(SCRIPT ${_module}.py)")
  endif()
endforeach()
# The shared resources, as the package CaseIteratorResources beside the modules.
set(_pkg "${WORK_DIR}/build/lib/Slicer-5.9/qt-scripted-modules/CaseIteratorResources")
foreach(_file __init__.py style/caseiterator.qss branding/logo.svg icons/tool-paint.svg)
  if(NOT EXISTS "${_pkg}/${_file}")
    list(APPEND _errors "shared resource ${_file} is not in ${_pkg}")
  endif()
endforeach()
foreach(_var RECORDED_EXTENSION_NAME RECORDED_GENERATE_CONFIG RECORDED_EXTENSION_CPACK)
  if(NOT ${_var})
    list(APPEND _errors "${_var} missing: extension metadata, config or CPack not included")
  endif()
endforeach()
if(RECORDED_EXTENSION_DESCRIPTION MATCHES ";")
  list(APPEND _errors "EXTENSION_DESCRIPTION is a list, not one string")
endif()

if(_errors)
  list(JOIN _errors "\n  " _text)
  message(FATAL_ERROR "Slicer extension check failed:\n  ${_text}")
endif()
list(LENGTH RECORDED_CaseIteratorCore_SCRIPTS _n_core)
list(LENGTH RECORDED_CaseReader_SCRIPTS _n_reader)
message(STATUS "Slicer extension check passed: CaseIteratorCore (${_n_core} scripts), "
  "CaseReader (${_n_reader} scripts), shared resources, metadata, tests, CPack")

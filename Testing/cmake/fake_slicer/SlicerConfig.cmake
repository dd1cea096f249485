# A stand-in for a 3D Slicer build tree's SlicerConfig.cmake, for checking the extension branch
# of CaseIterator's CMakeLists.txt where no Slicer build exists (check_slicer_extension.cmake).
# It defines what a scripted-module extension uses, with the argument checks of Slicer's real
# slicerMacroBuildScriptedModule, and records every call into ${CASEITERATOR_FAKE_SLICER_RECORD}.
set(Slicer_FOUND TRUE)
set(Slicer_VERSION "5.9.0")
set(Slicer_USE_PYTHONQT ON)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.9/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake")

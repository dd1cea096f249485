# Stand-in (see SlicerConfig.cmake beside this file).
file(APPEND "${CASEITERATOR_FAKE_SLICER_RECORD}" "set(RECORDED_GENERATE_CONFIG ON)\n")

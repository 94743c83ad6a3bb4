# The headers and man pages generated from defs/memory_object.mdefs are kept in the tree;
# this test fails when they no longer match the description (fix: build mvm_mo_regen).
add_test(NAME integration/mo_generated_current
    COMMAND mvm-mig ${PROJECT_SOURCE_DIR}/defs/memory_object.mdefs
        --check ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/doc/man/man3)
set_tests_properties(integration/mo_generated_current PROPERTIES TIMEOUT 60 LABELS integration)

# A memory manager written against the Mach headers alone (mo_manager/manager.c) defines a
# few server routines; the others must come from libmachvm's weak defaults. Linked once
# with the static and once with the shared library, where the program's definitions must
# interpose on the library's defaults.
foreach(kind static shared)
  set(t test_mo_manager_${kind})
  add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/mo_manager/manager.c
      ${CMAKE_CURRENT_LIST_DIR}/mo_manager/kernel.c)
  if(kind STREQUAL "static")
    target_link_libraries(${t} PRIVATE machvm_static)
  else()
    target_link_libraries(${t} PRIVATE machvm)
  endif()
  target_compile_options(${t} PRIVATE ${MVM_WARNINGS})
  add_test(NAME integration/mo_manager_${kind} COMMAND ${t})
  set_tests_properties(integration/mo_manager_${kind} PROPERTIES TIMEOUT 120 LABELS integration)
endforeach()

# The seed corpus of the memory object fuzz targets is written by this program from the
# generated tables (run it by hand: mo_corpus tests/fuzz/corpus); it is built here so that
# it keeps compiling.
add_executable(mo_corpus ${PROJECT_SOURCE_DIR}/tests/fuzz/mo_corpus.c)
target_link_libraries(mo_corpus PRIVATE machvm_static)
target_include_directories(mo_corpus PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_compile_options(mo_corpus PRIVATE ${MVM_WARNINGS})

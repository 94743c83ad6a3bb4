# Every public header compiles on its own (C11 and C++ guards aside), and an installed
# libmachvm is usable through pkg-config by a program that knows only the Mach headers.
file(GLOB MVM_PUBLIC_HEADERS CONFIGURE_DEPENDS
    ${PROJECT_SOURCE_DIR}/include/mach/*.h ${PROJECT_SOURCE_DIR}/include/machvm/*.h)
set(hdr_sources "")
foreach(h ${MVM_PUBLIC_HEADERS})
  file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/include ${h})
  string(MAKE_C_IDENTIFIER ${rel} id)
  set(src ${CMAKE_CURRENT_BINARY_DIR}/header_check/${id}.c)
  file(WRITE ${src}.in "#include <${rel}>\n#include <${rel}>\nint mvm_header_check_${id}(void);\nint mvm_header_check_${id}(void) { return 0; }\n")
  configure_file(${src}.in ${src} COPYONLY)
  list(APPEND hdr_sources ${src})
endforeach()
add_library(mvm_header_check OBJECT ${hdr_sources})
target_include_directories(mvm_header_check PRIVATE ${PROJECT_SOURCE_DIR}/include
    ${PROJECT_BINARY_DIR}/include)
target_compile_options(mvm_header_check PRIVATE ${MVM_WARNINGS} -pedantic-errors -Wno-long-long)

add_test(NAME integration/pkgconfig_consumer
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/pkgconfig_consumer.sh ${PROJECT_BINARY_DIR}
        ${CMAKE_C_COMPILER} "${MVM_SANITIZE}")
set_tests_properties(integration/pkgconfig_consumer PROPERTIES TIMEOUT 120 LABELS integration)

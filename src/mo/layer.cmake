# src/mo/layer.cmake: the memory object interface layer.
#
# Every routine of the memory object interfaces is described once, in
# defs/memory_object.mdefs. tools/mig/mvm-mig.c, a small C program built here for the build
# machine, derives everything from it:
#   - the C sources (tables, stubs, kernel-side senders, demultiplexers, weak default
#     routines), generated into the build tree at every build;
#   - the public headers (include/mach/memory_object_{server,default_server,control}.h,
#     include/machvm/memory_object_ops.h) and the man pages (doc/man/man3), which are kept
#     in the tree so that every header compiles on its own and installs like the others.
#     The target mvm_mo_regen rewrites them; the test integration/mo_generated_current
#     fails when they differ from the description.
# See "Interfaces: one description per routine" in doc/DESIGN.md.

set(MVM_MO_DEFS ${PROJECT_SOURCE_DIR}/defs/memory_object.mdefs)
set(MVM_MO_GEN_SOURCES
    ${PROJECT_BINARY_DIR}/src/mo/mo_generated.c
    ${PROJECT_BINARY_DIR}/src/mo/mo_weak.c)

add_executable(mvm-mig ${PROJECT_SOURCE_DIR}/tools/mig/mvm-mig.c)
target_compile_options(mvm-mig PRIVATE ${MVM_WARNINGS})

add_custom_command(OUTPUT ${MVM_MO_GEN_SOURCES}
    COMMAND mvm-mig ${MVM_MO_DEFS} --sources ${PROJECT_BINARY_DIR}/src/mo
    DEPENDS mvm-mig ${MVM_MO_DEFS}
    COMMENT "Generating the memory object interfaces from defs/memory_object.mdefs"
    VERBATIM)
list(APPEND MVM_GENERATED_SOURCES ${MVM_MO_GEN_SOURCES})

add_custom_target(mvm_mo_regen
    COMMAND mvm-mig ${MVM_MO_DEFS} --headers ${PROJECT_SOURCE_DIR}/include
    COMMAND mvm-mig ${MVM_MO_DEFS} --man ${PROJECT_SOURCE_DIR}/doc/man/man3
    DEPENDS mvm-mig ${MVM_MO_DEFS}
    COMMENT "Regenerating the memory object headers and man pages in the source tree"
    VERBATIM)

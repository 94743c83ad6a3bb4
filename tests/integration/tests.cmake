# The headers and man pages generated from defs/memory_object.mdefs are kept in the tree;
# this test fails when they no longer match the description (fix: build mvm_mo_regen).
add_test(NAME integration/mo_generated_current
    COMMAND mvm-mig ${PROJECT_SOURCE_DIR}/defs/memory_object.mdefs
        --check ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/doc/man/man3)
set_tests_properties(integration/mo_generated_current PROPERTIES TIMEOUT 60 LABELS integration)

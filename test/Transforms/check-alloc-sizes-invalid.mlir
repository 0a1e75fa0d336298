// RUN: moe-opt %s -moe-check-alloc-sizes -verify-diagnostics

// The hook, where the input declares it, must take nothing and return nothing.
// expected-error @below {{'moe_report_alloc_size_overflow' must have type () -> ()}}
func.func private @moe_report_alloc_size_overflow(i64)

// Package modtest builds Go code that lives outside the module's packages —
// generated code, the README's snippets, examples as a user would vendor
// them — in a throwaway module that requires github.com/zerohop/zerohop
// through a replace directive pointing at this checkout. Only tests use it.
//
// The throwaway module reuses this module's go.sum, so building it needs no
// module that this module does not already need (no network beyond the
// module cache).
package modtest

// Package doccheck holds no code. Its tests keep the Go in the project's
// Markdown honest: every ```go block of README.md, docs/*.md and
// examples/*/README.md must build, against this checkout, in a module of
// its own; and the README's server must serve, and exit 0 when stopped.
//
// A block that starts with "package" is a whole file. Any other block is a
// fragment of a main function: the test wraps it, gives it a ctx
// (context.Background()), and imports the packages it names from a fixed
// table (fragmentImports), zrt and gwir among them.
package doccheck

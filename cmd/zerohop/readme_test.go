package main

import (
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestReadmeListsEveryCommand keeps the README's CLI table true: every
// listed command has a row (one starting "| `zerohop NAME"), and every
// row names a command that exists.
func TestReadmeListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `zerohop "); ok {
			name, _, _ := strings.Cut(rest, " ")
			rows[strings.TrimSuffix(name, "`")] = true
		}
	}
	known := map[string]bool{}
	for _, c := range commands {
		known[c.name] = true
		if !c.hidden && !rows[c.name] {
			t.Errorf("README.md's CLI table has no row for `zerohop %s`", c.name)
		}
	}
	for name := range rows {
		if !known[name] {
			t.Errorf("README.md's CLI table lists `zerohop %s`, which is no command", name)
		}
	}
	if len(rows) == 0 {
		t.Fatal("README.md has no CLI table rows")
	}
}

// TestPackageDocListsEveryCommand keeps main.go's package doc (what `go
// doc` shows) true the same way: a "zerohop NAME" line per listed command,
// and no line for one that does not exist.
func TestPackageDocListsEveryCommand(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil {
		t.Fatal("main.go has no package doc")
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(f.Doc.Text(), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "zerohop "); ok && strings.HasPrefix(line, "\t") {
			name, _, _ := strings.Cut(rest, " ")
			listed[name] = true
		}
	}
	known := map[string]bool{}
	for _, c := range commands {
		known[c.name] = true
		if !c.hidden && !listed[c.name] {
			t.Errorf("main.go's package doc does not list `zerohop %s`", c.name)
		}
	}
	for name := range listed {
		if !known[name] {
			t.Errorf("main.go's package doc lists `zerohop %s`, which is no command", name)
		}
	}
}

package main

import (
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

package tlsmail

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNetSMTPExampleCompiles builds Go's own net/smtp/example_test.go, from
// the installed Go tree, with only its import line changed to tlsmail: the
// promise that switching is a one-line change.
func TestNetSMTPExampleCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a separate module; skipped in -short mode")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed for this test: %v", err)
	}
	goroot, err := exec.Command(goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(string(bytes.TrimSpace(goroot)), "src", "net", "smtp", "example_test.go"))
	if err != nil {
		t.Fatalf("reading Go's net/smtp example: %v", err)
	}
	old := []byte(`"net/smtp"`)
	if bytes.Count(src, old) != 1 {
		t.Fatalf("expected one import of net/smtp in the example")
	}
	src = bytes.Replace(src, old, []byte(`smtp "github.com/tlsmail/tlsmail"`), 1)

	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gomod := "module compatcheck\n\ngo 1.24\n\nrequire github.com/tlsmail/tlsmail v0.0.0\n\nreplace github.com/tlsmail/tlsmail => " + here + "\n"
	for name, data := range map[string][]byte{"go.mod": []byte(gomod), "example_test.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goBin, "vet", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("net/smtp's example does not build against tlsmail: %v\n%s", err, out)
	}
}

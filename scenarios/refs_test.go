package scenarios

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretText = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAbcdefSECRETSECRETSECRETSECRET0123456789\n-----END PRIVATE KEY-----\n"

// gameDayWithRef is a game day referencing ref (YAML-quoted).
func gameDayWithRef(ref string) []byte {
	return fmt.Appendf(nil, "apiVersion: chaosgate.io/v1\nkind: GameDay\nmetadata: {name: refs}\nspec:\n  target:\n    local: {nodes: 3}\n  experiments:\n    - ref: %q\n", ref)
}

// refLayout makes root/ (the game day's directory, with sub/exp.yaml, a
// valid experiment, and bad.yaml, a file holding a secret that is not a
// scenario) next to secret.pem outside it, and a symbolic link inside
// root to the secret.
func refLayout(t testing.TB) (root, secret string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	secret = filepath.Join(dir, "secret.pem")
	exp, err := os.ReadFile("testdata/good/allow-quorum-free.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{
		secret:                                 []byte(secretText),
		filepath.Join(root, "sub", "exp.yaml"): exp,
		filepath.Join(root, "bad.yaml"):        []byte(secretText),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(secret, filepath.Join(root, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	return root, secret
}

func leaks(msg string) bool {
	return strings.Contains(msg, "SECRET") || strings.Contains(msg, "MC4CAQ") || strings.Contains(msg, "root:x:") || strings.Contains(msg, "BEGIN PRIVATE")
}

// TestUploadedGameDayReadsNoFile: a game day that came from no file (an
// upload to serve) may reference library experiments only; naming a file
// — the evidence key, /etc/passwd — reads nothing and quotes nothing.
func TestUploadedGameDayReadsNoFile(t *testing.T) {
	_, secret := refLayout(t)
	for _, ref := range []string{secret, "/etc/passwd", "../../../../../../etc/passwd", "./secret.pem", `..\secret.pem`} {
		doc, err := Parse("upload.yaml", gameDayWithRef(ref))
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		_, err = Resolve(doc)
		if err == nil {
			t.Fatalf("%s: an uploaded game day loaded a file", ref)
		}
		if leaks(err.Error()) {
			t.Fatalf("%s: the error quotes the file:\n%v", ref, err)
		}
		if !strings.Contains(err.Error(), "library experiments only") {
			t.Errorf("%s: %v", ref, err)
		}
	}
	// Library names still resolve.
	doc, err := Parse("upload.yaml", gameDayWithRef("pod-kill"))
	if err != nil {
		t.Fatal(err)
	}
	if exps, err := Resolve(doc); err != nil || len(exps) != 1 {
		t.Fatalf("library ref: %v", err)
	}
}

// TestFileRefsStayInTheGameDaysDirectory: a game day file references files
// next to it or below it; "..", absolute paths and symbolic links out of
// its directory are refused, and no error quotes a referenced file.
func TestFileRefsStayInTheGameDaysDirectory(t *testing.T) {
	root, secret := refLayout(t)
	gd := filepath.Join(root, "gd.yaml")
	for _, tc := range []struct{ ref, want string }{
		{"sub/exp.yaml", ""},
		{"./sub/../sub/exp.yaml", ""},
		{"../secret.pem", "outside the game day's directory"},
		{secret, "outside the game day's directory"},
		{"/etc/passwd", "outside the game day's directory"},
		{"link.yaml", "cannot read"},
		{"bad.yaml", "is not a valid scenario file"},
		{"sub/missing.yaml", "cannot read"},
	} {
		if err := os.WriteFile(gd, gameDayWithRef(tc.ref), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFile(gd)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.ref, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.ref, err, tc.want)
		}
		if err != nil && leaks(err.Error()) {
			t.Errorf("%s: the error quotes the file:\n%v", tc.ref, err)
		}
	}
	// Loaded inside a directory (serve's experiments directory): the same.
	if err := os.WriteFile(gd, gameDayWithRef("../secret.pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFileIn(root, "gd.yaml"); err == nil || leaks(err.Error()) {
		t.Fatalf("LoadFileIn: %v", err)
	}
	for _, name := range []string{"../secret.pem", "link.yaml", "/etc/passwd"} {
		if _, err := LoadFileIn(root, name); err == nil || leaks(err.Error()) {
			t.Fatalf("LoadFileIn(%s): %v", name, err)
		}
	}
	if err := os.WriteFile(gd, gameDayWithRef("sub/exp.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if doc, err := LoadFileIn(root, "gd.yaml"); err != nil || doc.Kind != KindGameDay {
		t.Fatalf("LoadFileIn: %v", err)
	}
}

// TestErrorsCapQuotedValues: a long scalar is named, not copied.
func TestErrorsCapQuotedValues(t *testing.T) {
	long := strings.Repeat("x", 500)
	for _, doc := range []string{long, "apiVersion: " + long, "apiVersion: chaosgate.io/v1\nkind: Experiment\nmetadata: {name: a}\nspec: {target: {local: {nodes: 3}}, steadyState: " + long + "}\n", long + ": 1\n"} {
		_, err := Parse("f.yaml", []byte(doc))
		if err == nil {
			t.Fatal("accepted")
		}
		if strings.Contains(err.Error(), strings.Repeat("x", maxQuoted+1)) {
			t.Fatalf("the error copies the value:\n%v", err)
		}
	}
}

// FuzzResolveRefs resolves a game day with any reference, as an upload and
// as a file: nothing outside the game day's directory is read, and no
// error quotes a referenced file.
func FuzzResolveRefs(f *testing.F) {
	for _, s := range []string{"sub/exp.yaml", "../secret.pem", "/etc/passwd", "link.yaml", "bad.yaml", "pod-kill", "sub/../../secret.pem", "sub//exp.yaml", `sub\exp.yaml`, "./bad.yaml", "", ".", "sub", "..", "link.yaml/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		root, _ := refLayout(t)
		data := gameDayWithRef(ref)
		if doc, err := Parse("upload.yaml", data); err == nil {
			if exps, err := Resolve(doc); err != nil && leaks(err.Error()) {
				t.Fatalf("upload %q: %v", ref, err)
			} else if err == nil {
				for _, e := range exps {
					if !strings.HasPrefix(e.Source, "library:") {
						t.Fatalf("upload %q loaded %s", ref, e.Source)
					}
				}
			}
		}
		gd := filepath.Join(root, "gd.yaml")
		if err := os.WriteFile(gd, data, 0o600); err != nil {
			t.Fatal(err)
		}
		doc, err := LoadFile(gd)
		if err != nil {
			if leaks(err.Error()) {
				t.Fatalf("file %q: %v", ref, err)
			}
			return
		}
		exps, err := Resolve(doc)
		if err != nil {
			t.Fatalf("loaded but does not resolve: %v", err)
		}
		for _, e := range exps {
			if !strings.HasPrefix(e.Source, "library:") && e.Source != filepath.Join(root, "sub", "exp.yaml") {
				t.Fatalf("ref %q loaded %s", ref, e.Source)
			}
		}
	})
}

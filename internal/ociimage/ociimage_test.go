package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

// The pod test (pod_test.go) shares this test binary and its control plane.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(cleanup{k8senv.Main(m)}, k8senv.LeakOptions()...)
}

// cleanup removes the test binary's build directory after the tests.
type cleanup struct{ m k8senv.Runner }

func (c cleanup) Run() int {
	code := c.m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	return code
}

// ChaosgateBinaryForTest exposes staticChaosgate to pod_test.go.
var ChaosgateBinaryForTest = staticChaosgate

// VersionForTest exposes testVersion to pod_test.go.
const VersionForTest = testVersion

// OptionsForTest exposes testOptions to pod_test.go.
var OptionsForTest = testOptions

// ImageForTest exposes testImage (built once) to pod_test.go.
var ImageForTest = testImage

// testVersion is the release the test binary is stamped with.
const testVersion = "v0.0.0-imagetest"

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// staticChaosgate builds cmd/chaosgate once per test binary as `make image`
// does (static, Linux, -X main.version) and returns its path.
func staticChaosgate(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "chaosgate-image-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "chaosgate")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+testVersion, "-o", binPath, "github.com/chaosgate/chaosgate/cmd/chaosgate")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build cmd/chaosgate: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// testOptions are the options of the image the tests build.
func testOptions(t testing.TB) Options {
	return Options{
		Binary:   staticChaosgate(t),
		Version:  testVersion,
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Licenses: "NOASSERTION",
		Created:  time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC),
	}
}

var (
	imgOnce sync.Once
	img     v1.Image
	imgErr  error
)

// testImage builds the image of testOptions once per test binary.
func testImage(t testing.TB) v1.Image {
	t.Helper()
	o := testOptions(t)
	imgOnce.Do(func() { img, imgErr = Chaosgate(o) })
	if imgErr != nil {
		t.Fatal(imgErr)
	}
	return img
}

// layerFiles reads the image's only layer: headers by path and file contents.
func layerFiles(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, err %v; want exactly one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer tar: %v", err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		hdrs[p] = h
		if h.Typeflag == tar.TypeReg {
			if data[p], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	return hdrs, data
}

func TestImageConfigRunsNonRootWithLabels(t *testing.T) {
	o := testOptions(t)
	img := testImage(t)
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest config %s, layers %v: want OCI config and one OCI gzip layer", m.Config.MediaType, m.Layers)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/<arch>", cf.OS, cf.Architecture)
	}
	if strings.Join(c.Entrypoint, " ") != BinaryPath {
		t.Errorf("entrypoint %q, want [%s]", c.Entrypoint, BinaryPath)
	}
	if len(c.Cmd) == 0 || c.Cmd[0] != "serve" {
		t.Errorf("cmd %q, want serve first", c.Cmd)
	}
	uid, gid, ok := strings.Cut(c.User, ":")
	if u, err := strconv.Atoi(uid); !ok || err != nil || u == 0 || u != UID {
		t.Errorf("user %q, want numeric non-root %d:%d (runAsNonRoot can only check a number)", c.User, UID, GID)
	}
	if g, err := strconv.Atoi(gid); err != nil || g != GID {
		t.Errorf("user %q: group, want %d", c.User, GID)
	}
	if c.WorkingDir != DataDir {
		t.Errorf("working dir %q, want %s", c.WorkingDir, DataDir)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v, want 8080/tcp", c.ExposedPorts)
	}
	want := map[string]string{
		LabelTitle: "chaosgate", LabelVersion: testVersion, LabelRevision: o.Revision,
		LabelSource: Source, LabelLicenses: "NOASSERTION", LabelCreated: "2026-12-05T08:00:00Z",
	}
	for k, v := range want {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
		if m.Annotations[k] != v {
			t.Errorf("manifest annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}
	if !cf.Created.Time.Equal(o.Created) || len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(o.Created) {
		t.Errorf("created %v, history %v: want every time %v", cf.Created, cf.History, o.Created)
	}

	hdrs, data := layerFiles(t, img)
	for p, h := range hdrs {
		if !h.ModTime.Equal(o.Created) {
			t.Errorf("%s: mtime %v, want %v", p, h.ModTime, o.Created)
		}
	}
	for _, w := range []struct {
		path     string
		mode     int64
		uid      int
		typeflag byte
	}{
		{BinaryPath, 0o755, 0, tar.TypeReg},
		{"/tmp", 0o1777, 0, tar.TypeDir},
		{DataDir, 0o700, UID, tar.TypeDir},
		{"/etc/passwd", 0o644, 0, tar.TypeReg},
	} {
		h := hdrs[w.path]
		if h == nil {
			t.Errorf("layer has no %s", w.path)
			continue
		}
		if h.Mode != w.mode || h.Uid != w.uid || h.Typeflag != w.typeflag {
			t.Errorf("%s: mode %o uid %d type %c, want %o %d %c", w.path, h.Mode, h.Uid, h.Typeflag, w.mode, w.uid, w.typeflag)
		}
	}
	if !strings.Contains(string(data["/etc/passwd"]), fmt.Sprintf(":%d:%d:", UID, GID)) {
		t.Errorf("/etc/passwd names no user %d:\n%s", UID, data["/etc/passwd"])
	}

	// The binary in the layer, run, reports the version of the label.
	bin := filepath.Join(t.TempDir(), "chaosgate")
	if err := os.WriteFile(bin, data[BinaryPath], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("the layer's chaosgate version: %v", err)
	}
	if !strings.HasPrefix(string(out), "chaosgate "+c.Labels[LabelVersion]+" ") {
		t.Fatalf("the layer's binary says %q; the version label is %q", out, c.Labels[LabelVersion])
	}
}

func TestBuildIsReproducible(t *testing.T) {
	a := testImage(t)
	b, err := Chaosgate(testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("two builds of one binary: digests %s and %s", da, db)
	}
	// The time stamp is in the digest: a small image built a second later
	// differs.
	small := func(created time.Time) v1.Hash {
		im, err := Build(Spec{Files: []File{{Path: "/x", Mode: 0o644, Data: []byte("x")}}, Arch: "amd64", Created: created})
		if err != nil {
			t.Fatal(err)
		}
		d, err := im.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t0 := time.Unix(1764921600, 0)
	if small(t0) != small(t0) || small(t0) == small(t0.Add(time.Second)) {
		t.Fatal("a small image's digest does not follow its creation time alone")
	}

	// Both outputs hold the same image.
	dir := t.TempDir()
	tag, err := Tag(Repository + ":" + testVersion)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(filepath.Join(dir, "oci"), a, tag); err != nil {
		t.Fatal(err)
	}
	// Writing again replaces the layout instead of adding a second image.
	if err := WriteLayout(filepath.Join(dir, "oci"), a, tag); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != da ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != testVersion ||
		im.Manifests[0].Annotations["io.containerd.image.name"] != Repository+":"+testVersion {
		t.Fatalf("OCI layout index %+v, want one manifest %s named %s", im.Manifests, da, tag)
	}
	tarPath := filepath.Join(dir, "image.tar")
	if err := WriteTarball(tarPath, a, tag); err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatalf("read back the tarball by its tag: %v", err)
	}
	idA, _ := a.ConfigName()
	idT, err := fromTar.ConfigName()
	if err != nil || idT != idA {
		t.Fatalf("tarball image id %s (err %v), want %s", idT, err, idA)
	}
}

func TestBadInputIsRefused(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"no version", Options{Binary: notELF, Created: time.Unix(1, 0)}, "no version"},
		{"no binary", Options{Version: "v1", Created: time.Unix(1, 0)}, "no binary"},
		{"missing binary", Options{Binary: filepath.Join(dir, "absent"), Version: "v1", Created: time.Unix(1, 0)}, "no such file"},
		{"not ELF", Options{Binary: notELF, Version: "v1", Created: time.Unix(1, 0)}, "not an ELF executable"},
		{"no time", Options{Binary: staticChaosgate(t), Version: "v1"}, "no creation time"},
	} {
		_, err := Chaosgate(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to say %q", c.name, err, c.want)
		}
	}
	// A dynamically linked program (the shell is one on every Linux host
	// with a libc) is refused: the image has no libc.
	if sh, err := exec.LookPath("sh"); err == nil {
		if real, err := filepath.EvalSymlinks(sh); err == nil {
			f, err := os.Open(real)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := StaticBinary(f); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
				t.Errorf("%s: err = %v, want a dynamically linked refusal with a CGO_ENABLED=0 hint", real, err)
			}
		}
	}
	if _, err := Tag("ghcr.io/chaosgate/chaosgate:bad tag"); err == nil || !strings.Contains(err.Error(), "hint") {
		t.Errorf("bad tag: err = %v", err)
	}
	for _, bad := range []string{"", "-1", "+5", "1.5", "12abc", "99999999999999999999", "253402300800"} {
		if _, err := ParseSourceDateEpoch(bad); err == nil {
			t.Errorf("SOURCE_DATE_EPOCH %q accepted", bad)
		}
	}
	if tm, err := ParseSourceDateEpoch(" 1764921600\n"); err != nil || !tm.Equal(time.Date(2025, 12, 5, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("SOURCE_DATE_EPOCH 1764921600: %v, %v", tm, err)
	}
	if _, err := tarLayer([]File{{Path: "/a/b", Mode: 0o644}}, time.Unix(1, 0)); err == nil || !strings.Contains(err.Error(), "parent /a") {
		t.Errorf("layer without parent: err = %v", err)
	}
	if _, err := tarLayer([]File{{Path: "rel", Mode: 0o644}}, time.Unix(1, 0)); err == nil {
		t.Error("relative layer path accepted")
	}
}

func FuzzParseSourceDateEpoch(f *testing.F) {
	for _, s := range []string{"0", "1764921600", " 42\n", "-1", "+1", "1e9", "", "253402300799", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseSourceDateEpoch(s)
		if err != nil {
			if !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
				t.Fatalf("error does not name SOURCE_DATE_EPOCH: %v", err)
			}
			return
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if tm.Unix() != n || n < 0 || tm.Location() != time.UTC {
			t.Fatalf("%q parsed as %v", s, tm)
		}
		if _, err := time.Parse(time.RFC3339, tm.Format(time.RFC3339)); err != nil {
			t.Fatalf("%q: created label %q does not parse: %v", s, tm.Format(time.RFC3339), err)
		}
	})
}

func FuzzStaticBinary(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Add([]byte("#!/bin/sh\n"))
	f.Add([]byte{})
	if b, err := os.ReadFile(os.Args[0]); err == nil && len(b) > 4096 {
		f.Add(b[:4096]) // an ELF header and program headers, truncated
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		arch, err := StaticBinary(bytes.NewReader(b))
		if err == nil && arch == "" {
			t.Fatal("accepted with no architecture")
		}
		if err != nil && arch != "" {
			t.Fatalf("refused (%v) but named architecture %q", err, arch)
		}
	})
}

// Package ociimage builds chaosgate's container image without a container
// daemon: one layer holding the static chaosgate binary, a non-root user and
// the few files and directories it needs, packed with go-containerregistry
// into an OCI image layout and a tarball that `docker load` and
// `ctr images import` read. The same builder makes the pause image the
// Kubernetes test rig gives containerd as its sandbox image.
//
// Builds are reproducible: every timestamp is the Created time (from
// SOURCE_DATE_EPOCH or the commit time), file order is fixed and owners are
// numeric, so the same binary and options give the same digest.
package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Repository is where chaosgate's image is published; deploy/ names it.
const Repository = "ghcr.io/chaosgate/chaosgate"

// Source is chaosgate's source repository, for the source label.
const Source = "https://github.com/chaosgate/chaosgate"

// UID and GID are the image's non-root user and group ("nonroot", as in
// distroless images).
const (
	UID = 65532
	GID = 65532
)

// Paths inside chaosgate's image.
const (
	// BinaryPath is the entrypoint.
	BinaryPath = "/chaosgate"
	// DataDir is serve's data directory (owned by UID, mode 0700) and the
	// working directory; deploy/serve mounts its volume here.
	DataDir = "/var/lib/chaosgate"
	// CACertsPath is where a CA bundle given with Options.CACerts goes; Go's
	// crypto/x509 reads it on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// HTTPPort is the port the default command serves on.
	HTTPPort = 8080
)

// OCI annotation keys used as image labels.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelLicenses = "org.opencontainers.image.licenses"
	LabelCreated  = "org.opencontainers.image.created"
)

// File is one entry of an image layer.
type File struct {
	// Path is absolute ("/etc/passwd"); parents must be listed too.
	Path string
	// Mode holds the permission bits (and fs.ModeDir/ModeSticky).
	Mode     fs.FileMode
	UID, GID int
	// Data is a regular file's content (nil for a directory).
	Data []byte
}

// Spec is a single-layer image.
type Spec struct {
	Files []File
	// Config is the runtime configuration (entrypoint, user, labels, ...).
	Config v1.Config
	// Created stamps the image, its history and every file.
	Created time.Time
	// Arch is the GOARCH-style architecture ("amd64").
	Arch string
	// Comment describes the layer in the image history.
	Comment string
}

// Build makes an OCI image (OCI manifest and config media types) of spec's
// one layer and configuration.
func Build(spec Spec) (v1.Image, error) {
	if spec.Arch == "" {
		return nil, errors.New("ociimage: no architecture (hint: take it from the binary with StaticBinary)")
	}
	if spec.Created.IsZero() {
		return nil, errors.New("ociimage: no creation time (hint: SOURCE_DATE_EPOCH or the commit time, for reproducible builds)")
	}
	created := spec.Created.UTC().Truncate(time.Second)
	layerTar, err := tarLayer(spec.Files, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("ociimage: layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "chaosgate make image (go-containerregistry)", Comment: spec.Comment},
	})
	if err != nil {
		return nil, fmt.Errorf("ociimage: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = spec.Arch
	if spec.Arch == "arm" {
		cf.Variant = "v7"
	}
	cf.Created = v1.Time{Time: created}
	cf.Config = spec.Config
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("ociimage: config: %w", err)
	}
	if len(spec.Config.Labels) > 0 {
		// The OCI manifest carries the same annotations as the labels.
		img = mutate.Annotations(img, maps.Clone(spec.Config.Labels)).(v1.Image)
	}
	return img, nil
}

// tarLayer writes files, parents first, as an uncompressed tar stamped with
// created.
func tarLayer(files []File, created time.Time) ([]byte, error) {
	seen := map[string]bool{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("ociimage: layer path %q: want a clean absolute path below /", f.Path)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("ociimage: layer path %q listed twice", f.Path)
		}
		seen[f.Path] = true
	}
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range sorted {
		if dir := path.Dir(f.Path); dir != "/" && !seen[dir] {
			return nil, fmt.Errorf("ociimage: layer path %q: parent %s is not listed", f.Path, dir)
		}
		h := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    int64(f.Mode.Perm()),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		if f.Mode.IsDir() {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("ociimage: layer entry %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("ociimage: layer entry %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Options describe chaosgate's image.
type Options struct {
	// Binary is a static Linux chaosgate binary (CGO_ENABLED=0).
	Binary string
	// Version is the release the binary reports (`chaosgate version`).
	Version string
	// Revision is the source commit.
	Revision string
	// Source is the source repository URL (default Source).
	Source string
	// Licenses is an SPDX license expression for the licenses label.
	Licenses string
	// Created stamps the image (SOURCE_DATE_EPOCH or the commit time).
	Created time.Time
	// CACerts, when set, is a PEM bundle copied to CACertsPath so that
	// HTTPS notifications and anchors verify their servers.
	CACerts string
}

// Labels returns the OCI labels of chaosgate's image for o.
func (o Options) Labels() map[string]string {
	src := o.Source
	if src == "" {
		src = Source
	}
	l := map[string]string{
		LabelTitle:    "chaosgate",
		LabelVersion:  o.Version,
		LabelRevision: o.Revision,
		LabelSource:   src,
		LabelLicenses: o.Licenses,
		LabelCreated:  o.Created.UTC().Truncate(time.Second).Format(time.RFC3339),
	}
	for k, v := range l {
		if v == "" {
			delete(l, k)
		}
	}
	return l
}

// Chaosgate builds chaosgate's image: /chaosgate as the entrypoint, `serve`
// on every interface's port 8080 with its data in DataDir as the default
// command, user 65532:65532, an /etc/passwd naming it, a world-writable
// /tmp and the OCI labels.
func Chaosgate(o Options) (v1.Image, error) {
	if o.Version == "" {
		return nil, errors.New("ociimage: no version (hint: the -X main.version the binary was built with)")
	}
	bin, arch, err := readStatic(o.Binary)
	if err != nil {
		return nil, err
	}
	files := []File{
		{Path: BinaryPath, Mode: 0o755, Data: bin},
		{Path: "/etc", Mode: fs.ModeDir | 0o755},
		{Path: "/etc/passwd", Mode: 0o644, Data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:chaosgate:%s:/sbin/nologin\n", UID, GID, DataDir)},
		{Path: "/etc/group", Mode: 0o644, Data: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", GID)},
		{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "/var", Mode: fs.ModeDir | 0o755},
		{Path: "/var/lib", Mode: fs.ModeDir | 0o755},
		// serve keeps its data directory private (0700) and refuses one it
		// cannot make so.
		{Path: DataDir, Mode: fs.ModeDir | 0o700, UID: UID, GID: GID},
	}
	if o.CACerts != "" {
		pem, err := os.ReadFile(o.CACerts)
		if err != nil {
			return nil, fmt.Errorf("ociimage: CA bundle: %w", err)
		}
		if !bytes.Contains(pem, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("ociimage: CA bundle %s holds no PEM certificate (hint: the system bundle, e.g. Debian's ca-certificates.crt)", o.CACerts)
		}
		files = append(files,
			File{Path: "/etc/ssl", Mode: fs.ModeDir | 0o755},
			File{Path: "/etc/ssl/certs", Mode: fs.ModeDir | 0o755},
			File{Path: CACertsPath, Mode: 0o644, Data: pem})
	}
	return Build(Spec{
		Files:   files,
		Arch:    arch,
		Created: o.Created,
		Comment: "chaosgate " + o.Version,
		Config: v1.Config{
			Entrypoint:   []string{BinaryPath},
			Cmd:          []string{"serve", fmt.Sprintf("--http=:%d", HTTPPort), "--data-dir=" + DataDir},
			User:         fmt.Sprintf("%d:%d", UID, GID),
			WorkingDir:   DataDir,
			Env:          []string{"PATH=/", "HOME=" + DataDir},
			ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", HTTPPort): {}},
			StopSignal:   "SIGTERM",
			Labels:       o.Labels(),
		},
	})
}

// Pause builds a sandbox ("pause") image from a static binary that waits
// for SIGTERM or SIGINT: /pause as the entrypoint, user 65535.
func Pause(binary string, created time.Time) (v1.Image, error) {
	bin, arch, err := readStatic(binary)
	if err != nil {
		return nil, err
	}
	return Build(Spec{
		Files:   []File{{Path: "/pause", Mode: 0o755, Data: bin}},
		Arch:    arch,
		Created: created,
		Comment: "pause",
		Config:  v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535", WorkingDir: "/"},
	})
}

func readStatic(p string) ([]byte, string, error) {
	if p == "" {
		return nil, "", errors.New("ociimage: no binary given")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, "", fmt.Errorf("ociimage: binary: %w", err)
	}
	arch, err := StaticBinary(bytes.NewReader(b))
	if err != nil {
		return nil, "", fmt.Errorf("ociimage: %s: %w", p, err)
	}
	return b, arch, nil
}

// StaticBinary checks that r is a statically linked Linux ELF executable
// (no program interpreter, no shared libraries: the image has no libc) and
// returns its GOARCH-style architecture.
func StaticBinary(r io.ReaderAt) (arch string, err error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %v (hint: build for Linux: GOOS=linux CGO_ENABLED=0 go build)", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return "", fmt.Errorf("ELF OS ABI %v is not Linux", f.OSABI)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (it has a program interpreter) (hint: build with CGO_ENABLED=0)")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return "", fmt.Errorf("needs shared libraries %v (hint: build with CGO_ENABLED=0)", libs)
	}
	switch {
	case f.Machine == elf.EM_X86_64:
		return "amd64", nil
	case f.Machine == elf.EM_AARCH64:
		return "arm64", nil
	case f.Machine == elf.EM_386:
		return "386", nil
	case f.Machine == elf.EM_ARM:
		return "arm", nil
	case f.Machine == elf.EM_PPC64 && f.ByteOrder.String() == "LittleEndian":
		return "ppc64le", nil
	case f.Machine == elf.EM_S390:
		return "s390x", nil
	case f.Machine == elf.EM_RISCV && f.Class == elf.ELFCLASS64:
		return "riscv64", nil
	}
	return "", fmt.Errorf("ELF machine %v (%v) has no image architecture here", f.Machine, f.Class)
}

// ParseSourceDateEpoch reads a SOURCE_DATE_EPOCH value: whole seconds since
// 1970-01-01 UTC (https://reproducible-builds.org/specs/source-date-epoch/).
func ParseSourceDateEpoch(s string) (time.Time, error) {
	v := strings.TrimSpace(s)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || v == "" || v[0] == '+' || v[0] == '-' {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want whole seconds since 1970 (hint: git log -1 --format=%%ct)", s)
	}
	// Beyond year 9999 RFC 3339 (the created label) has no form.
	if n > 253402300799 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: after the year 9999", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// Tag parses a reference "REPO:TAG" for WriteTarball, e.g.
// Repository+":"+version.
func Tag(ref string) (name.Tag, error) {
	t, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("ociimage: image reference %q: %w (hint: REPOSITORY:TAG, a tag of letters, digits, '.', '_' and '-')", ref, err)
	}
	return t, nil
}

// WriteTarball writes img as a `docker load` / `ctr images import` tarball
// tagged tag, replacing path.
func WriteTarball(path string, img v1.Image, tag name.Tag) error {
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("ociimage: write %s: %w", path, err)
	}
	return nil
}

// WriteLayout writes img as an OCI image layout in dir (replacing what is
// there). The index names it with the tag alone
// (org.opencontainers.image.ref.name, as skopeo's oci:DIR:TAG reads it) and
// the full reference (io.containerd.image.name, as containerd imports it).
func WriteLayout(dir string, img v1.Image, tag name.Tag) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("ociimage: replace %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("ociimage: layout %s: %w", dir, err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.Name(),
	}))
	if err != nil {
		return fmt.Errorf("ociimage: layout %s: %w", dir, err)
	}
	return nil
}

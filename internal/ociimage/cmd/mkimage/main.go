// Command mkimage packs a static chaosgate binary into chaosgate's OCI image
// (internal/ociimage) and writes it as an OCI image layout and as a tarball
// for `docker load` / `ctr images import`. `make image` runs it:
//
//	mkimage -binary bin/image/chaosgate -version v0.1.0 -revision COMMIT \
//	  -oci bin/image/oci -tarball bin/chaosgate-image.tar
//
// The creation time is -created (seconds since 1970), else
// SOURCE_DATE_EPOCH; one of them is required so that builds are
// reproducible.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/chaosgate/chaosgate/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var o ociimage.Options
	var created, tag, ociDir, tarPath string
	fs.StringVar(&o.Binary, "binary", "", "static Linux chaosgate binary (CGO_ENABLED=0)")
	fs.StringVar(&o.Version, "version", "", "release the binary reports (its -X main.version)")
	fs.StringVar(&o.Revision, "revision", "", "source commit, for the revision label")
	fs.StringVar(&o.Source, "source", ociimage.Source, "source repository URL, for the source label")
	fs.StringVar(&o.Licenses, "licenses", "", "SPDX license expression, for the licenses label")
	fs.StringVar(&o.CACerts, "ca-certs", "", "PEM CA bundle to install as "+ociimage.CACertsPath+" (optional)")
	fs.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time in seconds since 1970 (default $SOURCE_DATE_EPOCH)")
	fs.StringVar(&tag, "tag", "", "image reference of the tarball (default "+ociimage.Repository+":VERSION)")
	fs.StringVar(&ociDir, "oci", "", "OCI image layout directory to write (replaced)")
	fs.StringVar(&tarPath, "tarball", "", "docker/containerd tarball to write (replaced)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (hint: every input is a flag; see -h)", fs.Args())
	}
	if ociDir == "" && tarPath == "" {
		return fmt.Errorf("nothing to write (hint: -oci DIR and/or -tarball FILE)")
	}
	if o.Version == "" {
		return fmt.Errorf("no -version (hint: the release the binary was built with, e.g. -version $(git describe --tags --always --dirty))")
	}
	if created == "" {
		return fmt.Errorf("no creation time (hint: -created $(git log -1 --format=%%ct) or SOURCE_DATE_EPOCH)")
	}
	t, err := ociimage.ParseSourceDateEpoch(created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	o.Created = t
	if tag == "" {
		tag = ociimage.Repository + ":" + o.Version
	}
	ref, err := ociimage.Tag(tag)
	if err != nil {
		return err
	}
	img, err := ociimage.Chaosgate(o)
	if err != nil {
		return err
	}
	if ociDir != "" {
		if err := ociimage.WriteLayout(ociDir, img, ref); err != nil {
			return err
		}
	}
	if tarPath != "" {
		if err := ociimage.WriteTarball(tarPath, img, ref); err != nil {
			return err
		}
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n  manifest %s\n  config (image id) %s\n", ref.Name(), digest, id)
	if ociDir != "" {
		fmt.Fprintf(stdout, "  OCI layout %s\n", ociDir)
	}
	if tarPath != "" {
		fmt.Fprintf(stdout, "  tarball %s\n", tarPath)
	}
	return nil
}

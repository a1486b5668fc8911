// Package browsertest drives a real headless Chromium for the dashboard's
// browser tests: it finds the browser (a test skips outside CI when it is
// missing and fails with CI=true), starts it on a private profile, and
// waits for conditions across page navigations.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// ChromiumPath finds Chromium: skipped outside CI when it is missing,
// fatal with CI=true.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install -y chromium; make test installs it)")
	}
	t.Skip("chromium is not installed; the browser test needs it (apt-get install -y chromium)")
	return ""
}

// Start launches headless Chromium on a fresh profile and returns a
// browser context that ends after timeout; the browser stops when the
// test ends.
func Start(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath(t)), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun, chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancel()
		cancelCtx()
		cancelAlloc()
	})
	return ctx
}

// Do runs steps, failing the test with what on an error.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Text is the visible text of the first element matching sel.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Poll waits until expr is true in the page, for up to timeout. A
// navigation (a reload, a form submit) interrupts a poll: the page's
// JavaScript context goes away under it; it polls again on the new page.
func Poll(t testing.TB, ctx context.Context, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left < time.Second {
			left = time.Second
		}
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(left)))
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !InterruptedByNavigation(err) {
			t.Fatalf("waiting for %s: %v", expr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// InterruptedByNavigation reports whether a CDP call failed because the
// page navigated while it ran: Chromium answers "Inspected target
// navigated or closed", "Execution context was destroyed" or "Cannot find
// context with specified id" depending on when the old context went away.
func InterruptedByNavigation(err error) bool {
	msg := err.Error()
	for _, s := range []string{"navigated", "context was destroyed", "Cannot find context"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// ColorScheme emulates the system's colour scheme ("dark" or "light") for
// the page's prefers-color-scheme media queries.
func ColorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

// Screenshot saves a PNG of the current page as dir/name when dir is set
// (the screenshots make target sets it); nothing otherwise. full takes
// the whole page, else what the window shows.
func Screenshot(t testing.TB, ctx context.Context, dir, name string, full bool) {
	t.Helper()
	if dir == "" {
		return
	}
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

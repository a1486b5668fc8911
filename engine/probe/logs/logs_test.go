package logs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGuardsCatchDropsIncrementally(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.log")
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
	p, err := New(Config{Arms: []engine.Arm{engine.ArmCanary, engine.ArmControl}, Files: func(a engine.Arm) map[string]string {
		if a == engine.ArmCanary {
			return map[string]string{"n1": path}
		}
		return map[string]string{"n1": filepath.Join(dir, "absent.log")}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano) }
	write(`time=` + at(0) + ` level=INFO msg="aggregator node started" node=n1` + "\n")
	write(`time=` + at(1) + ` level=WARN msg="queue full: dropped 3 messages" node=n1` + "\n")
	write(`time=` + at(2) + ` level=WARN msg="forward failed" node=n1` + "\n")
	write("panic: runtime error: index out of range\n")
	write(`time=` + at(3) + ` level=WARN msg="discarding batch" node=n1`) // no newline yet
	w := engine.Window{Start: t0, End: time.Now().Add(time.Minute)}
	o, err := p.Observe(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Arms[engine.ArmCanary]["matches"]; got != 2 {
		t.Fatalf("matches %v, want the drop and the panic: %+v", got, o.Detail)
	}
	if o.Arms[engine.ArmControl]["matches"] != 0 {
		t.Fatal("a missing log is not a match")
	}
	write("\n")
	o, _ = p.Observe(context.Background(), w)
	if got := o.Arms[engine.ArmCanary]["matches"]; got != 3 {
		t.Fatalf("after the partial line completed: %v", got)
	}
	ms := p.Matches(engine.ArmCanary, t0.Add(time.Second), t0.Add(time.Second))
	if len(ms) != 1 || !strings.Contains(ms[0].Line, "dropped 3") {
		t.Fatalf("time attribution: %+v", ms)
	}
}

func TestBadPatternIsAClearError(t *testing.T) {
	_, err := New(Config{Files: func(engine.Arm) map[string]string { return nil }, Patterns: []string{"ok", "(unclosed"}})
	if err == nil || !strings.Contains(err.Error(), "pattern 2") || engine.KindOf(err) != engine.KindInvalid {
		t.Fatalf("want a kinded error naming pattern 2, got %v", err)
	}
}

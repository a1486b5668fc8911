package web

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeAtomicChildEnv names the file TestWriteAtomicChild writes.
const writeAtomicChildEnv = "CHAOSGATE_TEST_WRITE_ATOMIC"

// TestWriteAtomicChild writes one record with writeAtomic when run by
// TestWriteAtomicSyncsTheDirectory; otherwise it does nothing.
func TestWriteAtomicChild(t *testing.T) {
	path := os.Getenv(writeAtomicChildEnv)
	if path == "" {
		t.Skip("run by TestWriteAtomicSyncsTheDirectory")
	}
	if err := writeAtomic(path, []byte(`{"id":"serve-x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAtomicSyncsTheDirectory: a run record or schedule file replaced
// through writeAtomic survives a power loss: the new file's data is synced
// before the rename, and the directory is synced after it, so the rename
// itself is on disk. The system calls are watched with strace.
func TestWriteAtomicSyncsTheDirectory(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	dir := filepath.Join(t.TempDir(), "runs")
	target := filepath.Join(dir, "serve-x.json")
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-e", "trace=openat,rename,renameat,renameat2,fsync,fdatasync", "-o", trace,
		os.Args[0], "-test.run=^TestWriteAtomicChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), writeAtomicChildEnv+"="+target)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS: TestWriteAtomicChild") {
		if strings.Contains(string(out), "ptrace") {
			t.Skipf("strace cannot trace here: %s", out)
		}
		t.Fatalf("child: %v\n%s", err, out)
	}
	if st, err := os.Stat(target); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v %v", st, err)
	}
	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	lines := joinResumedSyscalls(strings.Split(string(data), "\n"))
	openRe := regexp.MustCompile(`openat\(AT_FDCWD, "([^"]*)", [^)]*\) = (\d+)`)
	syncRe := regexp.MustCompile(`f(?:data)?sync\((\d+)\) += 0`)
	fds := map[string]string{} // fd → path it was last opened for
	synced := map[string]bool{}
	renamed := false
	var tmp string
	for _, l := range lines {
		if m := openRe.FindStringSubmatch(l); m != nil {
			fds[m[2]] = m[1]
			continue
		}
		if m := syncRe.FindStringSubmatch(l); m != nil {
			synced[fds[m[1]]] = true
			if renamed && fds[m[1]] == dir {
				t.Logf("%s is synced after the rename", dir)
				return
			}
			continue
		}
		if strings.Contains(l, "rename") && strings.Contains(l, `"`+target+`"`) && strings.Contains(l, "= 0") {
			if m := regexp.MustCompile(`"(` + regexp.QuoteMeta(dir) + `/\.tmp-[^"]*)"`).FindStringSubmatch(l); m != nil {
				tmp = m[1]
			}
			if tmp == "" || !synced[tmp] {
				t.Fatalf("%s renamed into place before its data was synced:\n%s", tmp, data)
			}
			renamed = true
		}
	}
	t.Fatalf("renamed %v, but the directory %s is not synced after the rename:\n%s", renamed, dir, data)
}

// straceUnfinishedRe and straceResumedRe match the two halves strace -f
// writes when another thread's system call lands between a call's start and
// its return: `PID  fsync(5 <unfinished ...>` … `PID  <... fsync resumed>) = 0`.
var (
	straceUnfinishedRe = regexp.MustCompile(`^(\d+) +(.*) <unfinished \.\.\.>$`)
	straceResumedRe    = regexp.MustCompile(`^(\d+) +<\.\.\. \w+ resumed>(.*)$`)
)

// joinResumedSyscalls puts each split system call back into one line, at
// the place where it returned; other lines are kept as they are.
func joinResumedSyscalls(lines []string) []string {
	pending := map[string]string{} // pid → the call's first half
	var out []string
	for _, l := range lines {
		if m := straceUnfinishedRe.FindStringSubmatch(l); m != nil {
			pending[m[1]] = m[1] + "  " + m[2]
			continue
		}
		if m := straceResumedRe.FindStringSubmatch(l); m != nil {
			if head, ok := pending[m[1]]; ok {
				delete(pending, m[1])
				out = append(out, head+m[2])
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

// TestJoinResumedSyscalls: the split fsync of a CI trace is read as one
// call, in the order it returned.
func TestJoinResumedSyscalls(t *testing.T) {
	got := joinResumedSyscalls([]string{
		`4663  openat(AT_FDCWD, "/d/.tmp-1", O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 5`,
		`4663  fsync(5 <unfinished ...>`,
		`4665  --- SIGURG {si_signo=SIGURG} ---`,
		`4663  <... fsync resumed>)              = 0`,
		`4665  renameat(AT_FDCWD, "/d/.tmp-1", AT_FDCWD, "/d/x.json") = 0`,
	})
	want := []string{
		`4663  openat(AT_FDCWD, "/d/.tmp-1", O_RDWR|O_CREAT|O_EXCL|O_CLOEXEC, 0600) = 5`,
		`4665  --- SIGURG {si_signo=SIGURG} ---`,
		`4663  fsync(5)              = 0`,
		`4665  renameat(AT_FDCWD, "/d/.tmp-1", AT_FDCWD, "/d/x.json") = 0`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("joined:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

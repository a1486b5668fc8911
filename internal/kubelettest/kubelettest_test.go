package kubelettest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(k8senv.Main(m), k8senv.LeakOptions()...)
}

func TestContainerdConfigIsPrivate(t *testing.T) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("containerd not on PATH (make test-deps installs it): %v", err)
		}
		t.Skipf("containerd not on PATH (apt-get install containerd, or make test-deps): %v", err)
	}
	def, err := exec.Command(bin, "config", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, state, sock := filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "c.sock")
	cfg, err := ContainerdConfig(def, root, state, sock, "example.test/pause:1")
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, want := range []string{"\nroot = \"" + root + "\"\n", "\nstate = \"" + state + "\"\n", "address = \"" + sock + "\"\n",
		"sandbox_image = \"example.test/pause:1\"\n", "restrict_oom_score_adj = true\n", "path = \"" + filepath.Join(root, "opt") + "\"\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	for _, shared := range []string{`"/var/lib/containerd"`, `"/run/containerd"`, `"/run/containerd/containerd.sock"`, `"/opt/containerd"`} {
		if strings.Contains(s, shared) {
			t.Errorf("config still names the system's %s", shared)
		}
	}
	if _, err := ContainerdConfig([]byte("version = 2\n"), "r", "s", "c", "p"); err == nil || !strings.Contains(err.Error(), "grpc.address") {
		t.Errorf("config without the settings: err = %v, want it to name what is missing", err)
	}
}

func TestParseTasks(t *testing.T) {
	out := "TASK                                                                PID      STATUS    \n" +
		"0f3b9c1e2d                                                          4242     RUNNING\n" +
		"a1b2                                                                17       STOPPED\n"
	tasks, err := ParseTasks([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 || tasks[0] != (Task{ID: "0f3b9c1e2d", PID: 4242, Status: "RUNNING"}) || tasks[1].PID != 17 {
		t.Fatalf("tasks %+v", tasks)
	}
	for _, bad := range []string{"TASK PID STATUS\nx y RUNNING\n", "TASK PID STATUS\nonly-two 12\n", "TASK PID STATUS\nx -3 RUNNING\n"} {
		if _, err := ParseTasks([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: err = %v, want one naming line 2", bad, err)
		}
	}
}

func FuzzParseTasks(f *testing.F) {
	f.Add("TASK PID STATUS\nabc 12 RUNNING\n")
	f.Add("")
	f.Add("x y z\n")
	f.Fuzz(func(t *testing.T, s string) {
		tasks, err := ParseTasks([]byte(s))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "kubelettest: ctr tasks ls line ") {
				t.Fatalf("error names no line: %v", err)
			}
			return
		}
		for _, task := range tasks {
			if task.ID == "" || task.PID < 0 || task.Status == "" {
				t.Fatalf("task %+v from %q", task, s)
			}
		}
	})
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134y`: `/x\y`, `/end\04`: `/end\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

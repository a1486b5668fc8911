// Package k8senv starts a real Kubernetes control plane for tests with
// controller-runtime's envtest: Debian's etcd and a kube-apiserver built from
// the Go module proxy (scripts/build-kube-apiserver.sh), both on 127.0.0.1
// free ports with a temporary data directory, token authentication, RBAC and
// service-account token signing, plus the Chaos Mesh CRDs taken from the
// chaos-mesh module zip.
//
// One control plane is shared by every test of a package: TestMain wraps
// testing.M with Main, tests call Get. Every process is stopped by pid when
// the package's tests end. Outside CI a missing binary skips the tests that
// need it (saying which); with CI=true it fails them.
package k8senv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"go.uber.org/goleak"

	"github.com/chaosgate/chaosgate/internal/buildcache"
	"github.com/chaosgate/chaosgate/internal/freeport"
)

// KubeAPIServerVersion is the kube-apiserver release the harness runs.
const KubeAPIServerVersion = "v1.34.2"

// ChaosMeshModuleVersion is the version of the github.com/chaos-mesh/chaos-mesh
// root module whose config/crd/bases the harness installs. The root module has
// no usable tags and the proxy refuses the api module's own commit; this is
// the nearest commit it serves (four days before the pinned api module).
const ChaosMeshModuleVersion = "v0.9.1-0.20260902003049-47411975a8cb"

// AdminUser is the user name of the admin token (group system:masters).
const AdminUser = "chaosgate-test-admin"

// Env is a running control plane.
type Env struct {
	// URL is the API server's https address.
	URL string
	// Config is an admin rest.Config (token auth, the server's self-signed CA).
	Config *rest.Config
	// Client is an admin typed clientset.
	Client kubernetes.Interface
	// Dynamic is an admin dynamic client.
	Dynamic dynamic.Interface
	// AdminToken is the bearer token of AdminUser.
	AdminToken string
	// ChaosMeshCRDs is true once the PodChaos and NetworkChaos CRDs are established.
	ChaosMeshCRDs bool

	dir        string
	plane      *envtest.Environment
	logs       []*os.File
	httpClient *http.Client
	stopped    bool
}

// Unavailable is returned by Start when a required binary is missing.
type Unavailable struct{ Reason string }

// Error says why the control plane is unavailable.
func (u *Unavailable) Error() string { return "k8senv: control plane unavailable: " + u.Reason }

// CacheDir returns the directory where scripts/ cache built servers.
func CacheDir() string { return buildcache.Dir() }

// Binaries locates etcd and kube-apiserver. KUBE_APISERVER and ETCD override
// the defaults (PATH, then the build cache).
func Binaries() (etcd, apiserver string, err error) {
	etcd = os.Getenv("ETCD")
	if etcd == "" {
		etcd, err = exec.LookPath("etcd")
		if err != nil {
			return "", "", &Unavailable{Reason: "etcd not found on PATH (apt-get install etcd-server, or make test-deps)"}
		}
	}
	apiserver = os.Getenv("KUBE_APISERVER")
	if apiserver == "" {
		apiserver = filepath.Join(CacheDir(), "kube-apiserver-"+KubeAPIServerVersion)
	}
	if st, e := os.Stat(apiserver); e != nil || st.IsDir() {
		return "", "", &Unavailable{Reason: fmt.Sprintf("kube-apiserver %s not found at %s (run scripts/build-kube-apiserver.sh, or make test-deps)", KubeAPIServerVersion, apiserver)}
	}
	return etcd, apiserver, nil
}

// Start launches etcd and kube-apiserver through controller-runtime's
// envtest (pointed at the binaries Binaries finds, never downloading any)
// and waits until the API server is healthy. The caller must call Stop.
//
// envtest brings its own serving certificates, service-account signing key
// and client-certificate admin; the harness adds a token file (AdminToken,
// the credential kubeconfigs and serve's tests use), the kubelet address
// type internal/kubelettest's nodes need, and a parent-death signal: envtest
// starts each server in its own process group, so without it a test binary
// killed by a timeout would leave them running.
func Start(ctx context.Context) (*Env, error) {
	etcdBin, apiBin, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chaosgate-k8senv-")
	if err != nil {
		return nil, fmt.Errorf("k8senv: temp dir: %w", err)
	}
	e := &Env{dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.Stop()
		}
	}()
	if etcdBin, err = diesWithParent(dir, "etcd", etcdBin); err != nil {
		return nil, err
	}
	if apiBin, err = diesWithParent(dir, "kube-apiserver", apiBin); err != nil {
		return nil, err
	}
	e.AdminToken = randomToken()
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", e.AdminToken, AdminUser, AdminUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"etcd", "certs"} { // envtest uses them as they are
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("k8senv: %w", err)
		}
	}
	etcdLog, err := e.logFile("etcd")
	if err != nil {
		return nil, err
	}
	apiLog, err := e.logFile("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcd := &envtest.Etcd{
		Path:    etcdBin,
		DataDir: filepath.Join(dir, "etcd"),
		URL:     &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])},
		Out:     etcdLog, Err: etcdLog,
	}
	etcd.Configure().Set("log-level", "warn")
	api := &envtest.APIServer{Path: apiBin, CertDir: filepath.Join(dir, "certs"), Out: apiLog, Err: apiLog}
	api.SecureServing.Address, api.SecureServing.Port = "127.0.0.1", fmt.Sprint(ports[1])
	api.Configure().
		Set("token-auth-file", filepath.Join(dir, "tokens.csv")).
		Set("advertise-address", "127.0.0.1").
		Set("service-cluster-ip-range", "10.96.0.0/24").
		Set("enable-priority-and-fairness", "false").
		// Nodes of internal/kubelettest have only an InternalIP
		// (127.0.0.N, set by the rig): logs, exec and port-forward reach
		// their kubelet there.
		Set("kubelet-preferred-address-types", "InternalIP").
		Set("profiling", "false").
		Set("v", "0")
	useExisting := false
	e.plane = &envtest.Environment{
		UseExistingCluster:       &useExisting,
		ControlPlane:             envtest.ControlPlane{Etcd: etcd, APIServer: api},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  10 * time.Second,
	}
	admin, err := e.plane.Start()
	if err != nil {
		return nil, fmt.Errorf("k8senv: control plane did not start: %w\n%s\n%s", err, tailFile("etcd", etcdLog), tailFile("kube-apiserver", apiLog))
	}
	e.URL = strings.TrimSuffix(admin.Host, "/")
	e.Config = &rest.Config{
		Host:            e.URL,
		BearerToken:     e.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData},
		QPS:             200,
		Burst:           400,
	}
	hc, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return nil, err
	}
	e.httpClient = hc
	if err := waitReady(ctx, hc, e.URL+"/readyz", 2*time.Minute); err != nil {
		return nil, fmt.Errorf("k8senv: kube-apiserver not ready for the admin token: %w\n%s", err, tailFile("kube-apiserver", apiLog))
	}
	if e.Client, err = kubernetes.NewForConfigAndClient(e.Config, hc); err != nil {
		return nil, err
	}
	if e.Dynamic, err = dynamic.NewForConfigAndClient(e.Config, hc); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// diesWithParent writes a launcher for bin into dir that runs it under
// util-linux setpriv --pdeathsig KILL, so the server dies with the test
// binary that started it even when that is SIGKILLed. Without setpriv the
// binary is returned as it is.
func diesWithParent(dir, name, bin string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return bin, nil
	}
	launcher := filepath.Join(dir, "run-"+name)
	script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(bin))
	if err := os.WriteFile(launcher, []byte(script), 0o700); err != nil {
		return "", fmt.Errorf("k8senv: launcher for %s: %w", name, err)
	}
	return launcher, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Stop stops the control plane (envtest: SIGTERM, then SIGKILL after 10 s,
// by pid) and removes the data directory. Safe to call twice.
func (e *Env) Stop() {
	if e == nil || e.stopped {
		return
	}
	e.stopped = true
	if e.plane != nil {
		_ = e.plane.Stop()
	}
	for _, f := range e.logs {
		_ = f.Close()
	}
	if e.httpClient != nil {
		e.httpClient.CloseIdleConnections()
	}
	_ = os.RemoveAll(e.dir)
}

func (e *Env) logFile(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("k8senv: %w", err)
	}
	e.logs = append(e.logs, f)
	return f, nil
}

// tailFile returns the end of a server's log, for error messages.
func tailFile(name string, f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- %s log (tail) ---\n%s", name, b)
}

func waitReady(ctx context.Context, hc *http.Client, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s waiting for %s (last: %s)", limit, url, last)
}

// freePorts returns n distinct free 127.0.0.1 ports below the ephemeral
// range (see internal/freeport).
func freePorts(n int) ([]int, error) {
	ports, err := freeport.Ports(n)
	if err != nil {
		return nil, fmt.Errorf("k8senv: %w", err)
	}
	return ports, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ServiceAccountToken creates namespace and ServiceAccount if needed and
// returns a real token for it from the TokenRequest API.
func (e *Env) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	if err := e.EnsureNamespace(ctx, namespace); err != nil {
		return "", err
	}
	_, err := e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("k8senv: create serviceaccount %s/%s: %w", namespace, name, err)
	}
	exp := int64(3600)
	tr, err := e.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("k8senv: token for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// ConfigForToken returns a rest.Config that authenticates with token.
func (e *Env) ConfigForToken(token string) *rest.Config {
	c := rest.CopyConfig(e.Config)
	c.BearerToken = token
	return c
}

// EnsureNamespace creates a namespace unless it exists.
func (e *Env) EnsureNamespace(ctx context.Context, name string) error {
	_, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("k8senv: create namespace %s: %w", name, err)
	}
	return nil
}

// Kubeconfig writes a kubeconfig for the admin user to path.
func (e *Env) Kubeconfig(path string) error {
	return e.KubeconfigForToken(path, e.AdminToken)
}

// KubeconfigForToken writes a kubeconfig authenticating with token to path.
func (e *Env) KubeconfigForToken(path, token string) error {
	cfg := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []any{map[string]any{"name": "k8senv", "cluster": map[string]any{
			"server": e.URL, "certificate-authority-data": e.Config.CAData,
		}}},
		"users":           []any{map[string]any{"name": "k8senv", "user": map[string]any{"token": token}}},
		"contexts":        []any{map[string]any{"name": "k8senv", "context": map[string]any{"cluster": "k8senv", "user": "k8senv"}}},
		"current-context": "k8senv",
	}
	b, err := json.Marshal(cfg) // JSON is valid kubeconfig YAML
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// ChaosMeshCRDDir downloads the chaos-mesh root module with the go command
// and returns its config/crd/bases directory.
func ChaosMeshCRDDir(ctx context.Context) (string, error) {
	dir, err := moduleDir(ctx, "github.com/chaos-mesh/chaos-mesh@"+ChaosMeshModuleVersion)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "config", "crd", "bases"), nil
}

func moduleDir(ctx context.Context, mod string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, _ := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("k8senv: go mod download %s: %w (output %q)", mod, err, out)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("k8senv: go mod download %s: %s", mod, info.Error)
	}
	return info.Dir, nil
}

// ModuleDir downloads a module (path@version) with the go command and
// returns the directory of its extracted files.
func ModuleDir(ctx context.Context, mod string) (string, error) { return moduleDir(ctx, mod) }

// InstallChaosMeshCRDs installs the PodChaos and NetworkChaos CRDs from the
// chaos-mesh module and waits until they are established.
func (e *Env) InstallChaosMeshCRDs(ctx context.Context) error {
	if e.ChaosMeshCRDs {
		return nil
	}
	dir, err := ChaosMeshCRDDir(ctx)
	if err != nil {
		return err
	}
	for _, f := range []string{"chaos-mesh.org_podchaos.yaml", "chaos-mesh.org_networkchaos.yaml", "chaos-mesh.org_timechaos.yaml", "chaos-mesh.org_stresschaos.yaml"} {
		if err := e.ApplyCRDFile(ctx, filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	e.ChaosMeshCRDs = true
	return nil
}

// ApplyCRDFile installs every CustomResourceDefinition in a YAML file
// (envtest.InstallCRDs: created or updated) and waits until the API server
// serves each of its versions.
func (e *Env) ApplyCRDFile(ctx context.Context, path string) error {
	_, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{
		Paths:              []string{path},
		ErrorIfPathMissing: true,
		MaxTime:            30 * time.Second,
		PollInterval:       100 * time.Millisecond,
	})
	if err != nil {
		return fmt.Errorf("k8senv: install the CRDs of %s: %w", path, err)
	}
	return nil
}

// ReadObjects decodes every object of a multi-document YAML (or JSON) file.
func ReadObjects(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeObjects(f, path)
}

// DecodeObjects decodes every object of a multi-document YAML stream; name
// is used in error messages.
func DecodeObjects(r io.Reader, name string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

var (
	shared    *Env
	sharedErr error
	once      sync.Once
	mu        sync.Mutex
)

// T is the part of testing.TB the harness needs.
type T interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Get returns the package's shared control plane, starting it on first use.
// When it cannot start it skips the test (outside CI) or fails it (CI=true).
func Get(t T) *Env {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		e, err := Start(ctx)
		mu.Lock()
		shared, sharedErr = e, err
		mu.Unlock()
	})
	mu.Lock()
	e, err := shared, sharedErr
	mu.Unlock()
	if err != nil {
		var u *Unavailable
		if errors.As(err, &u) && os.Getenv("CI") != "true" {
			t.Skipf("%v", err)
		}
		t.Fatalf("%v", err)
	}
	return e
}

// GetWithChaosMesh is Get plus the Chaos Mesh CRDs installed.
func GetWithChaosMesh(t T) *Env {
	t.Helper()
	e := Get(t)
	mu.Lock()
	defer mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.InstallChaosMeshCRDs(ctx); err != nil {
		if os.Getenv("CI") != "true" && strings.Contains(err.Error(), "go mod download") {
			t.Skipf("chaos-mesh CRDs unavailable: %v", err)
		}
		t.Fatalf("%v", err)
	}
	return e
}

// Runner is what goleak.VerifyTestMain and testing.M share.
type Runner interface{ Run() int }

type mainRunner struct{ m Runner }

// LeakOptions are the goleak options a package using the harness needs:
// klog's flush daemon runs for the life of the process.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
	}
}

// Main wraps m so that the shared control plane (if a test started it) is
// stopped after the tests run:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(k8senv.Main(m), k8senv.LeakOptions()...) }
func Main(m Runner) Runner { return mainRunner{m: m} }

// Run runs the tests, then stops the shared control plane.
func (r mainRunner) Run() int {
	code := r.m.Run()
	mu.Lock()
	e := shared
	mu.Unlock()
	e.Stop()
	return code
}

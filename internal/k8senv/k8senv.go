// Package k8senv starts a real Kubernetes control plane for tests: Debian's
// etcd and a kube-apiserver built from the Go module proxy
// (scripts/build-kube-apiserver.sh), both on 127.0.0.1 free ports with a
// temporary data directory, token authentication, RBAC and service-account
// token signing, plus the Chaos Mesh CRDs taken from the chaos-mesh module zip.
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
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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
	httpClient *http.Client
	procs      []*proc
	stopped    bool
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
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

// Start launches etcd and kube-apiserver and waits until /readyz passes.
// The caller must call Stop.
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
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	if err := e.spawn("etcd", etcdBin,
		"--name", "k8senv",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdClient,
		"--advertise-client-urls", etcdClient,
		"--listen-peer-urls", etcdPeer,
		"--initial-advertise-peer-urls", etcdPeer,
		"--initial-cluster", "k8senv="+etcdPeer,
		"--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, http.DefaultClient, etcdClient+"/health", "", 30*time.Second, e.procs[0]); err != nil {
		return nil, fmt.Errorf("k8senv: etcd did not become healthy: %w\n%s", err, e.procs[0].tail())
	}

	e.AdminToken = randomToken()
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", e.AdminToken, AdminUser, AdminUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	if err := writeServiceAccountKey(dir); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	e.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	if err := e.spawn("kube-apiserver", apiBin,
		"--etcd-servers", etcdClient,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ports[2]),
		"--cert-dir", certDir,
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/24",
		// No controller-manager runs, so no namespace gets a "default"
		// ServiceAccount; the admission plugin would refuse every pod.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		// Nodes of internal/kubelettest have only an InternalIP (127.0.0.N,
		// set by the rig): logs, exec and port-forward reach their kubelet
		// there.
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		"--v=0",
	); err != nil {
		return nil, err
	}
	api := e.procs[1]
	if err := waitFile(ctx, filepath.Join(certDir, "apiserver.crt"), 60*time.Second, api); err != nil {
		return nil, fmt.Errorf("k8senv: kube-apiserver wrote no serving certificate: %w\n%s", err, api.tail())
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return nil, err
	}
	e.Config = &rest.Config{
		Host:            e.URL,
		BearerToken:     e.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS:             200,
		Burst:           400,
	}
	hc, err := rest.HTTPClientFor(e.Config)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, hc, e.URL+"/readyz", e.AdminToken, 120*time.Second, api); err != nil {
		return nil, fmt.Errorf("k8senv: kube-apiserver not ready: %w\n%s", err, api.tail())
	}
	e.httpClient = hc
	if e.Client, err = kubernetes.NewForConfigAndClient(e.Config, hc); err != nil {
		return nil, err
	}
	if e.Dynamic, err = dynamic.NewForConfigAndClient(e.Config, hc); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// Stop terminates every process the harness started (by pid: SIGTERM, then
// SIGKILL after 10 s) and removes the data directory. Safe to call twice.
func (e *Env) Stop() {
	if e == nil || e.stopped {
		return
	}
	e.stopped = true
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		_ = p.log.Close()
	}
	if e.httpClient != nil {
		e.httpClient.CloseIdleConnections()
	}
	_ = os.RemoveAll(e.dir)
}

func (e *Env) spawn(name, bin string, args ...string) error {
	lf, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// The children die with the test binary even if it is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		return fmt.Errorf("k8senv: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	e.procs = append(e.procs, p)
	return nil
}

// tail returns the end of the process log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- %s log (tail) ---\n%s", p.name, b)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func waitHTTP(ctx context.Context, hc *http.Client, url, token string, limit time.Duration, p *proc) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited", p.name)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
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

func waitFile(ctx context.Context, path string, limit time.Duration, p *proc) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited", p.name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s waiting for %s", limit, path)
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

func writeServiceAccountKey(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), priv, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pub, 0o600)
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

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

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
	for _, f := range []string{"chaos-mesh.org_podchaos.yaml", "chaos-mesh.org_networkchaos.yaml", "chaos-mesh.org_timechaos.yaml"} {
		if err := e.ApplyCRDFile(ctx, filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	e.ChaosMeshCRDs = true
	return nil
}

// ApplyCRDFile creates every CustomResourceDefinition in a YAML file and
// waits until each is established.
func (e *Env) ApplyCRDFile(ctx context.Context, path string) error {
	objs, err := ReadObjects(path)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		_, err := e.Dynamic.Resource(crdGVR).Create(ctx, o, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("k8senv: install CRD %s from %s: %w", o.GetName(), path, err)
		}
		if err := e.waitEstablished(ctx, o.GetName()); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) waitEstablished(ctx context.Context, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("k8senv: CRD %s not established after 30s", name)
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

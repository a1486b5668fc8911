package traffic

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chaosgate/chaosgate/internal/k8senv"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(k8senv.Main(m), k8senv.LeakOptions()...)
}

// The route CRDs come from their projects' own modules, at the versions
// the README names.
const (
	gatewayAPIModule = "sigs.k8s.io/gateway-api@v1.6.3"
	istioAPIModule   = "istio.io/api@v1.32.0"
	// Open Service Mesh ships SMI's TrafficSplit CRD as apiextensions v1
	// (SMI's own files are the removed v1beta1), serving v1alpha2 as
	// Linkerd's SMI extension does.
	osmModule = "github.com/openservicemesh/osm@v1.2.4"
)

// routeEnv starts (or reuses) the test API server with the HTTPRoute,
// VirtualService and TrafficSplit CRDs and a namespace of the test's own.
func routeEnv(t *testing.T, ns string) (*k8senv.Env, context.Context) {
	e := k8senv.Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	gw, err := k8senv.ModuleDir(ctx, gatewayAPIModule)
	if err != nil {
		t.Fatal(err)
	}
	istio, err := k8senv.ModuleDir(ctx, istioAPIModule)
	if err != nil {
		t.Fatal(err)
	}
	osm, err := k8senv.ModuleDir(ctx, osmModule)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(gw, "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"), filepath.Join(istio, "kubernetes/customresourcedefinitions.gen.yaml"),
		filepath.Join(osm, "cmd/osm-bootstrap/crds/smi_traffic_split.yaml")} {
		if err := e.ApplyCRDFile(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e, ctx
}

// TestSplitStepsOnRealRouteCRDs walks a canary through the seeds' steps on
// an HTTPRoute, a VirtualService and a TrafficSplit, stored by the real API
// server with each project's CRD schema, and reads every split back.
func TestSplitStepsOnRealRouteCRDs(t *testing.T) {
	e, ctx := routeEnv(t, "traffic")
	for _, c := range []Config{
		{Provider: GatewayAPI, Gateway: "public", Hosts: []string{"shop.example.com"}},
		{Provider: Istio, Hosts: []string{"aggregator.traffic.svc.cluster.local"}},
		{Provider: SMI, ApexService: "aggregator"},
	} {
		c.Namespace, c.Route, c.StableService, c.CanaryService, c.Port = "traffic", "aggregator-"+strings.ToLower(c.Provider), "aggregator-stable", "aggregator-canary", 7001
		if c.Provider != SMI {
			c.Header = &HeaderMatch{Name: "x-canary", Value: "always"}
		}
		r, err := New(e.Dynamic, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []int{1, 10, 50, 55, 100, 0} {
			if err := r.SetWeight(ctx, w); err != nil {
				t.Fatalf("%s: %v", c.Provider, err)
			}
			s, err := r.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			headerOK := s.Header == nil
			if c.Header != nil {
				headerOK = s.Header != nil && *s.Header == *c.Header
			}
			if s.CanaryPercent != float64(w) || s.Weights["aggregator-stable"] != int64(100-w) || s.Weights["aggregator-canary"] != int64(w) || !headerOK {
				t.Fatalf("%s at %d%%: read back %+v", r.Describe(), w, s)
			}
		}
		// The reaper's restore sends everything back to the stable
		// Service and drops the header match.
		if err := r.SetWeight(ctx, 50); err != nil {
			t.Fatal(err)
		}
		if err := (Restorer{Dyn: e.Dynamic}).Recover(ctx, r.Journaled()); err != nil {
			t.Fatalf("%s: restore: %v", r.Describe(), err)
		}
		if s, err := r.Read(ctx); err != nil || s.CanaryPercent != 0 || s.Header != nil || s.Weights["aggregator-stable"] != 100 {
			t.Fatalf("%s after the restore: %+v %v", r.Describe(), s, err)
		}
		// One object, owned by chaosgate's field manager.
		u, err := e.Dynamic.Resource(r.gvr()).Namespace("traffic").Get(ctx, c.Route, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		owned := false
		for _, mf := range u.GetManagedFields() {
			owned = owned || (mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
		}
		if !owned || u.GetLabels()["app.kubernetes.io/managed-by"] != "chaosgate" {
			t.Fatalf("%s: managed fields %+v, labels %v", r.Describe(), u.GetManagedFields(), u.GetLabels())
		}
	}
}

// TestSplitRefusedByTheCRDSchema: what chaosgate's own checks let through
// but the route's schema forbids is refused by the API server, and the
// error names the field.
func TestSplitRefusedByTheCRDSchema(t *testing.T) {
	e, ctx := routeEnv(t, "traffic-bad")
	c := Config{Provider: GatewayAPI, Namespace: "traffic-bad", Route: "bad", Gateway: "public", StableService: "stable", CanaryService: "canary", Port: 7001,
		Header: &HeaderMatch{Name: "x canary", Value: "1"}}
	r, err := New(e.Dynamic, c)
	if err != nil {
		t.Fatal(err)
	}
	err = r.SetWeight(ctx, 10)
	if err == nil || !strings.Contains(err.Error(), "headers") {
		t.Fatalf("a header name with a space: %v", err)
	}
	if err := r.SetWeight(ctx, 101); err == nil {
		t.Fatal("weight 101 accepted")
	}
	for _, bad := range []Config{
		{Provider: "linkerd", Namespace: "n", Route: "r", StableService: "a", CanaryService: "b", Port: 1},
		{Provider: SMI, Namespace: "n", Route: "r", StableService: "a", CanaryService: "b", Port: 1},
		{Provider: SMI, Namespace: "n", Route: "r", ApexService: "svc", StableService: "a", CanaryService: "b", Port: 1, Header: &HeaderMatch{Name: "x-canary", Value: "1"}},
		{Provider: GatewayAPI, Namespace: "n", Route: "r", StableService: "a", CanaryService: "b", Port: 1},
		{Provider: Istio, Namespace: "n", Route: "r", StableService: "a", CanaryService: "a", Port: 1, Hosts: []string{"h"}},
		{Provider: Istio, Namespace: "n", Route: "r", StableService: "a", CanaryService: "b", Port: 0, Hosts: []string{"h"}},
	} {
		if _, err := New(e.Dynamic, bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

package kubelettest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/chaosgate/chaosgate/internal/ociimage"
)

// Aggregator describes one arm of the reference aggregator run as a
// StatefulSet on a test cluster: the shape of deploy/aggregator, changed
// only where a CNI-less test node needs it — host network (each pod
// listens on its node's address, so the two arms take different ports),
// peers dialled by node address instead of through a headless Service's DNS
// names (there is no cluster DNS), and a hostPath volume per pod under the
// cluster's directory instead of a PersistentVolumeClaim (there is no
// provisioner; the scheduler's rule puts a replaced pod back on its node,
// so it finds its raft state again, as with a local volume).
type Aggregator struct {
	Namespace string
	// Name of the StatefulSet; pods are Name-0 … Name-(Replicas-1).
	Name string
	// Labels of the StatefulSet and its pods (the arm's selector).
	Labels   map[string]string
	Replicas int
	// Image is the chaosgate image reference (imported on every node).
	Image string
	// HTTPPort, GRPCPort and RaftPort are the ports every pod of the arm
	// listens on, at its node's address.
	HTTPPort, GRPCPort, RaftPort int
	// Partitions of the aggregator (default 8).
	Partitions int
	// Defects turn on known-bad behaviours (--defect).
	Defects []string
	// ThroughProxies makes the pods dial each other (raft, forwarded
	// requests) through the cluster's inbound proxies, from their node's
	// address, so that network faults take effect (Cluster.NetworkEffect).
	ThroughProxies bool
}

// PodAddr returns the address (node IP and port) of the arm's pod of
// ordinal i.
func (c *Cluster) PodAddr(i, port int) string {
	return fmt.Sprintf("%s:%d", c.NodeOf(i).IP, port)
}

// StatefulSet renders the arm for cluster c and creates the data directory
// of each of its pods (owned by the image's non-root user).
func (c *Cluster) StatefulSet(a Aggregator) (*appsv1.StatefulSet, error) {
	if a.Replicas <= 0 || a.Name == "" || a.Image == "" || a.HTTPPort == 0 || a.RaftPort == 0 {
		return nil, fmt.Errorf("kubelettest: aggregator %q: name, image, replicas, HTTP and raft ports are required", a.Name)
	}
	if a.Partitions == 0 {
		a.Partitions = 8
	}
	dataRoot := filepath.Join(c.dir, "data", a.Namespace)
	var peers, peerHTTP []string
	for i := range a.Replicas {
		pod := fmt.Sprintf("%s-%d", a.Name, i)
		raft, http := c.PodAddr(i, a.RaftPort), c.PodAddr(i, a.HTTPPort)
		if a.ThroughProxies {
			var err error
			if raft, err = c.inboundProxy(pod, i, a.RaftPort); err != nil {
				return nil, err
			}
			if http, err = c.inboundProxy(pod, i, a.HTTPPort); err != nil {
				return nil, err
			}
		}
		peers = append(peers, pod+"="+raft)
		peerHTTP = append(peerHTTP, pod+"="+http)
		d := filepath.Join(dataRoot, pod)
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
		if err := os.Chown(d, ociimage.UID, ociimage.GID); err != nil {
			return nil, err
		}
	}
	args := []string{"aggregator", "--id=$(POD_NAME)",
		fmt.Sprintf("--http=$(POD_IP):%d", a.HTTPPort),
		fmt.Sprintf("--raft=$(POD_IP):%d", a.RaftPort),
		"--peers=" + strings.Join(peers, ","),
		"--peer-http=" + strings.Join(peerHTTP, ","),
		"--data-dir=/var/lib/aggregator",
		fmt.Sprintf("--partitions=%d", a.Partitions)}
	if a.ThroughProxies {
		// Each node has its own address: dialled from it, a pod's
		// connections to its peers say which pod they come from, which is
		// what a partition's source filters go by.
		args = append(args, "--dial-source=$(POD_IP)")
	}
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: int32(a.HTTPPort)}, {Name: "raft", ContainerPort: int32(a.RaftPort)}}
	if a.GRPCPort != 0 {
		args = append(args, fmt.Sprintf("--grpc=$(POD_IP):%d", a.GRPCPort))
		ports = append(ports, corev1.ContainerPort{Name: "grpc", ContainerPort: int32(a.GRPCPort)})
	}
	for _, d := range a.Defects {
		args = append(args, "--defect="+d)
	}
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	labels := map[string]string{}
	for k, v := range a.Labels {
		labels[k] = v
	}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(int32(a.Replicas)),
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(a.HTTPPort), "prometheus.io/path": "/metrics"}},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					DNSPolicy:                     corev1.DNSClusterFirstWithHostNet,
					TerminationGracePeriodSeconds: ptr.To(int64(5)),
					AutomountServiceAccountToken:  ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(ociimage.UID)),
						RunAsGroup: ptr.To(int64(ociimage.GID))},
					Containers: []corev1.Container{{
						Name:            "aggregator",
						Image:           a.Image,
						ImagePullPolicy: corev1.PullNever,
						Args:            args,
						Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: field("metadata.name")},
							{Name: "POD_IP", ValueFrom: field("status.podIP")}},
						Ports: ports,
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
							Path: "/readyz", Port: intstr.FromInt32(int32(a.HTTPPort))}}, PeriodSeconds: 1, FailureThreshold: 3},
						Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/aggregator", SubPathExpr: "$(POD_NAME)"}},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
						Path: dataRoot, Type: ptr.To(corev1.HostPathDirectory)}}}},
				},
			},
		},
	}, nil
}

// Deploy creates the arm's StatefulSet.
func (c *Cluster) Deploy(ctx context.Context, a Aggregator) (*appsv1.StatefulSet, error) {
	ss, err := c.StatefulSet(a)
	if err != nil {
		return nil, err
	}
	if err := c.Env.EnsureNamespace(ctx, a.Namespace); err != nil {
		return nil, err
	}
	return c.Env.Client.AppsV1().StatefulSets(a.Namespace).Create(ctx, ss, metav1.CreateOptions{})
}

// ChaosgateImage builds chaosgate (static, as `make image` does) and packs
// it as the image ociimage.Chaosgate makes, tagged Repository:version, into
// a tarball under dir for ImportImage. It returns the image reference and
// the tarball's path.
func ChaosgateImage(ctx context.Context, dir, version string) (ref, tarPath string, err error) {
	bin := filepath.Join(dir, "chaosgate")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-X main.version="+version, "-o", bin, "github.com/chaosgate/chaosgate/cmd/chaosgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("kubelettest: go build chaosgate: %w\n%s", err, out)
	}
	img, err := ociimage.Chaosgate(ociimage.Options{Binary: bin, Version: version, Revision: strings.Repeat("ab", 20),
		Licenses: "NOASSERTION", Created: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		return "", "", err
	}
	ref = ociimage.Repository + ":" + version
	tag, err := ociimage.Tag(ref)
	if err != nil {
		return "", "", err
	}
	tarPath = filepath.Join(dir, "image.tar")
	if err := ociimage.WriteTarball(tarPath, img, tag); err != nil {
		return "", "", err
	}
	return ref, tarPath, nil
}

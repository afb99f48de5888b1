// Runs the mmft.io health checks through Argo CD's own code: argocd-cm-patch.yaml is parsed by Argo CD's
// SettingsManager as the controller parses argocd-cm, and every testdata object is judged by gitops-engine's
// health.GetResourceHealth with those overrides, as controller/health.go does (gopher-lua, useOpenLibs off).
// Optional: it needs the Go module proxy and builds Argo CD, so the offline suite runs the same cases with lupa
// (tests/unit/test_argocd_health.py) instead.
package verifywithargocd

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/health"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

const argocdDir = ".."

type healthTests struct {
	Tests []struct {
		InputPath    string              `json:"inputPath"`
		HealthStatus health.HealthStatus `json:"healthStatus"`
	} `json:"tests"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func overridesFromPatch(t *testing.T) lua.ResourceHealthOverrides {
	t.Helper()
	var cm corev1.ConfigMap
	readYAML(t, filepath.Join(argocdDir, "argocd-cm-patch.yaml"), &cm)
	cm.Labels = map[string]string{"app.kubernetes.io/part-of": "argocd"}
	mgr := settings.NewSettingsManager(context.Background(), fake.NewClientset(&cm), cm.Namespace)
	overrides, err := mgr.GetResourceOverrides()
	if err != nil {
		t.Fatal(err)
	}
	return lua.ResourceHealthOverrides(overrides)
}

func TestHealthThroughArgoCD(t *testing.T) {
	overrides := overridesFromPatch(t)
	kinds, err := filepath.Glob(filepath.Join(argocdDir, "resource_customizations", "mmft.io", "*"))
	if err != nil || len(kinds) == 0 {
		t.Fatalf("no kinds found: %v", err)
	}
	for _, kindDir := range kinds {
		var tests healthTests
		readYAML(t, filepath.Join(kindDir, "health_test.yaml"), &tests)
		for _, tc := range tests.Tests {
			t.Run(filepath.Base(kindDir)+"/"+tc.InputPath, func(t *testing.T) {
				obj := &unstructured.Unstructured{}
				readYAML(t, filepath.Join(kindDir, tc.InputPath), &obj.Object)
				if _, ok := overrides[obj.GroupVersionKind().Group+"/"+obj.GetKind()]; !ok {
					t.Fatalf("argocd-cm has no health check for %s", obj.GetKind())
				}
				got, err := health.GetResourceHealth(obj, overrides)
				if err != nil {
					t.Fatal(err)
				}
				if got == nil || *got != tc.HealthStatus {
					t.Fatalf("got %+v, want %+v", got, tc.HealthStatus)
				}
			})
		}
	}
}

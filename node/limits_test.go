package node

import (
	"reflect"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
)

// Every circuit.Limits field is set from the limits: section: an empty
// section gives the engine's own defaults, and a value set in YAML reaches
// the engine's Limits.
func TestLimitsConfigReachesEngine(t *testing.T) {
	t.Parallel()
	c, err := ParseConfig(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Limits.circuitLimits(), circuit.DefaultLimits(); got != want {
		t.Fatalf("default limits\n got %+v\nwant %+v", got, want)
	}
	c, err = ParseConfig(t.TempDir(), []byte("limits:\n  max_circuits: 7\n  memory_budget_mb: 100\n  write_timeout: 3s\n  fixed_windows: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits.circuitLimits()
	if l.MaxCircuits != 7 || l.MemoryBudget != 100<<20 || l.WriteTimeout != 3*time.Second || !l.FixedWindows {
		t.Fatalf("limits %+v do not carry the YAML values", l)
	}
	// No field of circuit.Limits is left out of the mapping.
	v := reflect.ValueOf(l)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("circuit.Limits.%s is not set from the limits: section", v.Type().Field(i).Name)
		}
	}
}

func TestLimitsFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := LoadConfigEnv(dir, envMap(map[string]string{
		"CO_INFUSE_LIMITS_MAX_CIRCUIT_QUEUE": "6000",
		"CO_INFUSE_LIMITS_IDLE_TIMEOUT":      "20m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxCircuitQueue != 6000 || c.Limits.IdleTimeout != 20*time.Minute {
		t.Fatalf("limits %+v, want max_circuit_queue 6000 and idle_timeout 20m from the environment", c.Limits)
	}
	if _, err := LoadConfigEnv(t.TempDir(), envMap(map[string]string{"CO_INFUSE_LIMITS_MAX_CIRCUIT_QUEUE": "100"})); err == nil {
		t.Fatal("a circuit queue below a window was accepted from the environment")
	}
}

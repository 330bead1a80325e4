package serving

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRegisterProcessCollectors: the runtime and process metrics that
// operators and the idle-account benchmark read are there, the live heap
// once a collection has run.
func TestRegisterProcessCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	RegisterProcessCollectors(reg)
	runtime.GC()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if m := mf.GetMetric(); len(m) == 1 && m[0].GetGauge() != nil {
			got[mf.GetName()] = m[0].GetGauge().GetValue()
		}
	}
	for _, name := range []string{"go_gc_heap_live_bytes", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "process_resident_memory_bytes"} {
		if got[name] <= 0 {
			t.Errorf("%s = %v, want a positive value", name, got[name])
		}
	}
}

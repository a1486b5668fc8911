package evidence

import (
	"context"
	"testing"
)

func BenchmarkVerifyEnvelope(b *testing.B) {
	k := newKeys(b, "example.test/bench")
	st, _ := BuildStatement("v1", samplePredicate(1))
	env, _ := k.SignStatement(context.Background(), st)
	pub := k.Verifier()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pub.VerifyEnvelope(context.Background(), env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseStatement(b *testing.B) {
	st, _ := BuildStatement("v1", samplePredicate(1))
	for i := 0; i < b.N; i++ {
		if _, err := ParseStatement(st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel measures durable appends from many goroutines
// (group commit).
func BenchmarkAppendParallel(b *testing.B) {
	k := newKeys(b, "example.test/bench")
	l := openLedger(b, b.TempDir(), k)
	defer l.Close()
	st, _ := BuildStatement("v1", samplePredicate(1))
	env, _ := k.SignStatement(context.Background(), st)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(context.Background(), env); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(l.BlockCount()), "appends/commit")
}

package bench

import (
	"bytes"
	"image/png"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"stretch.dev/stretch/internal/testenv"
)

func TestPercentileAndSpread(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		in       []time.Duration
		p50, p99 float64
	}{
		{nil, 0, 0},
		{ms(7), 7, 7},
		{ms(5, 1, 3, 2, 4), 3, 5},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 5, 10},
	}
	for _, tt := range tests {
		g := NewWithT(t)
		g.Expect(percentile(tt.in, 50)).To(Equal(tt.p50), "%v", tt.in)
		g.Expect(percentile(tt.in, 99)).To(Equal(tt.p99), "%v", tt.in)
	}
	g := NewWithT(t)
	g.Expect(spreadOf([]float64{3, 1, 2})).To(Equal(spread{1, 2, 3}))
	g.Expect(ratios([]float64{2, 9}, []float64{1, 3})).To(Equal([]float64{2, 3}))
}

// The plot has a panel per measurement, with the lines' colors drawn.
func TestPlot(t *testing.T) {
	g := NewWithT(t)
	r := &report{Counts: []int{100, 1000}}
	r.add(100, measurement{Ready: time.Second}, measurement{Ready: 2 * time.Second}, measurement{Ready: 3 * time.Second})
	r.add(1000, measurement{Ready: 5 * time.Second}, measurement{Ready: 8 * time.Second}, measurement{Ready: 9 * time.Second})
	r.Latency = []latencyRow{{Providers: 1, Stretch: []time.Duration{time.Second}, Direct: []time.Duration{time.Millisecond}}, {Providers: 2, Stretch: []time.Duration{2 * time.Second}, Direct: []time.Duration{time.Millisecond}}}
	r.Bulk = []bulkRow{{Namespaces: 10, Stretch: time.Second, Direct: time.Second / 2}, {Namespaces: 20, Stretch: 2 * time.Second, Direct: time.Second}}
	data, err := r.png()
	g.Expect(err).NotTo(HaveOccurred())
	img, err := png.Decode(bytes.NewReader(data))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(img.Bounds().Dx()).To(Equal(3 * panelW))
	g.Expect(img.Bounds().Dy()).To(Equal(panelH))
	colors := map[[3]uint32]bool{}
	for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
		for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
			r, g, b, _ := img.At(x, y).RGBA()
			colors[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	for _, c := range []struct{ R, G, B uint8 }{{blue.R, blue.G, blue.B}, {orange.R, orange.G, orange.B}, {green.R, green.G, green.B}} {
		g.Expect(colors).To(HaveKey([3]uint32{uint32(c.R), uint32(c.G), uint32(c.B)}))
	}
	md := r.markdown()
	g.Expect(md).To(ContainSubstring("| 1000 | 5.00 / 5.00 / 5.00 | 8.00 / 8.00 / 8.00 | 9.00 / 9.00 / 9.00 | 1.80 / 1.80 / 1.80 | 1.12 / 1.12 / 1.12 |"))
	g.Expect(md).To(ContainSubstring("| 20 | 2.00 | 1.00 | 2.00 |"))
}

// Writes are broken down per pod by request, for the largest count.
func TestWritesTable(t *testing.T) {
	g := NewWithT(t)
	before := testenv.Writes{"POST pods": 10, "PUT pods/status": 4}
	after := testenv.Writes{"POST pods": 110, "PUT pods/status": 204, "POST events": 50}
	g.Expect(after.Since(before)).To(Equal(testenv.Writes{"POST pods": 100, "PUT pods/status": 200, "POST events": 50}))
	g.Expect(after.Since(before).Total()).To(Equal(int64(350)))

	r := &report{Counts: []int{100}}
	vanilla := measurement{Writes: [2]testenv.Writes{{}, {"POST pods": 100, "PUT pods/status": 100}}}
	stretch := measurement{Writes: [2]testenv.Writes{{"POST pods": 100, "POST events": 50}, {"POST pods": 100, "PUT pods/status": 200}}}
	r.add(100, vanilla, measurement{}, stretch)
	table := writesTable(r)
	g.Expect(table).To(ContainSubstring("| POST events | 0.00 | 0.50 | 0.00 |"))
	g.Expect(table).To(ContainSubstring("| PUT pods/status | 1.00 | 0.00 | 2.00 |"))
	g.Expect(table).To(ContainSubstring("| **total** | 2.00 | 1.50 | 3.00 |"))
	g.Expect(writesTable(&report{})).To(BeEmpty())
}

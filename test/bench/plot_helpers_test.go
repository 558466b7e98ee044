package bench

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// line is a series of a chart: y for each x.
type line struct {
	name  string
	color color.RGBA
	x, y  []float64
}

// chart is one panel: how a measurement grows with a count.
type chart struct {
	title, xLabel, yLabel string
	lines                 []line
}

var (
	black   = color.RGBA{0, 0, 0, 255}
	grey    = color.RGBA{200, 200, 200, 255}
	blue    = color.RGBA{31, 119, 180, 255}
	orange  = color.RGBA{255, 127, 14, 255}
	green   = color.RGBA{44, 160, 44, 255}
	panelW  = 420
	panelH  = 340
	marginL = 60
	marginB = 50
	marginT = 30
	marginR = 15
)

// drawPlot draws the report's scale curves side by side: pod burst (from
// the burst's section), offload latency and the home manager's memory by
// provider count (from the offload latency's), and bulk offload (from its
// own). A section never measured (nil) leaves its panels saying so.
func drawPlot(burst, offload, bulk *report) ([]byte, error) {
	charts := charts(burst, offload, bulk)
	img := image.NewRGBA(image.Rect(0, 0, panelW*len(charts), panelH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for i, c := range charts {
		c.draw(img, image.Pt(i*panelW, 0))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func charts(burstReport, offload, bulkReport *report) []chart {
	for _, r := range []**report{&burstReport, &offload, &bulkReport} {
		if *r == nil {
			*r = &report{}
		}
	}
	median := func(ms []measurement) float64 {
		return spreadOf(seconds(ms, func(m measurement) time.Duration { return m.Ready })).median
	}
	burst := chart{title: "Pod burst: all Ready", xLabel: "pods", yLabel: "seconds"}
	var xs, v, d, s []float64
	for _, n := range burstReport.Counts {
		if sr := burstReport.byCount[n]; sr != nil {
			xs = append(xs, float64(n))
			v, d, s = append(v, median(sr.vanilla)), append(d, median(sr.dual)), append(s, median(sr.stretch))
		}
	}
	burst.lines = []line{{"vanilla", blue, xs, v}, {"dual vanilla", orange, xs, d}, {"Stretch", green, xs, s}}

	latency := chart{title: "Offload latency (p50)", xLabel: "providers", yLabel: "ms"}
	var ps, sl, dl []float64
	for _, l := range offload.Latency {
		ps, sl, dl = append(ps, float64(l.Providers)), append(sl, percentile(l.Stretch, 50)), append(dl, percentile(l.Direct, 50))
	}
	latency.lines = []line{{"direct", blue, ps, dl}, {"Stretch", green, ps, sl}}

	bulk := chart{title: "Bulk offload to 2 providers", xLabel: "namespaces", yLabel: "seconds"}
	var bs, sb, db []float64
	for _, row := range bulkReport.Bulk {
		bs, sb, db = append(bs, float64(row.Namespaces)), append(sb, row.Stretch.Seconds()), append(db, row.Direct.Seconds())
	}
	var design []float64
	for _, row := range bulkReport.Bulk {
		design = append(design, row.Design.Seconds())
	}
	bulk.lines = []line{{"direct", blue, bs, db}, {"design baseline", orange, bs, design}, {"Stretch", green, bs, sb}}

	memory := chart{title: "Home manager memory", xLabel: "providers", yLabel: "MiB"}
	var rss []float64
	for _, l := range offload.Latency {
		rss = append(rss, float64(l.RSS)/(1<<20))
	}
	memory.lines = []line{{"RSS", green, ps, rss}}
	return []chart{burst, latency, bulk, memory}
}

// draw draws c in the panel whose top-left corner is at.
func (c chart) draw(img *image.RGBA, at image.Point) {
	x0, y0 := at.X+marginL, at.Y+panelH-marginB // origin
	w, h := panelW-marginL-marginR, panelH-marginB-marginT
	maxX, maxY := 0.0, 0.0
	for _, l := range c.lines {
		for i := range l.x {
			maxX, maxY = math.Max(maxX, l.x[i]), math.Max(maxY, l.y[i])
		}
	}
	if maxX == 0 || maxY == 0 {
		text(img, at.X+marginL, at.Y+marginT+20, c.title+": not measured", black)
		return
	}
	maxY *= 1.1
	px := func(x float64) int { return x0 + int(x/maxX*float64(w)) }
	py := func(y float64) int { return y0 - int(y/maxY*float64(h)) }

	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		segment(img, x0, py(y), x0+w, py(y), grey)
		text(img, at.X+5, py(y)+4, short(y), black)
	}
	segment(img, x0, y0, x0+w, y0, black)
	segment(img, x0, y0, x0, y0-h, black)
	for _, x := range c.lines[0].x {
		segment(img, px(x), y0, px(x), y0+4, black)
		text(img, px(x)-10, y0+16, short(x), black)
	}
	text(img, at.X+marginL, at.Y+18, c.title, black)
	text(img, x0+w/2-20, y0+36, c.xLabel, black)
	text(img, at.X+5, at.Y+marginT-4, c.yLabel, black)
	for i, l := range c.lines {
		for j := 1; j < len(l.x); j++ {
			segment(img, px(l.x[j-1]), py(l.y[j-1]), px(l.x[j]), py(l.y[j]), l.color)
		}
		for j := range l.x {
			dot(img, px(l.x[j]), py(l.y[j]), l.color)
		}
		ly := at.Y + marginT + 14 + 14*i
		segment(img, x0+10, ly-4, x0+30, ly-4, l.color)
		text(img, x0+35, ly, l.name, black)
	}
}

func short(v float64) string {
	switch {
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func dot(img *image.RGBA, x, y int, c color.RGBA) {
	for dx := -2; dx <= 2; dx++ {
		for dy := -2; dy <= 2; dy++ {
			img.SetRGBA(x+dx, y+dy, c)
		}
	}
}

// segment draws a line from (x1, y1) to (x2, y2), two pixels thick.
func segment(img *image.RGBA, x1, y1, x2, y2 int, c color.RGBA) {
	steps := max(abs(x2-x1), abs(y2-y1), 1)
	for i := 0; i <= steps; i++ {
		x := x1 + (x2-x1)*i/steps
		y := y1 + (y2-y1)*i/steps
		img.SetRGBA(x, y, c)
		img.SetRGBA(x, y+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

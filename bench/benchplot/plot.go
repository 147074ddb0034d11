package benchplot

import (
	"fmt"
	"image/color"

	"github.com/zerohop/zerohop/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Write draws p99 latency against throughput, one line per measured
// variant (points in order of outstanding requests), to a PNG (or SVG/PDF
// by the file's extension) at path.
func Write(r *bench.Report, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("zerohop bench %s — p99 latency vs throughput", r.Date[:min(10, len(r.Date))])
	p.X.Label.Text = "requests/s (log)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Label.Text = "p99 latency (µs, log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	i := 0
	for _, v := range r.Variants {
		var xys plotter.XYs
		for _, pt := range v.Points {
			if pt.Error == "" && pt.RPS > 0 && pt.P99Us > 0 {
				xys = append(xys, plotter.XY{X: pt.RPS, Y: pt.P99Us})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("benchplot: plotting %s: %w", v.Label(), err)
		}
		c := plotutil.Color(i)
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(v.Label(), line, points)
		labels, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: outstandingLabels(v.Points)})
		if err == nil {
			for j := range labels.TextStyle {
				labels.TextStyle[j].Color = color.Gray{Y: 90}
				labels.TextStyle[j].Font.Size = vg.Points(7)
			}
			p.Add(labels)
		}
		i++
	}
	// Headroom above the highest point keeps the legend off the lines.
	p.Y.Max *= 10
	if err := p.Save(9*vg.Inch, 6*vg.Inch, path); err != nil {
		return fmt.Errorf("benchplot: saving plot %s: %w", path, err)
	}
	return nil
}

func outstandingLabels(pts []bench.Point) []string {
	var out []string
	for _, pt := range pts {
		if pt.Error == "" && pt.RPS > 0 && pt.P99Us > 0 {
			out = append(out, fmt.Sprintf(" N=%d", pt.Outstanding))
		}
	}
	return out
}

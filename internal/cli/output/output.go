// Package output prints what stretchctl reports: kubectl-like tables for
// people, or the same data as YAML or JSON for programs.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// None stands in a table for an empty value, as in kubectl.
const None = "<none>"

// Output formats, as given to -o.
const (
	// FormatTable is the default: kubectl-like tables.
	FormatTable = ""
	// FormatYAML prints the data as a YAML document.
	FormatYAML = "yaml"
	// FormatJSON prints the data as indented JSON.
	FormatJSON = "json"
)

// ValidateFormat checks a -o value.
func ValidateFormat(format string) error {
	switch format {
	case FormatTable, FormatYAML, FormatJSON:
		return nil
	}
	return fmt.Errorf("output format %q is not supported: use -o yaml or -o json, or leave -o out for tables", format)
}

// Print writes v as YAML or JSON.
func Print(w io.Writer, format string, v any) error {
	var data []byte
	var err error
	switch format {
	case FormatYAML:
		data, err = yaml.Marshal(v)
	case FormatJSON:
		data, err = json.MarshalIndent(v, "", "  ")
		data = append(data, '\n')
	default:
		return ValidateFormat(format)
	}
	if err != nil {
		return fmt.Errorf("encoding the output as %s: %w", format, err)
	}
	_, err = w.Write(data)
	return err
}

// Table is upper-case headers over aligned columns.
type Table struct {
	headers []string
	rows    [][]string
}

// NewTable starts a table with the given column headers.
func NewTable(headers ...string) *Table {
	upper := make([]string, len(headers))
	for i, h := range headers {
		upper[i] = strings.ToUpper(h)
	}
	return &Table{headers: upper}
}

// AddRow adds a row; empty cells print as <none>.
func (r *Table) AddRow(cells ...string) {
	row := make([]string, len(r.headers))
	for i := range row {
		row[i] = None
		if i < len(cells) && cells[i] != "" {
			row[i] = cells[i]
		}
	}
	r.rows = append(r.rows, row)
}

// Len is the number of rows.
func (r *Table) Len() int { return len(r.rows) }

// Write prints the headers and the rows, columns aligned like kubectl's.
func (r *Table) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(r.headers, "\t"))
	for _, row := range r.rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

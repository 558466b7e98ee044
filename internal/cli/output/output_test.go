package output

import (
	"bytes"
	"testing"

	. "github.com/onsi/gomega"
)

func TestTable(t *testing.T) {
	g := NewWithT(t)
	tbl := NewTable("name", "cluster id", "message")
	tbl.AddRow("provider-eu", "7c1d", "")
	tbl.AddRow("us", "0b8e", "token rejected", "extra cells are dropped")
	tbl.AddRow("short")
	g.Expect(tbl.Len()).To(Equal(3))
	var out bytes.Buffer
	g.Expect(tbl.Write(&out)).To(Succeed())
	g.Expect(out.String()).To(Equal(
		"NAME          CLUSTER ID   MESSAGE\n" +
			"provider-eu   7c1d         <none>\n" +
			"us            0b8e         token rejected\n" +
			"short         <none>       <none>\n"))
}

func TestPrint(t *testing.T) {
	g := NewWithT(t)
	v := struct {
		Name string `json:"name"`
	}{Name: "home"}
	var out bytes.Buffer
	g.Expect(Print(&out, FormatYAML, v)).To(Succeed())
	g.Expect(out.String()).To(Equal("name: home\n"))
	out.Reset()
	g.Expect(Print(&out, FormatJSON, v)).To(Succeed())
	g.Expect(out.String()).To(Equal("{\n  \"name\": \"home\"\n}\n"))
	g.Expect(Print(&out, "wide", v)).To(MatchError(ContainSubstring(`output format "wide" is not supported`)))
	g.Expect(ValidateFormat("")).To(Succeed())
}

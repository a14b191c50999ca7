package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atfhq/atf/examples/internal/golden"

	"github.com/atfhq/atf/examples/internal/wasmrun"
)

var indexRE = regexp.MustCompile(`items\[\d+\]`)

func TestTotalOrder(t *testing.T) {
	tests := []struct {
		name                           string
		in                             string
		subtotal, discount, tax, total string
	}{
		{
			name:     "readme example",
			in:       `{"id":"A-1","currency":"EUR","items":[{"sku":"X","quantity":2,"unit_price":"19.99"}],"discount_percent":"10","tax_percent":"20"}`,
			subtotal: "39.98", discount: "4.00", tax: "7.20", total: "43.18",
		},
		{
			name:     "no discount or tax",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":3,"unit_price":"0.10"}]}`,
			subtotal: "0.30", discount: "0.00", tax: "0.00", total: "0.30",
		},
		{
			name:     "null and empty-free percentages",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"5"}],"discount_percent":null,"tax_percent":"0"}`,
			subtotal: "5.00", discount: "0.00", tax: "0.00", total: "5.00",
		},
		{
			name:     "discount half a cent rounds up",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"0.05"}],"discount_percent":"10"}`,
			subtotal: "0.05", discount: "0.01", tax: "0.00", total: "0.04",
		},
		{
			name:     "discount under half a cent rounds down",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"0.04"}],"discount_percent":"10"}`,
			subtotal: "0.04", discount: "0.00", tax: "0.00", total: "0.04",
		},
		{
			name:     "tax on the discounted amount",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"100.00"}],"discount_percent":"50","tax_percent":"10"}`,
			subtotal: "100.00", discount: "50.00", tax: "5.00", total: "55.00",
		},
		{
			name:     "tax with three decimals",
			in:       `{"id":"A","currency":"USD","items":[{"sku":"X","quantity":1,"unit_price":"10"}],"tax_percent":"8.875"}`,
			subtotal: "10.00", discount: "0.00", tax: "0.89", total: "10.89",
		},
		{
			name:     "tax exactly half a cent rounds up",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"0.25"}],"tax_percent":"10"}`,
			subtotal: "0.25", discount: "0.00", tax: "0.03", total: "0.28",
		},
		{
			name:     "floats would be wrong",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":3,"unit_price":"1.15"}],"tax_percent":"10"}`,
			subtotal: "3.45", discount: "0.00", tax: "0.35", total: "3.80",
		},
		{
			name:     "full discount",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"9.99"}],"discount_percent":"100","tax_percent":"20"}`,
			subtotal: "9.99", discount: "9.99", tax: "0.00", total: "0.00",
		},
		{
			name:     "free item",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"0"}]}`,
			subtotal: "0.00", discount: "0.00", tax: "0.00", total: "0.00",
		},
		{
			name:     "trailing zeros beyond cents",
			in:       `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":1,"unit_price":"1.500"}]}`,
			subtotal: "1.50", discount: "0.00", tax: "0.00", total: "1.50",
		},
		{
			name: "largest order",
			in: fmt.Sprintf(`{"id":"A","currency":"EUR","items":[%s],"discount_percent":"0.0001","tax_percent":"100"}`,
				strings.TrimSuffix(strings.Repeat(`{"sku":"X","quantity":1000000,"unit_price":"10000000.00"},`, 1000), ",")),
			subtotal: "10000000000000000.00", discount: "10000000000.00", tax: "9999990000000000.00", total: "19999980000000000.00",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := totalOrder([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got orderOut
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Subtotal != tt.subtotal || got.Discount != tt.discount || got.Tax != tt.tax || got.Total != tt.total {
				t.Errorf("subtotal, discount, tax, total = %s, %s, %s, %s; want %s, %s, %s, %s",
					got.Subtotal, got.Discount, got.Tax, got.Total, tt.subtotal, tt.discount, tt.tax, tt.total)
			}
		})
	}
}

func TestTotalOrderErrors(t *testing.T) {
	item := `{"sku":"X","quantity":1,"unit_price":"1.00"}`
	order := func(fields string) string {
		return `{"id":"A","currency":"EUR","items":[` + item + `]` + fields + `}`
	}
	withItem := func(it string) string {
		return `{"id":"A","currency":"EUR","items":[` + it + `]}`
	}
	tests := []struct {
		name string
		in   string
		want string // the whole message
	}{
		{"empty payload", ``, `payload is empty; send an order such as {"id":"A-1","currency":"EUR","items":[{"sku":"X","quantity":2,"unit_price":"19.99"}]}`},
		{"malformed", `{"id":`, `payload is not valid JSON: it ends in the middle of a value`},
		{"not an object", `[1]`, `payload must be a JSON object (an order), not array`},
		{"trailing data", order(``) + `{}`, `payload has data after the order object; send exactly one JSON object`},
		{"unknown field", order(`,"unitPrice":"1"`), `payload has an unknown field "unitPrice"; the fields are id, currency, items (sku, quantity, unit_price), discount_percent and tax_percent`},
		{"wrong type", `{"id":1}`, `id: must be a JSON string, not number`},
		{"missing id", `{"currency":"EUR","items":[` + item + `]}`, `id: missing; give the order an id such as "A-1"`},
		{"lower-case currency", `{"id":"A","currency":"eur","items":[` + item + `]}`, `currency "eur": must be a three-letter ISO 4217 code in capitals, such as "EUR" or "USD"`},
		{"currency name", `{"id":"A","currency":"Euro","items":[` + item + `]}`, `currency "Euro": must be a three-letter ISO 4217 code in capitals, such as "EUR" or "USD"`},
		{"missing currency", `{"id":"A","items":[` + item + `]}`, `currency "": must be a three-letter ISO 4217 code in capitals, such as "EUR" or "USD"`},
		{"no items", `{"id":"A","currency":"EUR","items":[]}`, `items: the order has no items; add at least one {"sku", "quantity", "unit_price"}`},
		{"absent items", `{"id":"A","currency":"EUR"}`, `items: the order has no items; add at least one {"sku", "quantity", "unit_price"}`},
		{"too many items", `{"id":"A","currency":"EUR","items":[` + strings.TrimSuffix(strings.Repeat(item+",", 1001), ",") + `]}`, `items: the order has 1001 items; at most 1000 are allowed, split it into several orders`},
		{"zero quantity", withItem(`{"sku":"X","quantity":0,"unit_price":"1"}`), `items[0].quantity 0: must be at least 1; remove the line to order none`},
		{"negative quantity", withItem(`{"sku":"X","quantity":-2,"unit_price":"1"}`), `items[0].quantity -2: must be at least 1; remove the line to order none`},
		{"fractional quantity", withItem(`{"sku":"X","quantity":1.5,"unit_price":"1"}`), `items[0].quantity 1.5: must be a whole number of units, such as 2`},
		{"huge quantity", withItem(`{"sku":"X","quantity":99999999999999999999,"unit_price":"1"}`), `items[0].quantity 99999999999999999999: too large; at most 1000000 units per line`},
		{"missing quantity", withItem(`{"sku":"X","unit_price":"1"}`), `items[0].quantity: missing; give the number of units, such as 2`},
		{"negative price", withItem(`{"sku":"X","quantity":1,"unit_price":"-0.01"}`), `items[0].unit_price "-0.01": must not be negative`},
		{"malformed price", withItem(`{"sku":"X","quantity":1,"unit_price":"19,99"}`), `items[0].unit_price "19,99": must be a plain decimal number such as "19.99" (digits, at most one ".", no sign, exponent or spaces)`},
		{"exponent price", withItem(`{"sku":"X","quantity":1,"unit_price":"1e3"}`), `items[0].unit_price "1e3": must be a plain decimal number such as "19.99" (digits, at most one ".", no sign, exponent or spaces)`},
		{"sub-cent price", withItem(`{"sku":"X","quantity":1,"unit_price":"0.001"}`), `items[0].unit_price "0.001": has more than 2 decimal places; round it to cents first`},
		{"price as number", withItem(`{"sku":"X","quantity":1,"unit_price":19.99}`), `items[0].unit_price 19.99: must be a JSON string such as "19.99", not a number, so that no decoder on the way rounds it as floating point`},
		{"price too large", withItem(`{"sku":"X","quantity":1,"unit_price":"10000000.01"}`), `items[0].unit_price "10000000.01": is too large; the most allowed is 10000000`},
		{"missing price", withItem(`{"sku":"X","quantity":1}`), `items[0].unit_price: missing; give it as a string such as "19.99"`},
		{"missing sku", withItem(`{"quantity":1,"unit_price":"1"}`), `items[0].sku: missing`},
		{"discount over 100", order(`,"discount_percent":"100.5"`), `discount_percent "100.5": is too large; the most allowed is 100`},
		{"negative tax", order(`,"tax_percent":"-5"`), `tax_percent "-5": must not be negative`},
		{"tax too precise", order(`,"tax_percent":"8.12345"`), `tax_percent "8.12345": has more than 4 decimal places; round it to 4 decimal places first`},
		{"several problems", `{"id":"A","currency":"EUR","items":[{"sku":"X","quantity":0,"unit_price":"1"},{"sku":"Y","quantity":1,"unit_price":"x"}]}`,
			`items[0].quantity 0: must be at least 1; remove the line to order none; items[1].unit_price "x": must be a plain decimal number such as "19.99" (digits, at most one ".", no sign, exponent or spaces)`},
		{"many problems", `{"id":"A","currency":"EUR","items":[` + strings.TrimSuffix(strings.Repeat(`{"sku":"X","quantity":0,"unit_price":"1"},`, 12), ",") + `]}`,
			strings.Repeat(`items[N].quantity 0: must be at least 1; remove the line to order none; `, 10) + `and 2 more problems`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := totalOrder([]byte(tt.in))
			if err == nil {
				t.Fatalf("no error; output %s", out)
			}
			got := err.Error()
			if tt.name == "many problems" {
				got = indexRE.ReplaceAllString(got, "items[N]")
			}
			if got != tt.want {
				t.Errorf("error =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in      string
		places  int
		want    int64
		wantErr string
	}{
		{"0", 2, 0, ""},
		{"19.99", 2, 1999, ""},
		{"19.9", 2, 1990, ""},
		{"19", 2, 1900, ""},
		{"007.50", 2, 750, ""},
		{"1.230", 2, 123, ""},
		{"8.875", 4, 88750, ""},
		{"", 2, 0, "plain decimal"},
		{".5", 2, 0, "plain decimal"},
		{"5.", 2, 0, "plain decimal"},
		{"+5", 2, 0, "plain decimal"},
		{" 5", 2, 0, "plain decimal"},
		{"1.2.3", 2, 0, "plain decimal"},
		{"--5", 2, 0, "plain decimal"},
		{"-x", 2, 0, "plain decimal"},
		{"-5", 2, 0, "must not be negative"},
		{"1.234", 2, 0, "more than 2 decimal places"},
		{"99999999999999999999999", 2, 0, "too large"},
	}
	for _, tt := range tests {
		got, err := parseDecimal(tt.in, tt.places, 1e15)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseDecimal(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseDecimal(%q, %d) = %d, %v; want %d", tt.in, tt.places, got, err, tt.want)
		}
	}
}

func TestPercentOf(t *testing.T) {
	tests := []struct {
		amount  cents
		percent string
		want    cents
	}{
		{3998, "10", 400},    // 399.8 → 400
		{3598, "20", 720},    // 719.6 → 720
		{5, "10", 1},         // 0.5 → 1: half up
		{4, "10", 0},         // 0.4 → 0
		{15, "10", 2},        // 1.5 → 2
		{1000, "8.875", 89},  // 88.75 → 89
		{1000, "0.0001", 0},  // 0.001 → 0
		{1999, "100", 1999},  // all of it
		{0, "50", 0},         // nothing
		{100, "33.3333", 33}, // 33.3333 → 33
	}
	for _, tt := range tests {
		p, err := parseDecimal(tt.percent, percentPlaces, maxPercent)
		if err != nil {
			t.Fatal(err)
		}
		if got := percentOf(tt.amount, p); got != tt.want {
			t.Errorf("percentOf(%s, %s%%) = %s, want %s", tt.amount, tt.percent, got, tt.want)
		}
	}
}

func TestCentsString(t *testing.T) {
	for c, want := range map[cents]string{0: "0.00", 5: "0.05", 100: "1.00", 3998: "39.98", -5: "-0.05", 123456789: "1234567.89"} {
		if got := c.String(); got != want {
			t.Errorf("cents(%d).String() = %q, want %q", int64(c), got, want)
		}
	}
}

// TestGolden runs each testdata/*.json through run and compares what the
// lambda writes (stdout on success, the stderr line on failure) with the
// .golden file beside it; go test -update rewrites the .golden files.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata/*.json (%v)", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(bytes.NewReader(golden.Read(t, in)), &stdout, &stderr)
			wantCode := 0
			if strings.HasPrefix(filepath.Base(in), "invalid") {
				wantCode = 1
			}
			if code != wantCode {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, wantCode, stderr.Bytes())
			}
			golden.Check(t, strings.TrimSuffix(in, ".json")+".golden", append(stdout.Bytes(), stderr.Bytes()...))
		})
	}
}

// TestWasm builds the lambda for GOOS=wasip1 and runs it in wazero on a
// realistic order, then on an invalid one.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 binary; skipped with -short")
	}
	stdout, stderr, code := wasmrun.Run(t, ".", golden.Read(t, "testdata/cart.json"))
	if code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	if !golden.Updating() {
		golden.Check(t, "testdata/cart.golden", stdout)
	}

	stdout, stderr, code = wasmrun.Run(t, ".", golden.Read(t, "testdata/invalid.json"))
	if code != 1 || len(stdout) != 0 {
		t.Fatalf("invalid order: exit code %d, stdout %q; want 1 and nothing", code, stdout)
	}
	var e struct{ Error string }
	if err := json.Unmarshal(stderr, &e); err != nil || e.Error == "" || bytes.Count(stderr, []byte("\n")) != 1 {
		t.Errorf("stderr is not one JSON line with an error: %q", stderr)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits. They keep every amount inside int64 cents: the largest subtotal is
// maxItems × maxQuantity × maxUnitPrice = 10^18 cents, under 2^63 ≈ 9.2×10^18.
const (
	maxItems      = 1000
	maxQuantity   = 1_000_000
	maxUnitPrice  = 10_000_000_00 // cents: 10,000,000.00
	maxIDLen      = 128
	maxSKULen     = 128
	maxErrors     = 10 // problems listed in one error message
	percentPlaces = 4  // "8.875" is allowed, "8.87501" is not
	percentScale  = 10_000
	maxPercent    = 100 * percentScale
	pricePlaces   = 2
)

// orderIn is the task payload. Prices and percentages are JSON strings so
// that no JSON library on the way reads them as floating point.
type orderIn struct {
	ID              string          `json:"id"`
	Currency        string          `json:"currency"`
	Items           []itemIn        `json:"items"`
	DiscountPercent json.RawMessage `json:"discount_percent"`
	TaxPercent      json.RawMessage `json:"tax_percent"`
}

type itemIn struct {
	SKU       string          `json:"sku"`
	Quantity  json.RawMessage `json:"quantity"`
	UnitPrice json.RawMessage `json:"unit_price"`
}

// orderOut is the task output. Every amount is a string with two decimals.
type orderOut struct {
	ID       string    `json:"id"`
	Currency string    `json:"currency"`
	Subtotal string    `json:"subtotal"`
	Discount string    `json:"discount"`
	Tax      string    `json:"tax"`
	Total    string    `json:"total"`
	Lines    []lineOut `json:"lines"`
}

type lineOut struct {
	SKU       string `json:"sku"`
	Quantity  int64  `json:"quantity"`
	UnitPrice string `json:"unit_price"`
	Amount    string `json:"amount"`
}

// totalOrder validates an order and prices it. On success it returns the
// priced order as one line of JSON. Otherwise the error lists what is wrong
// with the payload, field by field, in words a person can act on; the
// payload will never succeed as it is, so the lambda fails without retry.
//
// The steps, each on integer cents (see README.md):
//
//	amount   = quantity × unit_price            exact
//	subtotal = Σ amount                         exact
//	discount = subtotal × discount_percent/100  rounded half up to the cent
//	tax      = (subtotal − discount) × tax_percent/100  rounded half up
//	total    = subtotal − discount + tax        exact
func totalOrder(in []byte) ([]byte, error) {
	var o orderIn
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("payload has data after the order object; send exactly one JSON object")
	}

	var p problems
	switch {
	case strings.TrimSpace(o.ID) == "":
		p.add(`id: missing; give the order an id such as "A-1"`)
	case len(o.ID) > maxIDLen:
		p.add("id: %d bytes long; at most %d are allowed", len(o.ID), maxIDLen)
	}
	if !isCurrencyCode(o.Currency) {
		p.add("currency %q: must be a three-letter ISO 4217 code in capitals, such as \"EUR\" or \"USD\"", o.Currency)
	}
	discountPct := percent(&p, "discount_percent", o.DiscountPercent)
	taxPct := percent(&p, "tax_percent", o.TaxPercent)

	switch {
	case len(o.Items) == 0:
		p.add("items: the order has no items; add at least one {\"sku\", \"quantity\", \"unit_price\"}")
	case len(o.Items) > maxItems:
		p.add("items: the order has %d items; at most %d are allowed, split it into several orders", len(o.Items), maxItems)
		o.Items = nil // one message is enough
	}

	out := orderOut{ID: o.ID, Currency: o.Currency, Lines: make([]lineOut, 0, len(o.Items))}
	var subtotal cents
	for i, it := range o.Items {
		field := fmt.Sprintf("items[%d]", i)
		switch {
		case strings.TrimSpace(it.SKU) == "":
			p.add("%s.sku: missing", field)
		case len(it.SKU) > maxSKULen:
			p.add("%s.sku: %d bytes long; at most %d are allowed", field, len(it.SKU), maxSKULen)
		}
		qty, qOK := quantity(&p, field+".quantity", it.Quantity)
		price, pOK := decimalString(&p, field+".unit_price", it.UnitPrice, pricePlaces, maxUnitPrice, true)
		if !qOK || !pOK {
			continue
		}
		amount := cents(qty * price) // ≤ 10^6 × 10^9: fits
		subtotal += amount           // ≤ 10^3 × 10^15: fits
		out.Lines = append(out.Lines, lineOut{
			SKU:       it.SKU,
			Quantity:  qty,
			UnitPrice: cents(price).String(),
			Amount:    amount.String(),
		})
	}
	if err := p.err(); err != nil {
		return nil, err
	}

	discount := percentOf(subtotal, discountPct)
	taxable := subtotal - discount
	tax := percentOf(taxable, taxPct)
	out.Subtotal = subtotal.String()
	out.Discount = discount.String()
	out.Tax = tax.String()
	out.Total = (taxable + tax).String()

	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// isCurrencyCode reports whether s has the form of an ISO 4217 code. It does
// not check the code against the list of currencies in use.
func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// quantity reads a whole number of units from 1 to maxQuantity.
func quantity(p *problems, field string, raw json.RawMessage) (int64, bool) {
	s := string(raw)
	if len(raw) == 0 || s == "null" {
		p.add("%s: missing; give the number of units, such as 2", field)
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && allDigits(strings.TrimPrefix(s, "-")):
		p.add("%s %s: too large; at most %d units per line", field, s, maxQuantity)
	case err != nil:
		p.add("%s %s: must be a whole number of units, such as 2", field, s)
	case n <= 0:
		p.add("%s %d: must be at least 1; remove the line to order none", field, n)
	case n > maxQuantity:
		p.add("%s %d: too large; at most %d units per line", field, n, maxQuantity)
	default:
		return n, true
	}
	return 0, false
}

// percent reads an optional percentage from 0 to 100; absent means 0.
func percent(p *problems, field string, raw json.RawMessage) int64 {
	if len(raw) == 0 || string(raw) == "null" {
		return 0
	}
	v, _ := decimalString(p, field, raw, percentPlaces, maxPercent, false)
	return v
}

// decimalString reads a JSON string holding a decimal (see parseDecimal).
func decimalString(p *problems, field string, raw json.RawMessage, places int, max int64, required bool) (int64, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			p.add("%s: missing; give it as a string such as \"19.99\"", field)
		}
		return 0, !required
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.add("%s %s: must be a JSON string such as \"%s\", not a number, so that no decoder on the way rounds it as floating point",
			field, raw, strings.Trim(string(raw), `"`))
		return 0, false
	}
	v, err := parseDecimal(s, places, max)
	if err != nil {
		p.add("%s %q: %v", field, s, err)
		return 0, false
	}
	return v, true
}

// decodeError turns a JSON decoding error into a message about the payload.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New(`payload is empty; send an order such as {"id":"A-1","currency":"EUR","items":[{"sku":"X","quantity":2,"unit_price":"19.99"}]}`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("payload is not valid JSON: it ends in the middle of a value")
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Errorf("%s: must be a JSON %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &typeErr):
		return fmt.Errorf("payload must be a JSON object (an order), not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("payload is not valid JSON: %v (at byte %d)", syntaxErr, syntaxErr.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("payload has an unknown field %s; the fields are id, currency, items (sku, quantity, unit_price), discount_percent and tax_percent",
			strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return fmt.Errorf("payload is not valid JSON: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice":
		return "array"
	case "struct":
		return "object"
	}
	return goKind
}

// problems collects validation errors, so that one run reports all of them.
type problems struct {
	list []string
}

func (p *problems) add(format string, args ...any) {
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

func (p *problems) err() error {
	switch n := len(p.list); {
	case n == 0:
		return nil
	case n > maxErrors:
		more := "problems"
		if n-maxErrors == 1 {
			more = "problem"
		}
		return fmt.Errorf("%s; and %d more %s", strings.Join(p.list[:maxErrors], "; "), n-maxErrors, more)
	default:
		return errors.New(strings.Join(p.list, "; "))
	}
}

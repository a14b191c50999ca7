package main

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// cents is an amount in cents (hundredths of the currency unit). All the
// arithmetic of this lambda is on integers: a float64 cannot hold 0.10
// exactly, an int64 number of cents can.
type cents int64

// String formats c as a decimal with two places: 3998 → "39.98".
func (c cents) String() string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

var (
	errNotDecimal = errors.New(`must be a plain decimal number such as "19.99" (digits, at most one ".", no sign, exponent or spaces)`)
	errNegative   = errors.New("must not be negative")
)

// parseDecimal reads a non-negative decimal string with at most places
// fractional digits and returns it scaled by 10^places, exactly:
// parseDecimal("19.9", 2) = 1990. Values above max (already scaled) are
// refused, which also keeps every later product inside int64.
func parseDecimal(s string, places int, max int64) (int64, error) {
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		if _, err := parseDecimal(rest, places, max); errors.Is(err, errNotDecimal) || strings.HasPrefix(rest, "-") {
			return 0, errNotDecimal
		}
		return 0, errNegative
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || (hasDot && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, errNotDecimal
	}
	if len(frac) > places {
		// Trailing zeros carry no value: "19.990" is 19.99.
		trimmed := strings.TrimRight(frac[places:], "0")
		if trimmed != "" {
			return 0, fmt.Errorf("has more than %d decimal places; round it to %s first", places, placesName(places))
		}
		frac = frac[:places]
	}
	frac += strings.Repeat("0", places-len(frac))
	var v int64
	for _, r := range strings.TrimLeft(whole, "0") + frac {
		v = v*10 + int64(r-'0')
		if v > max {
			return 0, fmt.Errorf("is too large; the most allowed is %s", formatScaled(max, places))
		}
	}
	return v, nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func placesName(places int) string {
	if places == 2 {
		return "cents"
	}
	return fmt.Sprintf("%d decimal places", places)
}

// formatScaled formats v/10^places without trailing zeros: (1000000, 4) → "100".
func formatScaled(v int64, places int) string {
	s := fmt.Sprintf("%0*d", places+1, v)
	whole, frac := s[:len(s)-places], strings.TrimRight(s[len(s)-places:], "0")
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}

// percentOf returns amount × percent / 100 rounded half up to the cent, where
// percent is scaled by 10^percentPlaces (12.5% = 125000). Both are
// non-negative, so half up is also half away from zero. The product is taken
// in math/big so it cannot overflow.
func percentOf(amount cents, percent int64) cents {
	num := new(big.Int).Mul(big.NewInt(int64(amount)), big.NewInt(percent))
	den := big.NewInt(100 * percentScale)
	num.Add(num, new(big.Int).Rsh(den, 1)) // + ½, then truncate
	return cents(num.Quo(num, den).Int64())
}
